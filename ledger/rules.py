"""The ledger's rules, pure (DESIGN.md section 6; DOMAIN.md ACT, BLK).

No I/O, no clock, no SQL: every function takes the facts and the time it needs. The in-memory
ledger and the SQL ledger gather a :class:`Snapshot` their own way and then decide with the very
same :func:`decide` and :func:`settle_amounts`, so both behave identically by construction.
Rating is ``ivr.rating`` only: the call record rates with the same functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from ivr.rating import CostLine, Tariff, max_cost_minor, rate_call, seconds_covered
from ledger.api import (
    BLK_CARRIER,
    BLK_FACILITY,
    BLK_FUNDS,
    BLK_NEWNUM,
    BLK_PARTY,
    BLK_SPEND,
    SYSTEM_DROP_CREDIT_SECONDS,
    CallFacts,
    PaymentKind,
    Refused,
)

# ---------------------------------------------------------------------------------------------
# Vocabulary

BLOCK_KINDS: tuple[str, ...] = (BLK_PARTY, BLK_FACILITY, BLK_CARRIER, BLK_NEWNUM)
NUMBER_TYPES: tuple[str, ...] = ("landline", "mobile", "voip")
DEPOSIT_METHODS: tuple[str, ...] = ("card", "cash", "money-transfer")
SPEND_PERIODS: tuple[str, ...] = ("day", "week", "month")

# An untimed call still needs a finite hold; a day is far beyond any facility's practice.
UNTIMED_CAP_SECONDS = 24 * 3600
# A hold outlives its call by this much before the sweeper voids it (announcement, signalling lag).
HOLD_GRACE_SECONDS = 15 * 60
# Collect numbers get this credit limit per calendar month until customer service sets another.
DEFAULT_COLLECT_LIMIT_MINOR = 50_00

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")  # ITU-T E.164 section 6: at most 15 digits


def is_e164(number: str) -> bool:
    return bool(_E164.match(number))


_DOLLARS = re.compile(r"^\d{1,9}(\.\d{1,2})?$")  # at most $999,999,999.99: fits any column, no exponents


def parse_dollars(text: str) -> int:
    """``"10.00"`` -> 1000 minor units. Raises ValueError for anything but a positive amount in cents."""
    candidate = text.strip()
    if not _DOLLARS.match(candidate):
        if candidate.startswith("-"):
            raise ValueError(f"amount must be positive: {text!r}")
        raise ValueError(f"not an amount: {text!r} (write dollars like 10.00)")
    cents = int(Decimal(candidate) * 100)
    if cents <= 0:
        raise ValueError(f"amount must be positive: {text!r}")
    return cents


def format_minor(amount_minor: int) -> str:
    """1000 -> ``"10.00"``; -5 -> ``"-0.05"``."""
    sign = "-" if amount_minor < 0 else ""
    whole, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def utc(at: datetime) -> datetime:
    """Every time the ledger stores is timezone-aware UTC; a naive time is refused, not guessed."""
    if at.tzinfo is None:
        raise ValueError("times passed to the ledger must be timezone-aware (UTC)")
    return at.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Ids derived from the call id and the phase (ACT-3): a retry finds the row it wrote before.


def hold_transfer_id(call_id: str) -> str:
    return f"{call_id}/hold"


def post_transfer_id(call_id: str) -> str:
    return f"{call_id}/post"


def void_transfer_id(call_id: str) -> str:
    return f"{call_id}/void"


def line_transfer_id(call_id: str, index: int) -> str:
    return f"{call_id}/line/{index}"


# System accounts of the double-entry book. They carry no running counters (computed from the
# journal on demand), so concurrent calls never queue on one hot row (DESIGN.md section 6).
CLEARING = "sys:clearing"
REVENUE = "sys:revenue"
FORFEITED = "sys:forfeited"


def funding_account(method: str) -> str:
    return f"sys:funding:{method}"


def refund_account(method: str) -> str:
    return f"sys:refund:{method}"


def line_account(line: CostLine) -> str:
    if line.kind == "call":
        return REVENUE
    return f"sys:{line.kind}:{line.name}"


# ---------------------------------------------------------------------------------------------
# Blocks and restrictions (BLK-*): the journal of block/lift rows folded into what is in force.


@dataclass(frozen=True, slots=True)
class BlockRow:
    kind: str  # a BLK id
    facility_id: str | None  # None: every facility
    action: str  # "block" | "lift"


def active_blocks(rows: Iterable[BlockRow]) -> frozenset[tuple[str, str | None]]:
    """Rows in the order written -> the (kind, scope) pairs in force; the latest row per pair wins."""
    state: dict[tuple[str, str | None], bool] = {}
    for row in rows:
        state[(row.kind, row.facility_id)] = row.action == "block"
    return frozenset(key for key, on in state.items() if on)


# ---------------------------------------------------------------------------------------------
# Authorization (BLK-*, LIM-1, ACT-3)


@dataclass(frozen=True, slots=True)
class Payer:
    """Who pays the call and what they have left, as gathered by a store."""

    account_id: str | None  # None: a collect number without an account yet
    kind: PaymentKind
    status: str  # "active" | "expired" | "closed" | "suspended"
    available_minor: int  # prepaid: posted credits - posted debits - pending debits; collect: limit left
    spend_limit_minor: int | None = None
    spent_in_period_minor: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    blocks: frozenset[tuple[str, str | None]]
    payer: Payer


@dataclass(frozen=True, slots=True)
class Grant:
    account_id: str | None
    kind: PaymentKind
    allowed_seconds: int
    hold_minor: int


def _blocked(blocks: frozenset[tuple[str, str | None]], kind: str, facility_id: str) -> bool:
    return (kind, facility_id) in blocks or (kind, None) in blocks


def decide(facts: CallFacts, snapshot: Snapshot) -> Grant | Refused:
    """Every BLK rule and the funds, in one place, in a fixed order (the first that applies is reported).

    Blocks come first: they are free and say nothing about money. Then who pays: a prepaid account
    pays even where the carrier refuses collect calls (BLK-CARRIER); a collect call needs an
    unrestricted carrier and room under its credit limit. Finally the time the money covers, capped
    by the facility limit (LIM-1); less than the first billed minute refuses the call (BLK-FUNDS).
    """
    blocks = snapshot.blocks
    number = facts.called_number
    if _blocked(blocks, BLK_FACILITY, facts.facility_id):
        return Refused(BLK_FACILITY, f"{number} is forbidden by facility {facts.facility_id}")
    if _blocked(blocks, BLK_PARTY, facts.facility_id):
        return Refused(BLK_PARTY, f"{number} asked not to receive calls")
    if _blocked(blocks, BLK_NEWNUM, facts.facility_id):
        return Refused(BLK_NEWNUM, f"{number} is a new number awaiting the holder's confirmation")
    payer = snapshot.payer
    if payer.kind == "collect" and _blocked(blocks, BLK_CARRIER, facts.facility_id):
        return Refused(BLK_CARRIER, f"the carrier of {number} refuses collect calls")
    if payer.status != "active":
        reason = BLK_FUNDS if payer.kind == "prepaid" else BLK_SPEND
        return Refused(reason, f"account {payer.account_id} is {payer.status}")

    tariff = facts.tariff
    cap = facts.max_seconds if facts.max_seconds is not None else UNTIMED_CAP_SECONDS
    first_seconds = min(60, cap) if cap > 0 else 60
    budget = payer.available_minor
    limit_left: int | None = None
    if payer.spend_limit_minor is not None:
        limit_left = payer.spend_limit_minor - payer.spent_in_period_minor
        budget = min(budget, limit_left)
    # A free tariff (some attorney lines) needs no money at all.
    allowed = cap if max_cost_minor(cap, tariff) == 0 else seconds_covered(budget, tariff, cap)
    if allowed < first_seconds or allowed == 0:
        needed = max_cost_minor(first_seconds, tariff)
        if payer.kind == "collect":
            return Refused(BLK_SPEND, f"collect credit limit reached ({payer.available_minor} left)")
        if limit_left is not None and limit_left < payer.available_minor and limit_left < needed:
            return Refused(BLK_SPEND, f"spending limit reached ({limit_left} left in the period)")
        return Refused(BLK_FUNDS, f"{payer.available_minor} available, first minute costs {needed}")
    return Grant(payer.account_id, payer.kind, allowed, max_cost_minor(allowed, tariff))


def hold_timeout(at: datetime, allowed_seconds: int) -> datetime:
    """When the sweeper may void a hold nobody settled (a crashed engine, ACT-3)."""
    return at + timedelta(seconds=allowed_seconds + HOLD_GRACE_SECONDS)


# ---------------------------------------------------------------------------------------------
# Settlement (ACT-3, ACT-4)


@dataclass(frozen=True, slots=True)
class SettleAmounts:
    billed_seconds: int
    posted_minor: int
    released_minor: int
    credited_minor: int
    lines: tuple[CostLine, ...]
    label: str


def settle_amounts(
    billed_seconds: int, allowed_seconds: int, hold_minor: int, tariff: Tariff, system_drop: bool
) -> SettleAmounts:
    """Rate the billed time with ``ivr.rating.rate_call`` and split the hold into posted and released.

    The engine ends the call at the allowed time (DIS-FUNDS); billed time beyond it (signalling lag)
    is not charged, so a posted amount never exceeds its hold.
    """
    if billed_seconds < 0:
        raise ValueError("billed_seconds must be >= 0")
    billed = min(billed_seconds, allowed_seconds)
    cost = rate_call(billed, tariff)
    total = cost.total_minor
    if total > hold_minor:  # rating is monotonic in time and the hold is the cost of allowed_seconds
        raise ValueError(f"cost {total} exceeds the hold {hold_minor}: the tariff changed under the hold")
    label = ""
    if billed < billed_seconds:
        label = f"billed time capped at the allowed {allowed_seconds} s"
    if system_drop and 0 < billed <= SYSTEM_DROP_CREDIT_SECONDS:
        label = f"ACT-4 credit: system drop in the first {SYSTEM_DROP_CREDIT_SECONDS} s"
        return SettleAmounts(billed, 0, hold_minor, total, cost.lines, label)
    if system_drop and billed > SYSTEM_DROP_CREDIT_SECONDS:
        label = f"system drop after {SYSTEM_DROP_CREDIT_SECONDS} s: not credited (ACT-4)"
    return SettleAmounts(billed, total, hold_minor - total, 0, cost.lines, label)


# ---------------------------------------------------------------------------------------------
# Spending periods (BLK-SPEND)


def period_start(period: str, at: datetime) -> datetime:
    """Start (UTC) of the spending period containing ``at``: day, ISO week (Monday) or calendar month."""
    day = utc(at).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown spending period {period!r} (one of {', '.join(SPEND_PERIODS)})")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``"2026-03"`` -> [2026-03-01, 2026-04-01) in UTC. Raises ValueError for anything else."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", month)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"not a month: {month!r} (write YYYY-MM)")
    year, mon = int(match.group(1)), int(match.group(2))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


# ---------------------------------------------------------------------------------------------
# Expiry and refunds (ACT-5)


@dataclass(frozen=True, slots=True)
class ExpiryRule:
    days: int | None  # None: the balance never expires (stays refundable)
    source: str


EXPIRY_DEFAULT = ExpiryRule(180, "FAQ: expires 180 days after the last paid call")
# Per-state overrides, as data. The FAQ says only "for Alaska customers, there is an exception";
# we read it as: Alaska balances are not forfeited (they stay refundable). Add states here.
STATE_EXPIRY: dict[str, ExpiryRule] = {
    "AK": ExpiryRule(None, "FAQ: Alaska exception; balances are not forfeited"),
}
NOTICE_DAYS: tuple[int, ...] = (30, 7)


def expiry_rule(state: str | None) -> ExpiryRule:
    return STATE_EXPIRY.get((state or "").upper(), EXPIRY_DEFAULT)


def expires_at(last_activity_at: datetime, state: str | None) -> datetime | None:
    """The moment an account's balance expires: last paid call or deposit + the state's days."""
    rule = expiry_rule(state)
    if rule.days is None:
        return None
    return last_activity_at + timedelta(days=rule.days)


def notices_due(expiry: datetime, now: datetime, sent_days: Iterable[int]) -> list[int]:
    """Which of the 30- and 7-day notices are due at ``now`` and not yet produced (most urgent only).

    A notice is due once ``now`` is within its window and before expiry. When both are due (the
    ledger was not run for a while), only the 7-day one is produced: the holder needs the latest.
    """
    if now >= expiry:
        return []
    sent = set(sent_days)
    due = [days for days in NOTICE_DAYS if expiry - timedelta(days=days) <= now]
    if not due:
        return []
    latest = min(due)
    return [] if latest in sent else [latest]


def refund_method(last_deposit_method: str | None) -> str:
    """ACT-5: back to the last card used, or a mailed check for cash and money-transfer deposits."""
    return "card" if last_deposit_method == "card" else "check"
