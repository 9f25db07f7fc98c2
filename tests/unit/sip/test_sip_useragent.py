"""The sans-I/O user agent: UAS and UAC behaviour against scripted peers and against itself."""

from __future__ import annotations

import pytest

from ivr.sip import events as ev
from ivr.sip.auth import DigestVerifier
from ivr.sip.message import Request, Response, parse_message
from ivr.sip.sdp import Direction, build_answer, build_offer, parse_sdp
from ivr.sip.useragent import Credentials, Phase, UAConfig, UserAgent, parse_dtmf_info
from tests.unit.sip.sip_helpers import (
    OFFER_SDP,
    PEER,
    UA_ADDR,
    pump,
    reply,
    request,
    sdp_with,
    sent,
    statuses,
)

TRUNK_URI = "sip:15551234567@127.0.0.1:5070"


def make_ua(**kw: object) -> UserAgent:
    counter = iter(range(1, 10_000_000))
    # deterministic "randomness": tests must not depend on luck
    return UserAgent(UAConfig(local_addr=UA_ADDR, **kw), rand=lambda n: next(counter).to_bytes(n, "big"))  # type: ignore[arg-type]


def incoming_call(ua: UserAgent, *, extra: tuple[tuple[str, str], ...] = ()) -> ev.InviteReceived:
    events = ua.receive(request("INVITE", body=OFFER_SDP, extra=extra), PEER, 0.0)
    assert statuses(sent(ua)) == [100]
    assert len(events) == 1 and isinstance(events[0], ev.InviteReceived)
    return events[0]


def answered_call(ua: UserAgent) -> tuple[str, str]:
    """An incoming call answered and ACKed; returns (call_id, our To tag)."""
    inv = incoming_call(ua)
    assert inv.sdp is not None
    ua.answer(inv.call_id, build_answer(inv.sdp, "127.0.0.1", 5000, session_id=5), 0.0)
    ok = sent(ua)[0]
    assert isinstance(ok, Response) and ok.status == 200
    tag = ok.to.tag
    assert tag is not None
    events = ua.receive(request("ACK", branch="z9hG4bK-ack", to_tag=tag), PEER, 0.1)
    assert events == [ev.CallConfirmed(inv.call_id, None)]
    return inv.call_id, tag


# ----------------------------------------------------------------------------- UAS


def test_invite_event_carries_source_headers_and_inmate_id() -> None:
    """InviteReceived gives the source address, URIs and X-Inmate-Id for the gateway check."""
    ua = make_ua()
    inv = incoming_call(ua, extra=(("X-Inmate-Id", " A-77 "),))
    assert inv.source == PEER and inv.inmate_id == "A-77"
    assert inv.request_uri == "sip:15551234567@127.0.0.1:5060" and inv.from_display == "Gateway"
    assert inv.sdp is not None and inv.header("x-inmate-id") == "A-77"


def test_non_gateway_rejected_403_and_ack_absorbed() -> None:
    """reject(403) sends a final 403 with a To tag; the ACK is absorbed by the transaction."""
    ua = make_ua()
    inv = incoming_call(ua)
    ua.reject(inv.call_id, 403, 0.0)
    (resp,) = sent(ua)
    assert isinstance(resp, Response) and resp.status == 403 and resp.to.tag
    assert ua.receive(request("ACK", to_tag=resp.to.tag), PEER, 0.1) == []
    assert sent(ua) == [] and ua.call_ids == []


def test_retransmitted_invite_gets_last_provisional_not_a_new_event() -> None:
    """17.2.1: a retransmitted INVITE is absorbed: same 100 again, no second InviteReceived."""
    ua = make_ua()
    incoming_call(ua)
    assert ua.receive(request("INVITE", body=OFFER_SDP), PEER, 0.5) == []
    assert statuses(sent(ua)) == [100]


def test_2xx_retransmitted_until_ack() -> None:
    """13.3.1.4: our 200 is re-sent at T1 doubling up to T2 until the ACK arrives, then stops."""
    ua = make_ua()
    inv = incoming_call(ua)
    assert inv.sdp is not None
    ua.answer(inv.call_id, build_answer(inv.sdp, "127.0.0.1", 5000, session_id=5), 0.0)
    ok = sent(ua)[0]
    times = []
    while (d := ua.next_deadline()) is not None and d < 8.0:
        ua.handle_timer(d)
        if any(isinstance(m, Response) and m.status == 200 for m in sent(ua)):
            times.append(d)
    assert times == [0.5, 1.5, 3.5, 7.5]
    assert isinstance(ok, Response) and ok.to.tag
    ua.receive(request("ACK", branch="z9hG4bK-ack", to_tag=ok.to.tag), PEER, 8.0)
    assert ua.call_phase(inv.call_id) is Phase.ESTABLISHED
    ua.handle_timer(11.6)
    assert sent(ua) == []


