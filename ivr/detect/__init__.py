"""Streaming audio detectors over 8 kHz, 20 ms frames (DESIGN.md section 4)."""
