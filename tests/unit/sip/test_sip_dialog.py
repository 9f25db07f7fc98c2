"""RFC 3261 section 12 dialogs: route sets, remote target, CSeq, in-dialog request construction."""

from __future__ import annotations

from ivr.sip.dialog import Dialog, is_ip_literal, uri_address
from ivr.sip.message import Request, Response, SipUri, Via, build_response, parse_message
from tests.unit.sip.sip_helpers import PEER, request

VIA = Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bKnew"),))


def invite_with_record_route() -> Request:
    data = request(
        "INVITE",
        extra=(
            ("Record-Route", "<sip:p1.example.com;lr>, <sip:10.0.0.2:5080;lr>"),
            ("Record-Route", "<sip:p3.example.com;lr>"),
        ),
    )
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def test_uas_dialog_takes_record_route_in_order_and_contact_as_target() -> None:
    """12.1.1: the UAS route set is Record-Route in order; remote target is the Contact."""
    d = Dialog.as_uas(invite_with_record_route(), "mytag", PEER, local_seq=100)
    assert d.route_set == ["<sip:p1.example.com;lr>", "<sip:10.0.0.2:5080;lr>", "<sip:p3.example.com;lr>"]
    assert str(d.remote_target) == "sip:gw@127.0.0.1:5070" and d.remote_tag == "gwtag"
    assert d.remote_seq == 1 and d.local_tag == "mytag"


def test_uac_dialog_reverses_record_route() -> None:
    """12.1.2: the UAC route set is the 2xx's Record-Route reversed; target from its Contact."""
    req = invite_with_record_route()
    resp: Response = build_response(req.headers, 200, "OK", to_tag="callee")
    for rr in req.headers.get_all("Record-Route"):
        resp.headers.add("Record-Route", rr)
    resp.headers.add("Contact", "<sip:callee@10.0.0.9:5062>")
    d = Dialog.as_uac(req, resp, PEER)
    assert d.route_set[0] == "<sip:p3.example.com;lr>" and d.remote_tag == "callee"
    assert str(d.remote_target) == "sip:callee@10.0.0.9:5062"


def test_loose_routing_keeps_target_in_request_uri() -> None:
    """12.2.1.1: with ;lr the Request-URI is the remote target and Route lists the route set."""
    d = Dialog.as_uas(invite_with_record_route(), "mytag", PEER, local_seq=100)
    bye = d.create_request("BYE", via=VIA, contact=None)
    assert str(bye.uri) == "sip:gw@127.0.0.1:5070"
    assert bye.headers.get_all("Route")[0] == "<sip:p1.example.com;lr>"
    assert bye.cseq.seq == 101 and bye.to.tag == "gwtag" and bye.from_.tag == "mytag"
    assert d.destination() == PEER  # first route is a host name: fall back to the peer address


def test_strict_routing_puts_first_route_in_request_uri() -> None:
    """12.2.1.1: a first route without ;lr becomes the Request-URI; the target goes last in Route."""
    d = Dialog.as_uas(invite_with_record_route(), "mytag", PEER, local_seq=1)
    d.route_set = ["<sip:10.0.0.7:5090>", "<sip:p2.example.com;lr>"]
    info = d.create_request("INFO", via=VIA, contact=None)
    assert str(info.uri) == "sip:10.0.0.7:5090"
    assert info.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:gw@127.0.0.1:5070>"]
    assert d.destination() == ("10.0.0.7", 5090)


def test_ack_for_2xx_reuses_invite_cseq() -> None:
    """13.2.2.4: the ACK of a 2xx carries the INVITE's CSeq number and does not bump local_seq."""
    d = Dialog.as_uas(invite_with_record_route(), "mytag", PEER, local_seq=7)
    ack = d.create_request("ACK", via=VIA, contact=None, seq=1)
    assert (ack.cseq.seq, ack.cseq.method, d.local_seq) == (1, "ACK", 7)


def test_remote_cseq_must_increase() -> None:
    """12.2.2: lower or equal CSeq is out of order (ACK and CANCEL excepted)."""
    d = Dialog.as_uas(invite_with_record_route(), "mytag", PEER, local_seq=7)
    assert d.accept_remote_seq(2, "BYE") and not d.accept_remote_seq(2, "INFO")
    assert d.accept_remote_seq(1, "ACK")


def test_target_refresh_updates_remote_target() -> None:
    """12.2: a re-INVITE's Contact becomes the new remote target."""
    d = Dialog.as_uas(invite_with_record_route(), "mytag", PEER, local_seq=7)
    re = parse_message(request("INVITE", to_tag="mytag", cseq=2).replace(b"gw@127.0.0.1:5070>", b"gw@10.1.1.1:6000>"))
    assert isinstance(re, Request)
    d.refresh_target(re)
    assert uri_address(d.remote_target) == ("10.1.1.1", 6000)


def test_uri_address_needs_ip_literal() -> None:
    """No DNS in the sans-I/O core: only IP-literal URIs name an address."""
    assert uri_address(SipUri.parse("sip:a@example.com")) is None
    assert uri_address(SipUri.parse("sip:a@[::1]:5070")) == ("::1", 5070)
    assert is_ip_literal("127.0.0.1") and not is_ip_literal("localhost")
