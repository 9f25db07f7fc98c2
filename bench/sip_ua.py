"""SIP stack cost, sans-I/O (no sockets): what one core spends per message and per call.

    python3 bench/sip_ua.py [--calls 2000] [--flood 1000,5000,20000]

Printed:

* ``parse``: ``parse_message`` on a 700-byte INVITE with SDP (messages per second, us each);
* ``uas call``: a whole incoming call through the UA (INVITE -> 100, answer -> 200, ACK, BYE -> 200),
  calls per second and us per call;
* ``uac call``: a whole outgoing call (INVITE, 180, 200 -> ACK, our BYE -> 200);
* ``flood 5000, stateless``: the same from a source outside ``UAConfig.invite_sources``: a
  stateless 403 (section 8.2.7), nothing kept;
* ``flood N``: N INVITEs from a non-gateway, each answered 403 and never ACKed, so N INVITE server
  transactions stay alive (Timer G retransmissions, Timer H after 32 s): us per INVITE while the
  table grows, and the cost of ``next_deadline()`` and of ``handle_timer()`` with N live timers.
  This is the UA's share of the issue's flood test (1,000 INVITE/s for 5 s = 5,000 transactions).

Time is ``time.perf_counter`` around the loops; the UA gets simulated ``now`` values.
"""

from __future__ import annotations

import argparse
import time

from ivr.sip import events as ev
from ivr.sip.message import Request, build_response, parse_message
from ivr.sip.sdp import build_answer, build_offer
from ivr.sip.useragent import UAConfig, UserAgent

PEER = ("127.0.0.1", 5070)
SDP = build_offer("127.0.0.1", 6000, session_id=1).to_bytes()


