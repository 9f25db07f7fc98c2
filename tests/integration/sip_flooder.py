"""A bounded INVITE flooder for the engine's flood test (issue 4 point 5): loopback only, stops by itself.

Sends well-formed RFC 3261 INVITEs (each with its own Call-ID, From tag and branch, an SDP offer)
at a fixed rate from a chosen loopback source address, reads every response that comes back, and
prints one JSON summary line::

    python -m tests.integration.sip_flooder --target 127.0.0.1:5060 --bind 127.0.0.2 --rate 1000 --seconds 5

Sending follows a monotonic schedule in 5 ms batches (no drift, no sleep-after-send). It does not
ACK the 4xx by default (``--ack`` does, per RFC 3261 section 17.1.1.3): an attacker does not, so the
engine's server transactions retransmit the final response (Timer G) and the flood costs it the
most. Refuses any target or source that is not a loopback address.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import secrets
import socket
import sys
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class FloodResult:
    sent: int = 0
    responses: int = 0  # every datagram received, retransmissions included
    by_status: Counter[int] = field(default_factory=Counter)
    final_call_ids: dict[int, set[str]] = field(default_factory=dict)  # status -> distinct Call-IDs
    send_elapsed_s: float = 0.0
    acks_sent: int = 0

    def summary(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "send_elapsed_s": round(self.send_elapsed_s, 3),
            "responses": self.responses,
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "distinct_final": {str(k): len(v) for k, v in sorted(self.final_call_ids.items())},
            "acks_sent": self.acks_sent,
        }


def _loopback(host: str) -> str:
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing non-loopback address {host}")
    return host


def invite(target: tuple[str, int], local: tuple[str, int], n: int, number: str) -> tuple[bytes, str, str, str]:
    """One well-formed INVITE; returns (bytes, call_id, from_tag, branch)."""
    call_id = f"flood-{n}-{secrets.token_hex(6)}@{local[0]}"
    tag = secrets.token_hex(4)
    branch = "z9hG4bK" + secrets.token_hex(8)
    body = (f"v=0\r\no=flood {n} 1 IN IP4 {local[0]}\r\ns=-\r\nc=IN IP4 {local[0]}\r\nt=0 0\r\n"
            f"m=audio {40000 + 2 * (n % 1000)} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
    head = (f"INVITE sip:{number}@{target[0]}:{target[1]} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport\r\n"
            f"From: <sip:flood@{local[0]}>;tag={tag}\r\n"
            f"To: <sip:{number}@{target[0]}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:flood@{local[0]}:{local[1]}>\r\n"
            "Max-Forwards: 70\r\n"
            "X-Inmate-Id: inm-1001\r\n"  # a forged caller id: must not be trusted from a non-gateway
            "Content-Type: application/sdp\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return (head + body).encode(), call_id, tag, branch


def ack_for(response: bytes, target: tuple[str, int], local: tuple[str, int], number: str) -> bytes | None:
    """RFC 3261 section 17.1.1.3: the ACK of a non-2xx final response (same branch, the response's To)."""
    headers: dict[str, str] = {}
    for line in response.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), value.strip())
    needed = ("via", "from", "to", "call-id", "cseq")
    if not all(k in headers for k in needed):
        return None
    via = headers["via"].split(",")[0]
    seq = headers["cseq"].split()[0]
    return (f"ACK sip:{number}@{target[0]}:{target[1]} SIP/2.0\r\nVia: {via}\r\nFrom: {headers['from']}\r\n"
            f"To: {headers['to']}\r\nCall-ID: {headers['call-id']}\r\nCSeq: {seq} ACK\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


def _status_and_call_id(data: bytes) -> tuple[int, str] | None:
    if not data.startswith(b"SIP/2.0 "):
        return None
    try:
        status = int(data[8:11])
    except ValueError:
        return None
    for line in data.split(b"\r\n"):
        low = line.lower()
        if low.startswith(b"call-id:") or low.startswith(b"i:"):
            return status, line.split(b":", 1)[1].strip().decode(errors="replace")
    return status, ""


def flood(target: tuple[str, int], bind: str, rate_per_s: int, seconds: float, *, drain_s: float = 3.0,
          ack: bool = False, number: str = "+15125550123") -> FloodResult:
    """Send ``rate_per_s`` INVITEs per second for ``seconds``; read responses until ``drain_s`` after."""
    _loopback(target[0])
    _loopback(bind)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind((bind, 0))
    sock.setblocking(False)
    local = sock.getsockname()
    result = FloodResult()
    total = int(rate_per_s * seconds)
    batch_s = 0.005
    start = time.monotonic()
    end_at = start + seconds + drain_s

    def read_all() -> None:
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                return
            except ConnectionRefusedError:
                continue
            result.responses += 1
            parsed = _status_and_call_id(data)
            if parsed is None:
                continue
            status, call_id = parsed
            result.by_status[status] += 1
            if status >= 200:
                result.final_call_ids.setdefault(status, set()).add(call_id)
                if ack and status >= 300:
                    msg = ack_for(data, target, local, number)
                    if msg is not None:
                        sock.sendto(msg, target)
                        result.acks_sent += 1

    k = 0
    while True:
        now = time.monotonic()
        due = min(total, int((now - start) * rate_per_s) + 1)
        while result.sent < due:
            data, *_ = invite(target, local, result.sent, number)
            with contextlib.suppress(BlockingIOError):  # buffer full: this one is lost, as on a real network
                sock.sendto(data, target)
            result.sent += 1
        if result.sent >= total and not result.send_elapsed_s:
            result.send_elapsed_s = time.monotonic() - start
        read_all()
        if now >= end_at:
            break
        k += 1
        wake = start + k * batch_s
        delay = wake - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    sock.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--target", required=True, help="engine SIP address HOST:PORT (loopback)")
    p.add_argument("--bind", default="127.0.0.2", help="source address (loopback, not a gateway)")
    p.add_argument("--rate", type=int, default=1000, help="INVITEs per second")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--drain", type=float, default=3.0, help="seconds to keep reading responses after the flood")
    p.add_argument("--ack", action="store_true", help="ACK each 4xx (a well-behaved UAC)")
    args = p.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    result = flood((host, int(port)), args.bind, args.rate, args.seconds, drain_s=args.drain, ack=args.ack)
    json.dump(result.summary(), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
