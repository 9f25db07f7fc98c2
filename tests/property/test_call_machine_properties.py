"""Hypothesis: random event sequences never break the CallMachine's money and record invariants."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.call import commands as cmd
from ivr.call import events as ev
from ivr.call.machine import CallMachine
from ivr.types import KeySource, Leg
from tests.unit.call.helpers import START, county_plan

legs = st.sampled_from([Leg.FACILITY, Leg.CALLED])
keys = st.sampled_from(list("0123456789*#"))
prompts = st.sampled_from(["announcement", "invalid_choice", "say_name", "pin_invalid", "disconnect", "blocked",
                           "call_not_accepted", "called_busy"])
evidence = st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 100), max_size=2)

events = st.one_of(
    st.just(START),
    st.builds(ev.CallerIdentified, st.just("inm-1"), st.just("J"), st.sampled_from(["active", "released"]),
              st.booleans()),
    st.builds(ev.CallerRejected),
    st.builds(ev.NameRecorded, st.integers(0, 5000), st.booleans()),
    st.builds(ev.CallChecked, st.booleans(), st.sampled_from([None, "BLK-PARTY", "BLK-FUNDS"]),
              st.sampled_from([None, "prepaid", "collect"])),
    st.builds(ev.CalledRinging),
    st.builds(ev.CalledAnswered),
    st.builds(ev.CalledBusy),
    st.builds(ev.CalledFailed, st.sampled_from([408, 480, 503, 603])),
    st.builds(ev.PromptFinished, legs, prompts),
    st.builds(ev.KeyPressed, keys, legs, st.sampled_from(list(KeySource))),
    st.builds(ev.LedgerAnswer, st.booleans(), st.sampled_from(["h-1", "h-2"]), st.integers(0, 3600),
              st.integers(0, 1000), st.sampled_from([None, "BLK-FUNDS", "BLK-SPEND"])),
    st.builds(ev.HoldDetected, legs, evidence),
    st.builds(ev.TransferRequested, legs, evidence),
    st.builds(ev.HookflashDetected, legs, evidence),
    st.builds(ev.CallWaitingTone, legs, evidence),
    st.builds(ev.SilenceDetected, legs, st.integers(0, 60_000)),
    st.builds(ev.SpeechDetected, legs),
    st.builds(ev.NoiseDetected, legs, evidence),
    st.builds(ev.MediaTimeout, legs, evidence),
    st.builds(ev.HangupReceived, legs),
    st.builds(ev.ShutdownRequested),
    st.builds(ev.TimerFired),
)
# A plausible call first (so deep states are reached often), then anything at all.
happy = [START, ev.CallerIdentified("inm-1", "J", "active", True), ev.CallChecked(True, account_kind="prepaid"),
         ev.CalledAnswered(), ev.KeyPressed("1", Leg.CALLED, KeySource.RFC4733)]
steps = st.lists(st.tuples(st.floats(0, 120, allow_nan=False), events), max_size=40)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix_len=st.integers(0, len(happy)), tail=steps)
def test_random_event_sequences_keep_the_money_invariants(prefix_len: int, tail: list[tuple[float, ev.Event]]) -> None:
    """Never raises; ends with one record; no charge without acceptance and a hold; never above the hold."""
    m = CallMachine(county_plan())
    out: list[cmd.Command] = []
    now = 10.0
    for event in happy[:prefix_len]:
        now += 0.5
        out += m.handle(event, now)
    for gap, event in tail:
        now += gap
        out += m.handle(event, now)
    for leg in (Leg.FACILITY, Leg.CALLED):
        now += 1
        out += m.handle(ev.HangupReceived(leg), now)
    while (deadline := m.next_deadline()) is not None:
        out += m.handle_timer(max(deadline, now))
    assert m.ended
    assert sum(isinstance(c, cmd.WriteRecord) for c in out) == 1
    posts = [c for c in out if isinstance(c, cmd.PostCharge)]
    assert len(posts) <= 1
    holds = {}
    accepted = False
    for c in out:
        if isinstance(c, cmd.ReserveFunds):
            accepted = True
    for e in tail:
        if isinstance(e[1], ev.LedgerAnswer) and e[1].authorized and e[1].hold_id:
            holds.setdefault(e[1].hold_id, e[1].hold_minor)
    if posts:
        assert accepted, "PostCharge without acceptance"
        post = posts[0]
        assert post.hold_id == m.hold_id
        assert post.amount_minor <= m.hold_minor, "billed more than the reservation"
        assert m.record is not None and m.record["cost"]["total_minor"] == post.amount_minor
    else:
        assert m.record is not None and m.record["cost"]["total_minor"] == 0
    voided = {c.hold_id for c in out if isinstance(c, cmd.VoidReservation)}
    if posts:
        assert posts[0].hold_id not in voided, "a posted hold was also voided"
