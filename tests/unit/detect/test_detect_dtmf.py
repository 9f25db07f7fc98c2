"""In-band DTMF against the ITU-T Q.24 (North American) receiver limits, one table per limit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.detect import synth
from ivr.detect.config import DtmfConfig
from ivr.detect.dtmf import _NF, BLOCK, DtmfBank, DtmfDetector, _block_dft
from ivr.types import DTMF_KEYS
from tests.unit.detect.detect_testlib import alaw_round_trip, digits, pad, run_dtmf, ulaw_round_trip

KEYS = list(DTMF_KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_every_key_is_detected_once(key: str) -> None:
    """All 16 keys, nominal frequencies, -10 dBm0, 60 ms: exactly that key."""
    assert digits(run_dtmf(pad(synth.dtmf(key, 60)))) == key


@pytest.mark.parametrize("group", ["low", "high"])
@pytest.mark.parametrize("dev_pct", [1.5, -1.5])
@pytest.mark.parametrize("key", KEYS)
def test_q24_frequency_within_1_5_percent_is_accepted(key: str, dev_pct: float, group: str) -> None:
    """Q.24: a component 1.5 % off nominal is still the key."""
    kw = {"low_dev_pct": dev_pct} if group == "low" else {"high_dev_pct": dev_pct}
    assert digits(run_dtmf(pad(synth.dtmf(key, 60, **kw)))) == key


@pytest.mark.parametrize("group", ["low", "high"])
@pytest.mark.parametrize("dev_pct", [3.5, -3.5, 5.0, -5.0])
@pytest.mark.parametrize("key", KEYS)
def test_q24_frequency_beyond_3_5_percent_is_rejected(key: str, dev_pct: float, group: str) -> None:
    """Q.24: a component 3.5 % (or more) off nominal is no key."""
    kw = {"low_dev_pct": dev_pct} if group == "low" else {"high_dev_pct": dev_pct}
    assert run_dtmf(pad(synth.dtmf(key, 80, **kw))) == []


@pytest.mark.parametrize("lead_ms", [0.0, 2.5, 5.0, 7.5, 11.0, 16.0])
@pytest.mark.parametrize("duration_ms", [40.0, 45.0, 60.0])
def test_q24_tones_of_40_ms_are_accepted(duration_ms: float, lead_ms: float) -> None:
    """Q.24: tones of 40 ms or more are detected, whatever their alignment to frames."""
    assert digits(run_dtmf(pad(synth.dtmf("7", duration_ms), before_ms=100 + lead_ms))) == "7"


@pytest.mark.parametrize("lead_ms", [0.0, 2.5, 5.0, 7.5, 11.0, 16.0])
@pytest.mark.parametrize("duration_ms", [10.0, 15.0, 20.0, 23.0])
def test_q24_tones_of_23_ms_or_less_are_rejected(duration_ms: float, lead_ms: float) -> None:
    """Q.24: tones of 23 ms or less are not keys."""
    assert run_dtmf(pad(synth.dtmf("7", duration_ms), before_ms=100 + lead_ms)) == []


@pytest.mark.parametrize("lead_ms", [0.0, 3.0, 7.0, 13.0])
@pytest.mark.parametrize("key", ["1", "5", "#", "D"])
def test_q24_pause_of_40_ms_separates_two_keys(key: str, lead_ms: float) -> None:
    """Q.24: a 40 ms pause between two 45 ms tones gives two keys."""
    sig = np.concatenate([synth.dtmf(key, 45), synth.silence(40), synth.dtmf(key, 45)])
    assert digits(run_dtmf(pad(sig, before_ms=100 + lead_ms))) == key * 2


@pytest.mark.parametrize("gap_ms", [2.0, 5.0, 10.0])
@pytest.mark.parametrize("lead_ms", [0.0, 4.0, 9.0])
def test_q24_interruption_of_10_ms_is_bridged(gap_ms: float, lead_ms: float) -> None:
    """Q.24: an interruption of up to 10 ms inside a key does not split it."""
    sig = np.concatenate([synth.dtmf("9", 50), synth.silence(gap_ms), synth.dtmf("9", 50)])
    assert digits(run_dtmf(pad(sig, before_ms=100 + lead_ms))) == "9"


@pytest.mark.parametrize("twist_db", [8.0, 6.0, 0.0, -2.0, -4.0])
@pytest.mark.parametrize("key", KEYS)
def test_q24_twist_8_db_normal_4_db_reverse_is_accepted(key: str, twist_db: float) -> None:
    """Q.24: normal twist (high group weaker) up to 8 dB, reverse up to 4 dB."""
    level = -4.0 if twist_db >= 0 else -8.0
    assert digits(run_dtmf(pad(synth.dtmf(key, 60, level, twist_db=twist_db)))) == key


@pytest.mark.parametrize("twist_db", [14.0, -10.0])
def test_twist_far_beyond_limits_is_rejected(twist_db: float) -> None:
    """A pair with one tone far weaker than the twist limits is no key."""
    level = 0.0 if twist_db > 0 else -12.0
    assert run_dtmf(pad(synth.dtmf("5", 60, level, twist_db=twist_db))) == []


@pytest.mark.parametrize("level_dbm0", [0.0, -5.0, -10.0, -15.0, -20.0, -25.0])
@pytest.mark.parametrize("key", ["1", "0", "#", "A"])
def test_q24_levels_0_to_minus_25_dbm0_are_accepted(key: str, level_dbm0: float) -> None:
    """Q.24: each tone from 0 to -25 dBm0 is detected."""
    assert digits(run_dtmf(pad(synth.dtmf(key, 60, level_dbm0)))) == key


@pytest.mark.parametrize("level_dbm0", [-55.0, -60.0])
def test_q24_level_minus_55_dbm0_is_rejected(level_dbm0: float) -> None:
    """Q.24: tones at -55 dBm0 are not keys."""
    assert run_dtmf(pad(synth.dtmf("5", 80, level_dbm0))) == []


@pytest.mark.parametrize("codec", ["ulaw", "alaw"])
@pytest.mark.parametrize("level_dbm0", [-3.0, -25.0])
@pytest.mark.parametrize("key", KEYS)
def test_keys_survive_g711_round_trip(key: str, level_dbm0: float, codec: str) -> None:
    """A key encoded to G.711 and decoded again (what crosses the network) is still the key."""
    sig = pad(synth.dtmf(key, 50, level_dbm0))
    pcm = ulaw_round_trip(sig) if codec == "ulaw" else alaw_round_trip(sig)
    assert digits(run_dtmf(pcm)) == key


@pytest.mark.parametrize("lost_frame", [6, 7, 8])
def test_lost_20_ms_packet_inside_a_key_keeps_one_key(lost_frame: int) -> None:
    """A 20 ms packet lost (zeroed) inside a 120 ms key neither loses nor doubles it."""
    sig = np.concatenate([synth.silence(100), synth.dtmf("3", 120), synth.silence(120)])

    def drop(i: int, frame: np.ndarray) -> np.ndarray:
        return np.zeros_like(frame) if i == lost_frame else frame

    assert digits(run_dtmf(sig, frame_hook=drop)) == "3"


@pytest.mark.parametrize("key", KEYS)
def test_keys_are_detected_with_dial_tone_underneath(key: str) -> None:
    """Dial tone (350+440 Hz, -13 dBm0 each) under the key does not hide it or add keys."""
    sig = pad(synth.dtmf(key, 60, -10.0))
    sig = sig + synth.tone([350.0, 440.0], len(sig) / 8, -13.0)
    assert digits(run_dtmf(sig)) == key


@pytest.mark.parametrize("level_dbm0", [-10.0, -20.0, -25.0])
@pytest.mark.parametrize("key", KEYS)
def test_keys_are_detected_in_white_noise_at_10_db_snr(key: str, level_dbm0: float) -> None:
    """White noise 10 dB below the key's total power does not hide it."""
    rng = np.random.default_rng([ord(key), int(-level_dbm0)])
    sig = pad(synth.dtmf(key, 60, level_dbm0))
    sig = sig + synth.white_noise(len(sig) / 8, level_dbm0 + 3.0 - 10.0, rng)
    assert digits(run_dtmf(sig)) == key


