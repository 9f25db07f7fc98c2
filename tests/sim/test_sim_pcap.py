"""Captures (sim/pcap.py): pcap and pcapng on every supported link type, and the calls rebuilt from a
capture of a simulated exchange (facility leg + called leg through the trunk)."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
from pathlib import Path

import numpy as np
import pytest

from ivr.errors import InputError
from sim.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    PcapWriter,
    read_calls,
    read_datagrams,
)
from sim.phones import Action, CalledBehaviour, CalledPhone, CallerBehaviour, FacilityCaller, KeyMethod, Step
from sim.trunk import SimTrunk
from tests.sim.peer import Peer

SRC = ("127.0.0.1", 40000)
DST = ("127.0.0.2", 5060)


def ipv4_udp(payload: bytes, src: tuple[str, int] = SRC, dst: tuple[str, int] = DST) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    return (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            1,
            0x4000,
            64,
            17,
            0,
            ipaddress.IPv4Address(src[0]).packed,
            ipaddress.IPv4Address(dst[0]).packed,
        )
        + udp
    )


def ipv6_udp(payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 40000, 5060, 8 + len(payload), 0) + payload
    return (
        struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
        + ipaddress.IPv6Address("::1").packed
        + ipaddress.IPv6Address("::1").packed
        + udp
    )


def frame(linktype: int, ip: bytes) -> bytes:
    v6 = ip[0] >> 4 == 6
    proto = 0x86DD if v6 else 0x0800
    if linktype == LINKTYPE_ETHERNET:
        return b"\x00" * 12 + b"\x81\x00\x00\x05" + struct.pack("!H", proto) + ip  # with an 802.1Q tag
    if linktype == LINKTYPE_NULL:
        return struct.pack("<I", 30 if v6 else 2) + ip
    if linktype == LINKTYPE_LOOP:
        return struct.pack("!I", 30 if v6 else 2) + ip
    if linktype == LINKTYPE_LINUX_SLL:
        return struct.pack("!HHH8sH", 0, 772, 0, b"", proto) + ip
    if linktype == LINKTYPE_LINUX_SLL2:
        return struct.pack("!HHIHBB8s", proto, 0, 1, 772, 0, 0, b"") + ip
    return ip


def classic(linktype: int, frames: list[tuple[float, bytes]], *, endian: str = "<", ns: bool = False) -> bytes:
    magic = 0xA1B23C4D if ns else 0xA1B2C3D4
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for ts, f in frames:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if ns else 1e6))
        out += struct.pack(endian + "IIII", sec, frac, len(f), len(f)) + f
    return out


def pcapng(linktype: int, frames: list[tuple[float, bytes]], *, endian: str = "<", tsresol: int = 9) -> bytes:
    def block(btype: int, body: bytes) -> bytes:
        body += b"\x00" * (-len(body) % 4)
        n = 12 + len(body)
        return struct.pack(endian + "II", btype, n) + body + struct.pack(endian + "I", n)

    shb = block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1))
    opt = struct.pack(endian + "HH", 9, 1) + bytes([tsresol]) + b"\x00\x00\x00" + struct.pack(endian + "HH", 0, 0)
    idb = block(1, struct.pack(endian + "HHI", linktype, 0, 65535) + opt)
    out = shb + idb
    for ts, f in frames:
        units = round(ts * 10**tsresol)
        out += block(6, struct.pack(endian + "IIIII", 0, units >> 32, units & 0xFFFFFFFF, len(f), len(f)) + f)
    out += block(3, struct.pack(endian + "I", len(frames[0][1])) + frames[0][1])  # a simple packet block
    return out


LINKTYPES = [
    LINKTYPE_ETHERNET,
    LINKTYPE_NULL,
    LINKTYPE_LOOP,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    LINKTYPE_IPV4,
]


@pytest.mark.parametrize("linktype", LINKTYPES)
@pytest.mark.parametrize(("endian", "ns"), [("<", False), (">", False), ("<", True)])
def test_classic_pcap_on_every_link_type(tmp_path: Path, linktype: int, endian: str, ns: bool) -> None:
    """pcap (us and ns, either byte order) on Ethernet+VLAN, null, loop, SLL, SLL2 and raw IP."""
    path = tmp_path / "c.pcap"
    path.write_bytes(classic(linktype, [(1700000000.25, frame(linktype, ipv4_udp(b"hello")))], endian=endian, ns=ns))
    (d,) = read_datagrams(path)
    assert (d.src, d.dst, d.payload) == (SRC, DST, b"hello")
    assert d.ts == pytest.approx(1700000000.25, abs=1e-6)


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("linktype", [LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL2])
def test_pcapng_with_nanosecond_resolution(tmp_path: Path, endian: str, linktype: int) -> None:
    """pcapng: section header, interface with if_tsresol, enhanced and simple packet blocks."""
    path = tmp_path / "c.pcapng"
    path.write_bytes(pcapng(linktype, [(1700000000.123456789, frame(linktype, ipv4_udp(b"sip")))], endian=endian))
    first, simple = read_datagrams(path)
    assert first.payload == b"sip" and first.ts == pytest.approx(1700000000.123456789, abs=1e-6)
    assert simple.payload == b"sip" and simple.ts == 0.0


def test_ipv6_and_non_udp_and_fragments(tmp_path: Path) -> None:
    """IPv6 UDP is read; TCP and later IPv4 fragments are skipped."""
    tcp = bytearray(ipv4_udp(b"x"))
    tcp[9] = 6
    frag = bytearray(ipv4_udp(b"y"))
    frag[6:8] = struct.pack("!H", 10)  # fragment offset 10
    path = tmp_path / "c.pcap"
    frames = [(1.0, ipv6_udp(b"six")), (2.0, bytes(tcp)), (3.0, bytes(frag)), (4.0, ipv4_udp(b"four"))]
    path.write_bytes(classic(LINKTYPE_RAW, frames))
    got = read_datagrams(path)
    assert [d.payload for d in got] == [b"six", b"four"]
    assert got[0].src == ("::1", 40000)


def test_writer_round_trip(tmp_path: Path) -> None:
    """PcapWriter's files read back datagram for datagram (Ethernet, IPv4, microseconds)."""
    path = tmp_path / "w.pcap"
    writer = PcapWriter(path)
    sent = [
        (bytes([i]) * (i + 1), ("127.0.0.1", 1000 + i), ("127.0.0.1", 2000 + i), 1700000000 + i / 7) for i in range(50)
    ]
    for payload, src, dst, ts in sent:
        writer.write(payload, src, dst, ts)
    writer.close()
    got = read_datagrams(path)
    assert [(d.payload, d.src, d.dst) for d in got] == [(p, s, d) for p, s, d, _ in sent]
    assert [d.ts for d in got] == pytest.approx([t for *_, t in sent], abs=1e-6)


