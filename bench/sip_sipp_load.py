"""SIP signalling load on loopback: SIPp (gateway, UAC) against our UAS through the asyncio adapter.

    python3 bench/sip_sipp_load.py [--rates 50,100,200] [--seconds 5]

For each rate, SIPp places calls (INVITE, 200, ACK, 0.1 s pause, BYE) at R calls/s for the given
seconds, on one process, against a minimal application on our user agent that answers every
INVITE with an SDP answer. Printed per rate: calls attempted / successful / failed (SIPp's
counters), retransmissions SIPp had to send (a sign we answered late), and the CPU time our
process spent (process_time over wall time). Signalling only: no RTP. Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import shutil
import socket
import tempfile
import time
from pathlib import Path

from ivr.net.sip_udp import SipUdpEndpoint, open_sip_endpoint
from ivr.sip import events as ev
from ivr.sip.sdp import build_answer
from ivr.sip.useragent import UAConfig, UserAgent

SCENARIO = Path(__file__).resolve().parent.parent / "tests" / "integration" / "sipp" / "uac_basic.xml"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(rate: int, seconds: float, sipp: str) -> dict[str, float]:
    box: list[SipUdpEndpoint] = []
    answered = 0

    def sink(events: list[ev.UAEvent]) -> None:
        nonlocal answered
        ep = box[0]
        for e in events:
            if isinstance(e, ev.InviteReceived) and e.sdp is not None:
                ep.ua.answer(e.call_id, build_answer(e.sdp, "127.0.0.1", 40000, session_id=1), ep.now())
                answered += 1

    ep = await open_sip_endpoint(UserAgent(UAConfig(local_addr=("127.0.0.1", 0))), ("127.0.0.1", 0), sink)
    box.append(ep)
    total = int(rate * seconds)
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sipp,
            "-sf",
            str(SCENARIO),
            "-i",
            "127.0.0.1",
            "-p",
            str(free_udp_port()),
            "-mp",
            str(free_udp_port()),
            "-r",
            str(rate),
            "-m",
            str(total),
            "-timeout",
            f"{int(seconds) + 30}s",
            "-nostdin",
            "-trace_stat",
            "-stf",
            "stats.csv",
            "-fd",
            "1",
            "-s",
            "15551234567",
            f"{ep.local_addr[0]}:{ep.local_addr[1]}",
        ]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=tmp, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await proc.wait()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        rows = list(csv.DictReader((Path(tmp) / "stats.csv").read_text().splitlines(), delimiter=";"))
    ep.close()
    last = rows[-1] if rows else {}
    return {
        "attempted": float(total),
        "ok": float(last.get("SuccessfulCall(C)", 0) or 0),
        "failed": float(last.get("FailedCall(C)", 0) or 0),
        "retrans": float(last.get("Retransmissions(C)", 0) or 0),
        "answered": float(answered),
        "cpu_pct": 100.0 * cpu / wall if wall else 0.0,
        "wall_s": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,100,200")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp not found (Debian package sip-tester)")
        return 1
    header = f"{'calls/s':>8} {'calls':>6} {'ok':>6} {'failed':>6} {'retrans':>8} {'our CPU':>8} {'wall s':>7}"
    print(header)
    print("-" * len(header))
    for rate in (int(r) for r in args.rates.split(",")):
        r = asyncio.run(run(rate, args.seconds, sipp))
        print(
            f"{rate:>8} {r['attempted']:>6.0f} {r['ok']:>6.0f} {r['failed']:>6.0f} {r['retrans']:>8.0f} "
            f"{r['cpu_pct']:>7.1f}% {r['wall_s']:>7.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
