"""The simulated trunk's sans-I/O core: registrar (RFC 3261 section 10.3) and record-routing
stateless proxy (sections 16.6, 16.7, 16.11), loopback only."""

from __future__ import annotations

import pytest

from ivr.sip.auth import authorization, parse_challenge
from ivr.sip.message import NameAddr, Request, Response, Via, parse_message
from sim.trunk import TrunkCore, normalize_number

TRUNK = ("127.0.0.1", 5070)
ENGINE = ("127.0.0.1", 5060)
PHONE = ("127.0.0.1", 40000)


def invite(uri: str = "sip:+15125550101@127.0.0.1", branch: str = "z9hG4bKabc", extra: str = "") -> bytes:
    return (
        f"INVITE {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:ivr@127.0.0.1>;tag=f1\r\n"
        f"To: <{uri}>\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        "CSeq: 10 INVITE\r\n"
        "Contact: <sip:ivr@127.0.0.1:5060>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def register(number: str, port: int = 40000, expires: int = 300, extra: str = "") -> bytes:
    return (
        "REGISTER sip:127.0.0.1:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKreg{port};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{number}@127.0.0.1>;tag=r1\r\n"
        f"To: <sip:{number}@127.0.0.1>\r\n"
        "Call-ID: reg-1@127.0.0.1\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:{number.lstrip('+')}@127.0.0.1:{port}>\r\n"
        f"Expires: {expires}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def only(out: list[tuple[bytes, tuple[str, int]]]) -> tuple[Request | Response, tuple[str, int]]:
    assert len(out) == 1, out
    return parse_message(out[0][0]), out[0][1]


def test_register_binds_number_to_the_source_address() -> None:
    """A REGISTER binds its To number to the Contact, reached at the REGISTER's source (10.3)."""
    core = TrunkCore(TRUNK)
    resp, dest = only(core.receive(register("+15125550101"), PHONE, 0.0))
    assert isinstance(resp, Response) and resp.status == 200
    assert dest == PHONE
    assert "expires=300" in (resp.headers.get("Contact") or "")
    found = core.lookup("15125550101", 1.0)
    assert found is not None and found[0] == PHONE


def test_binding_expires_and_expires_zero_removes_it() -> None:
    """A binding lapses after its expiry, and Expires: 0 removes it at once (10.2.2)."""
    core = TrunkCore(TRUNK)
    core.receive(register("+15125550101", expires=60), PHONE, 0.0)
    assert core.lookup("+15125550101", 59.0) is not None
    assert core.lookup("+15125550101", 61.0) is None
    core.receive(register("+15125550101", expires=60), PHONE, 100.0)
    core.receive(register("+15125550101", expires=0), PHONE, 101.0)
    assert core.lookup("+15125550101", 102.0) is None


def test_too_brief_registration_gets_423_with_min_expires() -> None:
    """Section 10.3 step 7: an expiry below our minimum is answered 423 with Min-Expires."""
    resp, _ = only(TrunkCore(TRUNK).receive(register("+15125550101", expires=2), PHONE, 0.0))
    assert isinstance(resp, Response) and resp.status == 423 and resp.headers.get("Min-Expires") == "10"


def test_invite_is_forwarded_with_our_via_and_record_route() -> None:
    """An INVITE for a routed number goes to its phone with our Via on top and a loose Record-Route."""
    core = TrunkCore(TRUNK)
    core.route("+15125550101", PHONE)
    req, dest = only(core.receive(invite(), ENGINE, 0.0))
    assert isinstance(req, Request) and dest == PHONE
    vias = req.vias
    assert (vias[0].host, vias[0].port) == TRUNK
    assert vias[1].branch == "z9hG4bKabc" and dict(vias[1].params).get("rport") == "5060"
    assert req.headers.get("Record-Route") == "<sip:127.0.0.1:5070;lr>"
    assert req.headers.get("Max-Forwards") == "69"


@pytest.mark.parametrize(
    "uri", ["sip:+15125550101@127.0.0.1", "sip:+15125550101@127.0.0.1:5070", "sip:15125550101@127.0.0.1"]
)
def test_request_uri_with_our_host_and_no_port_is_routed(uri: str) -> None:
    """The engine's trunk URI names our host, with or without our port, with or without '+'."""
    core = TrunkCore(TRUNK)
    core.route("+15125550101", PHONE)
    _, dest = only(core.receive(invite(uri), ENGINE, 0.0))
    assert dest == PHONE


def test_registered_contact_wins_and_rewrites_the_request_uri() -> None:
    """A registered softphone takes the number's calls; the Request-URI becomes its Contact (16.5)."""
    core = TrunkCore(TRUNK)
    core.route("+15125550101", ("127.0.0.1", 41000))
    core.receive(register("+15125550101", port=42000), ("127.0.0.1", 42000), 0.0)
    req, dest = only(core.receive(invite(), ENGINE, 1.0))
    assert dest == ("127.0.0.1", 42000)
    assert isinstance(req, Request) and str(req.uri) == "sip:15125550101@127.0.0.1:42000"


def test_unknown_number_gets_404() -> None:
    """No route and no binding: 404 Not Found back to the engine (16.5)."""
    resp, dest = only(TrunkCore(TRUNK).receive(invite(), ENGINE, 0.0))
    assert isinstance(resp, Response) and resp.status == 404 and dest == ENGINE


def test_cancel_and_ack_of_non_2xx_get_the_invites_branch() -> None:
    """Section 16.11: the stateless branch is the same for the INVITE, its CANCEL and the ACK of a
    non-2xx, so the phone's transaction matches them."""
    core = TrunkCore(TRUNK)
    core.route("+15125550101", PHONE)
    fwd_invite, _ = only(core.receive(invite(), ENGINE, 0.0))
    cancel = invite().replace(
        b"INVITE sip:+15125550101@127.0.0.1 SIP/2.0", b"CANCEL sip:+15125550101@127.0.0.1 SIP/2.0"
    )
    cancel = cancel.replace(b"CSeq: 10 INVITE", b"CSeq: 10 CANCEL")
    fwd_cancel, dest = only(core.receive(cancel, ENGINE, 0.1))
    assert dest == PHONE
    assert fwd_cancel.top_via.branch == fwd_invite.top_via.branch
    retransmit, _ = only(core.receive(invite(), ENGINE, 0.5))
    assert retransmit.top_via.branch == fwd_invite.top_via.branch
    other, _ = only(core.receive(invite(branch="z9hG4bKother"), ENGINE, 0.6))
    assert other.top_via.branch != fwd_invite.top_via.branch


def test_response_pops_our_via_and_returns_to_rport() -> None:
    """Section 16.7: our Via is removed and the response goes where the request came from."""
    core = TrunkCore(TRUNK)
    core.route("+15125550101", PHONE)
    fwd, _ = only(core.receive(invite(), ("127.0.0.1", 5999), 0.0))
    assert isinstance(fwd, Request)
    resp = Response(headers=fwd.headers.copy(), status=180, reason="Ringing")
    resp.headers.remove("Record-Route")
    back, dest = only(core.receive(resp.to_bytes(), PHONE, 0.1))
    assert isinstance(back, Response) and back.status == 180
    assert dest == ("127.0.0.1", 5999)  # rport stamped from the source, not the Via's 5060
    assert len(back.vias) == 1 and back.vias[0].branch == "z9hG4bKabc"


def test_response_not_for_us_is_dropped() -> None:
    """A response whose top Via is not ours is dropped (16.7 step 1)."""
    resp = parse_message(invite())
    out = Response(headers=resp.headers.copy(), status=200, reason="OK")
    assert TrunkCore(TRUNK).receive(out.to_bytes(), PHONE, 0.0) == []


def test_in_dialog_request_follows_the_route_set() -> None:
    """A BYE with our Route goes to its Request-URI (the peer's Contact) with our Route removed."""
    core = TrunkCore(TRUNK)
    bye = (
        b"BYE sip:ivr@127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKbye;rport\r\n"
        b"Route: <sip:127.0.0.1:5070;lr>\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=a\r\nTo: <sip:y@127.0.0.1>;tag=b\r\n"
        b"Call-ID: c@127.0.0.1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    req, dest = only(core.receive(bye, PHONE, 0.0))
    assert isinstance(req, Request) and dest == ENGINE
    assert req.headers.get("Route") is None
    assert req.headers.get("Record-Route") is None  # only dialog-creating INVITEs are record-routed


def test_max_forwards_zero_gets_483() -> None:
    """Section 16.3 step 3: Max-Forwards 0 is not forwarded."""
    core = TrunkCore(TRUNK)
    core.route("+15125550101", PHONE)
    data = invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    resp, _ = only(core.receive(data, ENGINE, 0.0))
    assert isinstance(resp, Response) and resp.status == 483


def test_only_loopback_sources_and_destinations() -> None:
    """Loopback only: a request from elsewhere is not answered at all (its 403 would leave
    loopback), a route elsewhere is refused, and a Request-URI naming another host is never sent to."""
    core = TrunkCore(TRUNK)
    assert core.receive(invite(), ("10.1.2.3", 5060), 0.0) == []
    with pytest.raises(ValueError):
        core.route("+15125550101", ("192.168.1.5", 5060))
    bye = (
        b"BYE sip:ivr@192.0.2.7:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKx\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:x@127.0.0.1>;tag=a\r\nTo: <sip:y@127.0.0.1>;tag=b\r\n"
        b"Call-ID: c@127.0.0.1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    assert core.receive(bye, PHONE, 0.0) == []


def test_digest_challenges_register_and_invite() -> None:
    """With credentials the trunk answers 401 to REGISTER and 407 to INVITE, then accepts the
    right digest (RFC 3261 section 22)."""
    core = TrunkCore(TRUNK, credentials={"engine": "s3cret"}, secret=b"k" * 16)
    resp, _ = only(core.receive(register("+15125550101"), PHONE, 0.0))
    assert isinstance(resp, Response) and resp.status == 401
    challenge = parse_challenge(resp.headers.get("WWW-Authenticate") or "")
    value = authorization(
        challenge, username="engine", password="s3cret", method="REGISTER", uri="sip:127.0.0.1:5070", cnonce="abc"
    )
    ok, _ = only(core.receive(register("+15125550101", extra=f"Authorization: {value}\r\n"), PHONE, 1.0))
    assert isinstance(ok, Response) and ok.status == 200

    core.route("+15125550102", PHONE)
    uri = "sip:+15125550102@127.0.0.1"
    resp, _ = only(core.receive(invite(uri), ENGINE, 2.0))
    assert isinstance(resp, Response) and resp.status == 407
    challenge = parse_challenge(resp.headers.get("Proxy-Authenticate") or "")
    value = authorization(challenge, username="engine", password="s3cret", method="INVITE", uri=uri, cnonce="d")
    fwd, dest = only(
        core.receive(invite(uri, branch="z9hG4bK2", extra=f"Proxy-Authorization: {value}\r\n"), ENGINE, 3.0)
    )
    assert isinstance(fwd, Request) and dest == PHONE
    wrong = authorization(challenge, username="engine", password="nope", method="INVITE", uri=uri, cnonce="d")
    resp, _ = only(core.receive(invite(uri, branch="z9hG4bK3", extra=f"Proxy-Authorization: {wrong}\r\n"), ENGINE, 3.0))
    assert isinstance(resp, Response) and resp.status == 407


def test_malformed_datagram_is_dropped() -> None:
    """A proxy cannot route what it cannot parse: garbage is dropped without an answer."""
    assert TrunkCore(TRUNK).receive(b"\x00\x01garbage\r\n\r\n", ENGINE, 0.0) == []


@pytest.mark.parametrize(
    ("user", "number"),
    [
        ("+15125550101", "+15125550101"),
        ("15125550101", "+15125550101"),
        ("+1-512-555-0101", "+15125550101"),
        ("alice", "alice"),
    ],
)
def test_numbers_are_normalized(user: str, number: str) -> None:
    """E.164 numbers match with or without '+' and separators; other users stay as they are."""
    assert normalize_number(user) == number


def test_via_and_nameaddr_helpers_roundtrip() -> None:
    """Sanity: the Record-Route we add parses as a loose route to us."""
    rr = NameAddr.parse("<sip:127.0.0.1:5070;lr>")
    assert rr.uri.param("lr") == "" and rr.uri.port == 5070
    assert Via.parse("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx").sent_by == TRUNK
