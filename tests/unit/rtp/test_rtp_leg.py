"""MediaLeg: packets in -> normalized keys, detector frames, relay packets; timers; timeout."""

from __future__ import annotations

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.rtp.g711 import Codec
from ivr.rtp.jitter import FrameKind
from ivr.rtp.keys import KeyPress
from ivr.rtp.leg import NOT_SIMPLE, MediaLeg, RemoteMedia
from ivr.rtp.packet import RtpPacket, parse_datagram
from ivr.rtp.rfc4733 import KeyEnded, TelephoneEventPayload
from ivr.rtp.session import Verdict
from ivr.types import KeySource, Leg

FAC = ("127.0.0.1", 30000)
CALLED = ("127.0.0.1", 30002)


def make(leg: Leg, addr: tuple[str, int], codec: Codec = Codec.PCMU, te: int | None = 101) -> MediaLeg:
    return MediaLeg(leg, random.Random(leg.value), 0.0, RemoteMedia(addr, codec, te))


def key_packets(key_event: int, seq0: int, ts: int) -> list[RtpPacket]:
    blocks = [(160, False), (480, False), (800, True), (800, True), (800, True)]
    return [
        RtpPacket(101, seq0 + i, ts, 77, TelephoneEventPayload(key_event, end, 10, d).to_bytes())
        for i, (d, end) in enumerate(blocks)
    ]


def audio(seq: int, ts: int, value: int = 1000, codec: Codec = Codec.PCMU) -> RtpPacket:
    return RtpPacket(codec.payload_type, seq, ts, 77, codec.encode(np.full(160, value, dtype=np.int16)))


def test_rfc4733_and_inband_for_one_press_give_one_keypress() -> None:
    """ACC-5 end to end: RFC 4733 packets then the in-band detector's report: one KeyPress."""
    called = make(Leg.CALLED, CALLED)
    events = []
    for i, p in enumerate(key_packets(1, 10, 1600)):
        events.extend(called.receive(p, CALLED, 1.0 + 0.02 * i).events)
    presses = [e for e in events if isinstance(e, KeyPress)]
    assert [(p.key, p.source, p.leg) for p in presses] == [("1", KeySource.RFC4733, Leg.CALLED)]
    assert sum(isinstance(e, KeyEnded) for e in events) == 1
    assert called.inband_key("1", 1.05) is None
    assert called.info_key("2", 1.06) is not None


def test_audio_reaches_the_detector_frames() -> None:
    """Decoded audio comes out of pull_frame after the jitter delay."""
    leg = make(Leg.FACILITY, FAC)
    frames = []
    for n in range(6):
        leg.receive(audio(n, 160 * n, 2000), FAC, 0.02 * n)
        frames.append(leg.pull_frame(0.02 * n))
    audio_frames = [f for f in frames if f.kind is FrameKind.AUDIO]
    assert audio_frames and all(abs(int(f.samples[0]) - 2000) < 64 for f in audio_frames)


def test_packets_from_elsewhere_are_refused() -> None:
    """An off-path host cannot inject an RFC 4733 '1' (no key, verdict WRONG_SOURCE)."""
    called = make(Leg.CALLED, CALLED)
    result = called.receive(key_packets(1, 1, 0)[2], ("127.0.0.66", 30002), 0.0)
    assert result.verdict is Verdict.WRONG_SOURCE and result.events == ()


def test_bridge_relays_audio_both_ways_with_transcoding() -> None:
    """Bridged PCMU facility and PCMA called legs: audio relayed and converted, keys not relayed."""
    fac = make(Leg.FACILITY, FAC, Codec.PCMU)
    called = make(Leg.CALLED, CALLED, Codec.PCMA)
    fac.bridge_to(called)
    called.bridge_to(fac)
    r1 = fac.receive(audio(1, 0, 1234, Codec.PCMU), FAC, 0.0)
    r2 = called.receive(audio(5, 0, 1234, Codec.PCMA), CALLED, 0.0)
    assert len(r1.relay) == 1 and r1.relay[0].payload_type == 8 and r1.relay[0].ssrc == called.sender.ssrc
    assert len(r2.relay) == 1 and r2.relay[0].payload_type == 0 and r2.relay[0].ssrc == fac.sender.ssrc
    keys = [called.receive(p, CALLED, 0.1 + 0.02 * i) for i, p in enumerate(key_packets(9, 6, 800))]
    assert all(r.relay == () for r in keys)
    assert any(isinstance(e, KeyPress) and e.key == "9" for r in keys for e in r.events)


