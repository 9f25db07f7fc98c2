"""Read (and write) packet captures of SIP and RTP over UDP, and reassemble the calls in them.

Pure Python (``struct``), no libpcap. Reads classic pcap (microsecond and nanosecond, either byte
order) and pcapng (section header, interface description with ``if_tsresol``, enhanced and simple
packet blocks), on the link types a capture of a SIP trunk or of loopback has: Ethernet (1, with
802.1Q tags), BSD null/loopback (0 and 108), Linux cooked SLL (113) and SLL2 (276), raw IP (101,
228, 229). IPv4 (unfragmented, or the first fragment) and IPv6 (without extension headers).

:func:`read_calls` turns the UDP datagrams into calls: SIP messages grouped by Call-ID into legs,
the facility leg (INVITE into the engine, ``X-Inmate-Id``) paired with the called leg the engine
placed for the same number; RTP streams matched to the ports each side's SDP announced; RFC 4733
key events (:class:`ivr.rtp.rfc4733.TelephoneEventReceiver`) and SIP INFO keys; audio decoded with
:mod:`ivr.rtp.g711` and laid out on the call's time line. Each :class:`CapturedCall` has a list of
timestamped :class:`Fact` s (what ``ivr replay capture.pcap`` turns into CallMachine events) and
the PCM each party sent.

:class:`PcapWriter` writes classic pcap on Ethernet, so ``ivr sim run --pcap`` can record what the
simulator saw, and tests can make captures without tcpdump.
"""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from ivr.errors import InputError
from ivr.rtp import g711
from ivr.rtp.packet import RtpPacket, parse_datagram
from ivr.rtp.rfc4733 import KeyStarted, TelephoneEventReceiver
from ivr.sip.message import MalformedMessageError, Request, Response, parse_message
from ivr.sip.sdp import SdpError, SessionDescription, is_hold, parse_sdp
from ivr.sip.useragent import parse_dtmf_info
from ivr.types import JsonValue

Addr = tuple[str, int]
SAMPLE_RATE_HZ = 8000

# Link types (https://www.tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A


class CaptureError(InputError):
    """The file is not a capture we can read (exit 2, with the file name)."""


@dataclass(frozen=True, slots=True)
class Datagram:
    """One UDP datagram of a capture."""

    ts: float  # seconds since the epoch, as captured
    src: Addr
    dst: Addr
    payload: bytes


# ------------------------------------------------------------------------------ frames


def _ip(data: bytes) -> tuple[str, str, int, bytes] | None:
    """(src, dst, protocol, payload) of an IPv4/IPv6 packet, None if not usable."""
    if not data:
        return None
    version = data[0] >> 4
    if version == 4:
        if len(data) < 20:
            return None
        ihl = (data[0] & 0x0F) * 4
        total = struct.unpack_from("!H", data, 2)[0]
        flags_frag = struct.unpack_from("!H", data, 6)[0]
        if flags_frag & 0x1FFF:
            return None  # a later fragment: its UDP header is in the first one
        proto = data[9]
        src = str(ipaddress.IPv4Address(data[12:16]))
        dst = str(ipaddress.IPv4Address(data[16:20]))
        end = total if 0 < total <= len(data) else len(data)
        return src, dst, proto, data[ihl:end]
    if version == 6:
        if len(data) < 40:
            return None
        plen = struct.unpack_from("!H", data, 4)[0]
        return (
            str(ipaddress.IPv6Address(data[8:24])),
            str(ipaddress.IPv6Address(data[24:40])),
            data[6],
            data[40 : 40 + plen],
        )
    return None