def test_2xx_never_acked_ends_with_bye() -> None:
    """13.3.1.4: no ACK within 64*T1 -> BYE and CallFailed(408)."""
    ua = make_ua()
    inv = incoming_call(ua)
    assert inv.sdp is not None
    ua.answer(inv.call_id, build_answer(inv.sdp, "127.0.0.1", 5000, session_id=5), 0.0)
    sent(ua)
    events = ua.handle_timer(32.0)
    assert events == [ev.CallFailed(inv.call_id, 408, "No ACK For 2xx")]
    assert "BYE" in statuses(sent(ua))


def test_cancel_gets_200_and_invite_487() -> None:
    """9.2: CANCEL -> 200 (CANCEL), 487 (INVITE), CallCancelled; our To tag is the same on both."""
    ua = make_ua()
    inv = incoming_call(ua)
    ua.ringing(inv.call_id, 0.1)
    sent(ua)
    events = ua.receive(request("CANCEL"), PEER, 0.2)
    msgs = sent(ua)
    assert events == [ev.CallCancelled(inv.call_id)]
    assert [(m.status, m.cseq.method) for m in msgs if isinstance(m, Response)] == [(200, "CANCEL"), (487, "INVITE")]
    assert ua.call_ids == []


def test_cancel_without_invite_is_481() -> None:
    """A CANCEL matching no INVITE transaction is answered 481."""
    ua = make_ua()
    ua.receive(request("CANCEL"), PEER, 0.0)
    assert statuses(sent(ua)) == [481]


def test_bye_ends_call_and_unknown_dialog_is_481() -> None:
    """15.1.2: BYE -> 200 + ByeReceived; BYE for no dialog -> 481."""
    ua = make_ua()
    call_id, tag = answered_call(ua)
    events = ua.receive(request("BYE", branch="z9hG4bK-bye", to_tag=tag, cseq=2), PEER, 1.0)
    assert events == [ev.ByeReceived(call_id)] and statuses(sent(ua)) == [200]
    ua.receive(request("BYE", branch="z9hG4bK-bye2", to_tag=tag, cseq=3), PEER, 1.1)
    assert statuses(sent(ua)) == [481]


@pytest.mark.parametrize("in_dialog", [False, True])
def test_options_answered_200_in_and_out_of_dialog(in_dialog: bool) -> None:
    """OPTIONS (load-balancer probe) -> 200 with Allow, inside or outside a dialog."""
    ua = make_ua()
    tag = answered_call(ua)[1] if in_dialog else None
    ua.receive(request("OPTIONS", branch="z9hG4bK-o", to_tag=tag, cseq=5), PEER, 1.0)
    (resp,) = sent(ua)
    assert isinstance(resp, Response) and resp.status == 200 and "INVITE" in (resp.headers.get("Allow") or "")


@pytest.mark.parametrize(
    ("ctype", "body", "key", "duration_ms"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", "5", 160),
        ("application/dtmf-relay", b"Signal= #\r\nDuration= 250\r\n", "#", 250),
        ("application/dtmf-relay", b"signal=10\nduration=100", "*", 100),
        ("application/dtmf", b"7", "7", 250),
    ],
)
def test_info_dtmf_becomes_key(ctype: str, body: bytes, key: str, duration_ms: int) -> None:
    """INFO dtmf-relay / dtmf -> 200 and KeyReceived(key, duration_ms)."""
    ua = make_ua()
    call_id, tag = answered_call(ua)
    events = ua.receive(
        request("INFO", branch="z9hG4bK-i", to_tag=tag, cseq=2, body=body, content_type=ctype), PEER, 1.0
    )
    assert events == [ev.KeyReceived(call_id, key, duration_ms)] and statuses(sent(ua)) == [200]


@pytest.mark.parametrize(
    ("ctype", "body", "status"),
    [("application/dtmf-relay", b"Signal=X\r\n", 400), ("text/plain", b"5", 415)],
)
def test_bad_info_rejected(ctype: str, body: bytes, status: int) -> None:
    """A DTMF INFO with a bad signal is 400; another body type is 415; the call goes on."""
    ua = make_ua()
    call_id, tag = answered_call(ua)
    ua.receive(request("INFO", branch="z9hG4bK-i", to_tag=tag, cseq=2, body=body, content_type=ctype), PEER, 1.0)
    assert statuses(sent(ua)) == [status] and ua.call_phase(call_id) is Phase.ESTABLISHED


