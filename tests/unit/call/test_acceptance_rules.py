"""ACC and LIM rules pinned directly on the machine (the flows cover the same ground end to end)."""

from __future__ import annotations

from ivr.call import commands as cmd
from ivr.call import events as ev
from ivr.call.state import CallState
from ivr.rating import rate_call
from ivr.types import KeySource, Leg
from tests.unit.call.helpers import county_plan, machine_in


def names(out: list[cmd.Command]) -> list[str]:
    return [type(c).__name__ for c in out]


def test_second_silent_attempt_disconnects_without_charge() -> None:
    """ACC-3/ACC-4: two announcements without a key end the call and write no charge."""
    m, out, now = machine_in(CallState.AWAIT_KEY)
    out += m.handle_timer(now + 8.0)  # digit timeout: second attempt
    assert m.state is CallState.ANNOUNCE and m.attempt == 2
    out += m.handle(ev.PromptFinished(Leg.CALLED, "announcement"), now + 30)
    out += m.handle_timer(now + 38.0)
    assert m.outcome is not None and m.outcome.value == "no_input" and m.reason == "ACC-3"
    assert "ReserveFunds" not in names(out) and "PostCharge" not in names(out)


def test_facility_digits_never_accept() -> None:
    """ACC-2: the caller pressing the accept key on the facility phone changes nothing."""
    m, out, now = machine_in(CallState.AWAIT_KEY)
    out = m.handle(ev.KeyPressed("1", Leg.FACILITY, KeySource.RFC4733), now + 1)
    assert m.state is CallState.AWAIT_KEY
    assert out == []


def test_same_key_inband_and_rfc4733_counts_once() -> None:
    """ACC-5: the in-band copy of an RFC 4733 key within the window is not a second key."""
    m, _, now = machine_in(CallState.CONNECTED)
    first = m.handle(ev.KeyPressed("5", Leg.CALLED, KeySource.RFC4733), now + 10)
    second = m.handle(ev.KeyPressed("5", Leg.CALLED, KeySource.INBAND), now + 10.06)
    assert "PlayPrompt" in names(first)  # the DIS-DIGIT warning
    assert second == []
    assert m.state is CallState.CONNECTED


def test_same_key_same_transport_twice_counts_twice() -> None:
    """ACC-5 de-duplicates across transports only: two real presses both count (DIS-DIGIT 2nd disconnects)."""
    m, _, now = machine_in(CallState.CONNECTED)
    m.handle(ev.KeyPressed("5", Leg.CALLED, KeySource.RFC4733), now + 10)
    m.handle(ev.KeyPressed("5", Leg.CALLED, KeySource.RFC4733), now + 10.15)
    assert m.state is CallState.CLOSING and m.reason == "DIS-DIGIT"


def test_block_key_blocks_at_once_and_is_free() -> None:
    """ACC-6: the block key emits BlockNumber for this facility and never reserves money."""
    m, _, now = machine_in(CallState.ANNOUNCE)
    out = m.handle(ev.KeyPressed("6", Leg.CALLED, KeySource.INFO), now + 1)
    blocks = [c for c in out if isinstance(c, cmd.BlockNumber)]
    assert blocks and blocks[0].facility_id == "example-county-jail"
    assert "ReserveFunds" not in names(out)


def test_language_key_restarts_in_spanish_without_using_an_attempt() -> None:
    """ACC-2: 9 replays the announcement in Spanish; the attempt count is unchanged."""
    m, _, now = machine_in(CallState.ANNOUNCE)
    out = m.handle(ev.KeyPressed("9", Leg.CALLED, KeySource.RFC4733), now + 1)
    plays = [c for c in out if isinstance(c, cmd.PlayPrompt)]
    assert plays[-1].prompt_id == "announcement" and plays[-1].language == "es"
    assert m.attempt == 1