def _network_layer(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a link-layer frame."""
    if linktype == LINKTYPE_ETHERNET:
        off, ethertype = 12, 0
        if len(frame) < 14:
            return None
        ethertype = struct.unpack_from("!H", frame, off)[0]
        off = 14
        while ethertype in (0x8100, 0x88A8) and len(frame) >= off + 4:  # 802.1Q / QinQ tags
            ethertype = struct.unpack_from("!H", frame, off + 2)[0]
            off += 4
        return frame[off:] if ethertype in (0x0800, 0x86DD) else None
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        # 4-byte address family: host order for NULL, network order for LOOP. 2 = AF_INET;
        # AF_INET6 is 10, 24, 28 or 30 depending on the OS. Either way the IP version nibble tells.
        return frame[4:] if len(frame) > 4 else None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        proto = struct.unpack_from("!H", frame, 14)[0]
        return frame[16:] if proto in (0x0800, 0x86DD) else None
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        proto = struct.unpack_from("!H", frame, 0)[0]
        return frame[20:] if proto in (0x0800, 0x86DD) else None
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        return frame
    return None


def _udp(linktype: int, ts: float, frame: bytes) -> Datagram | None:
    packet = _network_layer(linktype, frame)
    if packet is None:
        return None
    ip = _ip(packet)
    if ip is None or ip[2] != 17 or len(ip[3]) < 8:
        return None
    src, dst, _, udp = ip
    sport, dport, length = struct.unpack_from("!HHH", udp, 0)
    payload = udp[8:length] if 8 <= length <= len(udp) else udp[8:]
    return Datagram(ts, (src, sport), (dst, dport), bytes(payload))


# ------------------------------------------------------------------------------ files


def _read_pcap(f: BinaryIO, head: bytes, name: str) -> Iterator[Datagram]:
    magic_le = struct.unpack("<I", head[:4])[0]
    magic_be = struct.unpack(">I", head[:4])[0]
    if magic_le in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
        endian, magic = "<", magic_le
    else:
        endian, magic = ">", magic_be
    scale = 1e-9 if magic == _PCAP_MAGIC_NS else 1e-6
    rest = f.read(20)
    if len(rest) < 20:
        raise CaptureError(f"{name}: truncated pcap header")
    linktype = struct.unpack(endian + "I", rest[16:20])[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    while True:
        hdr = f.read(16)
        if len(hdr) < 16:
            return
        sec, frac, caplen, _origlen = record.unpack(hdr)
        frame = f.read(caplen)
        if len(frame) < caplen:
            return  # a capture cut short: keep what we have
        d = _udp(linktype, sec + frac * scale, frame)
        if d is not None:
            yield d


def _read_pcapng(f: BinaryIO, head: bytes, name: str) -> Iterator[Datagram]:
    data = head + f.read()
    pos = 0
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    while pos + 12 <= len(data):
        btype_le = struct.unpack_from("<I", data, pos)[0]
        if btype_le == _PCAPNG_SHB:
            bom = data[pos + 8 : pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise CaptureError(f"{name}: bad pcapng byte-order magic")
            interfaces = []  # a new section restarts interface numbering
        btype, blen = struct.unpack_from(endian + "II", data, pos)
        if blen < 12 or pos + blen > len(data):
            return  # truncated
        body = data[pos + 8 : pos + blen - 4]
        if btype == 1:  # interface description
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            tsres = 1e-6
            opos = 8
            while opos + 4 <= len(body):
                code, olen = struct.unpack_from(endian + "HH", body, opos)
                if code == 0:
                    break
                if code == 9 and olen >= 1:  # if_tsresol
                    v = body[opos + 4]
                    tsres = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0**-v
                opos += 4 + olen + (-olen % 4)
            interfaces.append((linktype, tsres))
        elif btype == 6 and len(body) >= 20:  # enhanced packet
            iface, ts_hi, ts_lo, caplen, _orig = struct.unpack_from(endian + "IIIII", body, 0)
            if iface < len(interfaces):
                linktype, tsres = interfaces[iface]
                d = _udp(linktype, ((ts_hi << 32) | ts_lo) * tsres, body[20 : 20 + caplen])
                if d is not None:
                    yield d
        elif btype == 3 and interfaces and len(body) >= 4:  # simple packet: no timestamp
            linktype, _ = interfaces[0]
            d = _udp(linktype, 0.0, body[4:])
            if d is not None:
                yield d
        elif btype == 2 and len(body) >= 20:  # obsolete packet block
            iface = struct.unpack_from(endian + "H", body, 0)[0]
            ts_hi, ts_lo, caplen = struct.unpack_from(endian + "III", body, 4)
            if iface < len(interfaces):
                linktype, tsres = interfaces[iface]
                d = _udp(linktype, ((ts_hi << 32) | ts_lo) * tsres, body[20 : 20 + caplen])
                if d is not None:
                    yield d
        pos += blen


def read_datagrams(path: str | Path) -> list[Datagram]:
    """Every UDP datagram of a pcap or pcapng file, in file order."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise CaptureError(f"{p}: not a capture (too short)")
            magic = struct.unpack("<I", head)[0]
            if magic == _PCAPNG_SHB:
                return list(_read_pcapng(f, head, str(p)))
            if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS) or struct.unpack(">I", head)[0] in (
                _PCAP_MAGIC_US,
                _PCAP_MAGIC_NS,
            ):
                return list(_read_pcap(f, head, str(p)))
            raise CaptureError(f"{p}: not a pcap or pcapng file (magic {head.hex()})")
    except OSError as exc:
        raise CaptureError(f"{p}: cannot read: {exc.strerror or exc}") from None


