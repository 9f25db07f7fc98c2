"""Jitter buffer: in-order playout, reordering, late drops, concealment, adaptation, resync."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.rtp.jitter import FrameKind, JitterBuffer


def frame(n: int) -> np.ndarray:
    """A recognisable frame: every sample equals n (mod 30000)."""
    return np.full(160, (n % 30000) + 1, dtype=np.int16)


def values(frames: list) -> list[int]:  # type: ignore[type-arg]
    return [int(f.samples[0]) if f.kind is FrameKind.AUDIO else -1 for f in frames]


def test_no_media_before_the_first_packet() -> None:
    """Pulling before any packet gives silence marked NO_MEDIA."""
    jb = JitterBuffer()
    f = jb.pull(0.0)
    assert f.kind is FrameKind.NO_MEDIA and not f.samples.any()


def test_in_order_stream_plays_after_the_initial_delay() -> None:
    """Steady 20 ms packets come out in order after initial_delay frames of lead-in."""
    jb = JitterBuffer(initial_delay_frames=2)
    out = []
    for n in range(20):
        jb.push(1000 + 160 * n, frame(n), n * 0.02)
        out.append(jb.pull(n * 0.02))
    assert values(out) == [-1, -1] + [n + 1 for n in range(18)]
    assert jb.stats().late_dropped == 0


def test_reordered_packets_land_in_place() -> None:
    """Two packets swapped within the delay play in timestamp order."""
    jb = JitterBuffer(initial_delay_frames=2)
    order = [0, 2, 1, 3, 5, 4, 6, 7, 8, 9]
    out = []
    for tick, n in enumerate(order):
        jb.push(160 * n, frame(n), tick * 0.02)
        out.append(jb.pull(tick * 0.02))
    assert values(out)[2:] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_lost_packet_is_concealed_by_a_fading_repeat() -> None:
    """A missing frame is the previous one at half amplitude, marked CONCEALED."""
    jb = JitterBuffer(initial_delay_frames=1)
    out = []
    for n in range(8):
        if n != 4:
            jb.push(160 * n, frame(1000), n * 0.02)
        out.append(jb.pull(n * 0.02))
    concealed = [f for f in out[1:] if f.kind is FrameKind.CONCEALED]
    assert len(concealed) == 1 and int(concealed[0].samples[0]) == 1001 // 2
    assert jb.stats().frames_concealed == 2  # the lead-in frame counts too


def test_long_gap_fades_to_silence() -> None:
    """After max_conceal_frames repeats the concealment is silence."""
    jb = JitterBuffer(initial_delay_frames=1, max_conceal_frames=2)
    jb.push(0, frame(5000), 0.0)
    jb.pull(0.0)
    jb.pull(0.02)
    outs = [jb.pull(0.04 + 0.02 * k) for k in range(4)]
    assert [int(f.samples[0]) for f in outs] == [5001 // 2, 5001 // 4, 0, 0]


def test_late_packet_is_dropped_and_raises_the_delay() -> None:
    """A packet behind playout is dropped (counted) and the target grows by one frame."""
    jb = JitterBuffer(initial_delay_frames=1, max_delay_frames=4)
    for n in range(5):
        if n != 2:
            jb.push(160 * n, frame(n), n * 0.02)
        jb.pull(n * 0.02)
    jb.push(160 * 2, frame(2), 0.1)  # too late
    s = jb.stats()
    assert s.late_dropped == 1 and s.target_delay_frames == 2


def test_delay_shrinks_after_a_quiet_period() -> None:
    """Without late packets for shrink_after_frames ticks, the target falls by one frame."""
    jb = JitterBuffer(initial_delay_frames=3, min_delay_frames=1, shrink_after_frames=50)
    for n in range(60):
        jb.push(160 * n, frame(n), n * 0.02)
        jb.pull(n * 0.02)
    assert jb.stats().target_delay_frames == 2


def test_ten_ms_packets_are_assembled_into_20_ms_frames() -> None:
    """Packets of 80 samples fill frames sample-exactly."""
    jb = JitterBuffer(initial_delay_frames=1)
    ramp = np.arange(1, 1601, dtype=np.int16)
    out = []
    for k in range(20):
        jb.push(80 * k, ramp[80 * k : 80 * k + 80], k * 0.01)
        if k % 2 == 1:
            out.append(jb.pull(k * 0.01))
    audio = np.concatenate([f.samples for f in out if f.kind is FrameKind.AUDIO])
    assert np.array_equal(audio, ramp[: len(audio)]) and len(audio) >= 1280


def test_timestamp_jump_resyncs_instead_of_waiting() -> None:
    """A jump of 10 s (silence suppression, restarted sender) re-anchors playout."""
    jb = JitterBuffer(initial_delay_frames=1)
    for n in range(5):
        jb.push(160 * n, frame(n), n * 0.02)
        jb.pull(n * 0.02)
    base = 80000 + 160 * 5
    out = []
    for n in range(5):
        jb.push(base + 160 * n, frame(100 + n), 0.1 + n * 0.02)
        out.append(jb.pull(0.1 + n * 0.02))
    assert values(out)[1:] == [101, 102, 103, 104]
    assert jb.stats().resyncs == 1


def test_timestamp_wraparound_is_seamless() -> None:
    """Frames across the 2^32 timestamp wrap play in order."""
    jb = JitterBuffer(initial_delay_frames=1)
    out = []
    for n in range(10):
        jb.push((2**32 - 800 + 160 * n) % 2**32, frame(n), n * 0.02)
        out.append(jb.pull(n * 0.02))
    assert values(out)[1:] == list(range(1, 10))


def test_duplicate_packets_are_counted() -> None:
    """A packet received twice is counted as a duplicate and played once."""
    jb = JitterBuffer()
    jb.push(0, frame(1), 0.0)
    jb.push(0, frame(1), 0.0)
    assert jb.stats().duplicates == 1


def test_bad_configuration_is_refused() -> None:
    """min <= initial <= max < resync is required."""
    with pytest.raises(ValueError):
        JitterBuffer(initial_delay_frames=20, max_delay_frames=10)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(0.0, 0.015), st.integers(0, 2**31))
def test_jittery_stream_plays_every_frame_once_in_order(ts0: int, jitter_s: float, seed: int) -> None:
    """Property: arrival jitter under the buffer's delay loses nothing and never reorders."""
    rnd = random.Random(seed)
    jb = JitterBuffer(initial_delay_frames=2, max_delay_frames=6)
    arrivals = sorted((n * 0.02 + rnd.uniform(0, jitter_s), n) for n in range(200))
    played: list[int] = []
    i = 0
    for tick in range(215):
        now = tick * 0.02 + 0.0199
        while i < len(arrivals) and arrivals[i][0] <= now:
            n = arrivals[i][1]
            jb.push((ts0 + 160 * n) % 2**32, frame(n), arrivals[i][0])
            i += 1
        f = jb.pull(now)
        if f.kind is FrameKind.AUDIO:
            played.append(int(f.samples[0]) - 1)
    assert played == sorted(played) and len(set(played)) == len(played)
    s = jb.stats()
    assert s.late_dropped == 0
    assert s.overflow_dropped == 0 and played == list(range(200))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["PCMU", "PCMA"]), st.integers(0, 2**32 - 1),
       st.lists(st.tuples(st.integers(-60, 80), st.sampled_from([160, 160, 160, 80, 240, 0, 7]),
                          st.integers(0, 255), st.booleans()), max_size=120))