def test_lost_end_packets_end_the_key_by_timer() -> None:
    """Without end packets the leg's deadline fires and reports the KeyEnded."""
    leg = make(Leg.CALLED, CALLED)
    for i, p in enumerate(key_packets(3, 1, 0)[:2]):
        leg.receive(p, CALLED, 0.02 * i)
    deadline = leg.next_deadline()
    assert deadline is not None
    ended = leg.handle_timer(deadline + 0.001)
    assert len(ended) == 1 and isinstance(ended[0], KeyEnded) and not ended[0].end_seen


def test_media_timeout_per_leg() -> None:
    """DIS-MEDIA: the leg reports its own timeout with evidence."""
    leg = make(Leg.CALLED, CALLED)
    leg.receive(audio(1, 0), CALLED, 1.0)
    timeout = leg.media_timeout(20.0, 15.0)
    assert timeout is not None and timeout.leg is Leg.CALLED and timeout.evidence["silent_for_s"] == 19.0


def test_event_payload_types_may_differ_per_direction() -> None:
    """RFC 3264: we receive RFC 4733 on the PT our SDP declared (101) while sending on the peer's (96)."""
    leg = MediaLeg(Leg.CALLED, random.Random(1), 0.0, RemoteMedia(CALLED, Codec.PCMU, 96, 101))
    events = [e for i, p in enumerate(key_packets(4, 1, 0)) for e in leg.receive(p, CALLED, 0.02 * i).events]
    assert [e.key for e in events if isinstance(e, KeyPress)] == ["4"]
    leg.sender.send_key("4")
    leg.sender.start(0.0)
    assert leg.sender.due_packets(0.0)[0].payload_type == 96


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 8, 101, 13, 96, 127]),
            st.integers(0, 0xFFFF),
            st.integers(0, 0xFFFFFFFF),
            st.sampled_from([1, 2, 0xFFFFFFFF]),
            st.binary(max_size=400),
            st.floats(0.0, 0.5),
        ),
        max_size=60,
    )
)
def test_arbitrary_packets_never_escape_the_leg(items: list[tuple[int, int, int, int, bytes, float]]) -> None:
    """Property: any payload type, numbering and payload (odd sizes, garbage events) is absorbed:
    receive, the timer and the 20 ms pull never raise, and frames are always 160 samples."""
    fac = make(Leg.FACILITY, FAC)
    called = make(Leg.CALLED, CALLED, Codec.PCMA)
    fac.bridge_to(called)
    now = 0.0
    for pt, seq, ts, ssrc, payload, step in items:
        now += step
        fac.receive(RtpPacket(pt, seq, ts, ssrc, payload), FAC, now)
        fac.handle_timer(now)
        assert fac.pull_frame(now).samples.shape == (160,)


def test_held_key_inband_report_at_tone_end_counts_once() -> None:
    """RFC 4733 start at 1.0 s; the detector reports at 1.9 s with start 1.04 s (jitter delay
    included): one press."""
    leg = make(Leg.CALLED, CALLED)
    presses = [e for p in key_packets(1, 1, 0)[:1] for e in leg.receive(p, CALLED, 1.0).events]
    assert len(presses) == 1
    assert leg.inband_key("1", 1.9, started_at=1.0 + leg.jitter.delay_s) is None


# -- the per-packet fast path (receive_wire) equals the general path --------------------------


def _general(leg: MediaLeg, data: bytes, source: tuple[str, int], now: float) -> tuple[list[bytes], list[object]]:
    """What the engine did before the fast path: parse, receive, serialize the relayed packets."""
    parsed = parse_datagram(data)
    if not isinstance(parsed, RtpPacket):
        return [], []
    received = leg.receive(parsed, source, now)
    return [p.to_bytes() for p in received.relay], list(received.events)


def _fast(leg: MediaLeg, data: bytes, source: tuple[str, int], now: float) -> tuple[list[bytes], list[object]]:
    """The engine now: receive_wire first, the general path for what it declines."""
    out = leg.receive_wire(data, source, now)
    if out is NOT_SIMPLE:
        return _general(leg, data, source, now)
    return ([out] if isinstance(out, bytes) else []), []


