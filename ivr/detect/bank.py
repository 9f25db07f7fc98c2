"""All detectors over one leg (:class:`DetectorBank`) or many legs at once (:class:`BatchedDetectorBank`).

The batched bank is what the engine should run: one ``feed`` per 20 ms tick for every live leg,
a (channels, 160) int16 array, so numpy does the work for all calls at once. Rows are assigned
to legs with :meth:`BatchedDetectorBank.reset_row` (each row's event times count from then).

The hookflash detector uses the other detectors' measurements (noise floor, running tone, DTMF
keys), so those run whenever hookflash is enabled; only the enabled detectors' events are reported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ivr.detect.config import DetectorConfigs
from ivr.detect.dtmf import DtmfBank
from ivr.detect.events import DetectorEvent, DtmfEvent
from ivr.detect.hookflash import HookflashBank
from ivr.detect.levels import FRAME_SAMPLES, as_frames
from ivr.detect.noise import NoiseBank
from ivr.detect.silence import SilenceBank
from ivr.detect.tones import ToneBank


class BatchedDetectorBank:
    """Every enabled detector for ``channels`` legs at once.

    ``product_rows`` (default ``channels``): the bank gives each row the results, bit for bit, of
    a bank of that many rows. numpy rounds a row's matrix products (OpenBLAS picks its kernel by
    the height) and its buffered strided complex products by the array's size, not by the other
    rows' values; so a bank of 512 rows with products of 128 gives every leg what a bank of 128
    gives it, which is what a replay runs (ivr/replay.py), at a quarter of the per-call numpy
    overhead that is most of a bank's cost.
    """

    def __init__(self, channels: int, configs: DetectorConfigs | None = None, *,
                 product_rows: int | None = None) -> None:
        self.configs = configs or DetectorConfigs()
        self.channels = channels
        self.product_rows = product_rows or channels
        c = self.configs
        hook = c.hookflash_enabled
        rows = self.product_rows
        self.dtmf = DtmfBank(channels, c.dtmf, product_rows=rows) if (c.dtmf_enabled or hook) else None
        self.silence = SilenceBank(channels, c.silence) if (c.silence_enabled or hook) else None
        self.tones = ToneBank(channels, c.tones, product_rows=rows) if (c.tones_enabled or hook) else None
        self.hookflash = HookflashBank(channels, c.hookflash) if hook else None
        self.noise = NoiseBank(channels, c.noise) if c.noise_enabled else None

    def reset_row(self, row: int, now_ms: int) -> None:
        """Give row ``row`` to a new leg whose stream starts at ``now_ms``."""
        for det in (self.dtmf, self.silence, self.tones, self.hookflash, self.noise):
            if det is not None:
                det.reset_row(row, now_ms)

    def feed(self, frames: npt.ArrayLike, now_ms: int) -> list[list[DetectorEvent]]:
        """One 20 ms frame per row (int16, shape (channels, 160)); events per row."""
        c = self.configs
        x = np.asarray(frames)
        if x.ndim == 1:
            x = x[np.newaxis, :]
        if x.shape != (self.channels, FRAME_SAMPLES):
            raise ValueError(f"expected shape ({self.channels}, {FRAME_SAMPLES}), got {x.shape}")
        x = as_frames(x)  # once for every detector (each would convert the int16 block again)
        out: list[list[DetectorEvent]] = [[] for _ in range(self.channels)]
        dtmf: list[list[DtmfEvent]] = [[] for _ in range(self.channels)]
        # Events are rare: each detector's rows are walked only when it has any (``any`` over the
        # row lists runs in C, a walk of 128 rows per detector per tick in Python does not).
        if self.dtmf is not None:
            dtmf = self.dtmf.feed(x, now_ms)
            if c.dtmf_enabled:
                _merge(out, dtmf)
        if self.silence is not None:
            sil = self.silence.feed(x, now_ms)
            if c.silence_enabled:
                _merge(out, sil)
        if self.tones is not None:
            tones = self.tones.feed(x, now_ms)
            if c.tones_enabled:
                _merge(out, tones)
        if self.hookflash is not None and self.silence is not None and self.tones is not None:
            _merge(out, self.hookflash.feed(
                x, now_ms, self.silence.floor_dbm0, self.tones.active_class, self.tones.active_since_ms, dtmf
            ))
        if self.noise is not None:
            _merge(out, self.noise.feed(x, now_ms))
        return out

    def flush(self, now_ms: int) -> list[list[DetectorEvent]]:
        """End of all streams: report what is still open."""
        c = self.configs
        out: list[list[DetectorEvent]] = [[] for _ in range(self.channels)]
        parts: list[tuple[bool, list[list[DetectorEvent]]]] = []
        if self.dtmf is not None:
            parts.append((c.dtmf_enabled, list(self.dtmf.flush(now_ms))))  # type: ignore[arg-type]
        if self.silence is not None:
            parts.append((c.silence_enabled, list(self.silence.flush(now_ms))))  # type: ignore[arg-type]
        if self.tones is not None:
            parts.append((c.tones_enabled, list(self.tones.flush(now_ms))))  # type: ignore[arg-type]
        if self.hookflash is not None:
            parts.append((True, list(self.hookflash.flush(now_ms))))  # type: ignore[arg-type]
        if self.noise is not None:
            parts.append((True, list(self.noise.flush(now_ms))))  # type: ignore[arg-type]
        for enabled, rows in parts:
            if enabled:
                for row, evs in enumerate(rows):
                    out[row].extend(evs)
        return out


def _merge(out: list[list[DetectorEvent]], rows: Sequence[Sequence[DetectorEvent]]) -> None:
    """Append each row's events to ``out``'s row, in order."""
    if any(rows):
        for row, events in enumerate(rows):
            if events:
                out[row].extend(events)


class DetectorBank:
    """Every enabled detector on one leg: ``feed(frame, now_ms) -> list[DetectorEvent]``."""

    def __init__(self, configs: DetectorConfigs | None = None) -> None:
        self._bank = BatchedDetectorBank(1, configs)
        self.configs = self._bank.configs

    def feed(self, frame: npt.ArrayLike, now_ms: int) -> list[DetectorEvent]:
        return self._bank.feed(frame, now_ms)[0]

    def flush(self, now_ms: int) -> list[DetectorEvent]:
        return self._bank.flush(now_ms)[0]


def detect_samples(samples: npt.NDArray[np.int16], configs: DetectorConfigs | None = None) -> list[DetectorEvent]:
    """Run a whole 8 kHz signal through a :class:`DetectorBank` (zero-padded to whole frames)."""
    pad = (-len(samples)) % FRAME_SAMPLES
    pcm = np.concatenate([samples.astype(np.int16), np.zeros(pad, dtype=np.int16)])
    frames = pcm.reshape(-1, FRAME_SAMPLES)
    bank = DetectorBank(configs)
    events: list[DetectorEvent] = []
    for i, frame in enumerate(frames):
        events.extend(bank.feed(frame, i * 20))
    events.extend(bank.flush(len(frames) * 20))
    return events
