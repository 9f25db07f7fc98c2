"""The whole-recording detector path (ivr.detect.offline) reports exactly what the streaming bank does.

Equality here is strict: the same events (dataclass equality, so every float bit for bit), reported
at the same frame, in the same order, and the same ``ivr detect`` JSON; for a 1-row bank
(DetectorBank, ``ivr detect``) and for a row of the engine's banks (DETECTOR_BANK_ROWS rows) (``ivr replay``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.corpus.conversation import ConversationMaker
from ivr.detect import DETECTOR_BANK_ROWS, synth
from ivr.detect.audio import load_8k
from ivr.detect.bank import BatchedDetectorBank, detect_samples
from ivr.detect.config import DetectorConfigs, HookflashConfig, NoiseConfig, SilenceConfig
from ivr.detect.events import DetectorEvent
from ivr.detect.offline import detect_frames, detect_signal

ROOT = Path(__file__).resolve().parents[3]
ALL_ON = DetectorConfigs(noise_enabled=True)
# Every state machine exercised: uncorroborated clicks are reported, short silences and static count.
EAGER = DetectorConfigs(
    noise_enabled=True,
    hookflash=HookflashConfig(require_corroboration=False, min_silence_before_ms=100, min_silence_after_ms=100),
    silence=SilenceConfig(min_silence_ms=100, min_voice_ms=20),
    noise=NoiseConfig(min_duration_ms=500, min_level_dbm0=-50.0),
)
CONFIGS = {"defaults": DetectorConfigs(), "all_on": ALL_ON, "eager": EAGER}


def frames_of(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    pad = (-len(pcm)) % 160
    return np.concatenate([pcm.astype(np.int16), np.zeros(pad, dtype=np.int16)]).reshape(-1, 160)


def streaming(frames: npt.NDArray[np.int16], configs: DetectorConfigs, rows: int) -> list[tuple[int, DetectorEvent]]:
    """The reference: the leg on row 0 of a ``rows``-row bank, fed frame by frame, then flushed."""
    bank = BatchedDetectorBank(rows, configs)
    bank.reset_row(0, 0)
    block = np.zeros((rows, 160), dtype=np.int16)
    out: list[tuple[int, DetectorEvent]] = []
    for k, frame in enumerate(frames):
        block[0] = frame
        out += [(k, e) for e in bank.feed(block, 20 * k)[0]]
    out += [(len(frames), e) for e in bank.flush(20 * len(frames))[0]]
    return out


def assert_same(pcm: npt.NDArray[np.int16], configs: DetectorConfigs, rows: int, what: str) -> int:
    frames = frames_of(pcm)
    want = streaming(frames, configs, rows)
    got = detect_frames(frames, configs, rows=rows, flush=True)
    assert [(k, type(e).__name__, e) for k, e in got] == [(k, type(e).__name__, e) for k, e in want], what
    assert [e.to_json() for _, e in got] == [e.to_json() for _, e in want], what
    return len(want)


def with_hiss(x: npt.NDArray[np.float64], level_dbm0: float, seed: int) -> npt.NDArray[np.int16]:
    return synth.to_pcm16(x + synth.white_noise(len(x) / 8, level_dbm0, np.random.default_rng(seed)))


def call_progress_and_keys(seed: int) -> npt.NDArray[np.int16]:
    """Every tone class, keys of every digit at many lengths and levels, static, clicks."""
    rng = np.random.default_rng(seed)
    parts = []
    for d in "0123456789*#ABCD":
        parts += [synth.dtmf(d, float(rng.uniform(15, 130)), float(rng.uniform(-40, -2)),
                             twist_db=float(rng.uniform(-5, 9))), synth.silence(float(rng.uniform(5, 90)))]
    parts += [synth.tone([350, 440], 2500, -13), synth.silence(20), synth.tone([350, 440], 900, -13)]
    parts += [synth.silence(700), synth.tone([440, 480], 2000, -19), synth.silence(4000)]
    for on in (500, 500, 250, 250, 900, 100):
        parts += [synth.tone([480, 620], on, -20), synth.silence(on)]
    for seg in ((913.8, 276), (1370.6, 276), (1776.7, 380), (985.2, 380), (1428.5, 380), (1776.7, 380)):
        parts += [synth.tone([seg[0]], seg[1], -20)]
    parts += [synth.silence(300), synth.tone([440], 300, -15), synth.silence(900), synth.tone([440], 200, -15)]
    parts += [synth.silence(400), synth.white_noise(4500, -25, rng), synth.silence(700)]
    parts += [synth.click(float(rng.uniform(5, 30)), -12, rng), synth.white_noise(800, -78, rng),
              synth.click(10, -10, rng), synth.tone([350, 440], 1500, -13), synth.silence(500)]
    return with_hiss(np.concatenate(parts), -66, seed)


def prompts(language: str) -> npt.NDArray[np.int16]:
    """The facility's recorded announcements, one after the other, over line hiss."""
    clips = [load_8k(p).astype(np.float64) for p in sorted((ROOT / "prompts" / language).glob("*.wav"))]
    return with_hiss(np.concatenate([np.concatenate([c, synth.silence(350)]) for c in clips]), -62, 3)


