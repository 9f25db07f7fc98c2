"""Hookflash / three-way (DIS-3WAY): a click between silences, corroborated by what follows."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.detect import synth
from ivr.detect.audio import load_8k
from ivr.detect.bank import detect_samples
from ivr.detect.config import DetectorConfigs, HookflashConfig
from ivr.detect.events import HookflashEvent

SPEECH_EN = load_8k("tests/data/audio/talkoff_en.wav").astype(np.float64)
SPEECH_ES = load_8k("tests/data/audio/talkoff_es.wav").astype(np.float64)
ONLY = DetectorConfigs().with_only(("hookflash",))


def flashes(signal: np.ndarray, configs: DetectorConfigs = ONLY) -> list[HookflashEvent]:
    return [e for e in detect_samples(synth.to_pcm16(signal), configs) if isinstance(e, HookflashEvent)]


def conversation_with_flash(
    rng: np.random.Generator, gap_ms: float, after: str, hiss_dbm0: float = -55.0, on_hook_dbm0: float = -78.0
) -> tuple[np.ndarray, float]:
    """Speech over line hiss, a pause, the on-hook click, the on-hook gap (quieter line), the
    off-hook click, then ``after`` (dial / dtmf / voice), then a third voice. Returns (signal, click ms)."""
    talk = SPEECH_EN[: 8000 * 5] + synth.white_noise(5000, hiss_dbm0, rng)
    pause = synth.white_noise(400, hiss_dbm0, rng)
    parts = [talk, pause, synth.click(15, -12, rng), synth.white_noise(gap_ms, on_hook_dbm0, rng)]
    parts.append(synth.click(10, -15, rng))
    if after == "dial":
        parts.append(synth.tone([350, 440], 1500, -13) + synth.white_noise(1500, -70, rng))
    elif after == "dtmf":
        for d in "5550123":
            parts += [synth.dtmf(d, 70, -8), synth.silence(70)]
    parts.append(SPEECH_ES[: 8000 * 4] + synth.white_noise(4000, hiss_dbm0, rng))
    return np.concatenate(parts), 5400.0


@pytest.mark.parametrize("gap_ms", [300.0, 600.0, 1100.0])
@pytest.mark.parametrize("after", ["dial", "dtmf", "voice"])
def test_flash_is_detected_at_the_click(gap_ms: float, after: str) -> None:
    """Click, 300-1100 ms on-hook, then dial tone / DTMF / a voice: one hookflash at the click."""
    signal, click_ms = conversation_with_flash(np.random.default_rng(int(gap_ms)), gap_ms, after)
    (event,) = flashes(signal)
    assert abs(event.at_ms - click_ms) <= 10
    assert event.click_ms < 40
    assert "floor_step" in event.followed_by


def test_dial_tone_corroborates_a_flash_without_floor_step() -> None:
    """When the on-hook line is as noisy as before, dial tone after the click still confirms."""
    rng = np.random.default_rng(9)
    signal, click_ms = conversation_with_flash(rng, 600.0, "dial", hiss_dbm0=-65.0, on_hook_dbm0=-65.0)
    (event,) = flashes(signal)
    assert "dial" in event.followed_by and "floor_step" not in event.followed_by
    assert abs(event.at_ms - click_ms) <= 10


def test_click_without_corroboration_is_not_reported() -> None:
    """A click between silences with the same floor and nothing after is not a flash (low FP)."""
    rng = np.random.default_rng(10)
    signal, _ = conversation_with_flash(rng, 600.0, "voice", hiss_dbm0=-65.0, on_hook_dbm0=-65.0)
    assert flashes(signal) == []
    loose = DetectorConfigs(hookflash=HookflashConfig(require_corroboration=False)).with_only(("hookflash",))
    assert len(flashes(signal, loose)) == 1


def test_long_burst_is_speech_not_a_click() -> None:
    """A 60 ms burst between silences is longer than max_click_ms: no flash."""
    rng = np.random.default_rng(12)
    sig = np.concatenate(
        [
            synth.white_noise(1000, -55, rng),
            synth.click(60, -12, rng) + synth.white_noise(60, -55, rng),
            synth.white_noise(1000, -78, rng),
            synth.tone([350, 440], 1500, -13),
        ]
    )
    assert flashes(sig) == []


@pytest.mark.parametrize("hiss_dbm0", [-65.0, -55.0, -48.0])
def test_plain_conversation_has_no_flash(hiss_dbm0: float) -> None:
    """Two voices taking turns over hiss (with G.711-like pauses) raise no hookflash."""
    rng = np.random.default_rng(13)
    parts = []
    for i in range(6):
        src = SPEECH_EN if i % 2 == 0 else SPEECH_ES
        seg = src[i * 16000 : i * 16000 + 20000]
        parts += [seg, np.zeros(int(rng.uniform(2400, 8000)))]
    sig = np.concatenate(parts)
    sig = sig + synth.white_noise(len(sig) / 8, hiss_dbm0, rng)
    assert flashes(sig) == []


def test_hookflash_json_has_at_ms_and_evidence() -> None:
    """{"type": "hookflash", "at_ms": ...} then the measures and thresholds."""
    signal, _ = conversation_with_flash(np.random.default_rng(14), 500.0, "dial")
    (event,) = flashes(signal)
    out = event.to_json()
    assert list(out)[:2] == ["type", "at_ms"] and out["type"] == "hookflash"
    for key in ("click_ms", "floor_before_dbm0", "floor_after_dbm0", "followed_by", "thresholds"):
        assert key in out


def test_click_then_a_quieter_room_is_not_a_flash() -> None:
    """A door click followed by the room getting 10 dB quieter (-45 -> -55 dBm0) is no flash:
    an on-hook line falls to idle-line noise, below max_floor_after_dbm0."""
    rng = np.random.default_rng(15)
    sig = np.concatenate(
        [
            SPEECH_EN[: 8000 * 3] + synth.white_noise(3000, -45, rng),
            synth.white_noise(600, -45, rng),
            synth.click(12, -12, rng),
            synth.white_noise(3000, -55, rng),
            SPEECH_ES[: 8000 * 3] + synth.white_noise(3000, -55, rng),
        ]
    )
    assert flashes(sig) == []
