"""Deterministic test material for the detector benchmarks (cached outside git).

The cache lives in ``$IVR_BENCH_CACHE`` or ``~/.cache/ivr-bench``; nothing here is committed.
"""
