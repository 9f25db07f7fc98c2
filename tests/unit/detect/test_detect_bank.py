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


def _varied_leg(i: int, seconds: float = 4.0) -> np.ndarray:
    """A leg's few seconds: keys (some of them at once on many legs), progress tones, clicks,
    static and music at random levels and times, over line noise."""
    rng = np.random.default_rng(1000 + i)
    parts: list[np.ndarray] = [synth.silence(float(rng.uniform(0, 200)))]
    while sum(len(p) for p in parts) < seconds * 8000:
        pick = int(rng.integers(7))
        level = float(rng.uniform(-40, -5))
        if pick == 0:
            parts.append(synth.dtmf(str(rng.choice(list("0123456789*#ABCD"))), float(rng.uniform(30, 150)), level,
                                    float(rng.uniform(-6, 10)), float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))))
        elif pick == 1:
            freqs = [[350, 440], [440, 480], [480, 620], [440], [985.2], [1428.5], [1776.7]][int(rng.integers(7))]
            parts.append(synth.tone(freqs, float(rng.uniform(100, 600)), level))
        elif pick == 2:
            parts.append(synth.click(float(rng.uniform(5, 40)), level, rng))
        elif pick == 3:
            parts.append(synth.white_noise(float(rng.uniform(300, 3000)), level, rng))
        elif pick == 4:
            parts.append(synth.music_like(float(rng.uniform(0.3, 1.0)), rng) * 10 ** (level / 20))
        else:
            parts.append(synth.silence(float(rng.uniform(50, 800))))
    sig = np.concatenate(parts)[: int(seconds * 8000)]
    return sig + synth.white_noise(len(sig) / 8, float(rng.uniform(-70, -50)), rng)


def test_a_tall_bank_gives_each_row_what_a_bank_of_its_product_height_gives() -> None:
    """The engine's banks are 512 rows with products of 128 (DETECTOR_BANK_ROWS), and a replay runs
    a leg in a bank of 128: every detector's events, times and evidence are the same, bit for bit.
    Keys sound on more than 128 rows at once (the window tests run in slices)."""
    rows, height = 512, 128
    configs = DetectorConfigs().with_only(("dtmf", "silence", "tones", "hookflash", "noise"))
    frames = np.stack([synth.to_frames(_varied_leg(i)) for i in range(rows)])
    chorus = synth.to_frames(np.concatenate([synth.silence(400), synth.dtmf("5", 80, -10), synth.silence(400)]))
    frames[: 3 * height // 2, : len(chorus)] = chorus  # the same key on 192 rows at once
    tall = BatchedDetectorBank(rows, configs, product_rows=height)
    short = [BatchedDetectorBank(height, configs) for _ in range(rows // height)]
    # Events in full (repr: every float to the last bit, not the rounded to_json).
    got: list[list[tuple[str, str]]] = [[] for _ in range(rows)]
    want: list[list[tuple[str, str]]] = [[] for _ in range(rows)]
    for t in range(frames.shape[1]):
        for r, evs in enumerate(tall.feed(frames[:, t], t * 20)):
            got[r] += [(type(e).__name__, repr(e)) for e in evs]
        for b, bank in enumerate(short):
            for r, evs in enumerate(bank.feed(frames[b * height : (b + 1) * height, t], t * 20)):
                want[b * height + r] += [(type(e).__name__, repr(e)) for e in evs]
    end = frames.shape[1] * 20
    for r, evs in enumerate(tall.flush(end)):
        got[r] += [(type(e).__name__, repr(e)) for e in evs]
    for b, bank in enumerate(short):
        for r, evs in enumerate(bank.flush(end)):
            want[b * height + r] += [(type(e).__name__, repr(e)) for e in evs]
    assert got == want
    kinds = {kind for evs in want for kind, _ in evs}
    assert {"DtmfEvent", "ToneEvent", "SilenceStarted", "SilenceEnded", "NoiseStarted", "HookflashEvent"} <= kinds
    assert sum(1 for evs in want[: 3 * height // 2] if any("digit='5'" in text for _, text in evs)) > height
