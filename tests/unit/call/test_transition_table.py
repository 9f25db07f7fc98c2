"""Every (state, event) pair of the transition table, exercised (DESIGN.md section 3)."""

from __future__ import annotations

import pytest

from ivr.call import commands as cmd
from ivr.call import events as ev
from ivr.call.outcomes import SYS_PROTOCOL
from ivr.call.state import HANDLERS, NEXT, CallState, allowed
from tests.unit.call.helpers import SAMPLES, machine_in

PAIRS = [(state, etype) for state in CallState for etype in ev.EVENT_TYPES.values()]


def test_every_event_type_has_a_sample() -> None:
    """The table test covers every event type the machine knows."""
    assert set(SAMPLES) == set(ev.EVENT_TYPES.values())


def test_table_names_only_existing_handlers() -> None:
    """Every handler the table names exists on the machine."""
    from ivr.call.machine import CallMachine

    for state, handlers in HANDLERS.items():
        for etype, name in handlers.items():
            assert hasattr(CallMachine, name), f"{state}: {etype.__name__} -> {name}"


@pytest.mark.parametrize(("state", "etype"), PAIRS, ids=[f"{s.value}-{e.__name__}" for s, e in PAIRS])
def test_state_event_pair(state: CallState, etype: type) -> None:
    """Allowed pairs move along the table; others end the call safely, free (SYS-PROTOCOL)."""
    m, before, now = machine_in(state)
    reserved = any(isinstance(c, cmd.ReserveFunds) for c in before)
    decided = m.outcome is not None
    out = m.handle(SAMPLES[etype], now + 0.05)
    if allowed(state, etype):
        assert m.state is state or m.state in NEXT[state]
        if m.ended and state is not CallState.ENDED:
            assert m.reason != SYS_PROTOCOL
    else:
        assert m.ended
        assert m.record is not None and m.record["errors"]
        if not decided:  # a call already decided keeps its outcome; the error is on the record
            assert m.reason == SYS_PROTOCOL
            assert m.outcome is not None and m.outcome.value == "failed"
        assert not any(isinstance(c, cmd.PostCharge) for c in out)
        if reserved:
            assert any(isinstance(c, cmd.VoidReservation) for c in out)
        assert sum(isinstance(c, cmd.WriteRecord) for c in out) == 1


@pytest.mark.parametrize("state", list(CallState), ids=[s.value for s in CallState])
def test_every_state_reaches_ended_with_one_record(state: CallState) -> None:
    """From any state, both hang-ups and the timers end the call with exactly one record."""
    m, out, now = machine_in(state)
    for leg in ("facility", "called"):
        now += 1
        out += m.handle(ev.HangupReceived(ev.Leg(leg)), now)
    while (deadline := m.next_deadline()) is not None:
        out += m.handle_timer(deadline)
    assert m.ended
    assert sum(isinstance(c, cmd.WriteRecord) for c in out) == 1
