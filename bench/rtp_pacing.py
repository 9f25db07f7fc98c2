"""RTP pacing on loopback: how many 20 ms G.711 streams one engine process keeps on time.

    python3 bench/rtp_pacing.py [--streams 50,200,500,1000] [--seconds 5] [--modes timer,pacer]

For each mode and stream count, the engine side (this process, one asyncio loop) sends N paced
PCMU streams from N sockets (the engine has one RTP socket per leg) to a sink in a separate
process, which timestamps every arrival (time.monotonic) per SSRC. Printed per run:

* sent/expected/received packets; the inter-packet gap per stream *as sent* (time.monotonic()
  right after each sendto): p50, p99, max over all streams, and the streams with a send gap over
  60 ms (the issue's criterion for the engine's own RTP: p99 < 30 ms, none over 60 ms);
* the gap as the sink saw it (p99, max): includes the sink's own (Python) receive delay, so at
  high rates it is an upper bound, not the engine's timing;
* the engine process's CPU use (process_time / wall time) for the sending alone.

Modes: ``timer`` = ``RtpEndpoint.start_paced`` (one ``call_at`` per stream per frame);
``pacer`` = ``RtpPacer`` (one shared ``call_at`` per frame for all streams).

Loopback only; each run lasts --seconds (default 5) so the whole bench stays under ~2 minutes.
Run it with nothing else heavy on the machine; the numbers are for one core of this host.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ivr.net.rtp_udp import RtpEndpoint, RtpPacer
from ivr.rtp.g711 import Codec
from ivr.rtp.packet import RtpPacket
from ivr.rtp.session import Address, IdlePolicy, RtpSender

SINK = r"""
import socket, sys, time, numpy as np
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
ssrcs, times = [], []
buf = bytearray(2048)
while True:
    n = sock.recv_into(buf)
    t = time.monotonic()
    if n == 4 and bytes(buf[:4]) == b"STOP":
        break
    if n >= 12:
        ssrcs.append(int.from_bytes(buf[8:12], "big"))
        times.append(t)
np.savez(sys.argv[1], ssrc=np.array(ssrcs, dtype=np.uint32), t=np.array(times))
"""


class TimedEndpoint(RtpEndpoint):
    """Records when each packet actually left (after sendto), per endpoint."""

    sent_times: list[float]

    def send(self, packet: RtpPacket, destination: Address) -> None:
        super().send(packet, destination)
        self.sent_times.append(time.monotonic())


def gap_stats(per_stream: list[np.ndarray]) -> tuple[float, float, float, int]:
    gaps = [np.diff(t) * 1000 for t in per_stream if len(t) > 1]
    every = np.concatenate(gaps)
    over = sum(1 for g in gaps if g.max() > 60)
    return (
        float(np.percentile(every, 50)),
        float(np.percentile(every, 99)),
        float(every.max()),
        over,
    )


async def run(mode: str, streams: int, seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "arrivals.npz"
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(out)], stdout=subprocess.PIPE, text=True)
        assert sink.stdout is not None
        sink_addr = ("127.0.0.1", int(sink.stdout.readline()))
        loop = asyncio.get_running_loop()
        frames = int(seconds * 50)
        endpoints: list[TimedEndpoint] = []
        senders: list[RtpSender] = []
        pacer = RtpPacer(loop)
        silence = np.zeros(frames * 160, dtype=np.int16)
        for i in range(streams):
            ep = await TimedEndpoint.open(lambda p, s, t: None)
            assert isinstance(ep, TimedEndpoint)
            ep.sent_times = []
            sender = RtpSender(Codec.PCMU, random.Random(i), idle=IdlePolicy.SKIP)
            sender.queue_audio(silence)
            endpoints.append(ep)
            senders.append(sender)
        cpu0, wall0 = time.process_time(), loop.time()
        for ep, sender in zip(endpoints, senders, strict=True):
            if mode == "pacer":
                pacer.add(ep, sender, sink_addr)
            else:
                ep.start_paced(sender, sink_addr)
        while any(s.queued_frames for s in senders) and loop.time() - wall0 < seconds * 3:
            await asyncio.sleep(0.1)
        cpu = (time.process_time() - cpu0) / (loop.time() - wall0)
        sent = sum(s.stats().packets_sent for s in senders)
        for ep, sender in zip(endpoints, senders, strict=True):
            pacer.remove(sender)
            ep.close()
        await asyncio.sleep(0.3)
        stop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stop.sendto(b"STOP", sink_addr)
        stop.close()
        sink.wait(timeout=30)
        data = np.load(out)
    ssrc, t = data["ssrc"], data["t"]
    order = np.lexsort((t, ssrc))
    ssrc, t = ssrc[order], t[order]
    bounds = np.flatnonzero(np.diff(ssrc)) + 1
    recv = gap_stats(np.split(t, bounds))
    send = gap_stats([np.array(ep.sent_times) for ep in endpoints])
    return {
        "expected": streams * frames,
        "sent": sent,
        "received": len(t),
        "send_p50": send[0],
        "send_p99": send[1],
        "send_max": send[2],
        "send_over60": send[3],
        "recv_p99": recv[1],
        "recv_max": recv[2],
        "cpu": cpu * 100,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="50,200,500,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--modes", default="timer,pacer")
    args = parser.parse_args()
    counts = [int(x) for x in args.streams.split(",")]
    print(f"RTP pacing on loopback, {args.seconds:g} s per run, host cores: {os.cpu_count()}")
    header = (
        f"{'mode':6} {'streams':>7} {'expected':>9} {'sent':>8} {'recv':>8} "
        f"{'send p50':>8} {'send p99':>8} {'send max':>8} {'>60ms':>6} "
        f"{'recv p99':>8} {'recv max':>8} {'cpu %':>6}"
    )
    print(header)
    print("-" * len(header))
    for mode in args.modes.split(","):
        for n in counts:
            r = asyncio.run(run(mode, n, args.seconds))
            print(
                f"{mode:6} {n:7d} {r['expected']:9.0f} {r['sent']:8.0f} {r['received']:8.0f} "
                f"{r['send_p50']:8.2f} {r['send_p99']:8.2f} {r['send_max']:8.2f} {r['send_over60']:6.0f} "
                f"{r['recv_p99']:8.2f} {r['recv_max']:8.2f} {r['cpu']:6.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
