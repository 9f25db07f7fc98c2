"""The ledger as the engine and the call machine see it (DESIGN.md section 6; DOMAIN.md ACT, BLK).

Plain frozen values and a Protocol: no SQLAlchemy here, so the sans-I/O core can depend on it.
Refusals are values (``Refused(reason="BLK-FUNDS")``), not exceptions (STYLE.md).

Every operation is idempotent by ids derived from the call id and the phase (ACT-3): authorizing a
call twice returns the same hold, settling twice posts once, voiding a settled call changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from ivr.rating import CostLine, Tariff

# DOMAIN.md BLK ids: the only reasons a ledger refuses a call.
BLK_PARTY = "BLK-PARTY"
BLK_FACILITY = "BLK-FACILITY"
BLK_CARRIER = "BLK-CARRIER"
BLK_NEWNUM = "BLK-NEWNUM"
BLK_SPEND = "BLK-SPEND"
BLK_FUNDS = "BLK-FUNDS"
REFUSAL_REASONS: frozenset[str] = frozenset({BLK_PARTY, BLK_FACILITY, BLK_CARRIER, BLK_NEWNUM, BLK_SPEND, BLK_FUNDS})

PaymentKind = Literal["prepaid", "collect"]

# ACT-4: a system drop this early in the conversation is credited automatically.
SYSTEM_DROP_CREDIT_SECONDS = 60


@dataclass(frozen=True, slots=True)
class CallFacts:
    """What the ledger needs to know to allow, hold and rate one call.

    ``at`` is passed in (UTC, timezone-aware); the ledger never reads a clock for a decision.
    ``max_seconds`` is the facility's limit for this call type (LIM-1); None means untimed (REG-3).
    """

    call_id: str
    facility_id: str
    caller_id: str | None
    called_number: str  # E.164, e.g. "+15551234567"
    call_type: str
    tariff: Tariff
    max_seconds: int | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Allowed:
    """``check`` passed: who would pay. ``account_id`` is None for a collect number not yet billed."""

    account_id: str | None
    kind: PaymentKind


@dataclass(frozen=True, slots=True)
class Authorized:
    """A pending hold (ACT-3) for the most this call may cost; it decides the allowed talk time (LIM-1)."""

    hold_id: str
    account_id: str
    kind: PaymentKind
    allowed_seconds: int
    hold_minor: int
    rate_minor_per_min: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The call may not be placed or accepted. ``reason`` is a DOMAIN.md BLK id; ``detail`` is for logs."""

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Settlement:
    """The end of a hold: what was posted, what was released, what was credited (ACT-3, ACT-4).

    ``lines`` is the rating of the billed time (ivr.rating.rate_call), also when it was credited, so
    the invoice can show the call and its credit side by side. ``label`` explains a credit or a
    non-credit (a drop outside our control is labelled, not credited).
    """

    hold_id: str
    posted_minor: int
    released_minor: int
    credited_minor: int
    billed_seconds: int
    lines: tuple[CostLine, ...]
    label: str = ""


@runtime_checkable
class LedgerPort(Protocol):
    """What the engine calls. Implementations: ledger.memory.InMemoryLedger, ledger.service.LedgerService."""

    def check(self, facts: CallFacts) -> Allowed | Refused:
        """Read-only: every BLK rule and the funds for the first billed minute, before dialing."""
        ...

    def authorize(self, facts: CallFacts) -> Authorized | Refused:
        """At acceptance: re-check and place the pending hold, atomically."""
        ...

    def settle(self, call_id: str, billed_seconds: int, end_reason: str, system_drop: bool, at: datetime) -> Settlement:
        """At the end: post ``rate_call(billed_seconds)``, release the rest, apply ACT-4."""
        ...

    def void(self, call_id: str, reason: str, at: datetime) -> None:
        """The conversation never started: release the whole hold (ACC-4)."""
        ...

    def block(self, number: str, scope_facility_id: str | None, reason: str, who: str, at: datetime) -> None:
        """BLK-PARTY at once (ACC-6): ``scope_facility_id`` None blocks calls from every facility."""
        ...
