"""RtpSender pacing and numbering; RtpReceiver statistics, source filtering and media timeout."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.rtp.g711 import Codec
from ivr.rtp.packet import RtpPacket
from ivr.rtp.rfc4733 import TelephoneEventPayload
from ivr.rtp.session import IdlePolicy, RtpReceiver, RtpSender, Verdict
from ivr.types import Leg

PEER = ("127.0.0.1", 40000)


def sender(seed: int = 1, **kw: object) -> RtpSender:
    return RtpSender(Codec.PCMU, random.Random(seed), **kw)  # type: ignore[arg-type]


def test_ssrc_seq_and_timestamp_come_from_the_injected_rng() -> None:
    """RFC 3550 section 5.1: random initial values; the same seed gives the same stream."""
    a, b, c = sender(1), sender(1), sender(2)
    a.start(0.0)
    b.start(0.0)
    c.start(0.0)
    pa, pb, pc = a.due_packets(0.0)[0], b.due_packets(0.0)[0], c.due_packets(0.0)[0]
    assert pa == pb
    assert (pa.ssrc, pa.sequence, pa.timestamp) != (pc.ssrc, pc.sequence, pc.timestamp)


def test_grid_does_not_drift_over_an_hour_of_slots() -> None:
    """Slot n is due at start + n*20 ms exactly, whatever the lateness of each wake-up."""
    s = sender()
    start = 1000.123
    s.start(start)
    rnd = random.Random(5)
    for n in range(180_000):
        due = s.next_send_at()
        assert due == pytest.approx(start + n * 0.020, abs=1e-9)
        packets = s.due_packets(due + rnd.uniform(0, 0.004))  # wake up 0-4 ms late
        assert len(packets) == 1
    assert s.next_send_at() == pytest.approx(start + 3600.0, abs=1e-9)


def test_numbering_is_continuous() -> None:
    """Sequence +1 and timestamp +160 per packet, with wrap-around."""
    s = sender()
    s.start(0.0)
    packets = [p for n in range(70_000) for p in s.due_packets(n * 0.02)]
    for prev, cur in itertools.pairwise(packets):
        assert cur.sequence == (prev.sequence + 1) % 65536
        assert cur.timestamp == (prev.timestamp + 160) % 2**32
    assert len({p.ssrc for p in packets}) == 1


def test_nothing_is_due_before_the_slot() -> None:
    """due_packets before next_send_at returns nothing."""
    s = sender()
    s.start(10.0)
    assert len(s.due_packets(10.0)) == 1
    assert s.due_packets(10.0199) == []
    assert len(s.due_packets(10.020)) == 1


def test_short_stall_catches_up_every_slot() -> None:
    """A wake-up 45 ms late sends the 3 due slots at once, in order, with grid timestamps."""
    s = sender(max_catch_up_frames=3)
    s.start(0.0)
    packets = s.due_packets(0.045)
    assert len(packets) == 3
    assert [p.timestamp - packets[0].timestamp for p in packets] == [0, 160, 320]
    assert s.stats().frames_skipped == 0


def test_long_stall_sends_a_bounded_burst_then_resyncs() -> None:
    """After a 1 s stall only max_catch_up slots are sent (the newest), marker set, grid kept."""
    s = sender(max_catch_up_frames=3)
    s.start(0.0)
    first = s.due_packets(0.0)[0]
    packets = s.due_packets(1.0)  # slots 1..50 due
    assert len(packets) == 3
    assert [(p.timestamp - first.timestamp) // 160 for p in packets] == [48, 49, 50]
    assert [p.marker for p in packets] == [True, False, False]
    assert [p.sequence - first.sequence for p in packets] == [1, 2, 3]
    assert s.stats().frames_skipped == 47 and s.stats().resyncs == 1
    assert s.next_send_at() == pytest.approx(1.02)


def test_marker_only_on_the_first_packet_of_a_talkspurt() -> None:
    """RFC 3551 section 4.1: marker on the first packet after start, not after."""
    s = sender()
    s.start(0.0)
    markers = [p.marker for n in range(5) for p in s.due_packets(n * 0.02)]
    assert markers == [True, False, False, False, False]


def test_queued_audio_is_sent_frame_by_frame_and_tags_finish() -> None:
    """Queued PCM leaves encoded, 160 samples a packet, the tail padded; the tag fires at the end."""
    s = sender()
    pcm = (np.sin(np.arange(400) / 5) * 8000).astype(np.int16)
    assert s.queue_audio(pcm, tag="prompt-1") == 3
    s.start(0.0)
    payloads = []
    for n in range(3):
        assert s.pop_finished() == []
        payloads.extend(p.payload for p in s.due_packets(n * 0.02))
    assert s.pop_finished() == ["prompt-1"]
    assert b"".join(payloads)[:400] == Codec.PCMU.encode(pcm)
    assert b"".join(payloads)[400:] == b"\xff" * 80
    assert s.due_packets(0.06)[0].payload == b"\xff" * 160  # idle: silence


def test_idle_skip_sends_nothing_and_marks_the_next_talkspurt() -> None:
    """IdlePolicy.SKIP: nothing sent without audio; the next audio packet has the marker, grid timestamp."""
    s = sender(idle=IdlePolicy.SKIP)
    s.start(0.0)
    assert s.due_packets(0.0) == []
    assert s.due_packets(0.02) == []
    s.queue_audio(np.zeros(160, dtype=np.int16))
    s2 = sender(idle=IdlePolicy.SILENCE)
    s2.start(0.0)
    ref = s2.due_packets(0.0)[0]
    p = s.due_packets(0.04)[0]
    assert p.marker and p.sequence == ref.sequence and p.timestamp == ref.timestamp + 320


def test_clear_audio_stops_a_prompt() -> None:
    """Barge-in: clearing drops the queued frames."""
    s = sender()
    s.queue_audio(np.ones(1600, dtype=np.int16))
    assert s.clear_audio() == 10 and s.queued_frames == 0


def test_key_events_replace_audio_and_share_the_sequence_space() -> None:
    """RFC 4733: event packets on PT 101 in the audio slots, numbering continuous, audio after."""
    s = sender()
    s.queue_audio(np.full(160 * 20, 1000, dtype=np.int16))
    s.start(0.0)
    s.send_key("1", duration_ms=60, gap_ms=20)
    packets = [p for n in range(12) for p in s.due_packets(n * 0.02)]
    kinds = [p.payload_type for p in packets]
    # 60 ms tone, updates every 40 ms: slots 0 (start), 2 (end), 4 and 6 (end retransmits);
    # slots 1, 3, 5 are muted; from slot 7 (after the 20 ms gap) audio resumes.
    assert kinds == [101, 101, 101, 101, 0, 0, 0, 0, 0]
    assert [p.sequence - packets[0].sequence for p in packets] == list(range(len(packets)))
    events = [TelephoneEventPayload.parse(p.payload) for p in packets[:4]]
    assert [(e.end, e.duration) for e in events if e] == [(False, 160), (True, 480), (True, 480), (True, 480)]
    assert packets[4].timestamp - packets[0].timestamp == 7 * 160
    assert {p.timestamp for p in packets[:4]} == {packets[0].timestamp}
    assert packets[0].marker


def test_stop_then_start_advances_the_timestamp_by_real_time() -> None:
    """After a 1 s pause the timestamp jumps by 8000 (plus the slot), the sequence by 1."""
    s = sender()
    s.start(0.0)
    last = s.due_packets(0.0)[-1]
    s.stop()
    assert s.next_send_at() is None and s.due_packets(0.5) == []
    s.start(1.02)
    nxt = s.due_packets(1.02)[0]
    assert nxt.sequence == last.sequence + 1
    assert nxt.timestamp - last.timestamp == 160 + 8000
    assert nxt.marker


def test_send_key_without_telephone_event_is_refused() -> None:
    """No telephone-event negotiated: sending RFC 4733 is a local error."""
    with pytest.raises(ValueError):
        sender(telephone_event_pt=None).send_key("1")


# -- receiver -------------------------------------------------------------------------------


def pkt(seq: int, ts: int, ssrc: int = 42, pt: int = 0) -> RtpPacket:
    return RtpPacket(pt, seq % 65536, ts % 2**32, ssrc, b"\xff" * 160)


def test_loss_is_counted_per_appendix_a3() -> None:
    """Three of 100 packets missing: lost 3. (A.1: the first packet of a new source is probation
    and not counted, so expected is 99 and received 96.)"""
    rx = RtpReceiver(0.0)
    rx.set_remote(PEER)
    for n in range(100):
        if n in (10, 11, 50):
            continue
        assert rx.receive(pkt(65500 + n, n * 160), PEER, n * 0.02) is Verdict.ACCEPTED
    state = rx.source(42)
    assert state is not None
    assert (state.expected, state.received, state.lost) == (99, 96, 3)
    assert state.cycles == 65536  # wrapped once


def test_jitter_is_zero_for_perfect_pacing_and_grows_with_jitter() -> None:
    """A.8: on-time packets give 0 jitter; +-5 ms arrival noise gives a few ms."""
    rx = RtpReceiver(0.0)
    for n in range(200):
        rx.receive(pkt(n, n * 160), PEER, n * 0.02)
    state = rx.source(42)
    assert state is not None and state.jitter == 0
    rnd = random.Random(3)
    rx2 = RtpReceiver(0.0)
    for n in range(500):
        rx2.receive(pkt(n, n * 160), PEER, n * 0.02 + rnd.uniform(0, 0.01))
    state2 = rx2.source(42)
    assert state2 is not None and 1.0 < state2.jitter_ms < 6.0


def test_telephone_events_do_not_count_as_jitter() -> None:
    """Event packets repeat one timestamp: they are skipped by the jitter estimate."""
    rx = RtpReceiver(0.0)
    for n in range(10):
        rx.receive(pkt(n, 1000, pt=101), PEER, n * 0.05)
    state = rx.source(42)
    assert state is not None and state.jitter == 0


def test_packets_from_another_host_are_rejected() -> None:
    """Without latching only the SDP host may send (any port): an off-path host cannot inject keys."""
    rx = RtpReceiver(0.0)
    rx.set_remote(PEER)
    assert rx.receive(pkt(1, 0), ("127.0.0.1", 40002), 0.0) is Verdict.ACCEPTED
    assert rx.receive(pkt(2, 160), ("127.0.0.9", 40000), 0.02) is Verdict.WRONG_SOURCE
    assert rx.destination == PEER and rx.rejected[Verdict.WRONG_SOURCE] == 1


def test_latching_switches_destination_after_a_valid_stream() -> None:
    """latch=True: the first source with two packets in sequence becomes destination and only source."""
    rx = RtpReceiver(0.0, latch=True)
    rx.set_remote(("10.0.0.5", 4000))
    nat = ("127.0.0.2", 5555)
    assert rx.receive(pkt(1, 0), nat, 0.0) is Verdict.ACCEPTED
    assert rx.destination == ("10.0.0.5", 4000)  # still in probation
    assert rx.receive(pkt(2, 160), nat, 0.02) is Verdict.ACCEPTED
    assert rx.destination == nat
    assert rx.receive(pkt(3, 320), ("127.0.0.3", 5555), 0.04) is Verdict.WRONG_SOURCE


def test_sequence_jump_needs_confirmation() -> None:
    """A.1: one packet far out of sequence is rejected; two in sequence restart the stream."""
    rx = RtpReceiver(0.0)
    for n in range(5):
        rx.receive(pkt(n, n * 160), PEER, n * 0.02)
    assert rx.receive(pkt(20000, 0), PEER, 0.1) is Verdict.INVALID_SEQUENCE
    assert rx.receive(pkt(20001, 160), PEER, 0.12) is Verdict.ACCEPTED


def test_media_timeout_reports_evidence() -> None:
    """DIS-MEDIA: silent longer than the threshold -> an event naming the gap and the threshold."""
    rx = RtpReceiver(0.0, leg=Leg.CALLED)
    assert rx.timed_out(4.0, 5.0) is None
    timeout = rx.timed_out(5.5, 5.0)  # never a packet: counted from creation
    assert timeout is not None and timeout.last_packet_at is None
    rx.receive(pkt(1, 0), PEER, 6.0)
    assert rx.timed_out(10.9, 5.0) is None
    assert rx.timeout_deadline(5.0) == 11.0
    timeout = rx.timed_out(12.0, 5.0)
    assert timeout is not None
    assert timeout.evidence == {
        "detector": "rtp_media_timeout",
        "silent_for_s": 6.0,
        "threshold_s": 5.0,
        "last_packet_at": 6.0,
        "packets_received": 1,
    }
    assert timeout.leg is Leg.CALLED


def test_codec_switch_converts_queued_frames() -> None:
    """A re-INVITE to PCMA: queued mu-law frames are converted, not sent under the wrong type."""
    s = sender()
    pcm = (np.arange(160) * 100).astype(np.int16)
    s.queue_audio(pcm)
    s.set_codec(Codec.PCMA)
    s.start(0.0)
    p = s.due_packets(0.0)[0]
    assert p.payload_type == 8
    assert p.payload == Codec.PCMA.encode(Codec.PCMU.decode(Codec.PCMU.encode(pcm)))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.0, 0.5), min_size=1, max_size=80), st.integers(1, 5))
def test_sender_invariants_under_any_wakeup_pattern(steps: list[float], bound: int) -> None:
    """Property: whatever the wake-up times, sequence numbers are consecutive, timestamps grow on the
    160-sample grid, no call sends more than the catch-up bound, and nothing is sent before its slot."""
    s = sender(max_catch_up_frames=bound)
    s.start(0.0)
    now = 0.0
    packets: list[RtpPacket] = []
    first_ts: int | None = None
    for step in steps:
        now += step
        batch = s.due_packets(now)
        assert len(batch) <= bound
        for p in batch:
            if first_ts is None:
                first_ts = p.timestamp
            slot = ((p.timestamp - first_ts) % 2**32) // 160
            assert (p.timestamp - first_ts) % 160 == 0
            assert slot * 0.02 <= now + 1e-6
        packets.extend(batch)
        assert s.next_send_at() is not None and s.next_send_at() > now  # type: ignore[operator]
    for prev, cur in itertools.pairwise(packets):
        assert cur.sequence == (prev.sequence + 1) % 65536
        assert 0 < (cur.timestamp - prev.timestamp) % 2**32 < 2**31
