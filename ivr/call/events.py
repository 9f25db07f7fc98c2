"""Inputs of the CallMachine: facts, in the past tense (DESIGN.md section 3).

Every event is a frozen dataclass; ``EVENT_TYPES`` maps the name used in ``events.jsonl`` and in
flows to the class, so recorded calls and hand-written flows are decoded the same way.
Detector evidence travels with the event and ends up in the call record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ivr.types import Evidence, KeySource, Leg


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The facility gateway's INVITE reached us (facility leg).

    ``caller_id`` comes from a trusted gateway header (``X-Inmate-Id``); without it the machine
    asks for a PIN. ``started_at`` is the signalling time of the INVITE as an ISO 8601 string
    with the facility's UTC offset: it decides weekday/weekend limits and dates the record.
    """

    call_id: str
    called_number: str
    started_at: str
    caller_id: str | None = None
    sip_call_id: str | None = None  # the facility leg's SIP Call-ID, to match logs and captures


@dataclass(frozen=True, slots=True)
class CallerIdentified:
    """The roster answered: who the caller is and whether they may call."""

    caller_id: str
    name: str
    status: str  # active | released | suspended
    has_name_clip: bool = False


@dataclass(frozen=True, slots=True)
class CallerRejected:
    """The roster found no caller for the id or PIN given."""

    reason: str = "unknown"


@dataclass(frozen=True, slots=True)
class NameRecorded:
    """The caller's name recording ended (ACC-1). ``voiced`` is False when nothing was said."""

    duration_ms: int
    voiced: bool


@dataclass(frozen=True, slots=True)
class CallChecked:
    """The ledger's pre-dial answer: blocks and restrictions (BLK-*) before the family is rung."""

    allowed: bool
    reason: str | None = None  # a BLK-* id when refused
    account_kind: str | None = None  # prepaid | collect
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CalledRinging:
    """18x from the trunk."""


@dataclass(frozen=True, slots=True)
class CalledAnswered:
    """2xx from the trunk: the called party picked up."""


@dataclass(frozen=True, slots=True)
class CalledBusy:
    """486/600 from the trunk."""

    status: int = 486


@dataclass(frozen=True, slots=True)
class CalledFailed:
    """Any other final failure from the trunk (408, 480, 503, 603 ...)."""

    status: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """A prompt finished playing (or was stopped) on a leg."""

    leg: Leg
    prompt_id: str


@dataclass(frozen=True, slots=True)
class KeyPressed:
    """One key press, whatever the transport (ACC-5)."""

    key: str
    leg: Leg
    source: KeySource = KeySource.RFC4733


@dataclass(frozen=True, slots=True)
class LedgerAnswer:
    """The ledger's answer to ``ReserveFunds`` (ACT-3): a hold, or a refusal with a BLK id."""

    authorized: bool
    hold_id: str | None = None
    allowed_seconds: int = 0
    hold_minor: int = 0
    reason: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HoldDetected:
    """re-INVITE with sendonly / inactive / c=0.0.0.0 (DIS-HOLD)."""

    leg: Leg
    evidence: Evidence = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """REFER received (DIS-HOLD: transfer). It is never followed."""

    leg: Leg
    evidence: Evidence = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HookflashDetected:
    """A hookflash / three-way attempt (DIS-3WAY)."""

    leg: Leg
    evidence: Evidence = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallWaitingTone:
    """The call-waiting tone on a leg (DIS-3WAY)."""

    leg: Leg
    evidence: Evidence = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SilenceDetected:
    """A leg went silent; the silence began ``silent_for_ms`` before this event (DIS-SILENCE)."""

    leg: Leg
    silent_for_ms: int = 0
    evidence: Evidence = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpeechDetected:
    """Voice again on a leg: ends that leg's silence."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class NoiseDetected:
    """Sustained static on a leg (DIS-NOISE)."""

    leg: Leg
    evidence: Evidence = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MediaTimeout:
    """No RTP from a leg for longer than the media timeout (DIS-MEDIA: a system drop)."""

    leg: Leg
    evidence: Evidence = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HangupReceived:
    """BYE (or CANCEL on the facility leg) from a leg (DIS-HANGUP)."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class ShutdownRequested:
    """The engine is stopping (SIGTERM): end the call cleanly; a conversation is settled as a system drop."""

    reason: str = "engine stopping"


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The adapter's timer fired: the machine looks at its deadlines. Recorded so replay is exact."""


Event = (
    CallStarted
    | CallerIdentified
    | CallerRejected
    | NameRecorded
    | CallChecked
    | CalledRinging
    | CalledAnswered
    | CalledBusy
    | CalledFailed
    | PromptFinished
    | KeyPressed
    | LedgerAnswer
    | HoldDetected
    | TransferRequested
    | HookflashDetected
    | CallWaitingTone
    | SilenceDetected
    | SpeechDetected
    | NoiseDetected
    | MediaTimeout
    | HangupReceived
    | ShutdownRequested
    | TimerFired
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        CallStarted,
        CallerIdentified,
        CallerRejected,
        NameRecorded,
        CallChecked,
        CalledRinging,
        CalledAnswered,
        CalledBusy,
        CalledFailed,
        PromptFinished,
        KeyPressed,
        LedgerAnswer,
        HoldDetected,
        TransferRequested,
        HookflashDetected,
        CallWaitingTone,
        SilenceDetected,
        SpeechDetected,
        NoiseDetected,
        MediaTimeout,
        HangupReceived,
        ShutdownRequested,
        TimerFired,
    )
}
