"""Call-progress tones (dial, ringback, busy, reorder, SIT) and the call-waiting tone (DIS-3WAY)."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.detect import synth
from ivr.detect.audio import load_8k
from ivr.detect.events import ToneEvent
from ivr.detect.tones import _FIT, _MAX_PAIR_TWIST, FREQS_HZ, ToneBank, ToneDetector

AUDIO = "tests/data/audio"


def run(signal: np.ndarray) -> list[ToneEvent]:
    det = ToneDetector()
    frames = synth.to_frames(signal)
    events: list[ToneEvent] = []
    for i, frame in enumerate(frames):
        events.extend(det.feed(frame, i * 20))
    events.extend(det.flush(len(frames) * 20))
    return events


def cadence(freqs: list[float], on_ms: float, off_ms: float, cycles: int, level: float) -> np.ndarray:
    parts = []
    for _ in range(cycles):
        parts += [synth.tone(freqs, on_ms, level), synth.silence(off_ms)]
    return np.concatenate([synth.silence(200), *parts])


@pytest.mark.parametrize(
    ("signal", "name", "count"),
    [
        (np.concatenate([synth.silence(200), synth.tone([350, 440], 3000, -13), synth.silence(200)]), "dial", 1),
        (cadence([440, 480], 2000, 4000, 2, -19), "ringback", 2),
        (cadence([480, 620], 500, 500, 3, -24), "busy", 3),
        (cadence([480, 620], 250, 250, 4, -24), "reorder", 4),
        (cadence([440], 300, 9700, 1, -20), "call_waiting", 1),
        (cadence([440], 200, 5000, 2, -20), "call_waiting", 2),
    ],
)
def test_call_progress_tone_is_named(signal: np.ndarray, name: str, count: int) -> None:
    """Each North American tone is recognised by its frequencies and cadence."""
    events = run(signal)
    assert [e.name for e in events] == [name] * count


def test_sit_is_three_rising_segments() -> None:
    """SIT: 913.8, 1370.6, 1776.7 Hz in sequence is one 'sit' event covering all three."""
    sig = np.concatenate(
        [
            synth.silence(200),
            synth.tone([913.8], 274, -20),
            synth.tone([1370.6], 274, -20),
            synth.tone([1776.7], 380, -20),
            synth.silence(300),
        ]
    )
    (event,) = run(sig)
    assert event.name == "sit"
    assert abs(event.start_ms - 200) <= 20 and abs(event.end_ms - 1128) <= 20


@pytest.mark.parametrize("duration_ms", [60.0, 100.0, 600.0, 1500.0])
def test_440_hz_of_the_wrong_length_is_not_call_waiting(duration_ms: float) -> None:
    """Only a 440 Hz burst of 200-300 ms (within the margin) is the call-waiting tone."""
    sig = np.concatenate([synth.silence(200), synth.tone([440], duration_ms, -20), synth.silence(500)])
    assert [e.name for e in run(sig)] == []


def test_call_waiting_times_within_one_frame() -> None:
    """The call-waiting event's start and end are within 20 ms of the burst."""
    sig = np.concatenate([synth.silence(510), synth.tone([440], 300, -20), synth.silence(500)])
    (event,) = run(sig)
    assert abs(event.start_ms - 510) <= 20 and abs(event.end_ms - 810) <= 20
    assert event.to_json()["type"] == "tone" and event.to_json()["name"] == "call_waiting"


@pytest.mark.parametrize("sample", ["talkoff_en.wav", "talkoff_es.wav"])
def test_speech_is_no_tone(sample: str) -> None:
    """The shipped speech samples contain no call-progress or call-waiting tone."""
    assert run(load_8k(f"{AUDIO}/{sample}").astype(np.float64)) == []


def test_music_is_no_tone() -> None:
    """A minute of music-like material (chords, melodies, sweeps) raises no tone event."""
    music = synth.music_like(60.0, np.random.default_rng(11))
    assert run(music) == []


def _classes_in_order(bank: ToneBank, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The class rule as written down: try dial, ringback, busy, 440, SIT1..3 in that order and take
    each that passes and is stronger than the one taken before."""
    p = ((x @ _FIT)[:, :9] ** 2 + (x @ _FIT)[:, 9:] ** 2) / 2.0
    total = np.einsum("ij,ij->i", x, x) / 160
    cls = np.zeros(len(x), dtype=np.int64)
    best = np.zeros(len(x))
    candidates = [(1, p[:, 0], p[:, 1]), (2, p[:, 1], p[:, 2]), (3, p[:, 2], p[:, 3])]
    for c, a, b in candidates:
        pair = a + b
        ok = ((a >= bank._min_power) & (b >= bank._min_power) & (a <= _MAX_PAIR_TWIST * b) & (b <= _MAX_PAIR_TWIST * a)
              & (pair >= bank._ratio * np.maximum(total - pair, 1e-3)) & (pair > best))
        cls, best = np.where(ok, c, cls), np.where(ok, pair, best)
    singles = [(4, p[:, 1]), (5, np.maximum(p[:, 4], p[:, 5])), (6, np.maximum(p[:, 6], p[:, 7])), (7, p[:, 8])]
    for c, ps in singles:
        ok = (ps >= bank._min_power) & (ps >= bank._ratio * np.maximum(total - ps, 1e-3)) & (ps > best)
        cls, best = np.where(ok, c, cls), np.where(ok, ps, best)
    return cls, best


@pytest.mark.parametrize("seed", range(4))
def test_the_tone_class_is_the_strongest_passing_class_tried_in_order(seed: int) -> None:
    """Frames of noise with one to three of the plan's frequencies (near-equal pairs, twists, off
    frequency): classify gives the class and power of the in-order rule, bit for bit."""
    rng = np.random.default_rng(seed)
    n = np.arange(160)
    x = rng.normal(0, rng.uniform(1, 300), (512, 160))
    for row in range(512):
        for f in rng.choice(FREQS_HZ, rng.integers(0, 4), replace=False):
            x[row] += rng.uniform(20, 6000) * np.sin(2 * np.pi * f * (1 + rng.uniform(-0.01, 0.01)) * n / 8000
                                                     + rng.uniform(0, 6))
    bank = ToneBank(512)
    cls, best = bank.classify(x)
    want_cls, want_best = _classes_in_order(bank, x)
    assert np.array_equal(cls, want_cls) and np.array_equal(best, want_best)
    assert len(set(cls.tolist())) == 8  # every class (and none) occurs
