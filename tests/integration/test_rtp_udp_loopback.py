"""Two RTP endpoints on loopback exchange 5 s of paced G.711 audio and RFC 4733 keys."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import numpy as np

from ivr.net.rtp_udp import RtpEndpoint
from ivr.rtp.g711 import Codec
from ivr.rtp.packet import RtpPacket
from ivr.rtp.rfc4733 import KeyEnded, KeyStarted, TelephoneEventReceiver
from ivr.rtp.session import Address, IdlePolicy, RtpReceiver, RtpSender, Verdict

FRAMES = 250  # 5 s of 20 ms frames
EVENT_PT = 101


@dataclass
class Side:
    codec: Codec
    pcm: np.ndarray
    received: list[tuple[RtpPacket, float]] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)
    keys: list[object] = field(default_factory=list)


def tone(freq_hz: float, n: int) -> np.ndarray:
    t = np.arange(n) / 8000
    return (np.sin(2 * np.pi * freq_hz * t) * 12000).astype(np.int16)


def gaps_ms(times: list[float]) -> tuple[float, float]:
    gaps = np.diff(np.array(times)) * 1000
    return float(np.percentile(gaps, 99)), float(gaps.max())


async def exchange() -> tuple[Side, Side, dict[str, object]]:
    a = Side(Codec.PCMU, tone(440, FRAMES * 160))
    b = Side(Codec.PCMA, tone(697, FRAMES * 160))
    rx_a, rx_b = RtpReceiver(0.0), RtpReceiver(0.0)
    events_a = TelephoneEventReceiver()

    def on_a(packet: RtpPacket, source: Address, now: float) -> None:
        if rx_a.receive(packet, source, now) is not Verdict.ACCEPTED:
            return
        if packet.payload_type == EVENT_PT:
            a.keys.extend(events_a.receive(packet, now))
        else:
            a.received.append((packet, now))

    def on_b(packet: RtpPacket, source: Address, now: float) -> None:
        if rx_b.receive(packet, source, now) is Verdict.ACCEPTED:
            b.received.append((packet, now))

    ep_a = await RtpEndpoint.open(on_a)
    ep_b = await RtpEndpoint.open(on_b, port_range=(40000, 40100), rng=random.Random(1))
    rx_a.set_remote(ep_b.local_address)
    rx_b.set_remote(ep_a.local_address)
    try:
        send_a = RtpSender(a.codec, random.Random(1), idle=IdlePolicy.SKIP)
        send_b = RtpSender(b.codec, random.Random(2), idle=IdlePolicy.SKIP)
        send_a.queue_audio(a.pcm)
        send_b.queue_audio(b.pcm, tag="done")
        send_b.send_key("1", duration_ms=100)
        ep_a.start_paced(send_a, ep_b.local_address, on_sent=lambda ps, t: a.sent_at.extend([t] * len(ps)))
        ep_b.start_paced(
            send_b, rx_b.destination or ep_a.local_address, on_sent=lambda ps, t: b.sent_at.extend([t] * len(ps))
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (send_a.queued_frames or send_b.queued_frames or send_b.sending_keys) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # let the last packets and the key timeout arrive
        a.keys.extend(events_a.handle_timer(loop.time() + 1))
        info: dict[str, object] = {
            "b_port": ep_b.local_address[1],
            "finished": send_b.pop_finished(),
            "a_jitter_ms": rx_a.source(send_b.ssrc).jitter_ms if rx_a.source(send_b.ssrc) else None,
        }
    finally:
        ep_a.close()
        ep_b.close()
    return a, b, info


def test_five_seconds_of_paced_audio_each_way_arrive_complete() -> None:
    """Every frame arrives once, in order, bit-exact; the key arrives once; gaps printed as info."""
    a, b, info = asyncio.run(exchange())
    # A sent 250 PCMU frames to B; B sent 250 PCMA frames (+ an RFC 4733 key) to A.
    for receiver, sender_side in ((b, a), (a, b)):
        packets = [p for p, _ in receiver.received]
        assert len(packets) == FRAMES
        assert all(p.payload_type == sender_side.codec.payload_type for p in packets)
        seqs = [p.sequence for p in packets]
        assert seqs == sorted(seqs) and len(set(seqs)) == FRAMES
        payload = b"".join(p.payload for p in packets)
        assert payload == sender_side.codec.encode(sender_side.pcm)
        assert np.array_equal(
            sender_side.codec.decode(payload), sender_side.codec.decode(sender_side.codec.encode(sender_side.pcm))
        )
    assert [type(k) for k in a.keys] == [KeyStarted, KeyEnded]
    ended = a.keys[1]
    assert isinstance(ended, KeyEnded) and ended.key == "1" and ended.duration_ms == 100 and ended.end_seen
    assert info["finished"] == ["done"]
    assert 40000 <= int(info["b_port"]) <= 40100 and int(info["b_port"]) % 2 == 0  # type: ignore[call-overload]
    send_p99, send_max = gaps_ms(a.sent_at)
    recv_p99, recv_max = gaps_ms([t for _, t in b.received])
    print(
        f"\nRTP loopback pacing (info only): send gap p99 {send_p99:.2f} ms max {send_max:.2f} ms; "
        f"receive gap p99 {recv_p99:.2f} ms max {recv_max:.2f} ms; jitter seen by A {info['a_jitter_ms']}"
    )


async def paced_group(streams: int, frames: int) -> tuple[dict[int, list[RtpPacket]], dict[int, bytes], float]:
    from ivr.net.rtp_udp import RtpPacer

    loop = asyncio.get_running_loop()
    received: dict[int, list[RtpPacket]] = {}

    def sink(packet: RtpPacket, source: Address, now: float) -> None:
        received.setdefault(packet.ssrc, []).append(packet)

    sink_ep = await RtpEndpoint.open(sink)
    pacer = RtpPacer(loop)
    endpoints = []
    expected: dict[int, bytes] = {}
    senders = []
    for i in range(streams):
        ep = await RtpEndpoint.open(lambda p, s, t: None)
        sender = RtpSender(Codec.PCMU, random.Random(100 + i), idle=IdlePolicy.SKIP)
        pcm = tone(300 + 10 * i, frames * 160)
        sender.queue_audio(pcm)
        expected[sender.ssrc] = Codec.PCMU.encode(pcm)
        pacer.add(ep, sender, sink_ep.local_address)
        endpoints.append(ep)
        senders.append(sender)
    deadline = loop.time() + frames * 0.02 + 5
    while any(s.queued_frames for s in senders) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    for s in senders:
        pacer.remove(s)
    for ep in [*endpoints, sink_ep]:
        ep.close()
    return received, expected, pacer.max_lateness_s


def test_shared_pacer_delivers_every_stream_complete() -> None:
    """RtpPacer: 20 streams on one timer, 2 s each, every frame arrives once and in order."""
    received, expected, lateness_s = asyncio.run(paced_group(20, 100))
    assert set(received) == set(expected)
    for ssrc, packets in received.items():
        assert [p.sequence for p in packets] == [(packets[0].sequence + i) % 65536 for i in range(100)]
        assert b"".join(p.payload for p in packets) == expected[ssrc]
    print(f"\nRtpPacer 20 streams: worst tick lateness {lateness_s * 1000:.2f} ms (info only)")


class CallStandIn:
    """What an endpoint's handlers refer to in the engine: the call that owns the leg."""

    def on_packet(self, packet: RtpPacket, source: Address, now: float) -> None:
        pass

    def on_datagram(self, data: bytes, source: Address, now: float) -> bool:
        return False


def test_a_closed_endpoint_lets_its_call_go_without_the_garbage_collector() -> None:
    """An ended call must be freed by reference counting alone: ivr serve runs the full collection
    only every 10 minutes because it stops every call's media while it runs (DIS-* false gaps)."""
    import gc
    import weakref

    async def scenario() -> tuple[weakref.ref[CallStandIn], bool]:
        call = CallStandIn()
        endpoint = await RtpEndpoint.open(call.on_packet)
        endpoint.set_datagram_handler(call.on_datagram)
        call.endpoint = endpoint  # type: ignore[attr-defined]  # the cycle the engine has: call <-> its socket
        ref = weakref.ref(call)
        endpoint.close()
        del call, endpoint
        return ref, True

    enabled = gc.isenabled()
    gc.disable()
    try:
        ref, _ = asyncio.run(scenario())
        assert ref() is None
    finally:
        if enabled:
            gc.enable()
