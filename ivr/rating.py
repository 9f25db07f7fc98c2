"""Rating: the cost of a call from its billed seconds and the tariff alone (ACT-2, REG-2).

Pure functions over integers (minor units). The call record and the ledger both rate with this
module, so a record's cost breakdown and the ledger's posted amount can never disagree.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Increment(enum.StrEnum):
    """Billing increment (ACT-2): per started minute unless the tariff says per second."""

    MINUTE = "minute"
    SECOND = "second"


@dataclass(frozen=True, slots=True)
class Tax:
    """A tax on the call charge, in basis points (1/100 of a percent), itemized (REG-2)."""

    name: str
    rate_bp: int


@dataclass(frozen=True, slots=True)
class Fee:
    """A per-call fee; only where the tariff lists it, each its own line (REG-2)."""

    name: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Tariff:
    rate_minor_per_min: int
    increment: Increment = Increment.MINUTE
    taxes: tuple[Tax, ...] = ()
    fees: tuple[Fee, ...] = ()
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class CostLine:
    kind: str  # "call" | "tax" | "fee"
    name: str
    amount_minor: int


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    billed_seconds: int
    billed_minutes: int  # started minutes (per-minute tariffs); 0 for per-second
    rate_minor_per_min: int
    lines: tuple[CostLine, ...] = field(default_factory=tuple)

    @property
    def total_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines)

    @property
    def call_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines if line.kind == "call")


def _div_round_half_up(numerator: int, denominator: int) -> int:
    """Integer division rounding half up (for non-negative numerators)."""
    return (2 * numerator + denominator) // (2 * denominator)


def started_minutes(billed_seconds: int) -> int:
    """Minutes begun: 0 s -> 0, 1..60 s -> 1, 61 s -> 2 (ACT-2 per started minute)."""
    if billed_seconds < 0:
        raise ValueError("billed_seconds must be >= 0")
    return -(-billed_seconds // 60)


def call_charge_minor(billed_seconds: int, tariff: Tariff) -> int:
    if tariff.increment is Increment.MINUTE:
        return started_minutes(billed_seconds) * tariff.rate_minor_per_min
    return _div_round_half_up(billed_seconds * tariff.rate_minor_per_min, 60)


def rate_call(billed_seconds: int, tariff: Tariff) -> CostBreakdown:
    """The full cost of a call that lasted ``billed_seconds`` of conversation.

    A call with no billed time costs nothing at all: no fee or tax either (ACC-4).
    """
    charge = call_charge_minor(billed_seconds, tariff)
    minutes = started_minutes(billed_seconds) if tariff.increment is Increment.MINUTE else 0
    if billed_seconds == 0:
        return CostBreakdown(0, 0, tariff.rate_minor_per_min, ())
    lines: list[CostLine] = [CostLine("call", "usage", charge)]
    lines += [CostLine("fee", fee.name, fee.amount_minor) for fee in tariff.fees]
    taxable = charge + sum(fee.amount_minor for fee in tariff.fees)
    lines += [CostLine("tax", tax.name, _div_round_half_up(taxable * tax.rate_bp, 10_000)) for tax in tariff.taxes]
    return CostBreakdown(billed_seconds, minutes, tariff.rate_minor_per_min, tuple(lines))


def max_cost_minor(max_seconds: int, tariff: Tariff) -> int:
    """The most a call of at most ``max_seconds`` can cost (the ACT-3 hold amount)."""
    return rate_call(max_seconds, tariff).total_minor


def seconds_covered(available_minor: int, tariff: Tariff, limit_seconds: int | None) -> int:
    """The longest talk time (seconds) whose full cost fits in ``available_minor`` (LIM-1).

    Per-minute tariffs allow whole minutes only (a started minute is billed in full). ``limit_seconds``
    caps the answer (None: untimed). Returns 0 when not even the first billed unit is covered (BLK-FUNDS).
    """
    if available_minor <= 0:
        return 0
    cap = limit_seconds if limit_seconds is not None else 24 * 3600
    if max_cost_minor(cap, tariff) <= available_minor:
        return cap
    unit = 60 if tariff.increment is Increment.MINUTE else 1
    lo, hi = 0, cap // unit  # in units; cost is monotonic in time
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if max_cost_minor(mid * unit, tariff) <= available_minor:
            lo = mid
        else:
            hi = mid - 1
    return lo * unit