def test_encoded_frames_play_out_exactly_as_decoded_ones(law: str, ts0: int,
                                                         items: list[tuple[int, int, int, bool]]) -> None:
    """push_encoded (decoding deferred to playout) gives the same frames, kinds and statistics
    as push of the decoded samples: reordering, partial packets, duplicates, late packets,
    concealment of an encoded last frame and resyncs included; pull_frame's encoded frames
    decode to the same samples as pull."""
    from ivr.rtp.g711 import Codec
    from ivr.rtp.jitter import EncodedFrame

    codec = Codec[law]
    ref, new = JitterBuffer(), JitterBuffer()
    rng = random.Random(ts0)
    for slot, length, code, tick in items:
        payload = bytes((code + rng.randrange(7)) % 256 for _ in range(length))
        ts = (ts0 + slot * 160 + (0 if length == 160 else rng.choice([0, 80]))) % 2**32
        ref.push(ts, codec.decode(payload), 0.0)
        new.push_encoded(ts, payload, codec.decode_table, 0.0)
        if tick:
            a = ref.pull(0.0)
            got, kind = new.pull_frame(0.0)
            samples = got.decode() if isinstance(got, EncodedFrame) else got
            assert kind is a.kind and np.array_equal(samples, a.samples)
        assert new.stats() == ref.stats()
