"""RFC 3261 message parsing and serialization: limits, compact forms, folding, typed headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.sip.message import (
    CSeq,
    Headers,
    Limits,
    MalformedMessageError,
    NameAddr,
    Request,
    Response,
    SipUri,
    Via,
    build_response,
    can_reply,
    parse_message,
    split_list,
)

BASIC = (
    b"INVITE sip:15551234567@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Gate, Way" <sip:gw@10.0.0.1>;tag=1928301774\r\n'
    b"To: <sip:15551234567@127.0.0.1>\r\n"
    b"Call-ID: a84b4c76e66710@10.0.0.1\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:gw@10.0.0.1:5070>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n\r\nv=0\n"
)


def test_basic_invite_parses_typed_headers() -> None:
    """Via branch/rport, From display with a comma and tag, CSeq, Contact and body are read."""
    msg = parse_message(BASIC)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE" and msg.uri.user == "15551234567" and msg.uri.host == "127.0.0.1"
    assert msg.top_via.branch == "z9hG4bK776asdhds" and msg.top_via.sent_by == ("10.0.0.1", 5070)
    assert msg.from_.display == "Gate, Way" and msg.from_.tag == "1928301774"
    assert msg.to.tag is None
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.contacts[0].uri.port == 5070
    assert msg.body == b"v=0\n"


def test_compact_forms_are_expanded() -> None:
    """Section 7.3.3: v, f, t, i, m, l, c are Via, From, To, Call-ID, Contact, Content-Length, -Type."""
    data = (
        b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n"
        b"f: <sip:b@1.2.3.4>;tag=a\r\nt: <sip:a@127.0.0.1>\r\ni: cid\r\nCSeq: 1 OPTIONS\r\n"
        b"m: <sip:b@1.2.3.4>\r\nc: text/plain\r\nl: 2\r\n\r\nhi"
    )
    msg = parse_message(data)
    assert msg.call_id == "cid" and msg.headers.get("Contact") == "<sip:b@1.2.3.4>"
    assert msg.content_type == "text/plain" and msg.body == b"hi"
    assert b"Call-ID: cid" in msg.to_bytes()


def test_folded_header_is_unfolded() -> None:
    """Section 7.3.1: a line starting with whitespace continues the previous header."""
    data = BASIC.replace(b"Max-Forwards: 70\r\n", b"Subject: I know\r\n   you're there\r\nMax-Forwards: 70\r\n")
    msg = parse_message(data)
    assert msg.headers.get("Subject") == "I know you're there"


def test_multiple_via_values_in_one_line_and_several_lines_keep_order() -> None:
    """Section 7.3.1: comma-joined and repeated Via headers are the same list, in order."""
    data = BASIC.replace(
        b"Max-Forwards",
        b"Via: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK2, SIP/2.0/UDP 10.0.0.3;branch=z9hG4bK3\r\nMax-Forwards",
    )
    msg = parse_message(data)
    assert [v.host for v in msg.vias] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]


def test_content_length_truncates_extra_bytes() -> None:
    """Section 18.3: bytes after Content-Length are discarded."""
    msg = parse_message(BASIC + b"garbage")
    assert msg.body == b"v=0\n"


def test_body_shorter_than_content_length_is_malformed_request() -> None:
    """Section 18.3: a truncated body on UDP is an error; for a request: 400 can be answered."""
    with pytest.raises(MalformedMessageError) as info:
        parse_message(BASIC.replace(b"Content-Length: 4", b"Content-Length: 40"))
    assert info.value.status == 400 and info.value.is_request and can_reply(info.value.headers)


@pytest.mark.parametrize(
    ("mutation", "status"),
    [
        (lambda d: d.replace(b"CSeq: 314159 INVITE\r\n", b""), 400),
        (lambda d: d.replace(b"Call-ID: a84b4c76e66710@10.0.0.1\r\n", b""), 400),
        (lambda d: d.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400),
        (lambda d: d.replace(b"CSeq: 314159", b"CSeq: 99999999999"), 400),
        (lambda d: d.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"), 505),  # RFC 4475 badvers
        (lambda d: d.replace(b"sip:15551234567@127.0.0.1 SIP", b"nonsense SIP"), 400),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: lots"), 400),
        (lambda d: d.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0 UDP"), 400),
        (lambda d: d.replace(b"Content-Length: 4", b"Content-Length: -4"), 400),
        (lambda d: d.replace(b"\r\nTo:", b"\r\nTo : <sip:x@y\r\nBad Header Line\r\nTo:"), 400),
        (lambda d: d + b"x" * 70_000, 513),
    ],
)
def test_malformed_requests_raise_with_status(mutation: object, status: int) -> None:
    """Every malformed request raises MalformedMessageError carrying the status to answer."""
    assert callable(mutation)
    with pytest.raises(MalformedMessageError) as info:
        parse_message(mutation(BASIC))
    assert info.value.status == status


def test_limits_on_header_count_and_line_length() -> None:
    """Too many headers or a too long line is rejected before anything else is interpreted."""
    many = BASIC.replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 20 + b"Max-Forwards: 70\r\n")
    with pytest.raises(MalformedMessageError):
        parse_message(many, Limits(max_headers=20))
    long = BASIC.replace(b"Max-Forwards: 70", b"X-Long: " + b"a" * 300 + b"\r\nMax-Forwards: 70")
    with pytest.raises(MalformedMessageError):
        parse_message(long, Limits(max_line_bytes=256))
    assert parse_message(long).headers.get("X-Long") == "a" * 300


def test_malformed_response_is_not_a_request() -> None:
    """A bad response is flagged is_request=False: the caller drops it (section 18.1.2)."""
    with pytest.raises(MalformedMessageError) as info:
        parse_message(b"SIP/2.0 2000 OK\r\nVia: x\r\n\r\n")
    assert not info.value.is_request


def test_response_round_trip_and_reason_with_spaces() -> None:
    """Status line with a multi-word reason; serialize recomputes Content-Length."""
    req = parse_message(BASIC)
    resp = build_response(req.headers, 486, "Busy Here", to_tag="xyz")
    back = parse_message(resp.to_bytes())
    assert isinstance(back, Response)
    assert (back.status, back.reason, back.to.tag) == (486, "Busy Here", "xyz")
    assert back.headers.get("Content-Length") == "0"
    assert [v.branch for v in back.vias] == ["z9hG4bK776asdhds"]


@pytest.mark.parametrize(
    ("text", "user", "host", "port", "params"),
    [
        ("sip:alice@atlanta.com", "alice", "atlanta.com", None, ()),
        ("sip:alice:secretword@atlanta.com;transport=tcp", "alice", "atlanta.com", None, (("transport", "tcp"),)),
        ("sips:alice@atlanta.com?subject=project", "alice", "atlanta.com", None, ()),
        (
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            "+1-212-555-1212",
            "gateway.com",
            None,
            (("user", "phone"),),
        ),
        ("sip:atlanta.com;method=REGISTER?to=alice", None, "atlanta.com", None, (("method", "REGISTER"),)),
        ("sip:alice@[2001:db8::10]:5070;lr", "alice", "[2001:db8::10]", 5070, (("lr", None),)),
        ("sip:127.0.0.1:5060", None, "127.0.0.1", 5060, ()),
    ],
)
def test_sip_uri_examples_of_section_19_1_3(
    text: str, user: str | None, host: str, port: int | None, params: tuple[tuple[str, str | None], ...]
) -> None:
    """The URI examples of RFC 3261 section 19.1.3 parse into their parts and back."""
    uri = SipUri.parse(text)
    assert (uri.user, uri.host, uri.port, uri.params) == (user, host, port, params)
    assert SipUri.parse(str(uri)) == uri


@pytest.mark.parametrize("text", ["sip:", "sip:@host", "sip:a@host:99999", "sip:a@host:", "nocolon", "sip:a b@c"])
def test_bad_uris_are_rejected(text: str) -> None:
    """Empty hosts, bad ports, spaces: ValueError."""
    with pytest.raises(ValueError):
        SipUri.parse(text)


@pytest.mark.parametrize(
    ("text", "display", "tag"),
    [
        ('"A. G. Bell" <sip:agb@bell-telephone.com> ;tag=a48s', "A. G. Bell", "a48s"),
        ("Anonymous <sip:c8oqz84zk7z@privacy.org>;tag=hyh8", "Anonymous", "hyh8"),
        ("sip:+12125551212@phone2net.com;tag=887s", None, "887s"),
        ('"quote \\" inside" <sip:a@b>', 'quote " inside', None),
    ],
)
def test_name_addr_forms(text: str, display: str | None, tag: str | None) -> None:
    """name-addr and addr-spec forms (section 20.20): in addr-spec, ;tag belongs to the header."""
    na = NameAddr.parse(text)
    assert (na.display, na.tag) == (display, tag)
    assert NameAddr.parse(str(na)) == na


def test_via_received_and_rport() -> None:
    """Via params: branch, received, rport flag (RFC 3581)."""
    via = Via.parse("SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bKnashds8;received=192.0.2.1;rport")
    assert via.sent_by == ("pc33.atlanta.com", 5066) and via.branch == "z9hG4bKnashds8"
    assert dict(via.params)["rport"] is None and Via.parse(str(via)) == via


def test_split_list_respects_quotes_and_brackets() -> None:
    """Commas inside quotes and <> do not split list headers."""
    assert split_list('"a,b" <sip:x@y;p=1,2>, <sip:z@w>') == ['"a,b" <sip:x@y;p=1,2>', "<sip:z@w>"]


def test_headers_set_replaces_in_place() -> None:
    """Headers.set keeps the position of the first field and drops the others."""
    h = Headers([("X-A", "1"), ("X-B", "2"), ("x-a", "3")])
    h.set("x-a", "9")
    assert list(h) == [("x-a", "9"), ("X-B", "2")]


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.!%*_+`'~", min_size=1, max_size=12)
_value = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=","), min_size=1, max_size=40
)


@given(
    method=st.sampled_from(["INVITE", "BYE", "OPTIONS", "INFO", "REFER", "CANCEL", "ACK", "FOO"]),
    user=_token,
    host=st.sampled_from(["127.0.0.1", "example.com", "[::1]"]),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    seq=st.integers(0, 2**31 - 1),
    tag=_token,
    branch=_token,
    call_id=_token,
    display=st.one_of(st.none(), st.text(alphabet='abc XYZ,"\\;', max_size=10)),
    extra=st.lists(st.tuples(st.sampled_from(["X-Inmate-Id", "Subject", "User-Agent", "X-Z"]), _value), max_size=5),
    body=st.binary(max_size=200),
)
def test_request_round_trip(
    method: str,
    user: str,
    host: str,
    port: int | None,
    seq: int,
    tag: str,
    branch: str,
    call_id: str,
    display: str | None,
    extra: list[tuple[str, str]],
    body: bytes,
) -> None:
    """Any well-formed request serializes and parses back to the same message."""
    uri = SipUri("sip", host, user, None, port)
    h = Headers()
    h.add("Via", str(Via("UDP", "127.0.0.1", 5060, (("branch", "z9hG4bK" + branch),))))
    h.add("From", str(NameAddr(uri, display or None).with_tag(tag)))
    h.add("To", str(NameAddr(uri)))
    h.add("Call-ID", call_id)
    h.add("CSeq", str(CSeq(seq, method)))
    for name, value in extra:
        h.add(name, value)
    req = Request(headers=h, method=method, uri=uri, body=body)
    back = parse_message(req.to_bytes())
    assert isinstance(back, Request)
    assert (back.method, back.uri, back.cseq, back.call_id, back.body) == (
        method,
        uri,
        CSeq(seq, method),
        call_id,
        body,
    )
    assert back.from_ == NameAddr(uri, display or None).with_tag(tag)
    assert [(n, v) for n, v in back.headers if n != "Content-Length"] == list(h)
    assert back.to_bytes() == req.to_bytes()


def test_bare_cr_in_header_is_malformed() -> None:
    """Section 7.3.1: CR only appears in CRLF; a bare CR inside a header line is rejected."""
    with pytest.raises(MalformedMessageError):
        parse_message(BASIC.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\rX-Evil: 1"))


def test_serializer_refuses_header_injection() -> None:
    """A value with CRLF (e.g. a display name from a caller) cannot smuggle header lines out."""
    from ivr.errors import LocalProtocolError

    msg = parse_message(BASIC)
    msg.headers.add("X-Inmate-Id", "A1\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(LocalProtocolError):
        msg.to_bytes()