def conversation_with_flashes(seed: int, events: int) -> npt.NDArray[np.int16]:
    """bench.corpus's called leg: turn-taking over the prompts' voices, flashes and call waiting."""
    utterances = [load_8k(p) for p in sorted((ROOT / "prompts" / "en").glob("*.wav"))[:30]]
    maker = ConversationMaker(utterances, np.random.default_rng(seed))
    parts = [maker.with_event(float(maker.rng.uniform(2, 5)), float(maker.rng.uniform(2, 4)))[0] for _ in range(events)]
    return np.concatenate([*parts, maker.household(40.0)])


@pytest.mark.parametrize("rows", [1, 32, DETECTOR_BANK_ROWS])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_offline_equals_streaming_on_call_progress_tones_keys_and_static(name: str, rows: int) -> None:
    """Dial, ringback, busy, reorder, SIT, call waiting, 16 keys, static, clicks: same events."""
    assert assert_same(call_progress_and_keys(7), CONFIGS[name], rows, name) > 20


@pytest.mark.parametrize("rows", [1, 32, DETECTOR_BANK_ROWS])
def test_offline_equals_streaming_on_three_way_and_call_waiting_conversations(rows: int) -> None:
    """The three-way benchmark's calls (flash, dial tone, dialled keys, ringback, call waiting)."""
    pcm = conversation_with_flashes(11, 8)
    for name in ("defaults", "eager"):
        assert_same(pcm, CONFIGS[name], rows, name)


@pytest.mark.parametrize("language", ["en", "es"])
def test_offline_equals_streaming_on_the_prompts(language: str) -> None:
    """Every English and Spanish prompt (espeak-ng speech), on a row of an engine bank."""
    assert assert_same(prompts(language), ALL_ON, DETECTOR_BANK_ROWS, language) > 10


@pytest.mark.parametrize("rows", [1, 32, DETECTOR_BANK_ROWS])
def test_offline_equals_streaming_on_recorded_talkoff_speech(rows: int) -> None:
    """tests/data/audio: the talk-off recordings, straight and 10 dB louder."""
    for path in sorted((ROOT / "tests" / "data" / "audio").glob("*.wav")):
        pcm = load_8k(path)
        assert_same(pcm, EAGER, rows, path.name)
        assert_same(np.clip(pcm * 3.16, -32768, 32767).astype(np.int16), ALL_ON, rows, path.name)


ALSA = sorted(Path("/usr/share/sounds/alsa").glob("*.wav"))


@pytest.mark.skipif(not ALSA, reason="alsa-utils' recorded speech not installed (install.sh adds it)")
def test_offline_equals_streaming_on_real_speech_from_alsa_utils() -> None:
    """Real recorded voice (alsa-utils' test sounds), one after the other."""
    pcm = np.concatenate([load_8k(p) for p in ALSA])
    for name in sorted(CONFIGS):
        assert_same(pcm, CONFIGS[name], DETECTOR_BANK_ROWS, name)


