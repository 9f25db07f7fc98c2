"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for G.711 audio and telephone-event.

We speak PCMU (payload type 0), PCMA (8) and telephone-event/8000 (RFC 4733; payload type 101 in
our offers, the peer's number in our answers). Hold follows RFC 3264 section 8.4: a stream offered
``sendonly`` or ``inactive``, or with connection address 0.0.0.0 (the RFC 2543 way), is on hold;
:func:`is_hold` says so, and :func:`build_answer` answers ``recvonly`` to ``sendonly`` and
``inactive`` to ``inactive`` (section 6.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from ivr.errors import RemoteProtocolError


class SdpError(RemoteProtocolError):
    """An unparseable SDP body (answered 400) or an unacceptable offer (488)."""


class NoCommonCodecError(SdpError):
    """RFC 3264 section 6: nothing we can accept in the offer -> 488 Not Acceptable Here."""

    def __init__(self, message: str = "no common codec") -> None:
        super().__init__(message, status=488, reason="Not Acceptable Here")


class Direction(enum.StrEnum):
    """Stream direction attributes (RFC 4566 section 6, RFC 3264 section 5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def reversed(self) -> Direction:
        """The direction to answer with (RFC 3264 section 6.1)."""
        return {
            Direction.SENDONLY: Direction.RECVONLY,
            Direction.RECVONLY: Direction.SENDONLY,
        }.get(self, self)


_DIRECTIONS = {d.value for d in Direction}


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format: number, encoding name, clock rate (``a=rtpmap``), optional fmtp."""

    payload_type: int
    name: str
    clock_rate: int = 8000
    fmtp: str | None = None

    def same_format(self, other: Codec) -> bool:
        return self.name.lower() == other.name.lower() and self.clock_rate == other.clock_rate


PCMU = Codec(0, "PCMU")
PCMA = Codec(8, "PCMA")
TELEPHONE_EVENT = Codec(101, "telephone-event", 8000, "0-16")
DEFAULT_CODECS: tuple[Codec, ...] = (PCMU, PCMA)

# RFC 3551 table 4: static payload types we may see without an rtpmap.
_STATIC = {
    0: PCMU,
    8: PCMA,
    3: Codec(3, "GSM"),
    4: Codec(4, "G723"),
    9: Codec(9, "G722"),
    18: Codec(18, "G729"),
}


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=`` (RFC 4566 section 5.2)."""

    username: str = "-"
    session_id: int = 0
    session_version: int = 0
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    def __str__(self) -> str:
        return f"{self.username} {self.session_id} {self.session_version} {self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (RFC 4566 section 5.14) with its attributes."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None  # address of c= (without "IN IP4")
    attributes: tuple[tuple[str, str | None], ...] = ()
    other_lines: tuple[str, ...] = ()  # i=, b=, k= kept verbatim ("x=value")

    def attribute(self, name: str) -> str | None:
        for k, v in self.attributes:
            if k == name:
                return "" if v is None else v
        return None

    @property
    def direction(self) -> Direction | None:
        """The direction attribute of this stream, if any (session level is in SessionDescription)."""
        for k, _ in self.attributes:
            if k in _DIRECTIONS:
                return Direction(k)
        return None

    @property
    def codecs(self) -> list[Codec]:
        """Formats resolved through rtpmap/fmtp (static types without rtpmap per RFC 3551)."""
        rtpmap: dict[str, tuple[str, int]] = {}
        fmtp: dict[str, str] = {}
        for k, v in self.attributes:
            if k == "rtpmap" and v:
                pt, _, enc = v.partition(" ")
                enc_name, _, rest = enc.partition("/")
                rate = rest.partition("/")[0]
                if rate.isdigit():
                    rtpmap[pt.strip()] = (enc_name.strip(), int(rate))
            elif k == "fmtp" and v:
                pt, _, params = v.partition(" ")
                fmtp[pt.strip()] = params.strip()
        out: list[Codec] = []
        for f in self.formats:
            if not f.isdigit() or int(f) > 127:
                continue
            if f in rtpmap:
                enc_name, clock = rtpmap[f]
                out.append(Codec(int(f), enc_name, clock, fmtp.get(f)))
            elif int(f) in _STATIC:
                out.append(replace(_STATIC[int(f)], fmtp=fmtp.get(f)))
        return out


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body (RFC 4566)."""

    origin: Origin = field(default_factory=Origin)
    session_name: str = "-"
    connection: str | None = None
    media: tuple[MediaDescription, ...] = ()
    attributes: tuple[tuple[str, str | None], ...] = ()
    times: tuple[str, ...] = ("0 0",)
    other_lines: tuple[str, ...] = ()  # session-level i=, u=, e=, p=, b=, z=, k= verbatim

    @property
    def direction(self) -> Direction | None:
        for k, _ in self.attributes:
            if k in _DIRECTIONS:
                return Direction(k)
        return None

    def audio(self) -> MediaDescription | None:
        """The first audio stream with a non-zero port (port 0 = rejected stream, RFC 3264 section 6)."""
        for m in self.media:
            if m.media == "audio" and m.port != 0:
                return m
        return None

    def stream_direction(self, m: MediaDescription) -> Direction:
        """Effective direction: media level, else session level, else sendrecv (RFC 4566 section 6)."""
        return m.direction or self.direction or Direction.SENDRECV

    def stream_address(self, m: MediaDescription) -> str | None:
        return m.connection or self.connection

    def to_bytes(self) -> bytes:
        return serialize_sdp(self)


def _conn_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value!r}")
    return parts[2].split("/")[0]  # multicast TTL/count suffix is not for us


def _attr(value: str) -> tuple[str, str | None]:
    name, colon, val = value.partition(":")
    return (name.strip(), val if colon else None)


@dataclass(slots=True)
class _MediaBuilder:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def build(self) -> MediaDescription:
        return MediaDescription(
            self.media,
            self.port,
            self.proto,
            tuple(self.formats),
            self.connection,
            tuple(self.attributes),
            tuple(self.other),
        )


def parse_sdp(data: bytes | str) -> SessionDescription:
    """Parse an SDP body. Raises :class:`SdpError` (status 400) if it is not valid SDP."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise SdpError("SDP is not UTF-8") from exc
    lines = [ln for ln in text.replace("\r\n", "\n").split("\n") if ln.strip()]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError("SDP must start with v=0")
    origin: Origin | None = None
    session_name = "-"
    connection: str | None = None
    sess_attrs: list[tuple[str, str | None]] = []
    times: list[str] = []
    sess_other: list[str] = []
    media: list[MediaDescription] = []
    cur: _MediaBuilder | None = None

    def flush() -> None:
        if cur is not None:
            media.append(cur.build())

    for raw in lines[1:]:
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line[:40]!r}")
        kind, value = line[0], line[2:]
        if kind == "m":
            flush()
            parts = value.split()
            if len(parts) < 4 or not parts[1].split("/")[0].isdigit():
                raise SdpError(f"bad m= line {value!r}")
            port = int(parts[1].split("/")[0])
            if port > 65535:
                raise SdpError("bad media port")
            cur = _MediaBuilder(parts[0], port, parts[2], parts[3:])
        elif cur is not None:
            if kind == "c":
                cur.connection = _conn_address(value)
            elif kind == "a":
                cur.attributes.append(_attr(value))
            else:
                cur.other.append(line)
        elif kind == "o":
            parts = value.split()
            if len(parts) != 6 or not parts[1].isdigit() or not parts[2].isdigit():
                raise SdpError(f"bad o= line {value!r}")
            origin = Origin(parts[0], int(parts[1]), int(parts[2]), parts[3], parts[4], parts[5])
        elif kind == "s":
            session_name = value
        elif kind == "c":
            connection = _conn_address(value)
        elif kind == "t":
            times.append(value)
        elif kind == "a":
            sess_attrs.append(_attr(value))
        else:
            sess_other.append(line)
    flush()
    if origin is None:
        raise SdpError("SDP without o= line")
    for m in media:
        # RFC 4566 section 5.7: every active stream needs a c= line, at media or session level
        if m.port != 0 and m.connection is None and connection is None:
            raise SdpError(f"{m.media} stream without a connection address")
    return SessionDescription(
        origin=origin,
        session_name=session_name,
        connection=connection,
        media=tuple(media),
        attributes=tuple(sess_attrs),
        times=tuple(times) or ("0 0",),
        other_lines=tuple(sess_other),
    )


def _addrtype(address: str) -> str:
    return "IP6" if ":" in address else "IP4"


def serialize_sdp(sdp: SessionDescription) -> bytes:
    """The SDP text in RFC 4566 section 5 order, CRLF line ends."""
    out = ["v=0", f"o={sdp.origin}", f"s={sdp.session_name or '-'}"]
    out += [ln for ln in sdp.other_lines if ln[0] in "iuep"]
    if sdp.connection:
        out.append(f"c=IN {_addrtype(sdp.connection)} {sdp.connection}")
    out += [ln for ln in sdp.other_lines if ln[0] == "b"]
    out += [f"t={t}" for t in sdp.times]
    out += [ln for ln in sdp.other_lines if ln[0] not in "iuepb"]
    out += [f"a={k}:{v}" if v is not None else f"a={k}" for k, v in sdp.attributes]
    for m in sdp.media:
        out.append(f"m={m.media} {m.port} {m.proto} {' '.join(m.formats)}")
        out += [ln for ln in m.other_lines if ln[0] == "i"]
        if m.connection:
            out.append(f"c=IN {_addrtype(m.connection)} {m.connection}")
        out += [ln for ln in m.other_lines if ln[0] != "i"]
        out += [f"a={k}:{v}" if v is not None else f"a={k}" for k, v in m.attributes]
    return ("\r\n".join(out) + "\r\n").encode("utf-8")


# ---------------------------------------------------------------------------------------------
# Offer / answer
# ---------------------------------------------------------------------------------------------


def _audio_attributes(
    codecs: tuple[Codec, ...], dtmf: Codec | None, direction: Direction, ptime_ms: int
) -> tuple[tuple[str, str | None], ...]:
    attrs: list[tuple[str, str | None]] = []
    for c in (*codecs, *((dtmf,) if dtmf else ())):
        attrs.append(("rtpmap", f"{c.payload_type} {c.name}/{c.clock_rate}"))
        if c.fmtp:
            attrs.append(("fmtp", f"{c.payload_type} {c.fmtp}"))
    attrs.append(("ptime", str(ptime_ms)))
    attrs.append((direction.value, None))
    return tuple(attrs)


def build_offer(
    address: str,
    port: int,
    *,
    session_id: int,
    session_version: int = 1,
    codecs: tuple[Codec, ...] = DEFAULT_CODECS,
    dtmf: Codec | None = TELEPHONE_EVENT,
    direction: Direction = Direction.SENDRECV,
    ptime_ms: int = 20,
) -> SessionDescription:
    """An offer (RFC 3264 section 5) for one G.711 audio stream plus telephone-event."""
    formats = tuple(str(c.payload_type) for c in (*codecs, *((dtmf,) if dtmf else ())))
    m = MediaDescription(
        "audio", port, "RTP/AVP", formats, attributes=_audio_attributes(codecs, dtmf, direction, ptime_ms)
    )
    origin = Origin("-", session_id, session_version, "IN", _addrtype(address), address)
    return SessionDescription(origin=origin, session_name="-", connection=address, media=(m,))


@dataclass(frozen=True, slots=True)
class MediaParams:
    """What the RTP layer needs from a negotiation: where to send, with which payload types."""

    remote_address: str
    remote_port: int
    codec: Codec
    dtmf_payload_type: int | None
    direction: Direction  # our direction (sendrecv, sendonly towards a peer on hold, ...)
    on_hold: bool  # the peer put us on hold (RFC 3264 section 8.4)


def is_hold(sdp: SessionDescription) -> bool:
    """RFC 3264 section 8.4: the audio stream is sendonly or inactive, or c= is 0.0.0.0 (RFC 2543)."""
    m = sdp.audio()
    if m is None:
        return False
    if sdp.stream_address(m) in ("0.0.0.0", "::"):
        return True
    return sdp.stream_direction(m) in (Direction.SENDONLY, Direction.INACTIVE)


def build_answer(
    offer: SessionDescription,
    address: str,
    port: int,
    *,
    session_id: int,
    session_version: int = 1,
    codecs: tuple[Codec, ...] = DEFAULT_CODECS,
    accept_dtmf: bool = True,
    ptime_ms: int = 20,
) -> SessionDescription:
    """Our answer to ``offer`` (RFC 3264 section 6).

    Every ``m=`` line gets an answer line, in the same order (section 6): the first audio stream
    we can use is accepted with the offerer's codec preference order restricted to ours and the
    offerer's telephone-event payload type; every other stream is rejected with port 0.
    The direction is the reverse of the offered one (``sendonly`` -> ``recvonly``); a c=0.0.0.0
    hold offer (RFC 2543 style) is answered ``recvonly`` too: we must not send to 0.0.0.0.
    Raises :class:`NoCommonCodecError` if no audio stream has a codec in common.
    """
    answered: list[MediaDescription] = []
    accepted = False
    for m in offer.media:
        chosen: list[Codec] = []
        dtmf: Codec | None = None
        if not accepted and m.media == "audio" and m.port != 0 and m.proto.upper().startswith("RTP/AVP"):
            offered = m.codecs
            chosen = [c for c in offered if any(c.same_format(ours) for ours in codecs)]
            if accept_dtmf:
                dtmf = next((c for c in offered if c.name.lower() == "telephone-event" and c.clock_rate == 8000), None)
        if chosen:
            accepted = True
            offered_dir = offer.stream_direction(m)
            if offer.stream_address(m) in ("0.0.0.0", "::") and offered_dir == Direction.SENDRECV:
                offered_dir = Direction.SENDONLY
            chosen_first = tuple(chosen)
            answered.append(
                MediaDescription(
                    "audio",
                    port,
                    m.proto,
                    tuple(str(c.payload_type) for c in (*chosen_first, *((dtmf,) if dtmf else ()))),
                    attributes=_audio_attributes(chosen_first, dtmf, offered_dir.reversed(), ptime_ms),
                )
            )
        else:
            # section 6: a rejected stream keeps its m= line with port 0 and at least one format
            answered.append(MediaDescription(m.media, 0, m.proto, m.formats[:1] or ("0",)))
    if not accepted:
        raise NoCommonCodecError()
    origin = Origin("-", session_id, session_version, "IN", _addrtype(address), address)
    return SessionDescription(origin=origin, session_name="-", connection=address, media=tuple(answered))


def negotiate(local: SessionDescription, remote: SessionDescription) -> MediaParams:
    """The media parameters agreed by ``local`` and ``remote`` (either may be the offer).

    The codec is the first payload type of the *answer* (RFC 3264 section 6.1: the answerer's
    order wins); we take the first codec of ``remote`` that ``local`` also lists.
    Raises :class:`NoCommonCodecError` when there is none.
    """
    lm, rm = local.audio(), remote.audio()
    if lm is None or rm is None:
        raise NoCommonCodecError("no audio stream")
    lcodecs = lm.codecs
    codec = next(
        (c for c in rm.codecs if c.name.lower() != "telephone-event" and any(c.same_format(x) for x in lcodecs)),
        None,
    )
    if codec is None:
        raise NoCommonCodecError()
    has_te = any(c.name.lower() == "telephone-event" for c in lcodecs)
    dtmf = next((c for c in rm.codecs if c.name.lower() == "telephone-event"), None) if has_te else None
    address = remote.stream_address(rm) or ""
    hold = is_hold(remote)
    return MediaParams(
        remote_address=address,
        remote_port=rm.port,
        codec=codec,
        dtmf_payload_type=dtmf.payload_type if dtmf else None,
        direction=local.stream_direction(lm),
        on_hold=hold,
    )


def with_version(sdp: SessionDescription, session_version: int) -> SessionDescription:
    """``sdp`` with a new ``o=`` version (RFC 3264 section 8: bump it on every change)."""
    return replace(sdp, origin=replace(sdp.origin, session_version=session_version))
