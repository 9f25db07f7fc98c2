"""CPU cost of the sans-I/O RTP hot path, per packet or per frame (no sockets).

    python3 bench/rtp_cpu.py [--packets 20000]

Prints microseconds per operation (best of 3 runs) for what the engine does 50 times a second
per leg: parse a datagram, account + decode + buffer it (MediaLeg.receive), the same while bridged
(plus the relay to the other leg), the engine's per-datagram fast path (MediaLeg.receive_wire:
wire bytes in, relayed wire bytes out, same codec on both legs), pull a 20 ms frame for the
detectors, make the next paced packet (RtpSender.due_packets), serialize it, and the G.711 table
lookups alone. Multiply by
50 x legs x calls for the CPU share of a load (e.g. 500 calls, 2 legs: x 50,000 per second).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable

import numpy as np

from ivr.rtp.g711 import Codec
from ivr.rtp.leg import MediaLeg, RemoteMedia
from ivr.rtp.packet import parse_datagram
from ivr.rtp.session import RtpSender
from ivr.types import Leg

A = ("127.0.0.1", 40000)
B = ("127.0.0.1", 40002)


def best_us(fn: Callable[[int], None], n: int) -> float:
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=20000)
    n = parser.parse_args().packets
    source = RtpSender(Codec.PCMU, random.Random(1))
    source.start(0.0)
    pcm = (np.sin(np.arange(160 * n) / 7) * 9000).astype(np.int16)
    source.queue_audio(pcm)
    packets = [p for k in range(n) for p in source.due_packets(k * 0.02)]
    datagrams = [p.to_bytes() for p in packets]
    frames = [pcm[160 * k : 160 * k + 160] for k in range(n)]

    def parse(count: int) -> None:
        for d in datagrams[:count]:
            parse_datagram(d)

    def receive(count: int) -> None:
        leg = MediaLeg(Leg.FACILITY, random.Random(1), 0.0, RemoteMedia(A, Codec.PCMU))
        for k in range(count):
            leg.receive(packets[k], A, k * 0.02)

    def bridged(other_codec: Codec) -> MediaLeg:
        """A mu-law facility leg relaying to a called leg that uses ``other_codec``."""
        leg = MediaLeg(Leg.FACILITY, random.Random(1), 0.0, RemoteMedia(A, Codec.PCMU))
        leg.bridge_to(MediaLeg(Leg.CALLED, random.Random(2), 0.0, RemoteMedia(B, other_codec)))
        return leg

    def receive_bridged(count: int) -> None:
        leg = bridged(Codec.PCMA)
        for k in range(count):
            leg.receive(packets[k], A, k * 0.02)

    def receive_wire_bridged(count: int) -> None:
        leg = bridged(Codec.PCMU)
        for k in range(count):
            leg.receive_wire(datagrams[k], A, k * 0.02)

    def receive_and_pull(count: int) -> None:
        leg = MediaLeg(Leg.FACILITY, random.Random(1), 0.0, RemoteMedia(A, Codec.PCMU))
        for k in range(count):
            leg.receive(packets[k], A, k * 0.02)
            leg.pull_frame(k * 0.02)

    def send(count: int) -> None:
        sender = RtpSender(Codec.PCMU, random.Random(3))
        sender.start(0.0)
        for k in range(count):
            sender.due_packets(k * 0.02)

    def send_prompt(count: int) -> None:
        sender = RtpSender(Codec.PCMU, random.Random(3))
        sender.queue_audio(pcm[: 160 * count])
        sender.start(0.0)
        for k in range(count):
            for p in sender.due_packets(k * 0.02):
                p.to_bytes()

    def serialize(count: int) -> None:
        for p in packets[:count]:
            p.to_bytes()

    def encode(count: int) -> None:
        for f in frames[:count]:
            Codec.PCMU.encode(f)

    def decode(count: int) -> None:
        for p in packets[:count]:
            Codec.PCMU.decode(p.payload)

    rows = [
        ("parse_datagram", parse),
        ("MediaLeg.receive (audio)", receive),
        ("MediaLeg.receive, bridged + transcode", receive_bridged),
        ("MediaLeg.receive_wire, bridged (relayed)", receive_wire_bridged),
        ("receive + pull_frame", receive_and_pull),
        ("RtpSender.due_packets (idle silence)", send),
        ("due_packets + to_bytes (prompt)", send_prompt),
        ("RtpPacket.to_bytes", serialize),
        ("G.711 encode 160 samples", encode),
        ("G.711 decode 160 octets", decode),
    ]
    print(f"RTP hot path, {n} packets per run, best of 3 (us per packet)")
    print(f"{'operation':42} {'us':>8} {'x50k/s = % core':>16}")
    print("-" * 68)
    for name, fn in rows:
        us = best_us(fn, n)
        print(f"{name:42} {us:8.2f} {us * 50_000 / 1e6 * 100:15.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
