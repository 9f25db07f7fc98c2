"""RFC 4475 (SIP torture test messages) through the parser and the user agent.

Each message of tests/data/sip/rfc4475 with what RFC 4475 section 3 says an element receiving it
should do: parse the valid ones whatever their whitespace, escaping, compact forms and odd tokens
(3.1.1), answer the invalid ones with the error the RFC names, or drop them where no response can
be formed (3.1.2), and apply the application-layer checks of RFC 3261 section 8.2 (3.3).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.sip import events as ev
from ivr.sip.message import MalformedMessageError, Request, Response, parse_message
from ivr.sip.useragent import UAConfig, UserAgent

DATA = Path(__file__).resolve().parents[2] / "data" / "sip" / "rfc4475"
UA_ADDR = ("127.0.0.1", 5060)
PEER = ("127.0.0.1", 5070)


def load(name: str) -> bytes:
    return (DATA / f"{name}.dat").read_bytes()


def replies(name: str) -> tuple[list[bytes], list[ev.UAEvent]]:
    """The start lines of what a fresh user agent sends back for message ``name``, and its events."""
    ua = UserAgent(UAConfig(local_addr=UA_ADDR))
    events = ua.receive(load(name), PEER, 0.0)
    out = ua.datagrams_to_send()
    assert all(addr == PEER for _, addr in out), "replies go back to the source (RFC 3261 18.2.2)"
    return [raw.split(b"\r\n", 1)[0] for raw, _ in out], events


# 3.1.1: valid messages, and what the user agent answers to each (a UA, not a proxy or registrar).
VALID = [
    ("wsinv", b"SIP/2.0 481 Call/Transaction Does Not Exist"),  # 3.1.1.1: a To tag, no such dialog
    ("intmeth", b"SIP/2.0 501 Not Implemented"),  # 3.1.1.2: an unknown method, all its odd tokens
    ("esc01", b"SIP/2.0 100 Trying"),  # 3.1.1.3
    ("escnull", b"SIP/2.0 405 Method Not Allowed"),  # 3.1.1.4: REGISTER to a UA
    ("esc02", b"SIP/2.0 501 Not Implemented"),  # 3.1.1.5: RE%47IST%45R is not REGISTER
    ("lwsdisp", b"SIP/2.0 200 OK"),  # 3.1.1.6
    ("longreq", b"SIP/2.0 100 Trying"),  # 3.1.1.7
    ("dblreq", b"SIP/2.0 405 Method Not Allowed"),  # 3.1.1.8: the REGISTER; the trailing INVITE is ignored
    ("semiuri", b"SIP/2.0 200 OK"),  # 3.1.1.9
    ("transports", b"SIP/2.0 200 OK"),  # 3.1.1.10
]


@pytest.mark.parametrize(("name", "answer"), VALID, ids=[v[0] for v in VALID])
def test_valid_torture_request_is_parsed_and_answered(name: str, answer: bytes) -> None:
    assert isinstance(parse_message(load(name)), Request)
    lines, _ = replies(name)
    assert lines == [answer]


def test_short_tortuous_invite_reads_every_field() -> None:
    """3.1.1.1 wsinv: folding, LWS around ':' '/' and '=', mixed case, leading zeros, compact forms."""
    msg = parse_message(load("wsinv"))
    assert isinstance(msg, Request)
    assert (msg.method, msg.uri.user, msg.uri.host) == ("INVITE", "vivekg", "chair-dnrc.example.com")
    assert (msg.cseq.seq, msg.cseq.method) == (9, "INVITE")
    assert msg.headers.get("Max-Forwards") == "0068"
    assert [(v.transport, v.host) for v in msg.vias] == [
        ("UDP", "192.0.2.2"),
        ("TCP", "spindle.example.com"),
        ("UDP", "192.168.255.111"),
    ]
    assert [v.branch for v in msg.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert (msg.to.tag, msg.from_.tag) == ("1918181833n", "98asjd8")
    assert msg.from_.display == 'J Rosenberg \\"'
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.body.startswith(b"v=0") and len(msg.body) == 150


def test_percent_escapes_and_unusual_user_parts_survive() -> None:
    """3.1.1.3 esc01, 3.1.1.9 semiuri, 3.1.1.2 intmeth: '@' ends the user part, whatever precedes it."""
    esc01 = parse_message(load("esc01"))
    assert isinstance(esc01, Request)
    assert (esc01.uri.user, esc01.uri.host) == ("sips%3Auser%40example.com", "example.net")
    semi = parse_message(load("semiuri"))
    assert isinstance(semi, Request)
    assert (semi.uri.user, semi.uri.host, semi.uri.params) == ("user;par=u%40example.net", "example.com", ())
    odd = parse_message(load("intmeth"))
    assert isinstance(odd, Request)
    assert odd.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert odd.uri.host == "example.com"
    assert odd.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert odd.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert odd.to.display is not None and "\x00" in odd.to.display  # an escaped NUL is legal there


def test_transports_and_long_values() -> None:
    """3.1.1.10 transports, 3.1.1.7 longreq: unknown transports, 34 Vias in every spelling of the name."""
    msg = parse_message(load("transports"))
    assert isinstance(msg, Request)
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    long = parse_message(load("longreq"))
    assert isinstance(long, Request)
    assert len(long.vias) == 34 and long.vias[-1].host == "host.example.com"


@pytest.mark.parametrize(("name", "reason"), [("noreason", ""), ("unreason", None)])
def test_valid_responses_with_odd_reason_phrases(name: str, reason: str | None) -> None:
    """3.1.1.12 unreason (UTF-8 reason phrase), 3.1.1.13 noreason (empty reason phrase)."""
    msg = parse_message(load(name))
    assert isinstance(msg, Response)
    if reason is not None:
        assert msg.reason == reason
    else:
        assert msg.status == 200 and "простое" in msg.reason


# 3.1.2: invalid messages. Requests get the error the RFC names, even when the header they break
# is one a response copies (the copy goes back as it came); a broken response is dropped.
INVALID = [
    ("badinv01", b"SIP/2.0 400 Bad Request"),  # 3.1.2.1: ;;,;,, in Via
    ("clerr", b"SIP/2.0 400 Bad Request"),  # 3.1.2.2: Content-Length larger than the datagram
    ("ncl", b"SIP/2.0 400 Bad Request"),  # 3.1.2.3: negative Content-Length
    ("scalarlg", b"SIP/2.0 400 Bad Request"),  # CSeq beyond 2**32
    ("quotbal", b"SIP/2.0 400 Bad Request"),  # unterminated quoted string in To
    ("ltgtruri", b"SIP/2.0 400 Bad Request"),  # Request-URI in <>
    ("lwsruri", b"SIP/2.0 400 Bad Request"),  # LWS in the Request-URI
    ("lwsstart", b"SIP/2.0 400 Bad Request"),  # two spaces after the method
    ("trws", b"SIP/2.0 400 Bad Request"),  # trailing SP after SIP/2.0
    ("mismatch01", b"SIP/2.0 400 Bad Request"),  # CSeq method differs
    ("mismatch02", b"SIP/2.0 400 Bad Request"),  # the same with an unknown method
    ("badvers", b"SIP/2.0 505 Version Not Supported"),  # SIP/7.0
    ("mcl01", b"SIP/2.0 400 Bad Request"),  # two different Content-Length
    ("multi01", b"SIP/2.0 400 Bad Request"),  # two To, From, CSeq and Call-ID
]


@pytest.mark.parametrize(("name", "answer"), INVALID, ids=[v[0] for v in INVALID])
def test_invalid_torture_request_gets_the_error_the_rfc_names(name: str, answer: bytes) -> None:
    with pytest.raises(MalformedMessageError):
        parse_message(load(name))
    lines, events = replies(name)
    assert lines == [answer]
    assert [type(e) for e in events] == [ev.RequestRejected]


def test_response_with_a_ten_digit_status_code_is_dropped() -> None:
    """3.1.2 bigcode: 4294967301 is not a status code (nor 429 and a reason): no event, no reply."""
    with pytest.raises(MalformedMessageError):
        parse_message(load("bigcode"))
    assert replies("bigcode") == ([], [])


# 3.3: application-layer semantics (RFC 3261 section 8.2 for a UAS).
APPLICATION = [
    ("unkscm", b"SIP/2.0 416 Unsupported URI Scheme"),  # unknown Request-URI scheme
    ("novelsc", b"SIP/2.0 416 Unsupported URI Scheme"),  # soap.beep
    ("unksm2", b"SIP/2.0 405 Method Not Allowed"),  # unknown schemes in To/Contact are fine
    ("bext01", b"SIP/2.0 420 Bad Extension"),  # Require of unknown extensions
    ("invut", b"SIP/2.0 415 Unsupported Media Type"),  # a body we cannot read
    ("zeromf", b"SIP/2.0 200 OK"),  # Max-Forwards 0 at its target is processed
    ("inv2543", b"SIP/2.0 100 Trying"),  # an RFC 2543 INVITE (no branch cookie) is accepted
]


@pytest.mark.parametrize(("name", "answer"), APPLICATION, ids=[v[0] for v in APPLICATION])
def test_application_layer_torture_request_is_answered_per_rfc_3261_8_2(name: str, answer: bytes) -> None:
    lines, _ = replies(name)
    assert lines[:1] == [answer]


def test_bad_extension_lists_the_unsupported_ones() -> None:
    """3.3 bext01 / RFC 3261 8.2.2.3: the 420 names every extension it does not support."""
    ua = UserAgent(UAConfig(local_addr=UA_ADDR))
    ua.receive(load("bext01"), PEER, 0.0)
    ((raw, _),) = ua.datagrams_to_send()
    reply = parse_message(raw)
    assert reply.headers.get("Unsupported") == "nothingSupportsThis, nothingSupportsThisEither"
