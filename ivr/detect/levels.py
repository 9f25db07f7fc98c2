"""Level conventions shared by the detectors (16-bit linear PCM, 8 kHz, 20 ms frames).

0 dBm0 is the level of a sine whose peak is 3.14 dB below the 16-bit full scale (the G.711 A-law
overload point is +3.14 dBm0, ITU-T G.711 / G.168 convention), i.e. a peak of 22 776 and an RMS of
16 105. All detectors measure power as mean square over a window and convert with these helpers.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

SAMPLE_RATE_HZ = 8000
FRAME_SAMPLES = 160
FRAME_MS = 20

# Peak amplitude of a 0 dBm0 sine in 16-bit linear PCM.
DBM0_PEAK = 32768.0 * 10.0 ** (-3.14 / 20.0)
# Mean-square power of a 0 dBm0 sine.
DBM0_POWER = DBM0_PEAK**2 / 2.0


def dbm0_to_peak(level_dbm0: float) -> float:
    """Peak amplitude of a sine at ``level_dbm0``."""
    return float(DBM0_PEAK * 10.0 ** (level_dbm0 / 20.0))


def dbm0_to_power(level_dbm0: float) -> float:
    """Mean-square power of a signal at ``level_dbm0``."""
    return float(DBM0_POWER * 10.0 ** (level_dbm0 / 10.0))


def power_to_dbm0(power: float) -> float:
    """Mean-square power -> dBm0 (-120 for zero)."""
    if power <= 0.0:
        return -120.0
    return 10.0 * math.log10(power / DBM0_POWER)


def powers_to_dbm0(power: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Vectorised :func:`power_to_dbm0`."""
    return np.asarray(10.0 * np.log10(np.maximum(power, 1e-12) / DBM0_POWER), dtype=np.float64)


def as_frames(frames: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Check and convert a (channels, 160) int16 array (or one 160-sample frame) to float64 2-D.

    A C-contiguous float64 array is returned as it is, not copied (the detectors only read their
    frames): the bank converts a tick's block once for all its detectors. Anything else is copied
    as before (the same layout, so the same rounding downstream)."""
    arr = np.asarray(frames)
    if arr.ndim == 1:
        arr = arr[np.newaxis, :]
    if arr.ndim != 2 or arr.shape[1] != FRAME_SAMPLES:
        raise ValueError(f"expected frames of {FRAME_SAMPLES} samples, got shape {arr.shape}")
    if arr.dtype == np.float64 and arr.flags.c_contiguous:
        return arr
    return arr.astype(np.float64)


def stacked_product(x: npt.NDArray[np.float64], basis: npt.NDArray[np.float64], rows: int) -> npt.NDArray[np.float64]:
    """``x @ basis`` with the rounding of a product of ``rows`` rows: products of ``rows`` rows each.

    OpenBLAS picks its kernel by the matrix height, so products of different heights round
    differently in the last bit, while a row's result does not depend on the other rows of its
    product. A 3-D ``matmul`` runs one BLAS product per stacked matrix, each of height ``rows``;
    the last one is padded with zero rows.
    """
    n = x.shape[0]
    if n == rows:
        return np.asarray(x @ basis, dtype=np.float64)
    pad = (-n) % rows
    if pad:
        x = np.concatenate([x, np.zeros((pad, x.shape[1]))])
    out = np.matmul(x.reshape(-1, rows, x.shape[1]), basis)
    return np.asarray(out.reshape(-1, basis.shape[1])[:n], dtype=np.float64)
