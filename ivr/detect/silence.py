"""Silence / voice activity with an adaptive noise floor (DOMAIN.md DIS-SILENCE), batched.

Per 20 ms frame and channel: the frame level (dBm0) and a tracked noise floor. The floor falls
at once to a quieter frame and rises slowly (``floor_rise_db_per_s``), never above
``max_floor_dbm0``: steady line hiss becomes the floor, so it counts as silence, while quiet speech
still stands ``voice_margin_db`` above it. A frame is *voice* when it is above both
``floor + voice_margin_db`` and ``min_voice_dbm0``.

Events (see :mod:`ivr.detect.events`): ``SilenceStarted`` once the non-voice run has lasted
``min_silence_ms`` (with ``start_ms`` where it began), ``SilenceEnded`` when voice has lasted
``min_voice_ms`` (its ``end_ms`` is where that voice began) or at ``flush``. Short clicks do not
end a silence. The call machine times "both parties silent" itself from these two.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ivr.detect.config import SilenceConfig
from ivr.detect.events import SilenceEnded, SilenceStarted
from ivr.detect.levels import FRAME_MS, as_frames, powers_to_dbm0

SilenceEvent = SilenceStarted | SilenceEnded


class SilenceBank:
    """Voice activity for ``channels`` legs at once."""

    def __init__(self, channels: int, config: SilenceConfig | None = None) -> None:
        self.config = config or SilenceConfig()
        self.channels = channels
        self._rise_per_frame = self.config.floor_rise_db_per_s * FRAME_MS / 1000.0
        self._floor_min = self.config.absolute_silence_dbm0 - 15.0
        self.floor_dbm0 = np.full(channels, np.nan)
        self.level_dbm0 = np.full(channels, -120.0)
        self.voice = np.zeros(channels, dtype=bool)
        self._quiet_start = np.zeros(channels, dtype=np.int64)  # ms relative to origin
        self._in_quiet = np.ones(channels, dtype=bool)
        self._reported = np.zeros(channels, dtype=bool)
        self._voice_run_ms = np.zeros(channels, dtype=np.int64)
        self._origin_ms = np.zeros(channels, dtype=np.int64)
        self._quiet_floor = np.full(channels, -120.0)

    def reset_row(self, row: int, now_ms: int) -> None:
        """Start channel ``row`` afresh at ``now_ms``."""
        self.floor_dbm0[row] = np.nan
        self.level_dbm0[row] = -120.0
        self.voice[row] = False
        self._quiet_start[row] = 0
        self._in_quiet[row] = True
        self._reported[row] = False
        self._voice_run_ms[row] = 0
        self._origin_ms[row] = now_ms

    def threshold_dbm0(self) -> npt.NDArray[np.float64]:
        """The current voice threshold per channel."""
        cfg = self.config
        floor = np.nan_to_num(self.floor_dbm0, nan=cfg.absolute_silence_dbm0)
        return np.asarray(np.maximum(floor + cfg.voice_margin_db, cfg.min_voice_dbm0), dtype=np.float64)

    def feed(self, frames: npt.ArrayLike, now_ms: int) -> list[list[SilenceEvent]]:
        """One 20 ms frame per channel; ``now_ms`` is the time of the frames' first sample."""
        cfg = self.config
        x = as_frames(frames)
        level = powers_to_dbm0(np.einsum("ij,ij->i", x, x) / x.shape[1])
        self.level_dbm0 = level
        floor = self.floor_dbm0
        fresh = np.isnan(floor)
        floor = np.where(fresh, level, floor)
        # Fall quickly towards a quieter frame, rise slowly: the floor follows the quiet parts.
        floor = np.where(level < floor, floor + 0.5 * (level - floor), floor + self._rise_per_frame)
        floor = np.clip(floor, self._floor_min, cfg.max_floor_dbm0)
        self.floor_dbm0 = floor
        threshold = np.maximum(floor + cfg.voice_margin_db, cfg.min_voice_dbm0)
        voice = (level >= threshold) & (level > cfg.absolute_silence_dbm0)
        self.voice = voice
        rel = now_ms - self._origin_ms  # per channel
        out: list[list[SilenceEvent]] = [[] for _ in range(self.channels)]

        self._voice_run_ms = np.where(voice, self._voice_run_ms + FRAME_MS, 0)
        # Voice long enough ends the quiet run (at the time the voice began).
        ending = self._in_quiet & voice & (self._voice_run_ms >= cfg.min_voice_ms)
        for ch in np.flatnonzero(ending & self._reported).tolist():
            voice_start = int(rel[ch] + FRAME_MS - self._voice_run_ms[ch])
            out[ch].append(
                SilenceEnded(
                    int(self._quiet_start[ch]),
                    voice_start,
                    float(self._quiet_floor[ch]),
                    float(threshold[ch]),
                    cfg,
                )
            )
        self._in_quiet &= ~ending
        self._reported &= ~ending
        # A quiet frame starts a quiet run if none is open.
        starting = ~self._in_quiet & ~voice
        self._quiet_start = np.where(starting, rel, self._quiet_start)
        self._in_quiet |= starting
        # Report a quiet run once it is long enough.
        long_enough = self._in_quiet & ~self._reported & (rel + FRAME_MS - self._quiet_start >= cfg.min_silence_ms)
        for ch in np.flatnonzero(long_enough).tolist():
            self._quiet_floor[ch] = float(floor[ch])
            out[ch].append(
                SilenceStarted(
                    int(self._quiet_start[ch]), int(rel[ch] + FRAME_MS), float(floor[ch]), float(threshold[ch]), cfg
                )
            )
        self._reported |= long_enough
        return out

    def flush(self, now_ms: int) -> list[list[SilenceEvent]]:
        """End of stream: close reported silence runs at ``now_ms``."""
        out: list[list[SilenceEvent]] = [[] for _ in range(self.channels)]
        threshold = self.threshold_dbm0()
        for ch in np.flatnonzero(self._in_quiet & self._reported).tolist():
            end = int(now_ms - self._origin_ms[ch])
            out[ch].append(
                SilenceEnded(
                    int(self._quiet_start[ch]), end, float(self._quiet_floor[ch]), float(threshold[ch]), self.config
                )
            )
        self._reported[:] = False
        self._in_quiet[:] = False
        return out


class SilenceDetector:
    """One leg's voice activity: ``feed(frame, now_ms) -> [SilenceStarted | SilenceEnded]``."""

    def __init__(self, config: SilenceConfig | None = None) -> None:
        self._bank = SilenceBank(1, config)
        self.config = self._bank.config

    def feed(self, frame: npt.ArrayLike, now_ms: int) -> list[SilenceEvent]:
        return self._bank.feed(frame, now_ms)[0]

    def flush(self, now_ms: int) -> list[SilenceEvent]:
        return self._bank.flush(now_ms)[0]