@settings(max_examples=40, deadline=None)
@given(
    lead_ms=st.floats(min_value=0.0, max_value=40.0),
    duration_ms=st.floats(min_value=40.0, max_value=200.0),
    key=st.sampled_from(KEYS),
)
def test_onset_and_offset_within_10_ms_of_the_truth(lead_ms: float, duration_ms: float, key: str) -> None:
    """Reported start_ms/end_ms are within 10 ms of where the tone really starts and ends."""
    start = 100.0 + lead_ms
    events = run_dtmf(pad(synth.dtmf(key, duration_ms), before_ms=start))
    assert digits(events) == key
    assert abs(events[0].start_ms - start) <= 10
    assert abs(events[0].end_ms - (start + duration_ms)) <= 10


def test_batched_rows_match_single_channel_detection() -> None:
    """Rows of a DtmfBank give the same events as one DtmfDetector per row."""
    signals = [pad(synth.dtmf(k, 50 + 10 * i), before_ms=90 + 3 * i) for i, k in enumerate("159#")]
    longest = max(len(s) for s in signals)
    rows = np.stack([np.concatenate([s, np.zeros(longest - len(s))]) for s in signals])
    frames = [synth.to_frames(r) for r in rows]
    bank = DtmfBank(len(rows))
    batched: list[list[str]] = [[] for _ in rows]
    for i in range(len(frames[0])):
        for row, evs in enumerate(bank.feed(np.stack([f[i] for f in frames]), i * 20)):
            batched[row].extend(f"{e.digit}@{e.start_ms}-{e.end_ms}" for e in evs)
    for row, evs in enumerate(bank.flush(len(frames[0]) * 20)):
        batched[row].extend(f"{e.digit}@{e.start_ms}-{e.end_ms}" for e in evs)
    single = [[f"{e.digit}@{e.start_ms}-{e.end_ms}" for e in run_dtmf(r)] for r in rows]
    assert batched == single
    assert [len(b) for b in batched] == [1, 1, 1, 1]


