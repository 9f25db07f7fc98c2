"""Sustained static (DIS-NOISE): loud, flat, steady noise for seconds; never speech."""

from __future__ import annotations

import numpy as np

from ivr.detect import synth
from ivr.detect.audio import load_8k
from ivr.detect.events import NoiseEnded, NoiseStarted
from ivr.detect.noise import NoiseDetector


def run(signal: np.ndarray) -> list[NoiseStarted | NoiseEnded]:
    det = NoiseDetector()
    frames = synth.to_frames(signal)
    events: list[NoiseStarted | NoiseEnded] = []
    for i, frame in enumerate(frames):
        events.extend(det.feed(frame, i * 20))
    events.extend(det.flush(len(frames) * 20))
    return events


def test_five_seconds_of_static_is_reported_started_then_ended() -> None:
    """Loud white noise for 5 s: NoiseStarted after 3 s, NoiseEnded near its end."""
    rng = np.random.default_rng(4)
    sig = np.concatenate([np.zeros(8000), synth.white_noise(5000, -25, rng), np.zeros(16000)])
    events = run(sig)
    assert [type(e) for e in events] == [NoiseStarted, NoiseEnded]
    started, ended = events
    assert isinstance(ended, NoiseEnded)
    assert abs(started.start_ms - 1000) <= 100
    assert abs(ended.end_ms - 6000) <= 200
    assert ended.to_json()["type"] == "noise"


def test_short_static_is_not_reported() -> None:
    """Two seconds of static is shorter than min_duration_ms (3 s)."""
    rng = np.random.default_rng(5)
    sig = np.concatenate([np.zeros(8000), synth.white_noise(2000, -25, rng), np.zeros(8000)])
    assert run(sig) == []


def test_speech_is_not_static() -> None:
    """The shipped speech samples, loud, raise no static event."""
    for name in ("talkoff_en.wav", "talkoff_es.wav"):
        pcm = load_8k(f"tests/data/audio/{name}").astype(np.float64) * 2.0
        assert run(pcm) == []


def test_quiet_hiss_is_not_static() -> None:
    """Line hiss at -55 dBm0 is below min_level_dbm0: not static."""
    rng = np.random.default_rng(6)
    assert run(synth.white_noise(8000, -55, rng)) == []