class PcapWriter:
    """Classic pcap (microseconds) on Ethernet, IPv4/UDP; usable as a tap: ``writer(data, src, dst)``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._f = self.path.open("wb")
        self._f.write(struct.pack("<IHHiIII", _PCAP_MAGIC_US, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET))
        self._ip_id = 0
        self.count = 0

    def __call__(self, payload: bytes, src: Addr, dst: Addr) -> None:
        self.write(payload, src, dst)

    def write(self, payload: bytes, src: Addr, dst: Addr, ts: float | None = None) -> None:
        if self._f.closed:
            return
        ts = time.time() if ts is None else ts
        udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload  # checksum 0: none (IPv4)
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        header = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            self._ip_id,
            0x4000,
            64,
            17,
            0,
            ipaddress.IPv4Address(src[0]).packed,
            ipaddress.IPv4Address(dst[0]).packed,
        )
        checksum = _ip_checksum(header)
        header = header[:10] + struct.pack("!H", checksum) + header[12:]
        frame = b"\x00" * 12 + b"\x08\x00" + header + udp
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self._f.write(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
        self.count += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


def _ip_checksum(header: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# ------------------------------------------------------------------------------ calls


@dataclass(frozen=True, slots=True)
class Fact:
    """A timestamped fact of a call, seconds since the facility leg's INVITE."""

    at_s: float
    leg: str  # "facility" | "called"
    kind: str  # invite, ringing, answered, failed, cancel, ack, key, hold, resume, refer, bye, bye_ok
    detail: dict[str, JsonValue] = field(default_factory=dict)

    def as_dict(self) -> dict[str, JsonValue]:
        return {"at_s": round(self.at_s, 6), "leg": self.leg, "kind": self.kind, **self.detail}


@dataclass(slots=True)
class SipLeg:
    """One SIP dialog (one Call-ID) seen in the capture."""

    call_id: str
    invite_at: float
    caller: Addr  # who sent the INVITE
    callee: Addr  # where it went
    request_uri: str
    number: str
    inmate_id: str | None
    messages: list[tuple[float, Addr, Addr, Request | Response]] = field(default_factory=list)
    caller_sdps: list[SessionDescription] = field(default_factory=list)
    callee_sdps: list[SessionDescription] = field(default_factory=list)
    ended_at: float | None = None
    role: str = ""  # facility | called (set when paired)


@dataclass(slots=True)
class CapturedCall:
    """A facility leg and the called leg the engine placed for it (None if it never did)."""

    facility: SipLeg
    called: SipLeg | None
    facts: list[Fact]
    facility_pcm: npt.NDArray[np.int16]  # what the facility phone sent to the engine
    called_pcm: npt.NDArray[np.int16]  # what the called party sent to the engine
    to_facility_pcm: npt.NDArray[np.int16]  # what the engine sent to the facility phone
    to_called_pcm: npt.NDArray[np.int16]  # what the engine sent to the called party

    @property
    def t0(self) -> float:
        return self.facility.invite_at

    def summary(self) -> dict[str, JsonValue]:
        return {
            "facility_call_id": self.facility.call_id,
            "called_call_id": self.called.call_id if self.called else None,
            "number": self.facility.number,
            "inmate_id": self.facility.inmate_id,
            "facility_audio_s": round(len(self.facility_pcm) / SAMPLE_RATE_HZ, 3),
            "called_audio_s": round(len(self.called_pcm) / SAMPLE_RATE_HZ, 3),
            "facts": [f.as_dict() for f in self.facts],
        }


def _user(uri: str) -> str:
    rest = uri.partition(":")[2]
    user = rest.partition("@")[0] if "@" in rest else ""
    return user.partition(";")[0]


def _sdp(msg: Request | Response) -> SessionDescription | None:
    if not msg.body or msg.content_type != "application/sdp":
        return None
    try:
        return parse_sdp(msg.body)
    except SdpError:
        return None


