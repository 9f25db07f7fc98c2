"""Sustained static (DOMAIN.md DIS-NOISE: a bad cordless phone drowning speech), batched.

A frame is *static-like* when it is loud (``min_level_dbm0``) and spectrally flat over 300-3400 Hz
(spectral flatness = geometric / arithmetic mean of the power spectrum; white noise ~0.56, voiced
speech < 0.2). Over the last second, static is present when nearly all frames are static-like and
their level is steady (10-90 % spread <= ``max_level_spread_db``, estimated as 2.56 standard
deviations: speech is modulated at syllable rate).
``NoiseStarted`` is emitted once static has lasted ``min_duration_ms``; ``NoiseEnded`` when it stops.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ivr.detect.config import NoiseConfig
from ivr.detect.events import NoiseEnded, NoiseStarted
from ivr.detect.levels import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE_HZ, as_frames, powers_to_dbm0

NoiseEvent = NoiseStarted | NoiseEnded
_WINDOW = 50  # frames: 1 s
_freqs = np.fft.rfftfreq(FRAME_SAMPLES, 1.0 / SAMPLE_RATE_HZ)
_BAND = (_freqs >= 300) & (_freqs <= 3400)
_HANN = np.hanning(FRAME_SAMPLES)


class NoiseBank:
    """Static detection for ``channels`` legs at once."""

    def __init__(self, channels: int, config: NoiseConfig | None = None) -> None:
        self.config = config or NoiseConfig()
        self.channels = channels
        self._levels = np.full((channels, _WINDOW), -120.0)
        self._static = np.zeros((channels, _WINDOW), dtype=bool)
        self._flat = np.zeros((channels, _WINDOW))
        self._pos = 0
        self._in_noise = np.zeros(channels, dtype=bool)
        self._start_ms = np.zeros(channels, dtype=np.int64)
        self._reported = np.zeros(channels, dtype=bool)
        self._origin_ms = np.zeros(channels, dtype=np.int64)

    def reset_row(self, row: int, now_ms: int) -> None:
        self._levels[row] = -120.0
        self._static[row] = False
        self._in_noise[row] = False
        self._reported[row] = False
        self._origin_ms[row] = now_ms

    def feed(self, frames: npt.ArrayLike, now_ms: int) -> list[list[NoiseEvent]]:
        cfg = self.config
        x = as_frames(frames)
        level = powers_to_dbm0(np.einsum("ij,ij->i", x, x) / FRAME_SAMPLES)
        loud = level >= cfg.min_level_dbm0
        flat = np.zeros(self.channels)
        if loud.any():
            idx = np.flatnonzero(loud)
            spec = np.abs(np.fft.rfft(x[idx] * _HANN, axis=1)[:, _BAND]) ** 2 + 1e-9
            # rfft of several rows comes out column-major, and numpy would then sum each row in
            # another order than a row alone (a leg replayed by itself): C order for both.
            spec = np.ascontiguousarray(spec)
            flat[idx] = np.exp(np.mean(np.log(spec), axis=1)) / np.mean(spec, axis=1)
        static = loud & (flat >= cfg.min_flatness)
        self._levels[:, self._pos] = level
        self._static[:, self._pos] = static
        self._flat[:, self._pos] = flat
        self._pos = (self._pos + 1) % _WINDOW
        share = self._static.mean(axis=1)
        # 10th-90th percentile spread of the levels, from the standard deviation (2 x 1.28 sigma for
        # a normal spread): percentiles per frame would cost more than the rest of the detector.
        spread = 2.56 * self._levels.std(axis=1)
        noisy = (share >= 0.9) & (spread <= cfg.max_level_spread_db)
        rel = now_ms - self._origin_ms
        out: list[list[NoiseEvent]] = [[] for _ in range(self.channels)]
        starting = noisy & ~self._in_noise
        # The window looked back one second: the static began then.
        self._start_ms = np.where(starting, np.maximum(rel + FRAME_MS - _WINDOW * FRAME_MS, 0), self._start_ms)
        self._in_noise |= starting
        confirm = self._in_noise & ~self._reported & (rel + FRAME_MS - self._start_ms >= cfg.min_duration_ms)
        for ch in np.flatnonzero(confirm).tolist():
            out[ch].append(
                NoiseStarted(
                    int(self._start_ms[ch]), int(rel[ch] + FRAME_MS), float(level[ch]), self._mean_flat(ch), cfg
                )
            )
        self._reported |= confirm
        ending = self._in_noise & ~noisy
        for ch in np.flatnonzero(ending & self._reported).tolist():
            out[ch].append(self._ended(ch, int(rel[ch])))
        self._in_noise &= ~ending
        self._reported &= ~ending
        return out

    def _mean_flat(self, ch: int) -> float:
        return float(np.mean(self._flat[ch]))

    def _ended(self, ch: int, end_ms: int) -> NoiseEnded:
        level = float(10.0 * np.log10(np.mean(10.0 ** (self._levels[ch] / 10.0))))
        return NoiseEnded(int(self._start_ms[ch]), end_ms, level, self._mean_flat(ch), self.config)

    def flush(self, now_ms: int) -> list[list[NoiseEvent]]:
        out: list[list[NoiseEvent]] = [[] for _ in range(self.channels)]
        for ch in np.flatnonzero(self._in_noise & self._reported).tolist():
            out[ch].append(self._ended(ch, int(now_ms - self._origin_ms[ch])))
        self._in_noise[:] = False
        self._reported[:] = False
        return out


class NoiseDetector:
    """One leg's static detector."""

    def __init__(self, config: NoiseConfig | None = None) -> None:
        self._bank = NoiseBank(1, config)
        self.config = self._bank.config

    def feed(self, frame: npt.ArrayLike, now_ms: int) -> list[NoiseEvent]:
        return self._bank.feed(frame, now_ms)[0]

    def flush(self, now_ms: int) -> list[NoiseEvent]:
        return self._bank.flush(now_ms)[0]
