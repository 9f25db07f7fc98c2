"""RTP packet parsing and serialization (RFC 3550 section 5.1, RFC 5761 section 4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.rtp.packet import (
    Dropped,
    DropReason,
    RtcpPacket,
    RtpExtension,
    RtpPacket,
    parse_datagram,
    seq_diff,
    ts_diff,
)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension=st.none()
    | st.builds(RtpExtension, st.integers(0, 0xFFFF), st.binary(max_size=40).map(lambda b: b[: len(b) // 4 * 4])),
    padding_len=st.integers(0, 255),
)


@given(packets)
def test_serialize_then_parse_round_trips(packet: RtpPacket) -> None:
    """Every well-formed packet (payload types outside the RTCP-muxed range) survives a round trip."""
    assert parse_datagram(packet.to_bytes()) == packet


@given(st.binary(max_size=300))
def test_parser_never_raises_on_garbage(data: bytes) -> None:
    """Arbitrary bytes give a packet, an RTCP packet or a Dropped reason: never an exception."""
    assert isinstance(parse_datagram(data), RtpPacket | RtcpPacket | Dropped)


def test_known_header_fields() -> None:
    """A hand-built PCMU packet with marker: fields land where RFC 3550 section 5.1 puts them."""
    data = bytes([0x80, 0x80]) + struct.pack("!HII", 4660, 160, 0xDEADBEEF) + b"\xff" * 160
    packet = parse_datagram(data)
    assert packet == RtpPacket(0, 4660, 160, 0xDEADBEEF, b"\xff" * 160, marker=True)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", DropReason.SHORT),
        (b"\x80", DropReason.SHORT),
        (b"\x80\x00\x00\x01", DropReason.SHORT),
        (b"\x40\x00" + bytes(10), DropReason.BAD_VERSION),
        (b"\x00\x01\x00\x00" + bytes(16), DropReason.BAD_VERSION),  # a STUN binding request
        (b"\x83\x00" + bytes(10) + bytes(8), DropReason.SHORT),  # CC=3, only 2 CSRCs present
        (b"\x90\x00" + bytes(10) + b"\x00\x00", DropReason.TRUNCATED_EXTENSION),
        (b"\x90\x00" + bytes(10) + b"\x00\x00\x00\x02" + bytes(4), DropReason.TRUNCATED_EXTENSION),
        (b"\xa0\x00" + bytes(10) + b"\x01\x02\x00", DropReason.BAD_PADDING),  # count 0
        (b"\xa0\x00" + bytes(10) + b"\x01\x02\x09", DropReason.BAD_PADDING),  # count > payload
        (b"\x80\xc8\x00\x06" + bytes(8), DropReason.BAD_RTCP),  # SR claims 28 octets, has 12
    ],
)
def test_malformed_datagrams_are_dropped_with_a_reason(data: bytes, reason: DropReason) -> None:
    """Each malformation maps to its reason."""
    result = parse_datagram(data)
    assert isinstance(result, Dropped)
    assert result.reason is reason


@pytest.mark.parametrize("packet_type", [200, 201, 202, 203, 204, 205, 206, 207])
def test_rtcp_on_the_rtp_port_is_recognised(packet_type: int) -> None:
    """RFC 5761 section 4: second octet 192..223 is RTCP, reported as such (and then ignored)."""
    data = bytes([0x81, packet_type]) + struct.pack("!H", 1) + bytes(4)
    assert parse_datagram(data) == RtcpPacket(packet_type, 8)


def test_padding_is_stripped_from_the_payload() -> None:
    """RFC 3550 section 5.1: the last octet counts the padding, which is not payload."""
    packet = RtpPacket(8, 1, 2, 3, b"abc", padding_len=5)
    data = packet.to_bytes()
    assert data[-1] == 5
    parsed = parse_datagram(data)
    assert isinstance(parsed, RtpPacket)
    assert parsed.payload == b"abc"


@pytest.mark.parametrize("field", [{"payload_type": 128}, {"sequence": 65536}, {"timestamp": -1}, {"ssrc": 1 << 32}])
def test_serializing_out_of_range_fields_is_a_local_error(field: dict[str, int]) -> None:
    """Building a packet with an impossible field raises ValueError (our bug, not the peer's)."""
    base = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    base.update(field)
    with pytest.raises(ValueError):
        RtpPacket(payload=b"", **base).to_bytes()


@pytest.mark.parametrize(
    ("a", "b", "diff"), [(1, 0, 1), (0, 65535, 1), (65535, 0, -1), (100, 200, -100), (0x8000, 0, -0x8000)]
)
def test_sequence_distance_wraps(a: int, b: int, diff: int) -> None:
    """Sequence distance is signed modulo 2^16."""
    assert seq_diff(a, b) == diff


def test_timestamp_distance_wraps() -> None:
    """Timestamp distance is signed modulo 2^32."""
    assert ts_diff(80, 0xFFFFFFB0) == 160
    assert ts_diff(0xFFFFFFB0, 80) == -160
