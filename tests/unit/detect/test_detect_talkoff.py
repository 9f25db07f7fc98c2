"""Talk-off: no false key on speech (English, Spanish, digits spoken, hums) or music."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.detect import synth
from ivr.detect.audio import load_8k
from tests.unit.detect.detect_testlib import run_dtmf, ulaw_round_trip


@pytest.mark.parametrize("gain_db", [6.0, 0.0, -10.0, -20.0])
@pytest.mark.parametrize("sample", ["talkoff_en.wav", "talkoff_es.wav"])
def test_no_false_key_on_shipped_speech(sample: str, gain_db: float) -> None:
    """espeak-ng speech (many voices, spoken digits, hums) at several levels gives no key."""
    pcm = load_8k(f"tests/data/audio/{sample}").astype(np.float64) * 10 ** (gain_db / 20)
    assert run_dtmf(np.clip(pcm, -32768, 32767)) == []


def test_no_false_key_on_speech_after_g711() -> None:
    """Speech through a mu-law round trip still gives no key."""
    pcm = load_8k("tests/data/audio/talkoff_en.wav").astype(np.float64)
    assert run_dtmf(ulaw_round_trip(pcm)) == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_false_key_on_music_like_signals(seed: int) -> None:
    """Two minutes of harmonic chords, melodies and sweeps give no key."""
    assert run_dtmf(synth.music_like(120.0, np.random.default_rng(seed))) == []


def test_keys_inside_speech_are_still_found() -> None:
    """Keys pressed over someone talking (the sample attenuated by 16 dB) are detected."""
    speech = load_8k("tests/data/audio/talkoff_en.wav").astype(np.float64)[: 8000 * 3]
    keys = np.concatenate([np.concatenate([synth.silence(300), synth.dtmf(d, 80, -6)]) for d in "1793"])
    mix = speech[: len(keys)] * 10 ** (-16 / 20) + keys
    assert "".join(e.digit for e in run_dtmf(mix)) == "1793"