def test_announcement_says_name_rate_cost_and_keys() -> None:
    """ACC-1/ACC-2: the announcement carries the name clip, facility, rate, most it can cost and the keys."""
    _, out, _ = machine_in(CallState.ANNOUNCE)
    play = [c for c in out if isinstance(c, cmd.PlayPrompt) and c.prompt_id == "announcement"][0]
    plan = county_plan()
    assert play.legs == (Leg.CALLED,)
    assert play.variables["name"] == "clip"
    assert play.variables["rate_minor_per_min"] == plan.tariff.rate_minor_per_min
    assert play.variables["max_cost_minor"] == rate_call(900, plan.tariff).total_minor
    assert (play.variables["key_accept"], play.variables["key_refuse"], play.variables["key_block"]) == ("1", "2", "6")


def test_allowed_time_is_the_smaller_of_limit_and_funds() -> None:
    """LIM-1: a hold covering 5 minutes allows 300 s even though the limit is 900 s (DIS-FUNDS)."""
    m, _, now = machine_in(CallState.RESERVING)
    m.handle(ev.LedgerAnswer(True, "hold-1", 300, rate_call(300, county_plan().tariff).total_minor), now + 0.1)
    assert m.allowed_seconds == 300
    out = m.handle_timer(now + 0.1 + 300)
    post = [c for c in out if isinstance(c, cmd.PostCharge)][0]
    assert post.reason == "DIS-FUNDS" and post.billed_seconds == 300


def test_never_allows_more_talk_than_the_hold_pays_for() -> None:
    """ACT-3: a ledger answer with a small hold caps the talk time, whatever allowed_seconds says."""
    m, _, now = machine_in(CallState.RESERVING)
    m.handle(ev.LedgerAnswer(True, "hold-1", 900, 20), now + 0.1)  # 20 cents: 2 minutes with tax
    assert m.allowed_seconds == 120


def test_early_system_drop_is_credited() -> None:
    """ACT-4: DIS-MEDIA 30 s into the conversation posts nothing and flags the credit."""
    m, _, now = machine_in(CallState.CONNECTED)
    out = m.handle(ev.MediaTimeout(Leg.CALLED, {"silent_s": 20}), now + 30)
    post = [c for c in out if isinstance(c, cmd.PostCharge)][0]
    assert post.amount_minor == 0 and post.system_drop
    assert m.record is not None and m.record["credited"] and m.record["cost"]["total_minor"] == 0


def test_called_hangup_before_accepting_costs_nothing() -> None:
    """ACC-4: the called party hangs up during the announcement: no reservation, no charge."""
    m, out, now = machine_in(CallState.ANNOUNCE)
    out += m.handle(ev.HangupReceived(Leg.CALLED), now + 2)
    out += m.handle(ev.PromptFinished(Leg.FACILITY, "call_not_accepted"), now + 4)
    assert m.ended and m.record is not None and m.record["billed_seconds"] == 0
    assert "PostCharge" not in names(out) and "ReserveFunds" not in names(out)


def test_shutdown_during_conversation_settles_as_a_system_drop() -> None:
    """SIGTERM: a call 30 s into its conversation is posted as a system drop and credited (ACT-4)."""
    m, _, now = machine_in(CallState.CONNECTED)
    out = m.handle(ev.ShutdownRequested(), now + 30)
    post = [c for c in out if isinstance(c, cmd.PostCharge)][0]
    assert post.system_drop and post.amount_minor == 0 and post.reason == "SYS-SHUTDOWN"
    assert m.ended and sum(isinstance(c, cmd.Hangup) for c in out) == 2


def test_shutdown_before_acceptance_is_free() -> None:
    """SIGTERM during the announcement ends both legs and charges nothing."""
    m, _, now = machine_in(CallState.ANNOUNCE)
    out = m.handle(ev.ShutdownRequested(), now + 3)
    assert m.ended and m.reason == "SYS-SHUTDOWN"
    assert "PostCharge" not in names(out) and "ReserveFunds" not in names(out)
