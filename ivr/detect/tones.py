"""Call-progress tones and the call-waiting tone (North American precise tone plan), batched.

Each 20 ms frame is classified by a coherent DFT (Goertzel, 50 Hz resolution) at 350, 440, 480,
620 Hz and the SIT frequencies: a pair (or single tone) is present when each component reaches
``min_level_dbm0`` and the tone(s) stand ``min_tone_to_rest_db`` above everything else. Runs of
one class become events when they end:

* dial 350+440 Hz (continuous) lasting ``min_dial_ms``; ringback 440+480 Hz lasting
  ``min_ringback_ms`` (2 s on, 4 s off);
* 480+620 Hz on for ``busy_on_*`` (0.5 s on/off) -> busy, for ``reorder_on_*`` (0.25 s) -> reorder;
* 440 Hz alone for ``call_waiting_min_ms``..``call_waiting_max_ms`` -> call_waiting (DIS-3WAY;
  the standard burst is 300 ms, some switches send 200 ms);
* SIT: three consecutive single-tone segments near 950, 1400 and 1800 Hz (ITU-T E.180 / Telcordia
  SR-2275 frequencies 913.8/985.2, 1370.6/1428.5, 1776.7 Hz), each ``sit_segment_*`` long.

A one-frame dropout inside a run is bridged (packet loss). ``active_class``/``active_since_ms``
expose the running class, so the hookflash detector can use a dial tone before it ends.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ivr.detect.config import ToneConfig
from ivr.detect.events import ToneEvent
from ivr.detect.levels import (
    FRAME_MS,
    FRAME_SAMPLES,
    SAMPLE_RATE_HZ,
    as_frames,
    dbm0_to_power,
    power_to_dbm0,
    stacked_product,
)

FREQS_HZ = np.array([350.0, 440.0, 480.0, 620.0, 913.8, 985.2, 1370.6, 1428.5, 1776.7])
_n = np.arange(FRAME_SAMPLES)
_W = 2 * np.pi * FREQS_HZ / SAMPLE_RATE_HZ
_BASIS = np.concatenate([np.cos(np.outer(_n, _W)), np.sin(np.outer(_n, _W))], axis=1)
# Least-squares fit of all tone frequencies at once: 440 and 480 Hz are only 40 Hz apart, which a
# 20 ms DFT cannot separate (each leaks into the other's bin by -13 dB and beats); the joint fit
# removes that mutual leakage exactly at the same cost (one matrix product).
_FIT = np.linalg.pinv(_BASIS).T
_MAX_PAIR_TWIST = 10.0 ** (8.0 / 10.0)

NONE, DIAL, RINGBACK, BUSY, CW, SIT1, SIT2, SIT3 = range(8)
CLASS_NAMES = ("none", "dial", "ringback", "busy_pair", "440", "sit1", "sit2", "sit3")
# Component indices into FREQS_HZ for each class (pairs and singles).
_PAIRS = {DIAL: (0, 1), RINGBACK: (1, 2), BUSY: (2, 3)}
_PAIR_FIRST = np.array([i for i, _ in _PAIRS.values()])
_PAIR_SECOND = np.array([j for _, j in _PAIRS.values()])


class ToneBank:
    """Call-progress tone detection for ``channels`` legs at once."""

    def __init__(self, channels: int, config: ToneConfig | None = None, *, product_rows: int | None = None) -> None:
        self.config = config or ToneConfig()
        self.channels = channels
        self.product_rows = product_rows or channels  # the tone fit rounds as a bank of this height's
        self._min_power = dbm0_to_power(self.config.min_level_dbm0)
        self._ratio = 10.0 ** (self.config.min_tone_to_rest_db / 10.0)
        self.active_class = np.zeros(channels, dtype=np.int64)
        self.active_since_ms = np.zeros(channels, dtype=np.int64)
        self._last_on_ms = np.zeros(channels, dtype=np.int64)  # end of the last frame of the class
        self._level = np.zeros(channels)
        self._origin_ms = np.zeros(channels, dtype=np.int64)
        # Previous segments for SIT: (class, start, end) of the last two closed segments.
        self._history: dict[int, list[tuple[int, int, int]]] = {}

    def reset_row(self, row: int, now_ms: int) -> None:
        self.active_class[row] = NONE
        self.active_since_ms[row] = 0
        self._last_on_ms[row] = 0
        self._origin_ms[row] = now_ms
        self._history.pop(row, None)

    def classify(self, x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Per channel: the tone class of the frame and its tone power."""
        return self.classify_fitted(stacked_product(x, _FIT, self.product_rows), x)

    def classify_fitted(
        self, coef: npt.NDArray[np.float64], x: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """:meth:`classify` given the fitted sines ``coef = x @ _FIT`` (row by row from here on, real
        arithmetic only, so the offline path can pass a recording's frames many at a time)."""
        k = len(FREQS_HZ)
        p = (coef[:, :k] ** 2 + coef[:, k:] ** 2) / 2.0  # power of each fitted sine
        total = np.einsum("ij,ij->i", x, x) / FRAME_SAMPLES
        # Every class's power, in class order (DIAL .. SIT3): the pairs' sums, then the singles
        # (440 Hz for call waiting, either frequency of a SIT segment).
        first, second = p[:, _PAIR_FIRST], p[:, _PAIR_SECOND]
        values = np.concatenate([first + second, p[:, 1:2], np.maximum(p[:, 4:7:2], p[:, 5:8:2]), p[:, 8:9]], axis=1)
        ok = values >= self._ratio * np.maximum(total[:, None] - values, 1e-3)
        ok[:, :3] &= ((first >= self._min_power) & (second >= self._min_power)
                      & (first <= _MAX_PAIR_TWIST * second) & (second <= _MAX_PAIR_TWIST * first))
        ok[:, 3:] &= values[:, 3:] >= self._min_power
        # The class is the strongest that passes, the first of equals (classes were once tried in
        # order, each taken only if stronger than the one before: the same choice).
        passing = np.where(ok, values, 0.0)
        strongest = np.argmax(passing, axis=1)
        best = passing.max(axis=1)
        cls = np.where(ok.any(axis=1), strongest + 1, NONE).astype(np.int64)
        return cls, best

    def feed(self, frames: npt.ArrayLike, now_ms: int) -> list[list[ToneEvent]]:
        x = as_frames(frames)
        cls, pw = self.classify(x)
        out: list[list[ToneEvent]] = [[] for _ in range(self.channels)]
        rel = now_ms - self._origin_ms
        busy = np.flatnonzero((cls != NONE) | (self.active_class != NONE)).tolist()
        for ch in busy:
            c = int(cls[ch])
            t = int(rel[ch])
            cur = int(self.active_class[ch])
            if c != NONE and c == cur:
                self._last_on_ms[ch] = t + FRAME_MS
                self._level[ch] = max(self._level[ch], float(pw[ch]))
                continue
            if cur != NONE and (c != NONE or t - int(self._last_on_ms[ch]) >= FRAME_MS):
                # The run ended (another class, or more than one frame missing).
                self._close(ch, out[ch])
            if c != NONE and int(self.active_class[ch]) == NONE:
                self.active_class[ch] = c
                self.active_since_ms[ch] = t
                self._last_on_ms[ch] = t + FRAME_MS
                self._level[ch] = float(pw[ch])
        return out

    def _close(self, ch: int, out: list[ToneEvent]) -> None:
        cfg = self.config
        c = int(self.active_class[ch])
        start = int(self.active_since_ms[ch])
        end = int(self._last_on_ms[ch])
        dur = end - start
        self.active_class[ch] = NONE
        level = power_to_dbm0(float(self._level[ch]) / 2.0)  # per component for pairs
        name: str | None = None
        freqs: tuple[float, ...] = ()
        if c == DIAL and dur >= cfg.min_dial_ms:
            name, freqs = "dial", (350.0, 440.0)
        elif c == RINGBACK and dur >= cfg.min_ringback_ms:
            name, freqs = "ringback", (440.0, 480.0)
        elif c == BUSY and cfg.busy_on_min_ms <= dur <= cfg.busy_on_max_ms:
            name, freqs = "busy", (480.0, 620.0)
        elif c == BUSY and cfg.reorder_on_min_ms <= dur <= cfg.reorder_on_max_ms:
            name, freqs = "reorder", (480.0, 620.0)
        elif c == CW and cfg.call_waiting_min_ms <= dur <= cfg.call_waiting_max_ms:
            name, freqs = "call_waiting", (440.0,)
            level = power_to_dbm0(float(self._level[ch]))
        if name is not None:
            out.append(ToneEvent(name, start, end, freqs, level, (dur,), cfg))
        if c in (SIT1, SIT2, SIT3):
            hist = self._history.setdefault(ch, [])
            hist.append((c, start, end))
            del hist[:-3]
            if (
                len(hist) == 3
                and [h[0] for h in hist] == [SIT1, SIT2, SIT3]
                and all(cfg.sit_segment_min_ms <= h[2] - h[1] <= cfg.sit_segment_max_ms for h in hist)
                and hist[1][1] - hist[0][2] <= 2 * FRAME_MS
                and hist[2][1] - hist[1][2] <= 2 * FRAME_MS
            ):
                cadence = tuple(h[2] - h[1] for h in hist)
                freqs = (950.0, 1400.0, 1776.7)
                out.append(
                    ToneEvent("sit", hist[0][1], end, freqs, power_to_dbm0(float(self._level[ch])), cadence, cfg)
                )
                hist.clear()
        else:
            self._history.pop(ch, None)

    def flush(self, now_ms: int) -> list[list[ToneEvent]]:
        out: list[list[ToneEvent]] = [[] for _ in range(self.channels)]
        for ch in np.flatnonzero(self.active_class != NONE).tolist():
            self._close(ch, out[ch])
        return out


class ToneDetector:
    """One leg's call-progress tone detector."""

    def __init__(self, config: ToneConfig | None = None) -> None:
        self._bank = ToneBank(1, config)
        self.config = self._bank.config

    def feed(self, frame: npt.ArrayLike, now_ms: int) -> list[ToneEvent]:
        return self._bank.feed(frame, now_ms)[0]

    def flush(self, now_ms: int) -> list[ToneEvent]:
        return self._bank.flush(now_ms)[0]
