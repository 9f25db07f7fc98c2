"""Call states and the transition table (h11-style: the rules are data, in one place).

``HANDLERS[state][event type]`` names the CallMachine method that handles the event in that
state. A pair missing from the table is not allowed: the machine ends the call safely (no charge)
and records a protocol failure; it never ignores it silently. ``NEXT[state]`` lists the states a
handler may move to; ``_set_state`` enforces it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

from ivr.call import events as ev


class CallState(enum.Enum):
    START = "start"  # before the facility's INVITE
    IDENTIFY = "identify"  # PIN entry or gateway id, roster lookup
    RECORD_NAME = "record_name"  # ACC-1
    CHECK = "check"  # BLK-* before the family is rung
    DIALING = "dialing"  # INVITE to the trunk, ringing
    ANNOUNCE = "announce"  # ACC-2 announcement (or the invalid-choice prompt) playing
    AWAIT_KEY = "await_key"  # ACC-3 digit timeout running
    RESERVING = "reserving"  # ACT-3 hold requested
    CONNECTED = "connected"  # the conversation, watched (DIS-*)
    CLOSING = "closing"  # final prompts, then hang up
    ENDED = "ended"


S = CallState

# Events that may arrive in any live state: media and detector facts, late prompt ends, keys,
# hang-ups and timers. Each state's handler decides whether they matter there.
_ANYTIME: dict[type, str] = {
    ev.TimerFired: "on_timer",
    ev.HangupReceived: "on_hangup",
    ev.ShutdownRequested: "on_shutdown",
    ev.PromptFinished: "on_prompt_finished",
    ev.KeyPressed: "on_key",
    ev.MediaTimeout: "on_media_timeout",
    ev.HoldDetected: "on_watch_event",
    ev.TransferRequested: "on_watch_event",
    ev.HookflashDetected: "on_watch_event",
    ev.CallWaitingTone: "on_watch_event",
    ev.NoiseDetected: "on_watch_event",
    ev.SilenceDetected: "on_silence",
    ev.SpeechDetected: "on_speech",
}

# Trunk answers that can cross a CANCEL or arrive after the call was decided: handled, not errors.
_LATE_TRUNK: dict[type, str] = {
    ev.CalledRinging: "on_late_trunk",
    ev.CalledAnswered: "on_late_trunk",
    ev.CalledBusy: "on_late_trunk",
    ev.CalledFailed: "on_late_trunk",
    ev.LedgerAnswer: "on_late_ledger",
}

HANDLERS: Mapping[CallState, Mapping[type, str]] = {
    S.START: {ev.CallStarted: "on_call_started", ev.TimerFired: "on_timer", ev.ShutdownRequested: "on_shutdown"},
    S.IDENTIFY: {
        **_ANYTIME,
        ev.CallerIdentified: "on_caller_identified",
        ev.CallerRejected: "on_caller_rejected",
    },
    S.RECORD_NAME: {**_ANYTIME, ev.NameRecorded: "on_name_recorded"},
    S.CHECK: {**_ANYTIME, ev.CallChecked: "on_call_checked"},
    S.DIALING: {
        **_ANYTIME,
        ev.CalledRinging: "on_called_ringing",
        ev.CalledAnswered: "on_called_answered",
        ev.CalledBusy: "on_called_busy",
        ev.CalledFailed: "on_called_failed",
    },
    S.ANNOUNCE: {**_ANYTIME},
    S.AWAIT_KEY: {**_ANYTIME},
    S.RESERVING: {**_ANYTIME, ev.LedgerAnswer: "on_ledger_answer"},
    S.CONNECTED: {**_ANYTIME, ev.LedgerAnswer: "on_late_ledger"},
    S.CLOSING: {**_ANYTIME, **_LATE_TRUNK, ev.NameRecorded: "on_ignored", ev.CallChecked: "on_ignored"},
    S.ENDED: {cls: "on_ignored" for cls in ev.EVENT_TYPES.values()},
}

NEXT: Mapping[CallState, frozenset[CallState]] = {
    S.START: frozenset({S.IDENTIFY, S.CLOSING, S.ENDED}),
    S.IDENTIFY: frozenset({S.RECORD_NAME, S.CHECK, S.CLOSING, S.ENDED}),
    S.RECORD_NAME: frozenset({S.CHECK, S.CLOSING, S.ENDED}),
    S.CHECK: frozenset({S.DIALING, S.CLOSING, S.ENDED}),
    S.DIALING: frozenset({S.ANNOUNCE, S.CLOSING, S.ENDED}),
    S.ANNOUNCE: frozenset({S.ANNOUNCE, S.AWAIT_KEY, S.RESERVING, S.CLOSING, S.ENDED}),
    S.AWAIT_KEY: frozenset({S.ANNOUNCE, S.RESERVING, S.CLOSING, S.ENDED}),
    S.RESERVING: frozenset({S.CONNECTED, S.CLOSING, S.ENDED}),
    S.CONNECTED: frozenset({S.CLOSING, S.ENDED}),
    S.CLOSING: frozenset({S.ENDED}),
    S.ENDED: frozenset(),
}


def allowed(state: CallState, event_type: type) -> bool:
    return event_type in HANDLERS[state]
