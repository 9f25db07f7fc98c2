"""The CallMachine: one per call, sans-I/O (DESIGN.md section 3).

``handle(event, now) -> list[Command]``, ``next_deadline()``, ``handle_timer(now)``. ``now`` is
monotonic seconds from the adapter's clock; the machine never reads a clock. Every path ends in
``ENDED`` with exactly one ``WriteRecord``. Money moves only as commands: ``ReserveFunds`` at
acceptance, ``PostCharge`` after a conversation, ``VoidReservation`` otherwise (ACC-4, ACT-3).

Prompt semantics the adapter follows: ``PlayPrompt`` queues behind what plays on that leg;
``StopPrompt`` stops the current prompt and clears the leg's queue; each prompt played to its end
reports one ``PromptFinished``; a stopped prompt reports nothing (so a stale "finished" can never be
taken for the prompt that replaced it).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any, ClassVar

import structlog

from ivr.call import commands as cmd
from ivr.call import events as ev
from ivr.call.codec import command_to_dict, event_to_dict
from ivr.call.outcomes import (
    IDENT_PIN,
    IDENT_STATUS,
    IDENT_UNKNOWN,
    SYS_LEDGER,
    SYS_NUMBER,
    SYS_PROTOCOL,
    SYS_ROSTER,
    SYS_SHUTDOWN,
    SYS_TRUNK,
    Outcome,
)
from ivr.call.record import build_record
from ivr.call.state import HANDLERS, NEXT, CallState
from ivr.dialplan import E164, Action, Dialplan, Policy
from ivr.rating import rate_call, seconds_covered
from ivr.types import Evidence, JsonValue, Leg

log = structlog.get_logger("ivr.call")

S = CallState
F = Leg.FACILITY
C = Leg.CALLED
BOTH = (F, C)

# ACT-4: a system drop in the first 60 s of the conversation is credited.
SYSTEM_DROP_CREDIT_S = 60

_NO_ANSWER_STATUSES = frozenset({408, 480, 487})


def is_weekend(started_at: str) -> bool:
    """Saturday or Sunday at the facility, from the INVITE's ISO 8601 time (local offset)."""
    try:
        return dt.datetime.fromisoformat(started_at).weekday() >= 5
    except ValueError:
        return False