# -- Hypothesis: random sequences of everything the detectors react to ------------------------------

_TONE_SETS = ([350.0, 440.0], [440.0, 480.0], [480.0, 620.0], [440.0], [913.8], [1370.6], [1776.7], [1000.0])


@st.composite
def signals(draw: st.DrawFn) -> npt.NDArray[np.int16]:
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    parts: list[npt.NDArray[np.float64]] = []
    for _ in range(draw(st.integers(1, 14))):
        kind = draw(st.sampled_from(["pause", "tone", "key", "click", "noise", "gap", "flash", "sit"]))
        ms = draw(st.floats(5, 1500))
        level = draw(st.floats(-70, 0))
        if kind == "pause":
            parts.append(synth.silence(ms))
        elif kind == "tone":
            parts.append(synth.tone(draw(st.sampled_from(_TONE_SETS)), ms, level))
        elif kind == "key":
            parts.append(synth.dtmf(draw(st.sampled_from("0123456789*#ABCD")), min(ms, 200), level,
                                    twist_db=draw(st.floats(-6, 10))))
        elif kind == "click":
            parts.append(synth.click(min(ms, 60), level, rng))
        elif kind == "noise":
            parts.append(synth.white_noise(ms, level, rng))
        elif kind == "flash":  # on-hook click, the idle line, off-hook click, then dial tone or a key
            parts += [synth.silence(draw(st.floats(0, 600))), synth.click(draw(st.floats(5, 35)), level, rng),
                      synth.white_noise(draw(st.floats(200, 1200)), draw(st.floats(-85, -60)), rng),
                      synth.click(draw(st.floats(5, 35)), level, rng), synth.silence(draw(st.floats(0, 400)))]
            parts.append(synth.tone([350.0, 440.0], ms, -13.0) if draw(st.booleans()) else synth.dtmf("3", 80, -10))
        elif kind == "sit":  # three segments, each of a random length
            for freq in (913.8, 1370.6, 1776.7):
                parts.append(synth.tone([freq], draw(st.floats(150, 500)), min(level, -10.0)))
        else:  # a lost packet: one frame's worth of digital silence
            parts.append(np.zeros(160))
    x = np.concatenate(parts)
    return with_hiss(x, draw(st.floats(-90, -45)), seed)


@st.composite
def configs(draw: st.DrawFn) -> DetectorConfigs:
    base = draw(st.sampled_from(sorted(CONFIGS)))
    c = CONFIGS[base]
    silence = dataclasses.replace(c.silence, min_silence_ms=draw(st.sampled_from([0, 20, 100, 400])),
                                  min_voice_ms=draw(st.sampled_from([0, 20, 60, 100])))
    noise = dataclasses.replace(c.noise, min_duration_ms=draw(st.sampled_from([0, 200, 1000, 3000])))
    return dataclasses.replace(c, silence=silence, noise=noise,
                               dtmf_enabled=draw(st.booleans()), tones_enabled=draw(st.booleans()))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signals(), configs(), st.sampled_from([1, 32, DETECTOR_BANK_ROWS]))
def test_offline_equals_streaming_on_generated_signals(pcm: npt.NDArray[np.int16], cfg: DetectorConfigs,
                                                       rows: int) -> None:
    """Random keys, tones, clicks, static, pauses and lost packets at random levels: same events."""
    assert_same(pcm, cfg, rows, "generated")


