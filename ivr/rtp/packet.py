"""RTP packets (RFC 3550 section 5.1): parse and serialize, defensively.

``parse_datagram(data)`` never raises: it returns an :class:`RtpPacket`, an :class:`RtcpPacket`
(recognised so that a peer multiplexing RTCP on the RTP port, RFC 5761, is not mistaken for media;
the engine ignores it), or a :class:`Dropped` value naming why the datagram is not usable.

Header layout (RFC 3550 section 5.1)::

     0                   1                   2                   3
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |           synchronization source (SSRC) identifier            |
    |            contributing source (CSRC) identifiers (CC x 32)   |
    | [extension: profile (16) | length in 32-bit words (16) | data] |
    | payload ... [padding, last octet = padding count]             |
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import NamedTuple

RTP_VERSION = 2
RTP_HEADER_LEN = 12
MAX_SEQ = 1 << 16
MAX_TIMESTAMP = 1 << 32

_HEADER = struct.Struct("!BBHII")
FIXED_HEADER = _HEADER  # the 12 fixed octets: V/P/X/CC, M/PT, sequence, timestamp, SSRC


class DropReason(enum.StrEnum):
    """Why a datagram was not accepted as RTP (counted by the receiver, never raised)."""

    SHORT = "short"  # fewer than 12 octets, or fewer than the header says (CSRC list)
    BAD_VERSION = "bad_version"  # V != 2 (STUN, garbage, RTP version 1)
    TRUNCATED_EXTENSION = "truncated_extension"  # X set but the extension runs past the end
    BAD_PADDING = "bad_padding"  # P set but the padding count is 0 or longer than the payload
    BAD_RTCP = "bad_rtcp"  # looks like RTCP (RFC 5761 section 4) but its length field is wrong


@dataclass(frozen=True, slots=True)
class Dropped:
    """A datagram that is not usable RTP, with the reason (for counters and debug logs)."""

    reason: DropReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RtcpPacket:
    """An RTCP packet seen on the RTP port (RFC 5761 multiplexing). Recognised, then ignored.

    ``packet_type`` is the first packet's type (200 SR, 201 RR, 202 SDES, 203 BYE, 204 APP, ...).
    """

    packet_type: int
    length_octets: int


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """The header extension (RFC 3550 section 5.3.1): a 16-bit profile id and opaque data."""

    profile: int
    data: bytes  # a multiple of 4 octets


class RtpPacket(NamedTuple):
    """One RTP packet. ``payload`` excludes padding; ``padding_len`` is kept for round trips.

    A NamedTuple rather than a frozen dataclass: equally immutable, and three times cheaper to
    build (about 1 us instead of 3 us), which counts at 50 packets a second per leg per call.
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: RtpExtension | None = None
    padding_len: int = 0

    def to_bytes(self) -> bytes:
        """Serialize (RFC 3550 section 5.1). Raises ValueError for out-of-range fields (a local bug)."""
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload type {self.payload_type} out of range 0..127")
        if not 0 <= self.sequence < MAX_SEQ:
            raise ValueError(f"sequence {self.sequence} out of range")
        if not 0 <= self.timestamp < MAX_TIMESTAMP:
            raise ValueError(f"timestamp {self.timestamp} out of range")
        if not 0 <= self.ssrc < MAX_TIMESTAMP:
            raise ValueError(f"ssrc {self.ssrc} out of range")
        if len(self.csrcs) > 15:
            raise ValueError("at most 15 CSRCs fit in the CC field")
        if not 0 <= self.padding_len <= 255:
            raise ValueError("padding length must fit in one octet")
        first = (RTP_VERSION << 6) | (len(self.csrcs) & 0x0F)
        if self.padding_len:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [_HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc)]
        parts.extend(struct.pack("!I", c) for c in self.csrcs)
        if self.extension is not None:
            data = self.extension.data
            if len(data) % 4:
                raise ValueError("extension data must be a multiple of 4 octets")
            parts.append(struct.pack("!HH", self.extension.profile, len(data) // 4))
            parts.append(data)
        parts.append(self.payload)
        if self.padding_len:
            # RFC 3550 section 5.1: the last octet of the padding counts the padding octets.
            parts.append(bytes(self.padding_len - 1) + bytes([self.padding_len]))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 section 4: with RTP and RTCP on one port, a second octet 192..223 means RTCP.

    (RTP payload types 64..95 would collide with that range and must not be used on a muxed port.)
    """
    return len(data) >= 2 and 192 <= data[1] <= 223


def parse_datagram(data: bytes) -> RtpPacket | RtcpPacket | Dropped:
    """Parse one UDP payload. Never raises; malformed input becomes :class:`Dropped`."""
    if len(data) < 2:
        return Dropped(DropReason.SHORT, f"{len(data)} octets")
    version = data[0] >> 6
    if version != RTP_VERSION:
        return Dropped(DropReason.BAD_VERSION, f"version {version}")
    if is_rtcp(data):
        return _parse_rtcp(data)
    if len(data) < RTP_HEADER_LEN:
        return Dropped(DropReason.SHORT, f"{len(data)} octets < 12")
    first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if not first & 0x3F:
        # The common case (no padding, extension or CSRCs): one slice, no further checks.
        return RtpPacket(second & 0x7F, sequence, timestamp, ssrc, bytes(data[RTP_HEADER_LEN:]), bool(second & 0x80))
    csrc_count = first & 0x0F
    offset = RTP_HEADER_LEN + 4 * csrc_count
    if len(data) < offset:
        return Dropped(DropReason.SHORT, f"CSRC list of {csrc_count} runs past the end")
    csrcs = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_LEN) if csrc_count else ()
    extension: RtpExtension | None = None
    if first & 0x10:
        if len(data) < offset + 4:
            return Dropped(DropReason.TRUNCATED_EXTENSION, "no room for the extension header")
        profile, words = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + 4 * words
        if len(data) < end:
            return Dropped(DropReason.TRUNCATED_EXTENSION, f"extension of {words} words runs past the end")
        extension = RtpExtension(profile, bytes(data[offset + 4 : end]))
        offset = end
    payload_end = len(data)
    padding_len = 0
    if first & 0x20:
        padding_len = data[-1]
        # RFC 3550 section 5.1: the count includes itself, so it is at least 1 and fits the payload.
        if padding_len == 0 or payload_end - padding_len < offset:
            return Dropped(DropReason.BAD_PADDING, f"padding count {padding_len}")
        payload_end -= padding_len
    return RtpPacket(
        payload_type=second & 0x7F,
        sequence=sequence,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=bytes(data[offset:payload_end]),
        marker=bool(second & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
        padding_len=padding_len,
    )


def _parse_rtcp(data: bytes) -> RtcpPacket | Dropped:
    # RFC 3550 section 6.4.1: the length field is the packet length in 32-bit words minus one.
    if len(data) < 4:
        return Dropped(DropReason.BAD_RTCP, f"{len(data)} octets")
    length_octets = (struct.unpack_from("!H", data, 2)[0] + 1) * 4
    if length_octets > len(data):
        return Dropped(DropReason.BAD_RTCP, f"length {length_octets} > {len(data)} octets")
    return RtcpPacket(packet_type=data[1], length_octets=length_octets)


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b between 16-bit sequence numbers, in -32768..32767 (wrap-aware)."""
    return ((a - b + 0x8000) & 0xFFFF) - 0x8000


def ts_diff(a: int, b: int) -> int:
    """Signed distance a - b between 32-bit RTP timestamps (wrap-aware)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000
