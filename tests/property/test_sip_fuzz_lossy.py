"""Two user agents over a lossy, reordering network (Hypothesis): the RFC 3261 timers must keep
both sides consistent whatever is dropped.

A caller (UAC) calls a callee (UAS) that rings and then answers or rejects; the caller may cancel
or hang up at some point. Hypothesis picks which datagrams are lost, each delivery delay and the
behaviour; the simulation runs 200 s of simulated time. Invariants:

* nothing escapes and neither side counts an internal error;
* the caller's call ends exactly once (CallFailed, or CallAnswered then CallEnded, or then
  ByeReceived when the callee never got an ACK and gave up, section 13.3.1.4), the
  callee's at most once (a lost BYE leaves it up: media timeouts end such calls);
* the callee saw ByeReceived whenever the caller's BYE was answered 200;
* the callee saw CallConfirmed only for a call the caller saw answered, or whose 200 crossed the
  caller's CANCEL (then the caller reports 487 and BYEs it);
* a CallFailed(486) at the caller means the callee rejected with 486;
* an INFO key sent mid-call reaches the callee at most once (retransmissions are absorbed), and
  exactly once when the caller saw its 200; likewise the callee's hold re-INVITE (sendonly)
  raises HoldDetected at the caller at most once, exactly once when the callee saw its 200;
* after 200 s, no timer is left on either side and the caller holds no call (no leaks).
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.sip import events as ev
from ivr.sip.sdp import Direction, build_answer, build_offer
from ivr.sip.useragent import UAConfig, UserAgent

A_ADDR = ("127.0.0.1", 5060)
B_ADDR = ("127.0.0.1", 5070)


@dataclass
class Net:
    """Datagrams in flight: (arrival time, seq, destination index, data); losses by index."""

    losses: list[bool]
    delays: list[float]
    queue: list[tuple[float, int, int, bytes]] = field(default_factory=list)
    sent: int = 0

    def send(self, now: float, dst: int, data: bytes) -> None:
        i = self.sent
        self.sent += 1
        if self.losses and self.losses[i % len(self.losses)]:
            return
        delay = self.delays[i % len(self.delays)] if self.delays else 0.01
        heapq.heappush(self.queue, (now + delay, i, dst, data))


@dataclass
class Behaviour:
    ring_s: float
    answer: bool
    reject_status: int
    caller_cancel_at: float | None
    caller_hangup_after_s: float


def simulate(net: Net, beh: Behaviour) -> tuple[list[ev.UAEvent], list[ev.UAEvent], UserAgent, UserAgent]:
    rng_a, rng_b = random.Random(1), random.Random(2)  # deterministic tags, branches, Call-IDs
    a = UserAgent(UAConfig(local_addr=A_ADDR), rand=rng_a.randbytes)
    b = UserAgent(UAConfig(local_addr=B_ADDR), rand=rng_b.randbytes)
    uas = [a, b]
    a_events: list[ev.UAEvent] = []
    b_events: list[ev.UAEvent] = []
    actions: list[tuple[float, int, str, str]] = []  # (time, seq, who/what, call id)
    seq = 0

    def schedule(t: float, what: str, call_id: str) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(actions, (t, seq, what, call_id))

    def drain(now: float) -> None:
        for idx, ua in enumerate(uas):
            for data, _addr in ua.datagrams_to_send():
                net.send(now, 1 - idx, data)

    now = 0.0
    call_id = a.invite(f"sip:1@{B_ADDR[0]}:{B_ADDR[1]}", build_offer("127.0.0.1", 4000, session_id=1), now)
    if beh.caller_cancel_at is not None:
        schedule(beh.caller_cancel_at, "a_cancel", call_id)
    drain(now)

    def on_events(idx: int, events: list[ev.UAEvent], t: float) -> None:
        (a_events if idx == 0 else b_events).extend(events)
        for e in events:
            if isinstance(e, ev.InviteReceived):
                b.ringing(e.call_id, t)
                schedule(t + beh.ring_s, "b_decide", e.call_id)
            elif isinstance(e, ev.CallConfirmed):
                schedule(t + beh.caller_hangup_after_s / 3, "b_hold", e.call_id)
            elif isinstance(e, ev.CallAnswered):
                schedule(t + beh.caller_hangup_after_s, "a_bye", e.call_id)
                schedule(t + beh.caller_hangup_after_s / 2, "a_info", e.call_id)

    end = 200.0
    while True:
        candidates = [end]
        for ua in uas:
            d = ua.next_deadline()
            if d is not None:
                candidates.append(d)
        if net.queue:
            candidates.append(net.queue[0][0])
        if actions:
            candidates.append(actions[0][0])
        now = max(now, min(candidates))
        if now >= end:
            break
        while net.queue and net.queue[0][0] <= now:
            _, _, dst, data = heapq.heappop(net.queue)
            on_events(dst, uas[dst].receive(data, (A_ADDR, B_ADDR)[1 - dst], now), now)
        while actions and actions[0][0] <= now:
            _, _, what, cid = heapq.heappop(actions)
            if what == "a_cancel":
                a.cancel(cid, now)
            elif what == "a_bye":
                a.bye(cid, now)
            elif what == "a_info":
                a.send_request(
                    cid, "INFO", now, body=b"Signal=5\r\nDuration=100\r\n", content_type="application/dtmf-relay"
                )
            elif what == "b_hold":
                hold = build_offer("127.0.0.1", 5000, session_id=2, session_version=2, direction=Direction.SENDONLY)
                b.send_request(cid, "INVITE", now, body=hold.to_bytes())
            elif what == "b_decide":
                inv = next(e for e in b_events if isinstance(e, ev.InviteReceived) and e.call_id == cid)
                if beh.answer and inv.sdp is not None:
                    b.answer(cid, build_answer(inv.sdp, "127.0.0.1", 5000, session_id=2), now)
                else:
                    b.reject(cid, beh.reject_status, now)
        for idx, ua in enumerate(uas):
            d = ua.next_deadline()
            if d is not None and d <= now:
                on_events(idx, ua.handle_timer(now), now)
        drain(now)
    return a_events, b_events, a, b


@settings(max_examples=300, deadline=None)
@given(
    losses=st.lists(st.booleans(), max_size=24),
    delays=st.lists(st.floats(0.001, 0.8), min_size=1, max_size=8),
    ring_s=st.floats(0.0, 5.0),
    answer=st.booleans(),
    reject_status=st.sampled_from([486, 480, 603]),
    cancel_at=st.one_of(st.none(), st.floats(0.0, 6.0)),
    hangup_after_s=st.floats(0.0, 3.0),
)
def test_lossy_network_keeps_both_sides_consistent(
    losses: list[bool],
    delays: list[float],
    ring_s: float,
    answer: bool,
    reject_status: int,
    cancel_at: float | None,
    hangup_after_s: float,
) -> None:
    """Whatever is lost or delayed, both user agents end in consistent states without leaks."""
    net = Net(losses, delays)
    a_events, b_events, a, b = simulate(net, Behaviour(ring_s, answer, reject_status, cancel_at, hangup_after_s))
    assert a.internal_errors == 0 and b.internal_errors == 0
    # ByeReceived ends the caller's call too: the callee BYEs a 200 whose ACKs were all lost
    terminal = [e for e in a_events if isinstance(e, ev.CallFailed | ev.CallEnded | ev.ByeReceived)]
    assert len(terminal) == 1, a_events
    answered = any(isinstance(e, ev.CallAnswered) for e in a_events)
    if isinstance(terminal[0], ev.ByeReceived):
        assert answered and ev.CallFailed(terminal[0].call_id, 408, "No ACK For 2xx") in b_events
    if isinstance(terminal[0], ev.CallEnded):
        assert answered
        if terminal[0].status == 200:
            assert any(isinstance(e, ev.ByeReceived) for e in b_events)
    if any(isinstance(e, ev.CallConfirmed) for e in b_events) and not answered:
        # the only way: the 200 crossed our CANCEL; the caller ACKed, then BYEd it (section 9.1)
        assert cancel_at is not None and terminal[0] == ev.CallFailed(terminal[0].call_id, 487, "Request Terminated")
    if isinstance(terminal[0], ev.CallFailed) and terminal[0].status == 486:
        assert not answer and reject_status == 486
    # INFO retransmissions are absorbed by the callee's transaction: one key at most, exactly one
    # when the caller saw the 200
    keys = [e for e in b_events if isinstance(e, ev.KeyReceived)]
    assert len(keys) <= 1
    if any(isinstance(e, ev.RequestCompleted) and e.status == 200 for e in a_events):
        assert len(keys) == 1
    # the callee's hold re-INVITE: at most one HoldDetected at the caller, exactly one when the
    # callee saw its 200 (re-INVITE retransmissions absorbed; 2xx retransmitted until ACK)
    holds = [e for e in a_events if isinstance(e, ev.HoldDetected)]
    assert len(holds) <= 1
    if any(isinstance(e, ev.RequestCompleted) and e.method == "INVITE" and e.status == 200 for e in b_events):
        assert len(holds) == 1
    b_terminal = [e for e in b_events if isinstance(e, ev.CallCancelled | ev.ByeReceived | ev.CallFailed)]
    assert len(b_terminal) <= 1, b_events
    assert a.call_ids == []
    assert a.next_deadline() is None and b.next_deadline() is None
    assert a.transaction_count == 0 and b.transaction_count == 0
