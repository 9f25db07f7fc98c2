"""Shared builders for the SIP unit tests: raw peer messages and a pump between two user agents."""

from __future__ import annotations

from ivr.sip.events import UAEvent
from ivr.sip.message import Request, Response, build_response, parse_message
from ivr.sip.useragent import UserAgent

UA_ADDR = ("127.0.0.1", 5060)
PEER = ("127.0.0.1", 5070)

OFFER_SDP = (
    b"v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0 8 96\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n"
)


def sdp_with(direction: str | None = None, connection: str = "127.0.0.1", version: int = 2) -> bytes:
    text = OFFER_SDP.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 " + connection.encode())
    text = text.replace(b"o=gw 1 1", b"o=gw 1 " + str(version).encode())
    if direction:
        text += f"a={direction}\r\n".encode()
    return text


def request(
    method: str,
    *,
    uri: str = "sip:15551234567@127.0.0.1:5060",
    branch: str = "z9hG4bK-1",
    call_id: str = "call-1@gw",
    from_tag: str = "gwtag",
    to_tag: str | None = None,
    cseq: int = 1,
    cseq_method: str | None = None,
    body: bytes = b"",
    content_type: str | None = None,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    to = "<sip:15551234567@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}",
        "Max-Forwards: 70",
        f'From: "Gateway" <sip:gw@127.0.0.1:5070>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:gw@127.0.0.1:5070>",
    ]
    lines += [f"{n}: {v}" for n, v in extra]
    if body:
        lines.append(f"Content-Type: {content_type or 'application/sdp'}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def reply(
    data: bytes,
    status: int,
    *,
    reason: str = "X",
    to_tag: str | None = "peertag",
    extra: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
) -> bytes:
    """A response from the peer to the request ``data`` we sent."""
    req = parse_message(data)
    assert isinstance(req, Request)
    resp = build_response(req.headers, status, reason, to_tag=to_tag, body=body)
    resp.headers.add("Contact", "<sip:peer@127.0.0.1:5070>")
    for n, v in extra:
        resp.headers.add(n, v)
    if body:
        resp.headers.add("Content-Type", "application/sdp")
    return resp.to_bytes()


def sent(ua: UserAgent) -> list[Request | Response]:
    """Parse everything ``ua`` queued (and drain it)."""
    return [parse_message(d) for d, _ in ua.datagrams_to_send()]


def statuses(msgs: list[Request | Response]) -> list[int | str]:
    return [m.status if isinstance(m, Response) else m.method for m in msgs]


def pump(a: UserAgent, b: UserAgent, now: float) -> list[tuple[UserAgent, UAEvent]]:
    """Deliver datagrams between ``a`` and ``b`` until both are quiet."""
    out: list[tuple[UserAgent, UAEvent]] = []
    for _ in range(20):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data, _addr in src.datagrams_to_send():
                moved = True
                out += [(dst, e) for e in dst.receive(data, src.local_addr, now)]
        if not moved:
            break
    return out
