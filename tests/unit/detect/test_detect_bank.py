"""The detector bank: all detectors on one leg, or batched over many legs with the same results."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.detect import synth
from ivr.detect.bank import BatchedDetectorBank, DetectorBank
from ivr.detect.config import DetectorConfigs


def leg_signal(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    parts = [synth.silence(300 + 37 * i), synth.dtmf("0123456789"[i], 70, -12), synth.silence(900)]
    parts += [synth.tone([440], 300, -20), synth.silence(700), synth.white_noise(600, -30, rng), synth.silence(600)]
    sig = np.concatenate(parts)
    return sig + synth.white_noise(len(sig) / 8, -62, rng)


def summary(events: list) -> list[tuple[str, int]]:  # type: ignore[type-arg]
    return [(e.kind, int(getattr(e, "start_ms", getattr(e, "at_ms", 0)))) for e in events]


def test_batched_bank_rows_equal_single_leg_banks() -> None:
    """Every row of a BatchedDetectorBank reports what a DetectorBank on that leg alone reports."""
    configs = DetectorConfigs().with_only(("dtmf", "silence", "tones", "hookflash", "noise"))
    signals = [leg_signal(i) for i in range(5)]
    n = max(len(s) for s in signals)
    frames = np.stack([synth.to_frames(np.concatenate([s, np.zeros(n - len(s))])) for s in signals])
    batched = BatchedDetectorBank(len(signals), configs)
    rows: list[list] = [[] for _ in signals]  # type: ignore[type-arg]
    for t in range(frames.shape[1]):
        for r, evs in enumerate(batched.feed(frames[:, t], t * 20)):
            rows[r].extend(evs)
    for r, evs in enumerate(batched.flush(frames.shape[1] * 20)):
        rows[r].extend(evs)
    for r in range(len(signals)):
        single = DetectorBank(configs)
        evs = []
        for t in range(frames.shape[1]):
            evs.extend(single.feed(frames[r, t], t * 20))
        evs.extend(single.flush(frames.shape[1] * 20))
        assert summary(rows[r]) == summary(evs)
        assert ("dtmf", pytest.approx(300 + 37 * r, abs=10)) in [(k, s) for k, s in summary(evs)]
        assert "tone" in [k for k, _ in summary(evs)]


def test_reset_row_times_events_from_the_new_legs_start() -> None:
    """A row given to a new leg at 10 s reports that leg's key relative to its own start."""
    bank = BatchedDetectorBank(2, DetectorConfigs().with_only(("dtmf",)))
    frames = synth.to_frames(np.concatenate([synth.silence(500), synth.dtmf("8", 80), synth.silence(300)]))
    bank.reset_row(1, 10_000)
    found = []
    for i, frame in enumerate(frames):
        evs = bank.feed(np.stack([np.zeros(160, dtype=np.int16), frame]), 10_000 + i * 20)
        found.extend(evs[1])
        assert evs[0] == []
    assert [(e.digit, abs(e.start_ms - 500) <= 10) for e in found] == [("8", True)]


def test_disabled_detectors_report_nothing() -> None:
    """With only silence enabled, a key and a tone produce no dtmf or tone events."""
    bank = DetectorBank(DetectorConfigs().with_only(("silence",)))
    evs = []
    for i, frame in enumerate(synth.to_frames(leg_signal(3))):
        evs.extend(bank.feed(frame, i * 20))
    assert {e.kind for e in evs} <= {"silence", "silence_started"}


def test_wrong_frame_shape_is_refused() -> None:
    """Frames must be (channels, 160)."""
    with pytest.raises(ValueError):
        BatchedDetectorBank(2).feed(np.zeros((2, 80), dtype=np.int16), 0)