class CallMachine:
    """The acceptance flow and the connected-call watch of one call."""

    def __init__(self, dialplan: Dialplan) -> None:
        self.plan = dialplan
        self.state = S.START
        self.call_id = ""
        self.called_number = ""
        self.started_at = ""
        self.caller_id: str | None = None
        self.sip_call_id: str | None = None
        self.caller_name: str | None = None
        self.call_type = "standard"
        self.account_kind = "prepaid"
        self.language = dialplan.facility.languages[0]
        self.name_clip = False
        self.limit_s: int | None = None
        self._t0: float | None = None
        self._base = 0.0
        self._now = 0.0
        self._deadlines: dict[str, float] = {}
        self._legs_up: set[Leg] = set()
        self._called_dialing = False
        self._timeline: list[dict[str, JsonValue]] = []
        self._out: list[cmd.Command] = []
        # identification
        self._pin = ""
        self._pin_attempt = 1
        self._collecting_pin = False
        # acceptance
        self.attempt = 0
        self._playing: str | None = None  # what plays on the called leg during ANNOUNCE
        self._keys: list[dict[str, JsonValue]] = []
        self._last_key: tuple[str, Leg, str, float] | None = None
        self.accepted_key: dict[str, JsonValue] | None = None
        self._times: dict[str, int] = {}
        # money
        self.hold_id: str | None = None
        self.hold_minor = 0
        self.allowed_seconds: int | None = None
        self._funds_limited = False
        self._reserved = False
        self._settled = False
        self.billed_seconds = 0
        self.talk_ms = 0
        self.system_drop = False
        self.credited = False
        # the watch
        self._occurrences: dict[str, int] = {}
        self._detections: list[dict[str, JsonValue]] = []
        self._warnings: list[dict[str, JsonValue]] = []
        self._silent_since: dict[Leg, float] = {}
        self._silence_warned = False
        self._closing_pending: dict[Leg, int] = {}
        # the end
        self.outcome: Outcome | None = None
        self.reason: str | None = None
        self.decision: dict[str, JsonValue] | None = None
        self.record: dict[str, Any] | None = None
        self.errors: list[dict[str, JsonValue]] = []

    # ---------------------------------------------------------------- public API

    def handle(self, event: ev.Event, now: float) -> list[cmd.Command]:
        """Feed one input; returns the commands to carry out, in order."""
        self._out = []
        self._now = now
        if self._t0 is None and isinstance(event, ev.CallStarted):
            self._t0 = self._base = now
        if isinstance(event, ev.TimerFired):
            self._note_in(event)
            self._fire_due(now)
            return self._flush()
        self._fire_due(now)  # deadlines that passed before this event come first
        self._note_in(event)
        handler_name = HANDLERS[self.state].get(type(event))
        if handler_name is None:
            self._fail(f"{type(event).__name__} not allowed in state {self.state.value}")
        else:
            handler: Callable[[Any], None] = getattr(self, handler_name)
            handler(event)
        return self._flush()

    def next_deadline(self) -> float | None:
        """When ``handle_timer`` must be called next (monotonic seconds), or None."""
        if self.state is S.ENDED or not self._deadlines:
            return None
        return min(self._deadlines.values())

    def handle_timer(self, now: float) -> list[cmd.Command]:
        """The adapter's timer fired at ``now``; equivalent to ``handle(TimerFired(), now)``."""
        return self.handle(ev.TimerFired(), now)

    @property
    def ended(self) -> bool:
        return self.state is S.ENDED

    # ---------------------------------------------------------------- plumbing

    def _ms(self) -> int:
        """Milliseconds since the facility's INVITE at the time being handled."""
        return round((self._now - self._base) * 1000)

    def _note_in(self, event: ev.Event) -> None:
        entry: dict[str, JsonValue] = {"t_ms": self._ms()}
        entry.update(event_to_dict(event))
        self._timeline.append(entry)

    def _emit(self, command: cmd.Command) -> None:
        self._out.append(command)
        if not isinstance(command, cmd.WriteRecord):
            entry: dict[str, JsonValue] = {"t_ms": self._ms()}
            entry.update(command_to_dict(command))
            self._timeline.append(entry)

    def _flush(self) -> list[cmd.Command]:
        out, self._out = self._out, []
        return out

    def _note(self, what: str, **fields: JsonValue) -> None:
        entry: dict[str, JsonValue] = {"t_ms": self._ms(), "note": what}
        entry.update(fields)
        self._timeline.append(entry)

    def _set_state(self, new: CallState, why: str) -> None:
        old = self.state
        if new is not old and new not in NEXT[old]:
            raise AssertionError(f"transition {old.value} -> {new.value} is not in the table")
        self.state = new
        t_ms = self._ms()
        self._timeline.append({"t_ms": t_ms, "state": new.value, "from": old.value, "why": why})
        log.info("state", call_id=self.call_id, old=old.value, new=new.value, why=why, t_ms=t_ms)

    def _fire_due(self, now: float) -> None:
        while self.state is not S.ENDED and self._deadlines:
            name, at = min(self._deadlines.items(), key=lambda kv: (kv[1], kv[0]))
            if at > now:
                return
            del self._deadlines[name]
            saved = self._now
            self._now = at
            self._note("deadline", name=name)
            self.on_deadline(name)
            self._now = saved

    def _set_deadline(self, name: str, at: float) -> None:
        self._deadlines[name] = at

    def _clear_deadlines(self, *names: str) -> None:
        for name in names:
            self._deadlines.pop(name, None)

    def _decide(self, outcome: Outcome, reason: str, source: str, evidence: Evidence | None = None,
                leg: Leg | None = None) -> None:
        """The first decision of how the call ends wins; it is the record's reason and evidence."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        self.reason = reason
        self.decision = {
            "rule": reason,
            "at_ms": self._ms(),
            "source": source,
            "leg": leg.value if leg else None,
            "evidence": dict(evidence or {}),
        }

    def _play(self, legs: tuple[Leg, ...], prompt_id: str, **variables: JsonValue) -> None:
        self._emit(cmd.PlayPrompt(legs, prompt_id, self.language, dict(variables)))

    # ---------------------------------------------------------------- ending

    def _close(self, prompts: dict[Leg, list[tuple[str, dict[str, JsonValue]]]], why: str) -> None:
        """Play the final prompts on the legs still up, then hang them up (CLOSING -> ENDED)."""
        self._deadlines.clear()
        if self._reserved and not self._settled:  # a hold without a conversation is released now (ACT-3)
            self._emit(cmd.VoidReservation(self.call_id, self.hold_id, self.reason or why))
            self._settled = True
        for leg, items in prompts.items():
            if leg not in self._legs_up:
                continue
            for prompt_id, variables in items:
                self._emit(cmd.PlayPrompt((leg,), prompt_id, self.language, dict(variables)))
                self._closing_pending[leg] = self._closing_pending.get(leg, 0) + 1
        for leg in list(self._legs_up):
            if self._closing_pending.get(leg, 0) == 0:
                self._hangup(leg, why)
        if not self._legs_up:
            self._end(why)
            return
        self._set_state(S.CLOSING, why)
        self._set_deadline("closing", self._now + self.plan.acceptance.closing_timeout_s)

    def _hangup(self, leg: Leg, why: str) -> None:
        if leg in self._legs_up or (leg is C and self._called_dialing):
            self._emit(cmd.Hangup(leg, self.reason or why))
        self._legs_up.discard(leg)
        if leg is C:
            self._called_dialing = False

    def _end(self, why: str) -> None:
        self._decide(Outcome.FAILED, SYS_PROTOCOL, "state machine", {"error": f"ended without a decision: {why}"})
        for leg in (F, C):
            self._hangup(leg, why)
        if self._reserved and not self._settled:
            self._emit(cmd.VoidReservation(self.call_id, self.hold_id, self.reason or why))
            self._settled = True
        self._deadlines.clear()
        self._times.setdefault("ended", self._ms())
        self._set_state(S.ENDED, why)
        self.record = build_record(self)
        self._emit(cmd.WriteRecord(self.record))

    def _fail(self, why: str) -> None:
        """A protocol breach: end safely, charge nothing (void any hold), record why."""
        log.warning("protocol_error", call_id=self.call_id, state=self.state.value, why=why)
        self.errors.append({"t_ms": self._ms(), "state": self.state.value, "error": why})
        self._decide(Outcome.FAILED, SYS_PROTOCOL, "state machine", {"error": why, "state": self.state.value})
        if self.state is S.CONNECTED:
            self._emit(cmd.Unbridge())
            self.talk_ms = self._ms() - self._times["connected"]
        if self._reserved and not self._settled:
            self._emit(cmd.VoidReservation(self.call_id, self.hold_id, SYS_PROTOCOL))
            self._settled = True
        if self.state is S.START:
            self._set_state(S.ENDED, why)
            self.record = build_record(self)
            self._emit(cmd.WriteRecord(self.record))
            return
        self._end(why)

    # ---------------------------------------------------------------- handlers: anytime

    def on_ignored(self, event: ev.Event) -> None:
        self._note("ignored", state=self.state.value)

    def on_timer(self, event: ev.TimerFired) -> None:  # pragma: no cover - handled in handle()
        pass

    def on_deadline(self, name: str) -> None:
        handler = getattr(self, f"_deadline_{name.split(':')[0]}")
        handler(name)

    def on_hangup(self, event: ev.HangupReceived) -> None:
        leg = event.leg
        if leg not in self._legs_up and not (leg is C and self._called_dialing):
            self._note("ignored", why="leg already down")
            return
        self._legs_up.discard(leg)
        if leg is C:
            self._called_dialing = False
        st = self.state
        if st is S.CONNECTED:
            self._disconnect("DIS-HANGUP", Outcome.COMPLETED, "signalling", {"hung_up": leg.value}, leg=leg)
            return
        if st is S.CLOSING:
            self._closing_pending.pop(leg, None)
            if not self._legs_up:
                self._end("all legs down")
            return
        self._decide(Outcome.ABANDONED, "DIS-HANGUP", "signalling", {"hung_up": leg.value, "state": st.value}, leg)
        if leg is C and F in self._legs_up and st in (S.ANNOUNCE, S.AWAIT_KEY, S.RESERVING):
            self._close({F: [("call_not_accepted", {})]}, "called party hung up before accepting")
            return
        self._end(f"{leg.value} hung up in {st.value}")

    def on_shutdown(self, event: ev.ShutdownRequested) -> None:
        """SIGTERM: settle now. A conversation is a system drop (ACT-4 credit in the first 60 s); before
        acceptance the call ends free (ACC-4); in CLOSING the call already has its decision."""
        evidence: Evidence = {"why": event.reason, "state": self.state.value}
        if self.state is S.START:
            self._decide(Outcome.FAILED, SYS_SHUTDOWN, "engine", evidence)
            self._set_state(S.ENDED, event.reason)
            self.record = build_record(self)
            self._emit(cmd.WriteRecord(self.record))
        elif self.state is S.CONNECTED:
            self._disconnect(SYS_SHUTDOWN, Outcome.DROPPED, "engine", evidence, system_drop=True)
        else:
            self._decide(Outcome.FAILED, SYS_SHUTDOWN, "engine", evidence)
            self._end(event.reason)

    def on_prompt_finished(self, event: ev.PromptFinished) -> None:
        st = self.state
        if st is S.CLOSING:
            pending = self._closing_pending.get(event.leg, 0)
            if pending > 0:
                self._closing_pending[event.leg] = pending - 1
                if pending == 1:
                    self._hangup(event.leg, "final prompt played")
                    if not self._legs_up:
                        self._end("final prompts played")
            return
        if st is S.IDENTIFY and event.leg is F and event.prompt_id == "pin_invalid":
            self._ask_pin()
            return
        if st is S.RECORD_NAME and event.leg is F and event.prompt_id == "say_name":
            self._emit(cmd.StartRecording(F, "name", self.plan.identify.name_max_ms))
            self._set_deadline("name", self._now + self.plan.identify.name_max_ms / 1000 + 2.0)
            return
        if st is S.ANNOUNCE and event.leg is C and event.prompt_id == self._playing:
            if self._playing == "announcement":
                self._playing = None
                self._set_state(S.AWAIT_KEY, f"announcement {self.attempt} played")
                self._set_deadline("digit", self._now + self.plan.acceptance.digit_timeout_s)
            elif self._playing == "invalid_choice":
                self._announce(self.attempt + 1, "after an invalid choice")

    def on_key(self, event: ev.KeyPressed) -> None:
        entry: dict[str, JsonValue] = {
            "t_ms": self._ms(), "key": event.key, "leg": event.leg.value, "source": event.source.value,
        }
        if self._is_duplicate(event):
            entry["counted"] = False
            entry["why"] = "same key by another transport (ACC-5)"
            self._keys.append(entry)
            return
        self._last_key = (event.key, event.leg, event.source.value, self._now)
        self._keys.append(entry)
        st = self.state
        if st is S.IDENTIFY and event.leg is F:
            self._pin_key(event.key)
        elif st in (S.ANNOUNCE, S.AWAIT_KEY):
            if event.leg is not C:
                entry["counted"] = False
                entry["why"] = "keys from the facility leg never count (ACC-2)"
                return
            if st is S.ANNOUNCE and self._playing == "announcement" and not self.plan.acceptance.barge_in:
                entry["counted"] = False
                entry["why"] = "no barge-in at this facility"
                return
            self._acceptance_key(event.key)
        elif st is S.CONNECTED:
            if event.leg in self.plan.policies.digit_legs:
                self._watch("digit", "DIS-DIGIT", event.leg,
                            {"key": event.key, "source": event.source.value}, "key")
            else:
                entry["counted"] = False
                entry["why"] = "keys on this leg are not watched"
        else:
            entry["counted"] = False
            entry["why"] = f"no key expected in {st.value}"

    def _is_duplicate(self, event: ev.KeyPressed) -> bool:
        """ACC-5: the same key on the same leg by another transport within the window counts once."""
        if self._last_key is None:
            return False
        key, leg, source, at = self._last_key
        window_s = self.plan.acceptance.key_dedupe_ms / 1000
        return (key == event.key and leg is event.leg and source != event.source.value
                and self._now - at <= window_s)

    def on_media_timeout(self, event: ev.MediaTimeout) -> None:
        if self.state is S.CONNECTED:
            self._disconnect("DIS-MEDIA", Outcome.DROPPED, "rtp", dict(event.evidence), leg=event.leg,
                             system_drop=True)
        elif self.state in (S.CLOSING,):
            self._note("ignored", why="closing")
        else:
            self._decide(Outcome.FAILED, "DIS-MEDIA", "rtp", dict(event.evidence), event.leg)
            self._end("media timeout before the conversation")

    _WATCH: ClassVar[dict[type, tuple[str, str, str]]] = {
        ev.HoldDetected: ("hold", "DIS-HOLD", "sip re-INVITE"),
        ev.TransferRequested: ("hold", "DIS-HOLD", "sip REFER"),
        ev.HookflashDetected: ("three_way", "DIS-3WAY", "hookflash detector"),
        ev.CallWaitingTone: ("three_way", "DIS-3WAY", "tone detector"),
        ev.NoiseDetected: ("noise", "DIS-NOISE", "noise detector"),
    }

    def on_watch_event(self, event: ev.HoldDetected | ev.TransferRequested | ev.HookflashDetected
                       | ev.CallWaitingTone | ev.NoiseDetected) -> None:
        policy_name, rule, source = self._WATCH[type(event)]
        if self.state is not S.CONNECTED:
            self._note("ignored", why=f"{rule} is watched only while connected")
            return
        if event.leg is not C and policy_name != "noise":
            # The facility's own phone system cannot hold, transfer or flash a three-way call.
            self._detections.append({"t_ms": self._ms(), "rule": rule, "leg": event.leg.value, "source": source,
                                     "action": "ignored", "why": "facility leg", "evidence": dict(event.evidence)})
            return
        self._watch(policy_name, rule, event.leg, dict(event.evidence), source)

    def on_silence(self, event: ev.SilenceDetected) -> None:
        since = self._now - event.silent_for_ms / 1000
        self._silent_since[event.leg] = since
        self._silence_rearm()

    def on_speech(self, event: ev.SpeechDetected) -> None:
        if self._silent_since.pop(event.leg, None) is not None:
            self._silence_warned = False
            self._silence_rearm()

    def on_late_trunk(self, event: ev.Event) -> None:
        if isinstance(event, ev.CalledAnswered):
            # A 200 OK crossed our CANCEL (RFC 3261 section 9.1): the leg is up; hang it up.
            self._emit(cmd.Hangup(C, "answered after the call was decided"))
            return
        self._note("ignored", why="trunk answer after the call was decided")

    def on_late_ledger(self, event: ev.LedgerAnswer) -> None:
        if event.authorized and event.hold_id is not None and event.hold_id == self.hold_id:
            self._note("ignored", why="the same hold answered twice")
        elif event.authorized:
            # A hold that arrived after the call was decided is released at once (ACT-3).
            self._emit(cmd.VoidReservation(self.call_id, event.hold_id, "hold arrived after the call ended"))
        else:
            self._note("ignored", why="ledger answer after the call was decided")

    # ---------------------------------------------------------------- identify

    def on_call_started(self, event: ev.CallStarted) -> None:
        self.call_id = event.call_id
        self.called_number = event.called_number
        self.started_at = event.started_at
        self.caller_id = event.caller_id
        self.sip_call_id = event.sip_call_id
        self._emit(cmd.AnswerCall(F))
        self._legs_up.add(F)
        self._times["answered"] = self._ms()
        self.call_type = self.plan.call_type_for(event.called_number)
        self.limit_s = self.plan.limit_seconds(self.call_type, is_weekend(event.started_at))
        self._set_state(S.IDENTIFY, "facility call answered")
        if not E164.match(event.called_number):
            self._decide(Outcome.FAILED, SYS_NUMBER, "dialplan", {"called_number": event.called_number})
            self._close({F: [("call_failed", {})]}, "called number is not E.164")
            return
        if event.caller_id:
            self._emit(cmd.IdentifyCaller(caller_id=event.caller_id))
            self._set_deadline("lookup", self._now + self.plan.acceptance.ledger_timeout_s)
        else:
            self._ask_pin()

    def _ask_pin(self) -> None:
        self._pin = ""
        self._collecting_pin = True
        self._play((F,), "enter_pin")
        self._set_deadline("pin", self._now + self.plan.identify.pin_timeout_s)

    def _pin_key(self, key: str) -> None:
        if not self._collecting_pin:
            return
        if key == "*":
            self._pin = ""
        elif key == "#":
            self._submit_pin()
            return
        elif key.isdigit():
            self._pin += key
        self._set_deadline("pin", self._now + self.plan.identify.pin_timeout_s)
        if len(self._pin) >= self.plan.identify.pin_digits:
            self._submit_pin()

    def _submit_pin(self) -> None:
        self._collecting_pin = False
        self._clear_deadlines("pin")
        if not self._pin:
            self._pin_failed("no PIN entered")
            return
        self._emit(cmd.IdentifyCaller(pin=self._pin))
        self._set_deadline("lookup", self._now + self.plan.acceptance.ledger_timeout_s)

    def _pin_failed(self, why: str) -> None:
        if self._pin_attempt < self.plan.identify.pin_attempts:
            self._pin_attempt += 1
            self._play((F,), "pin_invalid")
            return
        self._decide(Outcome.RESTRICTED, IDENT_PIN, "pin", {"attempts": self._pin_attempt, "why": why})
        self._close({F: [("caller_not_allowed", {})]}, why)

    def _deadline_pin(self, name: str) -> None:
        if self._pin:
            self._submit_pin()
        else:
            self._collecting_pin = False
            self._pin_failed("no PIN before the timeout")

    def _deadline_lookup(self, name: str) -> None:
        self._decide(Outcome.FAILED, SYS_ROSTER, "roster", {"timeout_s": self.plan.acceptance.ledger_timeout_s})
        self._close({F: [("call_failed", {})]}, "roster did not answer")

    def on_caller_rejected(self, event: ev.CallerRejected) -> None:
        self._clear_deadlines("lookup")
        if self.caller_id:  # a gateway id is not retried
            self._decide(Outcome.RESTRICTED, IDENT_UNKNOWN, "roster", {"caller_id": self.caller_id,
                                                                       "why": event.reason})
            self._close({F: [("caller_not_allowed", {})]}, "caller not on the roster")
            return
        self._pin_failed(f"PIN rejected: {event.reason}")

    def on_caller_identified(self, event: ev.CallerIdentified) -> None:
        self._clear_deadlines("lookup", "pin")
        self._collecting_pin = False
        self.caller_id = event.caller_id
        self.caller_name = event.name
        if event.status != "active":
            self._decide(Outcome.RESTRICTED, IDENT_STATUS, "roster", {"caller_id": event.caller_id,
                                                                      "status": event.status})
            self._close({F: [("caller_not_allowed", {})]}, f"caller is {event.status}")
            return
        if event.has_name_clip:
            self.name_clip = True
            self._check()
            return
        self._set_state(S.RECORD_NAME, "caller identified; record the name (ACC-1)")
        self._play((F,), "say_name")

    def on_name_recorded(self, event: ev.NameRecorded) -> None:
        self._clear_deadlines("name")
        self.name_clip = event.voiced and event.duration_ms > 0
        self._check()

    def _deadline_name(self, name: str) -> None:
        self.name_clip = False
        self._note("name recording never ended: announced by facility only (ACC-1)")
        self._check()

    # ---------------------------------------------------------------- check, dial

    def _check(self) -> None:
        if self.called_number in self.plan.blocked_numbers:
            self._set_state(S.CHECK, "checking blocks")
            self._restricted("BLK-FACILITY", "dialplan", {"list": "blocked.numbers"})
            return
        self._set_state(S.CHECK, "checking blocks and funds (BLK-*)")
        self._emit(cmd.CheckCall(self.call_id, self.called_number, self.caller_id, self.call_type))
        self._set_deadline("ledger", self._now + self.plan.acceptance.ledger_timeout_s)

    def _restricted(self, reason: str, source: str, evidence: Evidence) -> None:
        self._decide(Outcome.RESTRICTED, reason, source, evidence)
        final: list[tuple[str, dict[str, JsonValue]]] = [("blocked", {"reason": reason})]
        self._close({F: final, C: final}, f"refused: {reason}")

    def on_call_checked(self, event: ev.CallChecked) -> None:
        self._clear_deadlines("ledger")
        if not event.allowed:
            self._restricted(event.reason or "BLK-PARTY", "ledger", {"detail": event.detail})
            return
        self.account_kind = event.account_kind or "prepaid"
        self._play((F,), "please_wait")
        self._emit(cmd.PlaceCall(self.called_number))
        self._called_dialing = True
        self._set_state(S.DIALING, "number allowed; calling")
        self._set_deadline("ring", self._now + self.plan.acceptance.ring_timeout_s)

    def _deadline_ledger(self, name: str) -> None:
        self._decide(Outcome.FAILED, SYS_LEDGER, "ledger", {"timeout_s": self.plan.acceptance.ledger_timeout_s,
                                                            "state": self.state.value})
        if self._reserved:
            self._emit(cmd.VoidReservation(self.call_id, None, SYS_LEDGER))
            self._settled = True
        self._close({F: [("call_failed", {})], C: [("call_failed", {})]}, "ledger did not answer")

    def on_called_ringing(self, event: ev.CalledRinging) -> None:
        self._times.setdefault("ringing", self._ms())

    def on_called_answered(self, event: ev.CalledAnswered) -> None:
        self._clear_deadlines("ring")
        self._called_dialing = False
        self._legs_up.add(C)
        self._times["called_answered"] = self._ms()
        self._announce(1, "called party answered")

    def on_called_busy(self, event: ev.CalledBusy) -> None:
        self._called_dialing = False
        self._decide(Outcome.BUSY, "ACC-4", "trunk", {"status": event.status})
        self._close({F: [("called_busy", {})]}, "busy")

    def on_called_failed(self, event: ev.CalledFailed) -> None:
        self._called_dialing = False
        evidence: Evidence = {"status": event.status, "reason": event.reason}
        if event.status in _NO_ANSWER_STATUSES:
            self._decide(Outcome.NO_ANSWER, "ACC-4", "trunk", evidence)
            self._close({F: [("called_no_answer", {})]}, "no answer")
        else:
            self._decide(Outcome.FAILED, SYS_TRUNK, "trunk", evidence)
            self._close({F: [("call_failed", {})]}, f"trunk failed the call ({event.status})")

    def _deadline_ring(self, name: str) -> None:
        self._decide(Outcome.NO_ANSWER, "ACC-4", "ring timer", {"ring_timeout_s": self.plan.acceptance.ring_timeout_s})
        self._hangup(C, "no answer")  # CANCEL
        self._close({F: [("called_no_answer", {})]}, "no answer before the ring timeout")

    # ---------------------------------------------------------------- acceptance

    def _announcement_variables(self) -> dict[str, JsonValue]:
        keys = self.plan.keys
        tariff = self.plan.tariff
        variables: dict[str, JsonValue] = {
            "call_type": self.account_kind,
            "name": "clip" if self.name_clip else "none",
            "facility": self.plan.facility.id,
            "rate_minor_per_min": tariff.rate_minor_per_min,
            "key_accept": keys.accept,
            "key_refuse": keys.refuse,
            "key_block": keys.block,
            "privileged": 1 if self.call_type == "privileged" else 0,
        }
        if self.limit_s is not None:
            variables["max_minutes"] = math.ceil(self.limit_s / 60)
            variables["max_cost_minor"] = rate_call(self.limit_s, tariff).total_minor
        if keys.language is not None:
            variables["key_language"] = keys.language
        return variables

    def _announce(self, attempt: int, why: str) -> None:
        self.attempt = attempt
        self._playing = "announcement"
        self._clear_deadlines("digit")
        self._set_state(S.ANNOUNCE, f"{why}: announcement attempt {attempt} (ACC-2)")
        self._play((C,), "announcement", **self._announcement_variables())

    def _stop_called_prompt(self) -> None:
        if self._playing is not None:
            self._emit(cmd.StopPrompt(C))
            self._playing = None

    def _acceptance_key(self, key: str) -> None:
        keys = self.plan.keys
        self._clear_deadlines("digit")
        if key == keys.accept:
            self._stop_called_prompt()
            self.accepted_key = dict(self._keys[-1])
            self._times["accepted"] = self._ms()
            self._reserved = True
            self._emit(cmd.ReserveFunds(self.call_id, self.called_number, self.call_type, self.limit_s,
                                        self.plan.tariff.rate_minor_per_min))
            self._set_state(S.RESERVING, f"accepted with {key} (ACC-2); reserving funds (ACT-3)")
            self._set_deadline("ledger", self._now + self.plan.acceptance.ledger_timeout_s)
        elif key == keys.refuse:
            self._stop_called_prompt()
            self._decide(Outcome.REFUSED, "ACC-2", "key", {"key": key, "attempt": self.attempt}, C)
            self._close({C: [("call_refused_confirm", {})], F: [("call_not_accepted", {})]}, "refused")
        elif key == keys.block:
            self._stop_called_prompt()
            self._decide(Outcome.BLOCKED, "ACC-6", "key", {"key": key, "attempt": self.attempt}, C)
            self._emit(cmd.BlockNumber(self.called_number, self.plan.facility.id, "ACC-6 block key"))
            self._close({C: [("call_blocked_confirm", {})], F: [("call_not_accepted", {})]}, "blocked")
        elif key == keys.language and len(self.plan.facility.languages) > 1:
            self._stop_called_prompt()
            langs = self.plan.facility.languages
            self.language = langs[(langs.index(self.language) + 1) % len(langs)]
            self._announce(self.attempt, f"language switched to {self.language} (not an attempt)")
        else:
            self._stop_called_prompt()
            if self.attempt < self.plan.acceptance.attempts:
                self._set_state(S.ANNOUNCE, f"invalid key {key} uses attempt {self.attempt} (ACC-3)")
                self._playing = "invalid_choice"
                self._play((C,), "invalid_choice")
            else:
                self._decide(Outcome.NO_INPUT, "ACC-3", "key", {"key": key, "attempt": self.attempt,
                                                                "attempts": self.plan.acceptance.attempts}, C)
                self._close({C: [("invalid_choice", {})], F: [("call_not_accepted", {})]},
                            "invalid key on the last attempt")

    def _deadline_digit(self, name: str) -> None:
        if self.attempt < self.plan.acceptance.attempts:
            self._announce(self.attempt + 1, "no key before the digit timeout")
            return
        self._decide(Outcome.NO_INPUT, "ACC-3", "digit timer", {
            "attempts": self.attempt, "digit_timeout_s": self.plan.acceptance.digit_timeout_s})
        self._close({C: [("goodbye", {})], F: [("call_not_accepted", {})]}, "no key after the last attempt")

    # ---------------------------------------------------------------- connect

    def on_ledger_answer(self, event: ev.LedgerAnswer) -> None:
        self._clear_deadlines("ledger")
        if not event.authorized:
            self._settled = True  # nothing was held
            self._restricted(event.reason or "BLK-FUNDS", "ledger", {"detail": event.detail})
            return
        self.hold_id = event.hold_id
        self.hold_minor = event.hold_minor
        # Never allow more talk than the hold pays for, whatever the ledger says (ACT-3).
        covered = seconds_covered(event.hold_minor, self.plan.tariff, self.limit_s)
        allowed = min(event.allowed_seconds, covered)
        if self.limit_s is not None:
            allowed = min(allowed, self.limit_s)
        if allowed <= 0:
            self._emit(cmd.VoidReservation(self.call_id, event.hold_id, "BLK-FUNDS"))
            self._settled = True
            self._restricted("BLK-FUNDS", "ledger", {"allowed_seconds": event.allowed_seconds,
                                                     "hold_minor": event.hold_minor})
            return
        self.allowed_seconds = allowed
        self._funds_limited = self.limit_s is None or allowed < self.limit_s
        untimed = self.limit_s is None and self.call_type == "privileged"
        self._emit(cmd.Bridge(record=self.call_type != "privileged"))
        self._times["connected"] = self._ms()
        self._set_state(S.CONNECTED, f"funds reserved for {allowed} s; bridged")
        self._play(BOTH, "connected", allowed_seconds=allowed, untimed=1 if untimed else 0)
        if not untimed:
            start = self._now
            for warn_s in self.plan.warnings_s:
                if allowed > warn_s:
                    self._set_deadline(f"warn:{warn_s}", start + allowed - warn_s)
            self._set_deadline("limit", start + allowed)
        self._silence_rearm()

    def _deadline_warn(self, name: str) -> None:
        seconds_left = int(name.split(":")[1])
        prompt = "funds_warning" if self._funds_limited else "time_warning"
        self._warnings.append({"t_ms": self._ms(), "rule": "DIS-FUNDS" if self._funds_limited else "DIS-LIMIT",
                               "seconds_left": seconds_left})
        self._play(BOTH, prompt, seconds_left=seconds_left)

    def _deadline_limit(self, name: str) -> None:
        rule = "DIS-FUNDS" if self._funds_limited else "DIS-LIMIT"
        self._disconnect(rule, Outcome.LIMITED, "call timer", {
            "allowed_seconds": self.allowed_seconds, "limit_seconds": self.limit_s, "hold_minor": self.hold_minor})

    # ---------------------------------------------------------------- the watch

    def _policy(self, name: str) -> Policy:
        policies = self.plan.policies
        table: dict[str, Policy] = {
            "hold": policies.hold, "three_way": policies.three_way, "digit": policies.digit,
            "noise": policies.noise,
        }
        return table[name]

    def _watch(self, name: str, rule: str, leg: Leg, evidence: Evidence, source: str) -> None:
        """Apply a facility policy to one occurrence: off / warn N times / disconnect (DIS preamble)."""
        policy = self._policy(name)
        count = self._occurrences.get(name, 0) + 1
        self._occurrences[name] = count
        detection: dict[str, JsonValue] = {
            "t_ms": self._ms(), "rule": rule, "leg": leg.value, "source": source, "occurrence": count,
            "policy": policy.action.value, "evidence": dict(evidence),
        }
        self._detections.append(detection)
        if policy.action is Action.OFF:
            detection["action"] = "ignored"
        elif policy.action is Action.WARN and count <= policy.warnings:
            detection["action"] = "warned"
            self._warnings.append({"t_ms": self._ms(), "rule": rule, "occurrence": count})
            self._play(BOTH, "warning", reason=rule)
        else:
            detection["action"] = "disconnected"
            self._disconnect(rule, Outcome.DISCONNECTED, source, dict(evidence, occurrence=count,
                                                                      warnings_allowed=policy.warnings
                                                                      if policy.action is Action.WARN else 0),
                             leg=leg)

    def _silence_rearm(self) -> None:
        """DIS-SILENCE: both parties silent; warn then disconnect per the facility's policy."""
        policy = self.plan.policies.silence
        self._clear_deadlines("silence_warn", "silence_end")
        if self.state is not S.CONNECTED or policy.action is Action.OFF:
            return
        if F not in self._silent_since or C not in self._silent_since:
            return
        since = max(self._silent_since[F], self._silent_since[C], self._now - 10**6)
        connected_at = (self._t0 or 0.0) + self._times["connected"] / 1000
        since = max(since, connected_at)
        if policy.action is Action.WARN and not self._silence_warned:
            self._set_deadline("silence_warn", since + policy.warn_after_s)
        self._set_deadline("silence_end", since + policy.disconnect_after_s)

    def _silence_evidence(self) -> Evidence:
        policy = self.plan.policies.silence
        since = max(self._silent_since.values()) if self._silent_since else self._now
        return {"silent_ms": round((self._now - since) * 1000), "warn_after_s": policy.warn_after_s,
                "disconnect_after_s": policy.disconnect_after_s}

    def _deadline_silence_warn(self, name: str) -> None:
        self._silence_warned = True
        evidence = self._silence_evidence()
        self._detections.append({"t_ms": self._ms(), "rule": "DIS-SILENCE", "leg": None, "source": "silence detector",
                                 "occurrence": 1, "policy": "warn", "action": "warned", "evidence": evidence})
        self._warnings.append({"t_ms": self._ms(), "rule": "DIS-SILENCE", "occurrence": 1})
        self._play(BOTH, "warning", reason="DIS-SILENCE")

    def _deadline_silence_end(self, name: str) -> None:
        evidence = self._silence_evidence()
        self._detections.append({"t_ms": self._ms(), "rule": "DIS-SILENCE", "leg": None, "source": "silence detector",
                                 "occurrence": 1, "policy": self.plan.policies.silence.action.value,
                                 "action": "disconnected", "evidence": evidence})
        self._disconnect("DIS-SILENCE", Outcome.DISCONNECTED, "silence detector", evidence)

    def _deadline_closing(self, name: str) -> None:
        self._end("closing timeout")

    def _disconnect(self, rule: str, outcome: Outcome, source: str, evidence: Evidence, *,
                    leg: Leg | None = None, system_drop: bool = False) -> None:
        """End the conversation: stop the audio, settle the money, tell whoever is still there."""
        self._decide(outcome, rule, source, evidence, leg)
        self._emit(cmd.Unbridge())
        self.talk_ms = max(0, self._ms() - self._times["connected"])
        self.billed_seconds = min(self.talk_ms // 1000, self.allowed_seconds or 0)
        self.system_drop = system_drop
        self.credited = system_drop and self.talk_ms < SYSTEM_DROP_CREDIT_S * 1000
        amount = 0 if self.credited else rate_call(self.billed_seconds, self.plan.tariff).total_minor
        assert self.hold_id is not None
        self._emit(cmd.PostCharge(self.call_id, self.hold_id, self.billed_seconds, amount, rule, system_drop))
        self._settled = True
        self._times["disconnected"] = self._ms()
        if rule in ("DIS-HANGUP", "DIS-MEDIA", SYS_SHUTDOWN):
            self._end(f"{rule} on the {leg.value if leg else ''} leg")
            return
        self._close({lg: [("disconnect", {"reason": rule})] for lg in BOTH}, f"disconnect: {rule}")
