"""Outputs of the CallMachine: orders, in the imperative (DESIGN.md section 3).

The adapter (ivr/net/runner.py, sim/, replay) carries them out; the machine never does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ivr.types import JsonValue, Leg


@dataclass(frozen=True, slots=True)
class AnswerCall:
    """Answer the facility leg (200 OK)."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class IdentifyCaller:
    """Look the caller up in the roster by gateway id or by PIN (answer: CallerIdentified/Rejected)."""

    caller_id: str | None = None
    pin: str | None = None


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Play a prompt (ivr.prompts catalogue) to one or both legs; PromptFinished follows per leg."""

    legs: tuple[Leg, ...]
    prompt_id: str
    language: str
    variables: dict[str, JsonValue] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StopPrompt:
    """Stop what is playing on a leg (barge-in)."""

    leg: Leg


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record the caller's name (ACC-1); NameRecorded follows."""

    leg: Leg
    purpose: str
    max_ms: int


@dataclass(frozen=True, slots=True)
class CheckCall:
    """Ask the ledger whether this number may be called at all (BLK-*); CallChecked follows."""

    call_id: str
    called_number: str
    caller_id: str | None
    call_type: str


@dataclass(frozen=True, slots=True)
class PlaceCall:
    """INVITE the called number through the trunk."""

    called_number: str


@dataclass(frozen=True, slots=True)
class Bridge:
    """Connect the two legs' audio. ``record`` is False for privileged numbers (REG-3)."""

    record: bool


@dataclass(frozen=True, slots=True)
class Unbridge:
    """Disconnect the legs' audio (the conversation is over)."""


@dataclass(frozen=True, slots=True)
class ReserveFunds:
    """ACT-3: place a pending hold for the most the call may cost; LedgerAnswer follows."""

    call_id: str
    called_number: str
    call_type: str
    max_seconds: int | None
    rate_minor_per_min: int


@dataclass(frozen=True, slots=True)
class PostCharge:
    """ACT-3: post the real cost, release the rest. ``system_drop`` asks for the ACT-4 credit."""

    call_id: str
    hold_id: str
    billed_seconds: int
    amount_minor: int
    reason: str
    system_drop: bool


@dataclass(frozen=True, slots=True)
class VoidReservation:
    """ACT-3: the conversation never started (or ended unsafely): release the hold, charge nothing."""

    call_id: str
    hold_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class BlockNumber:
    """ACC-6 / BLK-PARTY: block this number for the facility at once (free)."""

    called_number: str
    facility_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """End a leg: CANCEL if it is still ringing, BYE if it is up."""

    leg: Leg
    reason: str


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """The call is over: write its record (exactly one per call)."""

    record: dict[str, Any]


Command = (
    AnswerCall
    | IdentifyCaller
    | PlayPrompt
    | StopPrompt
    | StartRecording
    | CheckCall
    | PlaceCall
    | Bridge
    | Unbridge
    | ReserveFunds
    | PostCharge
    | VoidReservation
    | BlockNumber
    | Hangup
    | WriteRecord
)