def invite(i: int) -> bytes:
    lines = [
        "INVITE sip:15551234567@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{i};rport",
        "Max-Forwards: 70",
        f'From: "Gateway" <sip:gw@127.0.0.1:5070>;tag=t{i}',
        "To: <sip:15551234567@127.0.0.1>",
        f"Call-ID: bench-{i}@127.0.0.1",
        "CSeq: 1 INVITE",
        "Contact: <sip:gw@127.0.0.1:5070>",
        "X-Inmate-Id: A1234",
        "Content-Type: application/sdp",
        f"Content-Length: {len(SDP)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + SDP


def in_dialog(method: str, i: int, tag: str, cseq: int) -> bytes:
    lines = [
        f"{method} sip:ivr@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{method}-{i}",
        "Max-Forwards: 70",
        f'From: "Gateway" <sip:gw@127.0.0.1:5070>;tag=t{i}',
        f"To: <sip:15551234567@127.0.0.1>;tag={tag}",
        f"Call-ID: bench-{i}@127.0.0.1",
        f"CSeq: {cseq} {method}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def bench_parse(n: int) -> float:
    data = invite(1)
    t0 = time.perf_counter()
    for _ in range(n):
        parse_message(data)
    return time.perf_counter() - t0


def bench_uas(n: int) -> float:
    ua = UserAgent(UAConfig(local_addr=("127.0.0.1", 5060)))
    t0 = time.perf_counter()
    for i in range(n):
        now = i * 0.01
        (inv,) = ua.receive(invite(i), PEER, now)
        assert isinstance(inv, ev.InviteReceived) and inv.sdp is not None
        ua.answer(inv.call_id, build_answer(inv.sdp, "127.0.0.1", 7000, session_id=i), now)
        ok = parse_message(ua.datagrams_to_send()[-1][0])
        tag = ok.to.tag or ""
        ua.receive(in_dialog("ACK", i, tag, 1), PEER, now)
        ua.receive(in_dialog("BYE", i, tag, 2), PEER, now)
        ua.datagrams_to_send()
        ua.next_deadline()
    return time.perf_counter() - t0


def bench_uac(n: int) -> float:
    ua = UserAgent(UAConfig(local_addr=("127.0.0.1", 5060)))
    offer = build_offer("127.0.0.1", 4000, session_id=1)
    t0 = time.perf_counter()
    for i in range(n):
        now = i * 0.01
        call_id = ua.invite("sip:15551234567@127.0.0.1:5070", offer, now)
        req = parse_message(ua.datagrams_to_send()[0][0])
        assert isinstance(req, Request)
        for status, body in ((180, b""), (200, SDP)):
            resp = build_response(req.headers, status, "X", to_tag="callee")
            resp.headers.add("Contact", "<sip:callee@127.0.0.1:5070>")
            if body:
                resp.headers.add("Content-Type", "application/sdp")
                resp.body = body
            ua.receive(resp.to_bytes(), PEER, now)
        ua.datagrams_to_send()
        ua.bye(call_id, now)
        bye = parse_message(ua.datagrams_to_send()[0][0])
        assert isinstance(bye, Request)
        ua.receive(build_response(bye.headers, 200, "OK").to_bytes(), PEER, now)
        ua.next_deadline()
    return time.perf_counter() - t0


def bench_flood(n: int) -> tuple[float, float, float]:
    """(seconds for n INVITE->403, seconds for 1000 next_deadline calls, seconds for timers 0..10 s)."""
    ua = UserAgent(UAConfig(local_addr=("127.0.0.1", 5060), max_server_transactions=n + 10))
    t0 = time.perf_counter()
    for i in range(n):
        now = i * 0.001
        for e in ua.receive(invite(i), PEER, now):
            if isinstance(e, ev.InviteReceived):
                ua.reject(e.call_id, 403, now)
        ua.datagrams_to_send()
        ua.next_deadline()
    t_flood = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(1000):
        ua.next_deadline()
    t_next = time.perf_counter() - t0
    sent = 0
    t0 = time.perf_counter()
    now = n * 0.001
    end = now + 10.0
    while (d := ua.next_deadline()) is not None and d <= end:
        ua.handle_timer(d)
        sent += len(ua.datagrams_to_send())
    t_timers = time.perf_counter() - t0
    assert sent > 0
    return t_flood, t_next, t_timers


def bench_stateless_flood(n: int) -> float:
    """Seconds for n INVITEs from a source outside ``invite_sources`` (stateless 403, section 8.2.7)."""
    ua = UserAgent(UAConfig(local_addr=("127.0.0.1", 5060), invite_sources=frozenset({"10.0.0.1"})))
    t0 = time.perf_counter()
    for i in range(n):
        ua.receive(invite(i), PEER, i * 0.001)
        ua.datagrams_to_send()
        ua.next_deadline()
    assert ua.next_deadline() is None  # no state was kept
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--flood", default="1000,5000,20000")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    n = args.calls
    t = bench_parse(n * 5)
    rows.append(("parse INVITE+SDP", f"{n * 5 / t:,.0f} msg/s", f"{t / (n * 5) * 1e6:.1f} us/msg"))
    t = bench_uas(n)
    rows.append(("uas call (INVITE..BYE)", f"{n / t:,.0f} calls/s", f"{t / n * 1e6:.0f} us/call"))
    t = bench_uac(n)
    rows.append(("uac call (INVITE..BYE)", f"{n / t:,.0f} calls/s", f"{t / n * 1e6:.0f} us/call"))
    for size in (int(x) for x in args.flood.split(",")):
        t_flood, t_next, t_timers = bench_flood(size)
        rows.append(
            (f"flood {size} INVITE->403", f"{size / t_flood:,.0f} INVITE/s", f"{t_flood / size * 1e6:.0f} us/INVITE")
        )
        rows.append((f"  next_deadline, {size} live", f"{1000 / t_next:,.0f} calls/s", f"{t_next * 1e3:.2f} us/call"))
        rows.append((f"  timers 10 s, {size} live", f"{t_timers:.2f} s CPU", "Timer G retransmissions"))
    t = bench_stateless_flood(5000)
    rows.append(("flood 5000, stateless 403", f"{5000 / t:,.0f} INVITE/s", f"{t / 5000 * 1e6:.0f} us/INVITE, no state"))
    w = max(len(r[0]) for r in rows)
    print(f"{'case':<{w}}  {'throughput':>18}  cost")
    print("-" * (w + 40))
    for name, a, b in rows:
        print(f"{name:<{w}}  {a:>18}  {b}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