def _media_endpoint(sdp: SessionDescription) -> Addr | None:
    m = sdp.audio()
    if m is None:
        return None
    host = sdp.stream_address(m)
    if not host or host in ("0.0.0.0", "::"):
        return None
    return host, m.port


def _dtmf_pt(sdp: SessionDescription | None) -> int | None:
    if sdp is None:
        return None
    m = sdp.audio()
    if m is None:
        return None
    return next((c.payload_type for c in m.codecs if c.name.lower() == "telephone-event"), None)


def _sip_legs(datagrams: list[Datagram]) -> tuple[dict[str, SipLeg], list[Datagram]]:
    legs: dict[str, SipLeg] = {}
    others: list[Datagram] = []
    seen: set[tuple[object, ...]] = set()
    for d in datagrams:
        head = d.payload[:8]
        if not (head.startswith(b"SIP/2.0") or head[:1].isalpha()):
            others.append(d)
            continue
        try:
            msg = parse_message(d.payload)
        except MalformedMessageError:
            others.append(d)
            continue
        call_id = msg.call_id
        leg = legs.get(call_id)
        if leg is None:
            if not (isinstance(msg, Request) and msg.method == "INVITE"):
                continue  # REGISTER, OPTIONS, or the middle of a call the capture missed
            leg = SipLeg(
                call_id=call_id,
                invite_at=d.ts,
                caller=d.src,
                callee=d.dst,
                request_uri=str(msg.uri),
                number=_user(str(msg.uri)),
                inmate_id=(msg.headers.get("X-Inmate-Id") or "").strip() or None,
            )
            legs[call_id] = leg
        sig = _signature(msg)
        if sig in seen:
            continue  # a retransmission, or the same message again on the far side of a proxy
        seen.add(sig)
        leg.messages.append((d.ts, d.src, d.dst, msg))
    return legs, others


def _signature(msg: Request | Response) -> tuple[object, ...]:
    """What identifies one message whatever hop it was captured on: the originator's Via branch
    (the bottom Via: proxies add theirs on top), the CSeq, and the method or status."""
    try:
        vias = msg.vias
        origin = vias[-1].branch if vias else None
        cseq = str(msg.cseq)
    except ValueError:
        return (id(msg),)
    if isinstance(msg, Request):
        return ("request", msg.call_id, msg.method, cseq, origin)
    return ("response", msg.call_id, msg.status, cseq, origin, msg.to.tag)


def _from_caller(leg: SipLeg, msg: Request | Response, src: Addr, dst: Addr) -> bool:
    """Did the INVITE's sender send this message? Requests: by From tag; responses: the other side."""
    first = leg.messages[0][3]
    caller_tag = first.from_.tag if isinstance(first, Request) else None
    try:
        tag = msg.from_.tag
    except ValueError:
        tag = None
    if isinstance(msg, Request):
        return tag == caller_tag
    return tag != caller_tag  # a response to a request from the callee travels to it


def _pair(legs: dict[str, SipLeg]) -> list[tuple[SipLeg, SipLeg | None]]:
    """Facility legs and the called leg the engine placed for each.

    A called leg is an INVITE *sent by* the address (or host) a facility INVITE was *sent to*, for
    the same number, after it and before that leg ended. A leg with X-Inmate-Id, or whose INVITE
    no other leg could have caused, is a facility leg.
    """
    ordered = sorted(legs.values(), key=lambda leg: leg.invite_at)
    for leg in ordered:
        leg.ended_at = max(ts for ts, _, _, _ in leg.messages)
    used: set[str] = set()
    pairs: list[tuple[SipLeg, SipLeg | None]] = []
    engine_addrs = {leg.callee for leg in ordered if leg.inmate_id}
    for leg in ordered:
        if leg.call_id in used:
            continue
        is_outbound = leg.caller in engine_addrs or any(
            o.callee == leg.caller and o.invite_at < leg.invite_at and o.number == leg.number
            for o in ordered
            if o is not leg
        )
        if is_outbound and not leg.inmate_id:
            continue  # a called leg: picked up by its facility leg below
        leg.role = "facility"
        used.add(leg.call_id)
        called: SipLeg | None = None
        for cand in ordered:
            if cand.call_id in used or cand.invite_at < leg.invite_at or cand.number != leg.number:
                continue
            if cand.caller != leg.callee and cand.caller[0] != leg.callee[0]:
                continue
            if leg.ended_at is not None and cand.invite_at > leg.ended_at:
                continue
            called = cand
            break
        if called is not None:
            called.role = "called"
            used.add(called.call_id)
        pairs.append((leg, called))
    return pairs


