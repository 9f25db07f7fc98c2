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


def _note(freq_hz: float, duration_ms: float, level_dbm0: float, harmonics: int, vibrato_hz: float) -> Samples:
    n = np.arange(ms_to_samples(duration_ms))
    t = n / SAMPLE_RATE_HZ
    phase = 2 * np.pi * freq_hz * t + (0.3 * np.sin(2 * np.pi * vibrato_hz * t) if vibrato_hz else 0.0)
    out = np.zeros(len(n))
    for k in range(1, harmonics + 1):
        if freq_hz * k < SAMPLE_RATE_HZ / 2 - 200:
            out += np.sin(k * phase) / k
    # Attack, decay, release: instruments are not switched on and off like tones.
    env = np.minimum(1.0, t / 0.02) * np.exp(-t * 1.5) * np.minimum(1.0, (t[-1] - t) / 0.03 + 1e-9)
    scaled = out * env * dbm0_to_peak(level_dbm0) / max(float(np.max(np.abs(out))), 1e-9)
    return np.asarray(scaled, dtype=np.float64)


def music_like(seconds: float, rng: np.random.Generator) -> Samples:
    """Music-like test material: harmonic chords, melodies with vibrato and harmonic sweeps.

    Notes are equal-tempered (A4 = 440 Hz) with 3-8 harmonics, so a chord can put two partials near
    a DTMF pair, as real music does.
    """
    out: list[Samples] = []
    total = 0
    while total < seconds * SAMPLE_RATE_HZ:
        kind = rng.integers(3)
        level = float(rng.uniform(-30, -8))
        if kind == 0:  # chord
            dur = float(rng.uniform(200, 1500))
            notes = rng.integers(-24, 26, size=int(rng.integers(2, 5)))
            piece = sum(
                (_note(440.0 * 2 ** (int(m) / 12), dur, level, int(rng.integers(3, 9)), 0.0) for m in notes),
                start=np.zeros(ms_to_samples(dur)),
            )
        elif kind == 1:  # melody
            parts = []
            for _ in range(int(rng.integers(4, 12))):
                m = int(rng.integers(-12, 24))
                parts.append(
                    _note(440.0 * 2 ** (m / 12), float(rng.uniform(80, 400)), level, 5, float(rng.uniform(0, 6)))
                )
            piece = np.concatenate(parts)
        else:  # harmonic sweep
            dur = float(rng.uniform(300, 2000))
            n = np.arange(ms_to_samples(dur))
            f0, f1 = rng.uniform(150, 1200, size=2)
            inst = f0 + (f1 - f0) * n / len(n)
            phase = 2 * np.pi * np.cumsum(inst) / SAMPLE_RATE_HZ
            piece = sum((np.sin(k * phase) / k for k in range(1, 5)), start=np.zeros(len(n)))
            piece = piece * dbm0_to_peak(level) / max(float(np.max(np.abs(piece))), 1e-9)
        out.append(np.asarray(piece, dtype=np.float64))
        total += len(piece)
    return np.concatenate(out)[: int(seconds * SAMPLE_RATE_HZ)]


def click(duration_ms: float, level_dbm0: float, rng: np.random.Generator) -> Samples:
    """A hook-switch click: a broadband burst with a fast decay, ``duration_ms`` long."""
    n = ms_to_samples(duration_ms)
    burst = rng.standard_normal(n) * np.exp(-np.arange(n) / max(n / 3.0, 1.0))
    burst[0] += 3.0  # the switch transient
    return np.asarray(burst * np.sqrt(dbm0_to_power(level_dbm0)) * 2.0, dtype=np.float64)
