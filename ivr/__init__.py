"""Collect-call acceptance engine: call state machine, SIP/RTP, detectors, dialplans, CLI."""

__version__ = "0.1.0"