def _bridged_pair(out_codec: Codec) -> tuple[MediaLeg, MediaLeg]:
    fac = make(Leg.FACILITY, FAC)
    called = make(Leg.CALLED, CALLED, codec=out_codec)
    fac.bridge_to(called)
    return fac, called


def _state(leg: MediaLeg, other: MediaLeg) -> tuple[object, ...]:
    rx = leg.receiver
    sources = [(s.ssrc, s.max_seq, s.cycles, s.received, s.probation, s.transit, s.jitter, sorted(s.payload_types))
               for s in rx.sources]
    relay = leg.relay
    return (rx.packets_received, rx.last_packet_at, dict(rx.rejected), sources, leg.jitter.stats(),
            leg.unknown_payload_types, other.sender.next_sequence, other.sender.stats(),
            other.sender.last_timestamp, other.sender.running, relay.stats() if relay else None)


_datagram = st.one_of(
    # plain audio, either law, any numbering, marker or not (the fast path's case)
    st.tuples(st.sampled_from([0, 8]), st.integers(0, 40), st.integers(0, 40), st.sampled_from([77, 78]),
              st.booleans(), st.integers(0, 200)).map(
        lambda t: RtpPacket(t[0], (65530 + t[1]) % 65536, (4294960000 + 160 * t[2]) % 2**32, t[3], bytes([t[5]]) * 160,
                            t[4]).to_bytes()),
    # telephone-events, CSRCs, padding, unknown types, RTCP, garbage: the general path's cases
    st.tuples(st.integers(0, 20), st.integers(0, 40)).map(
        lambda t: key_packets(t[0] % 16, t[1], 1600)[t[1] % 5].to_bytes()),
    st.tuples(st.integers(0, 40), st.sampled_from([(1,), (), (2, 3)]), st.integers(0, 3)).map(
        lambda t: RtpPacket(0, t[0], 160 * t[0], 77, b"\x7f" * 160, csrcs=t[1], padding_len=t[2]).to_bytes()),
    st.sampled_from([RtpPacket(13, 5, 800, 77, b"\x40").to_bytes(), b"\x81\xc8\x00\x06" + bytes(24), b"\x80\x00",
                     b"\x00" * 20, RtpPacket(96, 1, 0, 77, b"xy").to_bytes()]),
    st.binary(max_size=40),
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([Codec.PCMU, Codec.PCMA]),
       st.lists(st.tuples(_datagram, st.sampled_from([FAC, ("127.0.0.1", 31000), ("10.0.0.9", 30000)]),
                          st.integers(0, 3)), max_size=60))
def test_fast_path_equals_the_general_path(out_codec: Codec, items: list[tuple[bytes, tuple[str, int], int]]) -> None:
    """Every datagram (audio, keys, RTCP, CSRCs, garbage; any source; reordered, wrapping numbers):
    receive_wire + fallback relays the same bytes, reports the same events and leaves the same
    receiver, jitter buffer, relay and outgoing-stream state as parse + receive + to_bytes."""
    ref, ref_other = _bridged_pair(out_codec)
    new, new_other = _bridged_pair(out_codec)
    now = 1.0
    for data, source, step in items:
        now += 0.01 * step
        assert _fast(new, data, source, now) == _general(ref, data, source, now)
        assert _state(new, new_other) == _state(ref, ref_other)
        if step == 3:  # a tick: the detectors' frame is the same too
            a, b = new.pull_frame(now), ref.pull_frame(now)
            assert a.kind is b.kind and np.array_equal(a.samples, b.samples)


def test_fast_path_declines_what_it_does_not_handle() -> None:
    """Telephone-events, CSRCs, RTCP and unknown payload types are left to the general path."""
    leg = make(Leg.CALLED, CALLED)
    declined = [key_packets(1, 10, 1600)[0].to_bytes(),
                RtpPacket(0, 1, 160, 77, b"\xff" * 160, csrcs=(5,)).to_bytes(),
                b"\x81\xc9\x00\x01" + bytes(4),
                RtpPacket(13, 1, 160, 77, b"\x40").to_bytes()]
    for data in declined:
        assert leg.receive_wire(data, CALLED, 1.0) is NOT_SIMPLE
    assert leg.receiver.packets_received == 0  # declining touches no state
    assert leg.receive_wire(audio(1, 160).to_bytes(), CALLED, 1.0) is None  # accepted, not bridged
    assert leg.receiver.packets_received == 1