# Frame-aligned runs: exact one-frame gaps inside a tone, classes back to back, voice runs of
# exactly min_voice_ms, quiet runs of exactly min_silence_ms: the run-length rules' edges.
_FRAME_KINDS = {
    "hiss": lambda rng: synth.white_noise(20, -66, rng),
    "digital_silence": lambda rng: np.zeros(160),
    "dial": lambda rng: synth.tone([350.0, 440.0], 20, -13),
    "ringback": lambda rng: synth.tone([440.0, 480.0], 20, -19),
    "busy": lambda rng: synth.tone([480.0, 620.0], 20, -20),
    "call_waiting": lambda rng: synth.tone([440.0], 20, -15),
    "sit1": lambda rng: synth.tone([913.8], 20, -20),
    "sit2": lambda rng: synth.tone([1370.6], 20, -20),
    "sit3": lambda rng: synth.tone([1776.7], 20, -20),
    "static": lambda rng: synth.white_noise(20, -25, rng),
    "voice": lambda rng: synth.white_noise(20, -30, rng) * np.hanning(160) * 2,
    "click": lambda rng: np.concatenate([synth.click(5, -10, rng), np.zeros(120)])[:160],
    "key_5": lambda rng: synth.dtmf("5", 20, -10),
    "key_hash": lambda rng: synth.dtmf("#", 20, -10),
}


@st.composite
def frame_runs(draw: st.DrawFn) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    runs = draw(st.lists(st.tuples(st.sampled_from(sorted(_FRAME_KINDS)), st.integers(1, 60)), min_size=1,
                         max_size=25))
    frames = [_FRAME_KINDS[kind](rng)[:160] for kind, count in runs for _ in range(count)]
    return synth.to_pcm16(np.concatenate(frames))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame_runs(), configs(), st.sampled_from([1, 32, DETECTOR_BANK_ROWS]))
def test_offline_equals_streaming_on_frame_aligned_runs(pcm: npt.NDArray[np.int16], cfg: DetectorConfigs,
                                                        rows: int) -> None:
    """Runs of whole frames of each tone class, keys, clicks, static, voice and silence: same events."""
    assert_same(pcm, cfg, rows, "frame runs")


@pytest.mark.parametrize("cut", [0, 1, 80, 159])
def test_detect_signal_gives_what_detect_samples_gives(cut: int) -> None:
    """``ivr detect``'s whole-signal run (DetectorBank, zero-padded to whole frames, flushed)."""
    pcm = call_progress_and_keys(2)
    pcm = pcm[: len(pcm) - cut]
    assert detect_signal(pcm, ALL_ON) == detect_samples(pcm, ALL_ON)


def test_offline_without_flush_leaves_open_runs_unreported() -> None:
    """Like a live leg that is still running: a key still sounding at the end is not reported."""
    pcm = synth.to_pcm16(np.concatenate([synth.silence(500), synth.dtmf("5", 400, -10)]))
    frames = frames_of(pcm)
    assert [e.kind for _, e in detect_frames(frames, DetectorConfigs(), flush=True)].count("dtmf") == 1
    assert [e.kind for _, e in detect_frames(frames, DetectorConfigs())].count("dtmf") == 0


def test_offline_refuses_frames_of_the_wrong_shape() -> None:
    """Frames are (n, 160) int16; anything else is a caller's mistake, not an empty result."""
    with pytest.raises(ValueError, match="160"):
        detect_frames(np.zeros((3, 80), dtype=np.int16))
    with pytest.raises(ValueError, match="rows"):
        detect_frames(np.zeros((3, 160), dtype=np.int16), rows=0)


def test_offline_on_no_frames_reports_nothing() -> None:
    """An empty recording (a leg that never sent audio) has no events, flushed or not."""
    empty = np.zeros((0, 160), dtype=np.int16)
    assert detect_frames(empty, ALL_ON) == []
    assert detect_frames(empty, ALL_ON, flush=True) == []


@pytest.mark.slow
def test_offline_equals_streaming_on_the_benchmarks_fifteen_minute_call() -> None:
    """bench/replay.py's 15-minute call, both legs, on a row of an engine bank."""
    from bench.replay import conversation

    for seed, first in ((1, True), (2, False)):
        assert_same(conversation(900, seed, first), DetectorConfigs(), DETECTOR_BANK_ROWS, f"leg {seed}")
