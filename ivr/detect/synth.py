"""Signal synthesis for in-band signalling: DTMF keys, call-progress tones, noise, frames.

Used by simulated phones (pressing keys in-band), by the tests and by the benchmarks. Samples are
float64 at 8 kHz until :func:`to_pcm16` rounds and clips them.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ivr.detect.dtmf import COL_HZ, KEYPAD, ROW_HZ
from ivr.detect.levels import FRAME_SAMPLES, SAMPLE_RATE_HZ, dbm0_to_peak, dbm0_to_power

Samples = npt.NDArray[np.float64]


def ms_to_samples(duration_ms: float) -> int:
    return round(duration_ms * SAMPLE_RATE_HZ / 1000.0)


def silence(duration_ms: float) -> Samples:
    return np.zeros(ms_to_samples(duration_ms))


def tone(
    freqs_hz: tuple[float, ...] | list[float],
    duration_ms: float,
    level_dbm0: float | list[float],
    phase: float = 0.0,
) -> Samples:
    """Sum of sines, each at ``level_dbm0`` (one level for all, or one per frequency)."""
    n = np.arange(ms_to_samples(duration_ms))
    levels = level_dbm0 if isinstance(level_dbm0, list) else [level_dbm0] * len(freqs_hz)
    out = np.zeros(len(n))
    for i, (f, lvl) in enumerate(zip(freqs_hz, levels, strict=True)):
        out += dbm0_to_peak(lvl) * np.sin(2 * np.pi * f * n / SAMPLE_RATE_HZ + phase + 1.3 * i)
    return out


def dtmf_freqs(digit: str) -> tuple[float, float]:
    """(low, high) nominal frequencies of a key."""
    for r, keys in enumerate(KEYPAD):
        c = keys.find(digit.upper())
        if c >= 0:
            return ROW_HZ[r], COL_HZ[c]
    raise ValueError(f"not a DTMF key: {digit!r}")


def dtmf(
    digit: str,
    duration_ms: float,
    level_dbm0: float = -10.0,
    twist_db: float = 0.0,
    low_dev_pct: float = 0.0,
    high_dev_pct: float = 0.0,
    phase: float = 0.0,
) -> Samples:
    """One key: the low tone at ``level_dbm0`` and the high tone ``twist_db`` below it
    (positive twist = normal twist, high group weaker)."""
    low, high = dtmf_freqs(digit)
    return tone(
        [low * (1 + low_dev_pct / 100), high * (1 + high_dev_pct / 100)],
        duration_ms,
        [level_dbm0, level_dbm0 - twist_db],
        phase,
    )


def white_noise(duration_ms: float, level_dbm0: float, rng: np.random.Generator) -> Samples:
    """Gaussian white noise with total power ``level_dbm0``."""
    noise = rng.standard_normal(ms_to_samples(duration_ms)) * np.sqrt(dbm0_to_power(level_dbm0))
    return np.asarray(noise, dtype=np.float64)


def power(samples: Samples) -> float:
    return float(np.mean(samples**2)) if len(samples) else 0.0


def to_pcm16(samples: Samples) -> npt.NDArray[np.int16]:
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


def to_frames(samples: npt.NDArray[np.int16] | Samples) -> npt.NDArray[np.int16]:
    """Pad to whole 20 ms frames and reshape to (frames, 160) int16."""
    pcm: npt.NDArray[np.int16] = (
        samples.astype(np.int16) if samples.dtype == np.int16 else to_pcm16(samples.astype(np.float64))
    )
    pad = (-len(pcm)) % FRAME_SAMPLES
    if pad:
        pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
    return pcm.reshape(-1, FRAME_SAMPLES)