@pytest.mark.parametrize(
    ("direction", "conn", "answered", "hold"),
    [
        ("sendonly", "127.0.0.1", "recvonly", True),
        ("inactive", "127.0.0.1", "inactive", True),
        (None, "0.0.0.0", "recvonly", True),
        ("sendrecv", "127.0.0.1", "sendrecv", False),
    ],
)
def test_reinvite_hold_answered_per_rfc3264(direction: str | None, conn: str, answered: str, hold: bool) -> None:
    """14.2 + RFC 3264 8.4: a re-INVITE is answered with the reversed direction; hold offers raise
    HoldDetected, and the answer keeps our address and port."""
    ua = make_ua()
    _, tag = answered_call(ua)
    events = ua.receive(
        request("INVITE", branch="z9hG4bK-re", to_tag=tag, cseq=2, body=sdp_with(direction, conn)), PEER, 1.0
    )
    (ok,) = sent(ua)
    assert isinstance(ok, Response) and ok.status == 200
    answer = parse_sdp(ok.body)
    audio = answer.audio()
    assert audio is not None and audio.port == 5000 and answer.stream_direction(audio).value == answered
    assert answer.origin.session_version == 2
    assert any(isinstance(e, ev.HoldDetected) for e in events) is hold
    assert any(isinstance(e, ev.MediaUpdated) for e in events)


def test_hold_then_resume() -> None:
    """sendonly then sendrecv re-INVITEs -> HoldDetected then HoldResumed, once each."""
    ua = make_ua()
    _, tag = answered_call(ua)
    first = ua.receive(request("INVITE", branch="z9hG4bK-r1", to_tag=tag, cseq=2, body=sdp_with("sendonly")), PEER, 1)
    ua.receive(request("ACK", branch="z9hG4bK-a1", to_tag=tag, cseq=2), PEER, 1.1)
    second = ua.receive(request("INVITE", branch="z9hG4bK-r2", to_tag=tag, cseq=3, body=sdp_with(version=3)), PEER, 2)
    assert [type(e) for e in first] == [ev.MediaUpdated, ev.HoldDetected]
    assert [type(e) for e in second] == [ev.MediaUpdated, ev.HoldResumed]


def test_reinvite_without_common_codec_is_488_and_call_continues() -> None:
    """14.2: a re-INVITE we cannot accept gets 488; the session stays as it was."""
    ua = make_ua()
    call_id, tag = answered_call(ua)
    g729 = b"v=0\r\no=gw 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\n"
    ua.receive(request("INVITE", branch="z9hG4bK-re", to_tag=tag, cseq=2, body=g729), PEER, 1.0)
    assert statuses(sent(ua)) == [488] and ua.call_phase(call_id) is Phase.ESTABLISHED


def test_refer_declined_and_reported() -> None:
    """RFC 3515: REFER -> 603 Decline (never followed) and TransferRequested(refer_to)."""
    ua = make_ua()
    call_id, tag = answered_call(ua)
    events = ua.receive(
        request("REFER", branch="z9hG4bK-rf", to_tag=tag, cseq=2, extra=(("Refer-To", "<sip:other@x>"),)), PEER, 1
    )
    assert events == [ev.TransferRequested(call_id, "<sip:other@x>")] and statuses(sent(ua)) == [603]


def test_initial_invite_without_common_codec_is_488() -> None:
    """An INVITE offering only G.729 is answered 488 by the UA itself (no engine event)."""
    ua = make_ua()
    g729 = b"v=0\r\no=gw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\n"
    events = ua.receive(request("INVITE", body=g729), PEER, 0.0)
    assert events == [ev.RequestRejected(PEER, "INVITE", 488, "Not Acceptable Here")]
    assert statuses(sent(ua)) == [488] and ua.call_ids == []


def test_out_of_order_cseq_is_500() -> None:
    """12.2.2: an in-dialog request with a lower CSeq than the last one gets 500."""
    ua = make_ua()
    _, tag = answered_call(ua)
    ua.receive(request("OPTIONS", branch="z9hG4bK-o1", to_tag=tag, cseq=5), PEER, 1.0)
    ua.receive(request("OPTIONS", branch="z9hG4bK-o2", to_tag=tag, cseq=4), PEER, 1.1)
    assert statuses(sent(ua)) == [200, 500]


