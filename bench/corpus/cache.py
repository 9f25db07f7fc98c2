"""Where generated corpora live (outside git)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(sub: str) -> Path:
    """``$IVR_BENCH_CACHE/<sub>`` (default ``~/.cache/ivr-bench/<sub>``), created if missing."""
    root = Path(os.environ.get("IVR_BENCH_CACHE", Path.home() / ".cache" / "ivr-bench"))
    path = root / sub
    path.mkdir(parents=True, exist_ok=True)
    return path
