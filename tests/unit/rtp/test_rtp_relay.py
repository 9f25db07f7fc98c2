"""Bridging: relay without re-encoding when codecs match, transcode otherwise, continuity kept."""

from __future__ import annotations

import random

import numpy as np

from ivr.rtp.g711 import Codec, transcode
from ivr.rtp.packet import RtpPacket
from ivr.rtp.relay import MediaRelay
from ivr.rtp.session import RtpSender

PAYLOAD = bytes(range(160))


def incoming(seq: int, ts: int, ssrc: int = 0xABC, pt: int = 0, payload: bytes = PAYLOAD) -> RtpPacket:
    return RtpPacket(pt, seq % 65536, ts % 2**32, ssrc, payload)


def prompt_then_bridge(out_codec: Codec = Codec.PCMU, out_event_pt: int | None = 101):
    """A called leg that heard 5 frames of prompt, then is bridged to the facility leg's audio."""
    out = RtpSender(out_codec, random.Random(9), telephone_event_pt=out_event_pt)
    out.queue_audio(np.zeros(800, dtype=np.int16))
    out.start(0.0)
    sent = [p for n in range(5) for p in out.due_packets(n * 0.02)]
    return out, sent


def test_same_codec_relays_payload_untouched_with_our_numbering() -> None:
    """PCMU -> PCMU: payload bytes identical; SSRC ours; seq and ts continue the prompt stream."""
    out, sent = prompt_then_bridge()
    relay = MediaRelay(out, source_codec=Codec.PCMU, source_event_pt=101)
    assert relay.passthrough
    got = [relay.relay(incoming(1000 + n, 50_000 + 160 * n), 0.1 + 0.02 * n) for n in range(4)]
    assert all(p is not None for p in got)
    packets = [p for p in got if p is not None]
    assert [p.payload for p in packets] == [PAYLOAD] * 4
    assert {p.ssrc for p in packets} == {sent[0].ssrc}
    assert [p.sequence for p in packets] == [(sent[-1].sequence + 1 + n) % 65536 for n in range(4)]
    assert packets[0].timestamp == (sent[-1].timestamp + 160) % 2**32
    assert [p.marker for p in packets] == [True, False, False, False]
    assert not out.running


def test_gaps_and_reordering_pass_through() -> None:
    """A lost packet stays a gap, a reordered one keeps its place (offsets, not renumbering)."""
    out, _ = prompt_then_bridge()
    relay = MediaRelay(out, source_codec=Codec.PCMU, source_event_pt=101)
    order = [0, 1, 3, 2, 5]
    packets = [relay.relay(incoming(n, 160 * n), 0.1 + 0.02 * i) for i, n in enumerate(order)]
    base = packets[0]
    assert base is not None
    rel = [((p.sequence - base.sequence) % 65536, (p.timestamp - base.timestamp) % 2**32) for p in packets if p]
    assert rel == [(0, 0), (1, 160), (3, 480), (2, 320), (5, 800)]


def test_different_codecs_are_transcoded() -> None:
    """PCMU -> PCMA: payload converted via the G.711 tables, payload type 8."""
    out, _ = prompt_then_bridge(out_codec=Codec.PCMA)
    relay = MediaRelay(out, source_codec=Codec.PCMU, source_event_pt=101)
    p = relay.relay(incoming(1, 0), 0.1)
    assert p is not None and p.payload_type == 8
    assert p.payload == transcode(PAYLOAD, Codec.PCMU, Codec.PCMA)
    assert relay.stats().transcoded == 1


def test_new_incoming_ssrc_reanchors_with_marker() -> None:
    """The far end restarting its stream does not make our stream jump backwards."""
    out, _ = prompt_then_bridge()
    relay = MediaRelay(out, source_codec=Codec.PCMU, source_event_pt=101)
    a = relay.relay(incoming(100, 1000, ssrc=1), 0.1)
    b = relay.relay(incoming(7, 999_999, ssrc=2), 0.12)
    assert a is not None and b is not None
    assert b.sequence == (a.sequence + 1) % 65536 and b.marker
    assert (b.timestamp - a.timestamp) % 2**32 == 160
    assert relay.stats().reanchors == 2


def test_telephone_events_map_payload_type_or_drop() -> None:
    """RFC 4733 packets take the outgoing leg's event PT; dropped if that leg has none."""
    out, _ = prompt_then_bridge(out_event_pt=96)
    relay = MediaRelay(out, source_codec=Codec.PCMU, source_event_pt=101)
    p = relay.relay(incoming(1, 0, pt=101, payload=b"\x01\x0a\x00\xa0"), 0.1)
    assert p is not None and p.payload_type == 96 and p.payload == b"\x01\x0a\x00\xa0"
    out2, _ = prompt_then_bridge(out_event_pt=None)
    relay2 = MediaRelay(out2, source_codec=Codec.PCMU, source_event_pt=101)
    assert relay2.relay(incoming(1, 0, pt=101, payload=b"\x01\x0a\x00\xa0"), 0.1) is None


def test_unknown_payload_types_are_dropped() -> None:
    """Comfort noise (13) or an unexpected codec is not relayed."""
    out, _ = prompt_then_bridge()
    relay = MediaRelay(out, source_codec=Codec.PCMU, source_event_pt=101)
    assert relay.relay(incoming(1, 0, pt=13, payload=b"\x40"), 0.1) is None
    assert relay.stats().dropped_payload_type == 1


def test_prompt_in_the_middle_of_a_bridge_keeps_numbering_monotonic() -> None:
    """Relay, then our own warning prompt, then relay again: sequence numbers only go forward."""
    out, _ = prompt_then_bridge()
    relay = MediaRelay(out, source_codec=Codec.PCMU, source_event_pt=101)
    seqs = []
    for n in range(3):
        p = relay.relay(incoming(n, 160 * n), 0.1 + 0.02 * n)
        assert p is not None
        seqs.append(p.sequence)
    out.queue_audio(np.zeros(320, dtype=np.int16))
    out.start(0.2)
    seqs.extend(p.sequence for t in (0.2, 0.22) for p in out.due_packets(t))
    out.stop()
    for n in range(3, 6):
        p = relay.relay(incoming(n, 160 * n), 0.24 + 0.02 * n)
        assert p is not None
        seqs.append(p.sequence)
    assert [(s - seqs[0]) % 65536 for s in seqs] == list(range(8))