def _leg_facts(leg: SipLeg, t0: float) -> list[Fact]:
    facts: list[Fact] = []
    party = leg.role  # the non-engine side of this leg
    on_hold = False
    for ts, src, dst, msg in leg.messages:
        at = ts - t0
        by_caller = _from_caller(leg, msg, src, dst)
        # on the facility leg the INVITE's sender is the facility phone; on the called leg, the engine
        who = (party if by_caller else "engine") if leg.role == "facility" else ("engine" if by_caller else party)
        if isinstance(msg, Request):
            method = msg.method
            in_dialog = msg.to.tag is not None
            if method == "INVITE" and not in_dialog:
                if any(f.kind == "invite" for f in facts):
                    continue  # a retransmission
                detail: dict[str, JsonValue] = {"number": leg.number, "from": f"{src[0]}:{src[1]}"}
                if leg.inmate_id:
                    detail["inmate_id"] = leg.inmate_id
                facts.append(Fact(at, leg.role, "invite", detail))
            elif method == "INVITE":
                sdp = _sdp(msg)
                hold = sdp is not None and is_hold(sdp)
                if hold and not on_hold:
                    m = sdp.audio() if sdp else None
                    mode = (
                        "0.0.0.0"
                        if sdp and m and sdp.stream_address(m) in ("0.0.0.0", "::")
                        else (sdp.stream_direction(m).value if sdp and m else "?")
                    )
                    facts.append(Fact(at, leg.role, "hold", {"by": who, "mode": mode}))
                elif on_hold and not hold and sdp is not None:
                    facts.append(Fact(at, leg.role, "resume", {"by": who}))
                on_hold = hold if sdp is not None else on_hold
            elif method == "REFER":
                facts.append(Fact(at, leg.role, "refer", {"by": who, "refer_to": msg.headers.get("Refer-To") or ""}))
            elif method == "INFO" and msg.content_type in ("application/dtmf-relay", "application/dtmf"):
                try:
                    key, duration_ms = parse_dtmf_info(msg.body, msg.content_type)
                except ValueError:
                    continue
                facts.append(
                    Fact(at, leg.role, "key", {"key": key, "source": "info", "by": who, "duration_ms": duration_ms})
                )
            elif method == "BYE":
                facts.append(Fact(at, leg.role, "bye", {"by": who}))
            elif method == "CANCEL":
                facts.append(Fact(at, leg.role, "cancel", {"by": who}))
        else:
            if msg.cseq.method == "INVITE" and not _is_reinvite_response(leg, msg):
                if 180 <= msg.status < 200 and not any(f.kind == "ringing" for f in facts):
                    facts.append(Fact(at, leg.role, "ringing", {"status": msg.status}))
                elif 200 <= msg.status < 300 and not any(f.kind == "answered" for f in facts):
                    facts.append(Fact(at, leg.role, "answered", {"by": who}))
                elif msg.status >= 300 and not any(f.kind == "failed" for f in facts):
                    facts.append(Fact(at, leg.role, "failed", {"status": msg.status, "reason": msg.reason}))
    return facts


def _is_reinvite_response(leg: SipLeg, resp: Response) -> bool:
    first = leg.messages[0][3]
    return isinstance(first, Request) and resp.cseq.seq != first.cseq.seq


@dataclass(slots=True)
class _Stream:
    packets: list[tuple[float, RtpPacket]] = field(default_factory=list)


def _collect_sdps(leg: SipLeg) -> None:
    for _ts, src, dst, msg in leg.messages:
        sdp = _sdp(msg)
        if sdp is None:
            continue
        if _from_caller(leg, msg, src, dst):
            leg.caller_sdps.append(sdp)
        else:
            leg.callee_sdps.append(sdp)


def _endpoints(sdps: list[SessionDescription]) -> set[Addr]:
    return {e for e in (_media_endpoint(s) for s in sdps) if e is not None}