def test_truncated_capture_keeps_what_is_complete(tmp_path: Path) -> None:
    """A capture cut short (tcpdump killed) yields the complete packets before the cut."""
    data = classic(LINKTYPE_RAW, [(1.0, ipv4_udp(b"one")), (2.0, ipv4_udp(b"two"))])
    path = tmp_path / "t.pcap"
    path.write_bytes(data[:-3])
    assert [d.payload for d in read_datagrams(path)] == [b"one"]


def test_not_a_capture_is_an_input_error(tmp_path: Path) -> None:
    """A file that is not pcap/pcapng is an InputError naming it (exit 2)."""
    path = tmp_path / "x.pcap"
    path.write_bytes(b"GIF89a....")
    with pytest.raises(InputError, match="not a pcap or pcapng"):
        read_datagrams(path)
    with pytest.raises(InputError, match="cannot read"):
        read_datagrams(tmp_path / "missing.pcap")


def test_calls_are_rebuilt_from_a_capture_of_a_simulated_exchange(tmp_path: Path) -> None:
    """Facility INVITE with X-Inmate-Id, both 200 OKs, the RFC 4733 and INFO keys, a hold re-INVITE,
    the BYEs with who sent them, and both parties' audio, from a capture of real loopback traffic."""
    path = tmp_path / "exchange.pcap"
    number = "+15125550101"

    async def exchange() -> None:
        writer = PcapWriter(path)
        trunk = await SimTrunk.start(tap=writer)
        called = await CalledPhone.open(
            number,
            CalledBehaviour(
                rings=1,
                ring_interval_s=0.1,
                key_after_s=0.5,
                key_method=KeyMethod.RFC4733,
                steps=(Step(0.3, Action.KEYS, "5"), Step(0.8, Action.HOLD, "sendonly")),
                hangup_after_s=None,
            ),
            seed=4,
            tap=writer,
        )
        trunk.route(number, called.sip_address)
        facility_side, called_side = await Peer().open(), await Peer().open()
        caller = await FacilityCaller.open(
            number,
            CallerBehaviour(inmate_id="A1001", name_clip="name-marcus", name_after_s=0.1, talk=False),
            facility_side.address,
            seed=9,
            tap=writer,
        )
        caller.call()
        await asyncio.wait_for(facility_side.invited.wait(), 5)
        facility_side.answer()
        await asyncio.sleep(0.2)
        called_side.call(trunk.address, number)
        await asyncio.wait_for(called.established.wait(), 5)
        called.info_key("7")
        await asyncio.sleep(2.0)
        called_side.hangup()  # the engine ends the called leg ...
        await asyncio.sleep(0.3)
        facility_side.hangup()  # ... then the facility leg
        await asyncio.wait_for(caller.done.wait(), 5)
        await asyncio.wait_for(called.done.wait(), 5)
        for x in (called, caller, facility_side, called_side):
            x.close()
        trunk.close()
        writer.close()

    asyncio.run(asyncio.wait_for(exchange(), 30))
    (call,) = read_calls(path)
    assert call.facility.inmate_id == "A1001" and call.called is not None
    kinds = [(f.leg, f.kind) for f in call.facts]
    assert kinds[:2] == [("facility", "invite"), ("facility", "answered")]
    for expected in [("called", "invite"), ("called", "ringing"), ("called", "answered"), ("called", "hold")]:
        assert expected in kinds
    keys = [(f.detail["key"], f.detail["source"]) for f in call.facts if f.kind == "key"]
    assert sorted(keys) == [("1", "rfc4733"), ("5", "rfc4733"), ("7", "info")]  # each once, on both hops
    hold = next(f for f in call.facts if f.kind == "hold")
    assert hold.detail == {"by": "called", "mode": "sendonly"}
    byes = [(f.leg, f.detail["by"]) for f in call.facts if f.kind == "bye"]
    assert byes == [("called", "engine"), ("facility", "engine")]
    invite = next(f for f in call.facts if f.kind == "invite" and f.leg == "facility")
    assert invite.detail["inmate_id"] == "A1001" and invite.detail["number"] == number
    # audio: the facility phone said its name; the called phone talked after its key
    assert int(np.abs(call.facility_pcm.astype(int)).max()) > 1000
    assert int(np.abs(call.called_pcm.astype(int)).max()) > 1000
    assert len(call.to_facility_pcm) > 0 and len(call.to_called_pcm) > 0
    assert all(f.at_s >= 0 for f in call.facts)
    summary = call.summary()
    assert summary["facility_call_id"] == call.facility.call_id
