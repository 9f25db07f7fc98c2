"""Collect-call acceptance engine: call state machine, SIP/RTP, detectors, dialplans, CLI."""

import os

# The detectors' matrices are small (a few hundred rows): OpenBLAS worker threads only spin on them
# (measured: 4.6x more CPU for the batched DTMF stage). Set before numpy is first imported; a
# deployment that wants otherwise sets the variable itself.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"

# The compiled media path (ivr/native.py) is used only when it was built from these very sources.
from ivr import native as _native

_native.guard()