def _pcm(packets: list[tuple[float, RtpPacket]], t0: float, dtmf_pt: int | None) -> npt.NDArray[np.int16]:
    """Decode a direction's G.711 packets onto a time line from ``t0`` (8 kHz): each SSRC's RTP
    timestamps place its samples, anchored at the arrival of its first packet."""
    if not packets:
        return np.zeros(0, dtype=np.int16)
    anchors: dict[int, tuple[int, int]] = {}  # ssrc -> (first rtp timestamp, sample offset)
    pieces: list[tuple[int, npt.NDArray[np.int16]]] = []
    for ts, p in packets:
        codec = g711.Codec.from_payload_type(p.payload_type)
        if codec is None or p.payload_type == dtmf_pt:
            continue
        if p.ssrc not in anchors:
            anchors[p.ssrc] = (p.timestamp, max(0, round((ts - t0) * SAMPLE_RATE_HZ)))
        first_ts, offset = anchors[p.ssrc]
        pos = offset + ((p.timestamp - first_ts) % 2**32)
        if pos > 6 * 3600 * SAMPLE_RATE_HZ:
            continue  # a wrapped or bogus timestamp
        pieces.append((pos, codec.decode(p.payload)))
    if not pieces:
        return np.zeros(0, dtype=np.int16)
    end = max(pos + len(x) for pos, x in pieces)
    out = np.zeros(end, dtype=np.int16)
    for pos, x in pieces:
        out[pos : pos + len(x)] = x
    return out


def _rfc4733_facts(
    packets: list[tuple[float, RtpPacket]], dtmf_pt: int | None, t0: float, leg: str, by: str
) -> list[Fact]:
    if dtmf_pt is None:
        return []
    rx = TelephoneEventReceiver()
    facts: list[Fact] = []
    for ts, p in packets:
        if p.payload_type != dtmf_pt:
            continue
        for ev in rx.receive(p, ts):
            if isinstance(ev, KeyStarted):
                facts.append(Fact(ts - t0, leg, "key", {"key": ev.key, "source": "rfc4733", "by": by}))
    return facts


def read_calls(path: str | Path) -> list[CapturedCall]:
    """The calls in a capture (see the module docstring), in order of their first INVITE."""
    datagrams = read_datagrams(path)
    legs, others = _sip_legs(datagrams)
    pairs = _pair(legs)
    rtp: list[tuple[Datagram, RtpPacket]] = []
    for d in others:
        parsed = parse_datagram(d.payload)
        if isinstance(parsed, RtpPacket):
            rtp.append((d, parsed))
    calls: list[CapturedCall] = []
    for facility, called in pairs:
        t0 = facility.invite_at
        facts = _leg_facts(facility, t0)
        _collect_sdps(facility)
        pcms: dict[str, npt.NDArray[np.int16]] = {}
        # facility leg: the INVITE's sender (caller) is the facility phone
        legs_media = [("facility", facility, True)]
        if called is not None:
            facts += _leg_facts(called, t0)
            _collect_sdps(called)
            legs_media.append(("called", called, False))
        for role, leg, party_is_caller in legs_media:
            party_sdps = leg.caller_sdps if party_is_caller else leg.callee_sdps
            engine_sdps = leg.callee_sdps if party_is_caller else leg.caller_sdps
            party_eps, engine_eps = _endpoints(party_sdps), _endpoints(engine_sdps)
            end = (leg.ended_at or t0) + 1.0
            from_party = [(d.ts, p) for d, p in rtp if d.dst in engine_eps and leg.invite_at <= d.ts <= end]
            to_party = [(d.ts, p) for d, p in rtp if d.dst in party_eps and leg.invite_at <= d.ts <= end]
            party_pt = _dtmf_pt(party_sdps[0] if party_sdps else None)
            engine_pt = _dtmf_pt(engine_sdps[0] if engine_sdps else None)
            pcms[role] = _pcm(from_party, t0, party_pt)
            pcms["to_" + role] = _pcm(to_party, t0, engine_pt)
            facts += _rfc4733_facts(from_party, party_pt or engine_pt, t0, role, role)
        facts.sort(key=lambda f: (f.at_s, f.leg))
        empty = np.zeros(0, dtype=np.int16)
        calls.append(
            CapturedCall(
                facility=facility,
                called=called,
                facts=facts,
                facility_pcm=pcms.get("facility", empty),
                called_pcm=pcms.get("called", empty),
                to_facility_pcm=pcms.get("to_facility", empty),
                to_called_pcm=pcms.get("to_called", empty),
            )
        )
    return calls
