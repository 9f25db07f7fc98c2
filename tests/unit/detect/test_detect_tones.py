"""Call-progress tones (dial, ringback, busy, reorder, SIT) and the call-waiting tone (DIS-3WAY)."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.detect import synth
from ivr.detect.audio import load_8k
from ivr.detect.events import ToneEvent
from ivr.detect.tones import ToneDetector

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
