"""RFC 3261 section 17 transactions: retransmission schedules, absorption, timeouts (T1=0.5 s)."""

from __future__ import annotations

from ivr.sip.message import Request, Response, build_response, parse_message
from ivr.sip.transaction import ClientTransaction, Outbox, ServerTransaction, TxState, transaction_key
from tests.unit.sip.sip_helpers import PEER, request


def req(method: str = "INVITE") -> Request:
    msg = parse_message(request(method))
    assert isinstance(msg, Request)
    return msg


def resp_to(r: Request, status: int) -> Response:
    return build_response(r.headers, status, "X", to_tag="t")


def run_until(tx: ClientTransaction | ServerTransaction, end: float) -> list[float]:
    """Step the transaction's deadlines until ``end``; return the times a datagram was sent."""
    times: list[float] = []
    outbox: Outbox = tx._outbox
    while (d := tx.next_deadline()) is not None and d <= end:
        before = len(outbox)
        tx.handle_timer(d)
        if len(outbox) > before:
            times.append(d)
    return times


def test_invite_client_timer_a_doubles_until_timer_b() -> None:
    """17.1.1.2: INVITE retransmitted at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; Timer B fires at 32 s."""
    out: Outbox = []
    tx = ClientTransaction(req(), PEER, 0.0, out)
    assert len(out) == 1
    assert run_until(tx, 31.9) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert tx.handle_timer(32.0) is True and tx.terminated


def test_invite_client_provisional_stops_retransmission() -> None:
    """A 1xx moves Calling -> Proceeding: no more retransmissions, no Timer B."""
    out: Outbox = []
    r = req()
    tx = ClientTransaction(r, PEER, 0.0, out)
    assert tx.receive_response(resp_to(r, 180), 0.1) is not None
    assert tx.state is TxState.PROCEEDING and tx.next_deadline() is None


def test_invite_client_acks_non_2xx_and_absorbs_retransmissions() -> None:
    """17.1.1.3: the transaction ACKs a 486 (same branch, To tag of the response); a retransmitted
    486 is ACKed again but not passed up; Timer D (32 s) ends it."""
    out: Outbox = []
    r = req()
    tx = ClientTransaction(r, PEER, 0.0, out)
    busy = resp_to(r, 486)
    assert tx.receive_response(busy, 0.2) is busy
    ack = parse_message(out[-1][0])
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.method == "ACK"
    assert ack.top_via.branch == r.top_via.branch and ack.to.tag == "t"
    assert tx.receive_response(busy, 0.3) is None and len(out) == 3
    assert tx.next_deadline() == 32.2
    assert tx.handle_timer(32.2) is False and tx.terminated


def test_invite_client_2xx_retransmissions_reach_the_tu() -> None:
    """RFC 6026: in Accepted, every 2xx goes to the TU (which re-sends its ACK); no ACK by the txn."""
    out: Outbox = []
    r = req()
    tx = ClientTransaction(r, PEER, 0.0, out)
    ok = resp_to(r, 200)
    assert tx.receive_response(ok, 0.1) is ok and tx.receive_response(ok, 0.6) is ok
    assert len(out) == 1 and tx.state is TxState.ACCEPTED


def test_non_invite_client_timer_e_is_capped_at_t2() -> None:
    """17.1.2.2: intervals 0.5, 1, 2, 4, 4, 4 ... (T2 = 4 s); Timer F at 32 s."""
    tx = ClientTransaction(req("BYE"), PEER, 0.0, [])
    assert run_until(tx, 31.9) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert tx.handle_timer(32.0) is True


def test_non_invite_client_final_then_timer_k() -> None:
    """A final response completes the transaction; Timer K (T4 = 5 s) terminates it."""
    r = req("BYE")
    tx = ClientTransaction(r, PEER, 0.0, [])
    assert tx.receive_response(resp_to(r, 200), 1.0) is not None
    assert tx.receive_response(resp_to(r, 200), 1.1) is None
    assert tx.next_deadline() == 6.0


def test_invite_server_resends_last_response_on_retransmitted_invite() -> None:
    """17.2.1: a retransmitted INVITE gets the last provisional again."""
    out: Outbox = []
    r = req()
    tx = ServerTransaction(r, PEER, 0.0, out)
    tx.respond(resp_to(r, 100), 0.0)
    tx.receive_request(r, 0.5)
    assert [parse_message(d).status for d, _ in out] == [100, 100]  # type: ignore[union-attr]


def test_invite_server_non_2xx_retransmitted_by_timer_g_until_ack() -> None:
    """17.2.1: a 486 is retransmitted at T1 doubling to T2 until the ACK (Confirmed, Timer I)."""
    out: Outbox = []
    r = req()
    tx = ServerTransaction(r, PEER, 0.0, out)
    tx.respond(resp_to(r, 486), 0.0)
    assert run_until(tx, 12.0) == [0.5, 1.5, 3.5, 7.5, 11.5]
    ack = parse_message(request("ACK", cseq_method="ACK"))
    assert isinstance(ack, Request)
    assert tx.receive_request(ack, 12.1) is True and tx.state is TxState.CONFIRMED
    assert tx.next_deadline() == 12.1 + 5.0


def test_invite_server_timer_h_reports_missing_ack() -> None:
    """Timer H (64*T1) ends a Completed INVITE server transaction that never saw its ACK."""
    r = req()
    tx = ServerTransaction(r, PEER, 0.0, [])
    tx.respond(resp_to(r, 603), 0.0)
    run_until(tx, 31.9)
    assert tx.handle_timer(32.0) is True and tx.terminated


def test_non_invite_server_absorbs_and_answers_retransmissions() -> None:
    """17.2.2: after the final, a retransmitted request gets the same final; Timer J = 32 s."""
    out: Outbox = []
    r = req("OPTIONS")
    tx = ServerTransaction(r, PEER, 0.0, out)
    tx.receive_request(r, 0.1)  # Trying, nothing sent yet: absorbed silently
    assert out == []
    tx.respond(resp_to(r, 200), 0.2)
    tx.receive_request(r, 0.7)
    assert len(out) == 2 and out[0] == out[1] and tx.next_deadline() == 32.2


def test_ack_matches_the_invite_transaction_key() -> None:
    """17.2.3: ACK and INVITE with the same branch and sent-by share a key; CANCEL does not."""
    key = transaction_key("z9hG4bKabc", ("h", 5060), "INVITE", "")
    assert transaction_key("z9hG4bKabc", ("h", 5060), "ACK", "") == key
    assert transaction_key("z9hG4bKabc", ("h", 5060), "CANCEL", "") != key
    assert transaction_key("old-branch", ("h", 5060), "INVITE", "f") != transaction_key(
        "old-branch", ("h", 5060), "INVITE", "g"
    )