@pytest.mark.parametrize(("method", "status"), [("FOO", 501), ("SUBSCRIBE", 405), ("REGISTER", 405), ("INFO", 481)])
def test_unsupported_methods(method: str, status: int) -> None:
    """Unknown methods -> 501, known but unserved -> 405 (with Allow), INFO outside a dialog -> 481."""
    ua = make_ua()
    ua.receive(request(method), PEER, 0.0)
    assert statuses(sent(ua)) == [status]


def test_require_unknown_extension_is_420() -> None:
    """8.2.2.3: Require: 100rel (not supported) -> 420 with Unsupported: 100rel."""
    ua = make_ua()
    ua.receive(request("INVITE", body=OFFER_SDP, extra=(("Require", "100rel"),)), PEER, 0.0)
    (resp,) = sent(ua)
    assert isinstance(resp, Response) and resp.status == 420 and resp.headers.get("Unsupported") == "100rel"


def test_malformed_request_gets_400_and_malformed_response_is_dropped() -> None:
    """21.4.1: a bad request with readable Via/From/To/Call-ID/CSeq -> 400; a bad response -> nothing."""
    ua = make_ua()
    bad = request("OPTIONS").replace(b"Max-Forwards: 70", b"Max-Forwards: many")
    events = ua.receive(bad, PEER, 0.0)
    assert statuses(sent(ua)) == [400] and isinstance(events[0], ev.RequestRejected)
    assert ua.receive(b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n", PEER, 0.0) == []
    assert ua.receive(b"\x00\xff garbage", PEER, 0.0) == [] and sent(ua) == []
    assert ua.receive(b"\r\n\r\n", PEER, 0.0) == [] and sent(ua) == []  # keep-alive


def test_transaction_cap_answers_503() -> None:
    """Beyond max_server_transactions new requests get 503 Retry-After (flood guard)."""
    ua = make_ua(max_server_transactions=2)
    for i in range(3):
        ua.receive(request("OPTIONS", branch=f"z9hG4bK-{i}", call_id=f"c{i}"), PEER, 0.0)
    assert statuses(sent(ua)) == [200, 200, 503]


def test_merged_invite_same_call_id_is_482() -> None:
    """8.2.2.2: a second INVITE with the same Call-ID/From tag but a new branch -> 482."""
    ua = make_ua()
    incoming_call(ua)
    ua.receive(request("INVITE", branch="z9hG4bK-other", body=OFFER_SDP), PEER, 0.1)
    assert statuses(sent(ua)) == [482]


def test_response_goes_to_source_with_received() -> None:
    """18.2.2 / RFC 3581: responses go to the packet's source; received= notes a different host."""
    ua = make_ua()
    ua.receive(request("OPTIONS").replace(b"UDP 127.0.0.1:5070", b"UDP 10.9.9.9:5070;rport"), ("127.0.0.1", 6000), 0)
    ((data, addr),) = ua.datagrams_to_send()
    resp = parse_message(data)
    assert addr == ("127.0.0.1", 6000)
    assert resp.top_via.params == (("rport", "6000"), ("received", "127.0.0.1")) or dict(resp.top_via.params) == {
        "rport": "6000",
        "received": "127.0.0.1",
        "branch": "z9hG4bK-1",
    }


# ----------------------------------------------------------------------------- UAC


def place_call(ua: UserAgent) -> tuple[str, Request]:
    call_id = ua.invite(
        TRUNK_URI, build_offer("127.0.0.1", 4000, session_id=1), 0.0, headers=(("P-Asserted-Identity", "<sip:jail@x>"),)
    )
    (inv,) = sent(ua)
    assert isinstance(inv, Request) and inv.method == "INVITE"
    return call_id, inv


@pytest.mark.parametrize("status", [486, 480, 487, 503, 603, 404])
def test_final_failures_become_call_failed_and_are_acked(status: int) -> None:
    """3xx-6xx -> CallFailed(status); the client transaction sends the ACK (17.1.1.3)."""
    ua = make_ua()
    call_id, inv = place_call(ua)
    events = ua.receive(reply(inv.to_bytes(), status, reason="R"), PEER, 0.2)
    assert events == [ev.CallFailed(call_id, status, "R")]
    assert statuses(sent(ua)) == ["ACK"] and ua.call_ids == []


def test_ringing_then_answer_acks_and_reports() -> None:
    """180 -> CallRinging; 200 -> ACK (new branch, same CSeq number) and CallAnswered(sdp)."""
    ua = make_ua()
    call_id, inv = place_call(ua)
    assert ua.receive(reply(inv.to_bytes(), 180, reason="Ringing"), PEER, 0.1) == [
        ev.CallRinging(call_id, 180, "Ringing", None)
    ]
    ok = reply(inv.to_bytes(), 200, reason="OK", body=OFFER_SDP.replace(b"0 8 96", b"8 96"))
    events = ua.receive(ok, PEER, 0.2)
    assert len(events) == 1 and isinstance(events[0], ev.CallAnswered) and events[0].sdp is not None
    (ack,) = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.seq == inv.cseq.seq
    assert ack.top_via.branch != inv.top_via.branch and str(ack.uri) == "sip:peer@127.0.0.1:5070"
    # a retransmitted 200 is ACKed again without a new event
    assert ua.receive(ok, PEER, 0.7) == [] and statuses(sent(ua)) == ["ACK"]


def test_answer_without_common_codec_is_acked_then_byed() -> None:
    """13.2.2.4: an unusable SDP answer: ACK, then BYE, and CallFailed(488)."""
    ua = make_ua()
    call_id, inv = place_call(ua)
    g729 = b"v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\n"
    events = ua.receive(reply(inv.to_bytes(), 200, body=g729), PEER, 0.2)
    assert events == [ev.CallFailed(call_id, 488, "Not Acceptable Here")]
    assert statuses(sent(ua)) == ["ACK", "BYE"]


def test_invite_timeout_is_408() -> None:
    """Timer B: no response in 64*T1 -> CallFailed(408)."""
    ua = make_ua()
    call_id, _ = place_call(ua)
    events: list[ev.UAEvent] = []
    d = 0.0
    while not events and (nd := ua.next_deadline()) is not None:
        d = nd
        events = ua.handle_timer(d)
    assert events == [ev.CallFailed(call_id, 408, "Request Timeout")] and d == pytest.approx(32.0)


def test_cancel_waits_for_provisional() -> None:
    """9.1: CANCEL is held until a provisional arrives, then sent with the INVITE's branch; 487 ends it."""
    ua = make_ua()
    call_id, inv = place_call(ua)
    ua.cancel(call_id, 0.1)
    assert sent(ua) == []
    ua.receive(reply(inv.to_bytes(), 100, to_tag=None), PEER, 0.2)
    (cancel,) = sent(ua)
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.top_via.branch == inv.top_via.branch and cancel.cseq.seq == inv.cseq.seq
    ua.receive(reply(cancel.to_bytes(), 200, to_tag=None), PEER, 0.3)
    events = ua.receive(reply(inv.to_bytes(), 487, reason="Request Terminated"), PEER, 0.4)
    assert events == [ev.CallFailed(call_id, 487, "Request Terminated")]


def test_answer_crossing_cancel_is_acked_and_byed() -> None:
    """9.1: a 200 that crosses our CANCEL is ACKed and BYEd; the call counts as cancelled (487)."""
    ua = make_ua()
    call_id, inv = place_call(ua)
    ua.receive(reply(inv.to_bytes(), 180), PEER, 0.1)
    ua.cancel(call_id, 0.2)
    assert statuses(sent(ua)) == ["CANCEL"]
    events = ua.receive(reply(inv.to_bytes(), 200, body=OFFER_SDP), PEER, 0.3)
    assert events == [ev.CallFailed(call_id, 487, "Request Terminated")]
    assert statuses(sent(ua)) == ["ACK", "BYE"]


@pytest.mark.parametrize(("status", "header"), [(401, "Authorization"), (407, "Proxy-Authorization")])
@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_digest_retry_on_401_and_407(status: int, header: str, algorithm: str) -> None:
    """22.2: a challenged INVITE is re-sent once with credentials (CSeq+1, new branch) that verify."""
    ua = make_ua(credentials=Credentials("engine", "s3cret"))
    call_id, inv = place_call(ua)
    verifier = DigestVerifier("trunk", b"k", {"engine": "s3cret"}, algorithm=algorithm)
    name = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
    assert ua.receive(reply(inv.to_bytes(), status, extra=((name, verifier.challenge(0.0)),)), PEER, 0.1) == []
    ack, retry = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert isinstance(retry, Request) and retry.cseq.seq == inv.cseq.seq + 1 and retry.call_id == call_id
    assert retry.top_via.branch != inv.top_via.branch
    value = retry.headers.get(header)
    assert value is not None and verifier.verify(value, method="INVITE", now=0.2) == (True, False)
    # the same challenge again means wrong credentials: give up with the status
    events = ua.receive(reply(retry.to_bytes(), status, extra=((name, verifier.challenge(0.3)),)), PEER, 0.3)
    assert events == [ev.CallFailed(call_id, status, "X")]


def test_bye_completes_with_call_ended() -> None:
    """Our BYE on an established call -> CallEnded(200) when answered, CallEnded(408) on timeout."""
    a, b = make_ua(), UserAgent(UAConfig(local_addr=PEER))
    call_id = a.invite(TRUNK_URI, build_offer("127.0.0.1", 4000, session_id=1), 0.0)
    inv = next(e for _, e in pump(a, b, 0.0) if isinstance(e, ev.InviteReceived))
    assert inv.sdp is not None
    b.answer(inv.call_id, build_answer(inv.sdp, "127.0.0.1", 5000, session_id=2), 0.0)
    assert [type(e) for _, e in pump(a, b, 0.0)] == [ev.CallAnswered, ev.CallConfirmed]
    a.bye(call_id, 1.0)
    assert [e for _, e in pump(a, b, 1.0)] == [ev.ByeReceived(call_id), ev.CallEnded(call_id, 200)]


def test_bye_timeout_still_ends_call() -> None:
    """15.1.1 + 8.1.3.1: no answer to BYE within 64*T1 still ends the call (CallEnded 408)."""
    ua = make_ua()
    call_id, inv = place_call(ua)
    ua.receive(reply(inv.to_bytes(), 200, body=OFFER_SDP), PEER, 0.1)
    sent(ua)
    ua.bye(call_id, 1.0)
    events: list[ev.UAEvent] = []
    while (d := ua.next_deadline()) is not None and not events:
        events = ua.handle_timer(d)
    assert events == [ev.CallEnded(call_id, 408)]


def test_called_party_hold_on_our_uac_leg() -> None:
    """The called party (we are UAC) re-INVITEs sendonly: answered recvonly and HoldDetected."""
    ua = make_ua()
    call_id, inv = place_call(ua)
    ua.receive(reply(inv.to_bytes(), 200, body=OFFER_SDP), PEER, 0.1)
    sent(ua)
    frm = inv.from_.tag
    reinvite = request(
        "INVITE", branch="z9hG4bK-h", call_id=call_id, from_tag="peertag", to_tag=frm, cseq=1, body=sdp_with("inactive")
    )
    events = ua.receive(reinvite, PEER, 1.0)
    (ok,) = sent(ua)
    assert isinstance(ok, Response) and ok.status == 200 and b"a=inactive" in ok.body
    assert any(isinstance(e, ev.HoldDetected) for e in events)


# ----------------------------------------------------------------------------- REGISTER


def first_request_time(ua: UserAgent) -> float:
    """Step timers until the UA sends something; return that time (datagrams stay queued)."""
    while (d := ua.next_deadline()) is not None:
        ua.handle_timer(d)
        if ua._outbox:
            return d
    raise AssertionError("nothing sent")


def test_register_refreshes_before_expiry_and_retries_after_failure() -> None:
    """10.2: 200 with expires=60 -> refresh at 30 s; a 503 -> RegistrationFailed, retry after 30 s."""
    ua = make_ua()
    ua.register("sip:127.0.0.1:5070", "sip:engine@127.0.0.1", 0.0, expires_s=60)
    (reg,) = sent(ua)
    assert isinstance(reg, Request) and reg.method == "REGISTER" and reg.headers.get("Expires") == "60"
    events = ua.receive(reply(reg.to_bytes(), 200, extra=(("Expires", "60"),)), PEER, 0.1)
    assert events == [ev.RegistrationSucceeded("sip:engine@127.0.0.1", 60)]
    assert first_request_time(ua) == pytest.approx(30.1)
    (refresh,) = sent(ua)
    assert isinstance(refresh, Request) and refresh.call_id == reg.call_id and refresh.cseq.seq == reg.cseq.seq + 1
    events = ua.receive(reply(refresh.to_bytes(), 503, reason="Busy"), PEER, 30.2)
    (failed,) = events
    assert isinstance(failed, ev.RegistrationFailed) and (failed.status, failed.reason) == (503, "Busy")
    assert failed.retry_at == pytest.approx(60.2)
    assert first_request_time(ua) == pytest.approx(60.2)
    assert statuses(sent(ua)) == ["REGISTER"]


def test_register_digest_and_423() -> None:
    """401 -> REGISTER with Authorization; 423 -> retry with Min-Expires."""
    ua = make_ua(credentials=Credentials("engine", "pw"))
    ua.register("sip:127.0.0.1:5070", "sip:engine@127.0.0.1", 0.0, expires_s=30)
    (reg,) = sent(ua)
    ua.receive(reply(reg.to_bytes(), 401, extra=(("WWW-Authenticate", 'Digest realm="t", nonce="n"'),)), PEER, 0.1)
    (authed,) = sent(ua)
    assert isinstance(authed, Request) and (authed.headers.get("Authorization") or "").startswith("Digest ")
    ua.receive(reply(authed.to_bytes(), 423, extra=(("Min-Expires", "120"),)), PEER, 0.2)
    (longer,) = sent(ua)
    assert isinstance(longer, Request) and longer.headers.get("Expires") == "120"


def test_register_timeout_reports_failure() -> None:
    """No answer from the registrar: RegistrationFailed(408) and a later retry."""
    ua = make_ua()
    ua.register("sip:127.0.0.1:5070", "sip:engine@127.0.0.1", 0.0)
    events: list[ev.UAEvent] = []
    while (d := ua.next_deadline()) is not None and not events:
        events = ua.handle_timer(d)
    assert len(events) == 1 and isinstance(events[0], ev.RegistrationFailed) and events[0].status == 408


def test_parse_dtmf_info_rejects_garbage() -> None:
    """A dtmf-relay body without a valid Signal raises ValueError (-> 400)."""
    with pytest.raises(ValueError):
        parse_dtmf_info(b"Duration=100", "application/dtmf-relay")
    with pytest.raises(ValueError):
        parse_dtmf_info(b"55", "application/dtmf")


def test_invite_from_unlisted_source_gets_stateless_403() -> None:
    """8.2.7: with invite_sources set, other sources get a stateless 403: no event but
    RequestRejected, no transaction, no retransmission; a retransmitted INVITE gets the same 403."""
    ua = make_ua(invite_sources=frozenset({"10.0.0.1"}))
    events = ua.receive(request("INVITE", body=OFFER_SDP), PEER, 0.0)
    assert events == [ev.RequestRejected(PEER, "INVITE", 403, "Forbidden")]
    (first,) = ua.datagrams_to_send()
    ua.receive(request("INVITE", body=OFFER_SDP), PEER, 0.5)
    (second,) = ua.datagrams_to_send()
    assert first == second and ua.next_deadline() is None and ua.call_ids == []
    assert statuses([parse_message(first[0])]) == [403]


def test_invite_from_listed_gateway_reaches_engine() -> None:
    """A listed gateway's INVITE gets 100 and InviteReceived as usual."""
    ua = make_ua(invite_sources=frozenset({PEER[0]}))
    incoming_call(ua)


def test_commands_on_a_cancelled_call_are_ignored() -> None:
    """answer/ringing/reject after CANCEL return False and send nothing (a normal race)."""
    ua = make_ua()
    inv = incoming_call(ua)
    ua.receive(request("CANCEL"), PEER, 0.1)
    sent(ua)
    assert inv.sdp is not None
    assert ua.answer(inv.call_id, build_answer(inv.sdp, "127.0.0.1", 5000, session_id=5), 0.2) is False
    assert ua.ringing(inv.call_id, 0.2) is False and ua.reject(inv.call_id, 486, 0.2) is False
    assert sent(ua) == []


def test_late_offer_answer_comes_in_ack() -> None:
    """13.2.1: an INVITE without SDP: our 200 carries the offer, the ACK's SDP comes in CallConfirmed."""
    ua = make_ua()
    (inv,) = ua.receive(request("INVITE"), PEER, 0.0)
    assert isinstance(inv, ev.InviteReceived) and inv.sdp is None
    sent(ua)
    ua.answer(inv.call_id, build_offer("127.0.0.1", 5000, session_id=3), 0.0)
    (ok,) = sent(ua)
    assert isinstance(ok, Response) and ok.to.tag
    events = ua.receive(request("ACK", branch="z9hG4bK-a", to_tag=ok.to.tag, body=OFFER_SDP), PEER, 0.1)
    assert len(events) == 1 and isinstance(events[0], ev.CallConfirmed) and events[0].sdp is not None
    assert ua.remote_sdp(inv.call_id) == events[0].sdp


def test_ringing_with_sdp_is_183() -> None:
    """ringing(sdp=...) sends 183 Session Progress with the early-media SDP and a Contact."""
    ua = make_ua()
    inv = incoming_call(ua)
    assert inv.sdp is not None
    ua.ringing(inv.call_id, 0.1, build_answer(inv.sdp, "127.0.0.1", 5000, session_id=5))
    (resp,) = sent(ua)
    assert isinstance(resp, Response) and resp.status == 183 and resp.body and resp.headers.get("Contact")


# ----------------------------------------------------------------------------- in-dialog requests we send


def connected_pair() -> tuple[UserAgent, UserAgent, str]:
    """A (UAC) called B (UAS) and B answered; returns (a, b, call_id)."""
    a, b = make_ua(), UserAgent(UAConfig(local_addr=PEER))
    call_id = a.invite(TRUNK_URI, build_offer("127.0.0.1", 4000, session_id=1), 0.0)
    inv = next(e for _, e in pump(a, b, 0.0) if isinstance(e, ev.InviteReceived))
    assert inv.sdp is not None
    b.answer(inv.call_id, build_answer(inv.sdp, "127.0.0.1", 5000, session_id=2), 0.0)
    pump(a, b, 0.0)
    return a, b, call_id


def test_send_reinvite_hold_is_acked_and_reported() -> None:
    """send_request(INVITE, sendonly offer): the peer sees HoldDetected; we ACK its 2xx, get
    RequestCompleted(INVITE, 200) and its recvonly answer becomes our remote SDP."""
    a, b, call_id = connected_pair()
    offer = build_offer("127.0.0.1", 4000, session_id=1, session_version=2, direction=Direction.SENDONLY)
    assert a.send_request(call_id, "INVITE", 1.0, body=offer.to_bytes())
    assert a.send_request(call_id, "INVITE", 1.0, body=offer.to_bytes()) is False  # 14.1: one at a time
    got = [(ua is a, type(e)) for ua, e in pump(a, b, 1.0)]
    assert (False, ev.HoldDetected) in got and (True, ev.RequestCompleted) in got
    remote = a.remote_sdp(call_id)
    assert remote is not None and b"a=recvonly" in remote.to_bytes()
    b.handle_timer(1.6)  # B got our ACK: its 200 is not retransmitted
    assert b.datagrams_to_send() == []


@pytest.mark.parametrize(
    ("method", "body", "ctype", "headers", "peer_event", "status"),
    [
        ("INFO", b"Signal=9\r\nDuration=100\r\n", "application/dtmf-relay", (), ev.KeyReceived, 200),
        ("REFER", b"", None, (("Refer-To", "<sip:x@y>"),), ev.TransferRequested, 603),
        ("OPTIONS", b"", None, (), None, 200),
    ],
)
def test_send_in_dialog_requests(
    method: str,
    body: bytes,
    ctype: str | None,
    headers: tuple[tuple[str, str], ...],
    peer_event: type | None,
    status: int,
) -> None:
    """INFO, REFER, OPTIONS sent in a dialog reach the peer's handler and complete with its status."""
    a, b, call_id = connected_pair()
    assert a.send_request(call_id, method, 1.0, body=body, content_type=ctype, headers=headers)
    got = pump(a, b, 1.0)
    assert ev.RequestCompleted(call_id, method, status, {200: "OK", 603: "Decline"}[status]) in [e for _, e in got]
    if peer_event is not None:
        assert any(isinstance(e, peer_event) for ua, e in got if ua is b)


def test_send_request_timeout_is_408() -> None:
    """No answer to an in-dialog request within 64*T1: RequestCompleted(408)."""
    a, _b, call_id = connected_pair()
    a.send_request(call_id, "INFO", 1.0, body=b"5", content_type="application/dtmf")
    events: list[ev.UAEvent] = []
    while (d := a.next_deadline()) is not None and not events:
        events = a.handle_timer(d)
    assert events == [ev.RequestCompleted(call_id, "INFO", 408, "Request Timeout")]


def test_100_trying_copies_timestamp_and_has_no_to_tag() -> None:
    """8.2.6.1: the 100 copies Timestamp; a 100 never carries a To tag (section 8.2.6.2)."""
    ua = make_ua()
    ua.receive(request("INVITE", body=OFFER_SDP, extra=(("Timestamp", "54.3"),)), PEER, 0.0)
    (trying,) = sent(ua)
    assert isinstance(trying, Response) and trying.status == 100
    assert trying.headers.get("Timestamp") == "54.3" and trying.to.tag is None


def test_cancel_without_final_response_gives_up_after_64_t1() -> None:
    """9.1: a CANCELled INVITE with no final response within 64*T1 is considered cancelled:
    CallFailed(487) and nothing left behind (no timers, no transactions)."""
    ua = make_ua()
    call_id, inv = place_call(ua)
    ua.receive(reply(inv.to_bytes(), 180), PEER, 0.1)
    ua.cancel(call_id, 1.0)
    (cancel,) = sent(ua)
    ua.receive(reply(cancel.to_bytes(), 200, to_tag=None), PEER, 1.1)
    events: list[ev.UAEvent] = []
    while (d := ua.next_deadline()) is not None:
        events += ua.handle_timer(d)
    assert events == [ev.CallFailed(call_id, 487, "Request Terminated")]
    assert ua.call_ids == [] and ua.transaction_count == 0
