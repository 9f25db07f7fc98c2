"""Voice activity with an adaptive noise floor (DIS-SILENCE): hiss is silence, quiet speech is not."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.detect import synth
from ivr.detect.audio import load_8k
from ivr.detect.events import SilenceEnded, SilenceStarted
from ivr.detect.silence import SilenceDetector

SPEECH = load_8k("tests/data/audio/talkoff_en.wav").astype(np.float64)


def speech(seconds: float, level_db: float) -> np.ndarray:
    """Continuous speech (pauses trimmed) scaled by ``level_db`` relative to the sample."""
    voiced = SPEECH[np.abs(SPEECH) > 0]
    return voiced[: int(seconds * 8000)] * 10 ** (level_db / 20)


def run(signal: np.ndarray) -> list[SilenceStarted | SilenceEnded]:
    det = SilenceDetector()
    frames = synth.to_frames(signal)
    events: list[SilenceStarted | SilenceEnded] = []
    for i, frame in enumerate(frames):
        events.extend(det.feed(frame, i * 20))
    events.extend(det.flush(len(frames) * 20))
    return events


@pytest.mark.parametrize("hiss_dbm0", [-70.0, -60.0, -50.0, -45.0])
def test_line_hiss_between_speech_is_silence(hiss_dbm0: float) -> None:
    """Steady hiss (up to -45 dBm0) after speech is reported as silence, start and end within 20 ms."""
    rng = np.random.default_rng(1)
    sig = np.concatenate([speech(3.0, 0.0), np.zeros(4000 * 8), speech(2.0, 0.0)])
    sig = sig + synth.white_noise(len(sig) / 8, hiss_dbm0, rng)
    ended = [e for e in run(sig) if isinstance(e, SilenceEnded) and e.end_ms - e.start_ms > 2000]
    assert len(ended) == 1
    assert abs(ended[0].start_ms - 3000) <= 60 and abs(ended[0].end_ms - 7000) <= 60


@pytest.mark.parametrize("speech_db", [-10.0, -20.0, -25.0])
def test_quiet_speech_over_hiss_is_not_silence(speech_db: float) -> None:
    """Speech 25 dB quieter than normal over -60 dBm0 hiss raises no long silence."""
    rng = np.random.default_rng(2)
    sig = np.concatenate([synth.white_noise(2000, -60, rng), speech(8.0, speech_db)])
    sig[16000:] += synth.white_noise(8000, -60, rng)
    runs = [e for e in run(sig) if isinstance(e, SilenceEnded) and e.start_ms >= 2100]
    assert all(e.end_ms - e.start_ms < 1500 for e in runs)


def test_silence_started_is_reported_after_min_silence_ms_with_its_true_start() -> None:
    """SilenceStarted arrives once the quiet has lasted min_silence_ms and dates from its start."""
    sig = np.concatenate([speech(2.0, 0.0), np.zeros(8000 * 2)])
    started = [e for e in run(sig) if isinstance(e, SilenceStarted)]
    assert len(started) == 1
    assert abs(started[0].start_ms - 2000) <= 40
    assert started[0].at_ms - started[0].start_ms >= 400


def test_a_click_does_not_end_a_silence() -> None:
    """A 20 ms click inside a silence does not end it (voice must last min_voice_ms)."""
    rng = np.random.default_rng(3)
    sig = np.concatenate([speech(1.0, 0.0), np.zeros(8000), synth.click(20, -10, rng), np.zeros(8000)])
    ended = [e for e in run(sig) if isinstance(e, SilenceEnded)]
    assert len(ended) == 1 and ended[0].end_ms >= 2900


def test_silence_event_json_matches_the_contract() -> None:
    """{"type": "silence", "start_ms", "end_ms"} come first, then the evidence."""
    sig = np.concatenate([speech(1.0, 0.0), np.zeros(8000), speech(1.0, 0.0)])
    ended = [e for e in run(sig) if isinstance(e, SilenceEnded)]
    out = ended[0].to_json()
    assert list(out)[:3] == ["type", "start_ms", "end_ms"] and out["type"] == "silence"
    assert "floor_dbm0" in out and "thresholds" in out