def test_event_evidence_carries_measures_and_thresholds() -> None:
    """The key's evidence has the measured frequencies, levels, twist and the thresholds used."""
    cfg = DtmfConfig(min_level_dbm0=-30.0)
    (event,) = run_dtmf(pad(synth.dtmf("6", 80, -12.0, twist_db=3.0)), DtmfDetector(cfg))
    ev = event.evidence()
    assert ev["digit"] == "6"
    assert abs(float(ev["low_hz"]) - 770.0) < 5 and abs(float(ev["high_hz"]) - 1477.0) < 5  # type: ignore[arg-type]
    assert abs(float(ev["low_dbm0"]) + 12.0) < 1.0  # type: ignore[arg-type]
    assert abs(float(ev["twist_db"]) - 3.0) < 1.0  # type: ignore[arg-type]
    assert ev["thresholds"]["min_level_dbm0"] == -30.0  # type: ignore[index]


def test_raising_the_level_threshold_rejects_quiet_keys() -> None:
    """min_level_dbm0 from the dialplan is honoured: -25 dBm0 keys are ignored at -20."""
    sig = pad(synth.dtmf("2", 60, -25.0))
    assert digits(run_dtmf(sig)) == "2"
    assert run_dtmf(sig, DtmfDetector(DtmfConfig(min_level_dbm0=-20.0))) == []


@settings(max_examples=60, deadline=None)
@given(
    key=st.sampled_from(DTMF_KEYS),
    margin_db=st.floats(-1.0, 4.0),
    twist_db=st.floats(-8.0, 12.0),
    low_dev_pct=st.floats(-4.0, 4.0),
    high_dev_pct=st.floats(-4.0, 4.0),
    noise_dbm0=st.floats(-70.0, -20.0),
    lead_ms=st.floats(0.0, 20.0),
    seed=st.integers(0, 2**16),
)
def test_the_window_screen_never_drops_a_window_the_q24_tests_pass(
    key: str, margin_db: float, twist_db: float, low_dev_pct: float, high_dev_pct: float,
    noise_dbm0: float, lead_ms: float, seed: int,
) -> None:
    """DtmfBank runs its window tests only where ``possible_windows`` allows: for keys whose weaker
    tone is within a few dB of ``min_level_dbm0`` (where the screen's bound is tight), near the twist
    and frequency limits, in noise, every window the full tests pass is allowed."""
    rng = np.random.default_rng(seed)
    weaker_below_low = max(twist_db, 0.0)  # the high tone is twist_db below the low one
    level_dbm0 = DtmfConfig().min_level_dbm0 + weaker_below_low + margin_db
    sig = pad(synth.dtmf(key, 60, level_dbm0, twist_db, low_dev_pct, high_dev_pct), before_ms=lead_ms)
    sig = sig + synth.white_noise(len(sig) / 8, noise_dbm0, rng)
    frames = synth.to_frames(sig).astype(np.float64)
    bank = DtmfBank(len(frames))
    coeffs, energy = _block_dft(frames)
    amps = np.abs(coeffs[..., :_NF]) / (BLOCK / 2)
    # Every window of the signal, each as one row: block a is the previous block.
    flat_c, flat_e, flat_a = coeffs.reshape(-1, coeffs.shape[-1]), energy.reshape(-1), amps.reshape(-1, _NF)
    xa, xb = flat_c[:-1, None], flat_c[1:, None]
    win = bank.window_features(xa, xb, flat_e[:-1, None], flat_e[1:, None])
    possible = bank.possible_windows(flat_a[:-1], flat_a[1:], flat_c[:-1], flat_c[1:], flat_e[:-1], flat_e[1:])
    assert not (win.valid[:, 0] & ~possible).any()
