"""Drive a CallMachine to a given state with a canonical prefix of events."""

from __future__ import annotations

from pathlib import Path

from ivr.call import events as ev
from ivr.call.commands import Command
from ivr.call.machine import CallMachine
from ivr.call.state import CallState
from ivr.dialplan import Dialplan, load_dialplan
from ivr.types import KeySource, Leg

ROOT = Path(__file__).resolve().parents[3]
COUNTY = ROOT / "dialplans" / "example-county-jail.toml"
NUMBER = "+15125550123"

_PLAN: Dialplan | None = None


def county_plan() -> Dialplan:
    global _PLAN
    if _PLAN is None:
        _PLAN = load_dialplan(COUNTY)
    return _PLAN


START = ev.CallStarted("c-1", NUMBER, "2026-11-25T10:00:00-06:00", "inm-1")

PREFIXES: dict[CallState, list[ev.Event]] = {
    CallState.START: [],
    CallState.IDENTIFY: [START],
    CallState.RECORD_NAME: [START, ev.CallerIdentified("inm-1", "John Doe", "active", False)],
    CallState.CHECK: [START, ev.CallerIdentified("inm-1", "John Doe", "active", True)],
}
PREFIXES[CallState.DIALING] = PREFIXES[CallState.CHECK] + [ev.CallChecked(True, account_kind="prepaid")]
PREFIXES[CallState.ANNOUNCE] = PREFIXES[CallState.DIALING] + [ev.CalledAnswered()]
PREFIXES[CallState.AWAIT_KEY] = PREFIXES[CallState.ANNOUNCE] + [ev.PromptFinished(Leg.CALLED, "announcement")]
PREFIXES[CallState.RESERVING] = PREFIXES[CallState.AWAIT_KEY] + [ev.KeyPressed("1", Leg.CALLED, KeySource.RFC4733)]
PREFIXES[CallState.CONNECTED] = PREFIXES[CallState.RESERVING] + [ev.LedgerAnswer(True, "hold-1", 900, 143)]
PREFIXES[CallState.CLOSING] = PREFIXES[CallState.DIALING] + [ev.CalledBusy(486)]
PREFIXES[CallState.ENDED] = PREFIXES[CallState.CLOSING] + [ev.PromptFinished(Leg.FACILITY, "called_busy")]


def machine_in(state: CallState, plan: Dialplan | None = None) -> tuple[CallMachine, list[Command], float]:
    """A machine driven to ``state``; returns it, every command so far, and the time reached."""
    m = CallMachine(plan or county_plan())
    out: list[Command] = []
    now = 100.0
    for event in PREFIXES[state]:
        now += 0.1
        out += m.handle(event, now)
    assert m.state is state, f"prefix reached {m.state}, not {state}"
    return m, out, now


SAMPLES: dict[type, ev.Event] = {
    ev.CallStarted: START,
    ev.CallerIdentified: ev.CallerIdentified("inm-1", "John Doe", "active", True),
    ev.CallerRejected: ev.CallerRejected("unknown"),
    ev.NameRecorded: ev.NameRecorded(1500, True),
    ev.CallChecked: ev.CallChecked(True, account_kind="prepaid"),
    ev.CalledRinging: ev.CalledRinging(),
    ev.CalledAnswered: ev.CalledAnswered(),
    ev.CalledBusy: ev.CalledBusy(486),
    ev.CalledFailed: ev.CalledFailed(503, "Service Unavailable"),
    ev.PromptFinished: ev.PromptFinished(Leg.CALLED, "announcement"),
    ev.KeyPressed: ev.KeyPressed("1", Leg.CALLED, KeySource.RFC4733),
    ev.LedgerAnswer: ev.LedgerAnswer(True, "hold-2", 900, 143),
    ev.HoldDetected: ev.HoldDetected(Leg.CALLED, {"direction": "sendonly"}),
    ev.TransferRequested: ev.TransferRequested(Leg.CALLED, {"refer_to": "sip:x@y"}),
    ev.HookflashDetected: ev.HookflashDetected(Leg.CALLED, {"click_ms": 30}),
    ev.CallWaitingTone: ev.CallWaitingTone(Leg.CALLED, {"duration_ms": 250}),
    ev.SilenceDetected: ev.SilenceDetected(Leg.CALLED, 500),
    ev.SpeechDetected: ev.SpeechDetected(Leg.CALLED),
    ev.NoiseDetected: ev.NoiseDetected(Leg.CALLED, {"level_dbm0": -30.0}),
    ev.MediaTimeout: ev.MediaTimeout(Leg.CALLED, {"silent_s": 20}),
    ev.HangupReceived: ev.HangupReceived(Leg.CALLED),
    ev.ShutdownRequested: ev.ShutdownRequested(),
    ev.TimerFired: ev.TimerFired(),
}
