"""The pure rules (ledger.rules): decisions, settlement split, periods, expiry, amounts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from ivr.rating import Increment, Tariff, max_cost_minor, rate_call
from ledger import rules
from ledger.api import BLK_CARRIER, BLK_FACILITY, BLK_FUNDS, BLK_NEWNUM, BLK_PARTY, BLK_SPEND, Refused
from ledger.testing import T0, TARIFF, TAXED, facts

NUMBER = "+15551230001"


def snap(
    blocks: frozenset[tuple[str, str | None]] = frozenset(),
    kind: str = "prepaid",
    available: int = 10_000,
    status: str = "active",
    limit: int | None = None,
    spent: int = 0,
) -> rules.Snapshot:
    account = "A" if kind == "prepaid" else None
    return rules.Snapshot(blocks, rules.Payer(account, kind, status, available, limit, spent))  # type: ignore[arg-type]


DECIDE_CASES = [
    # (name, snapshot, expected reason or None)
    ("clear prepaid", snap(), None),
    ("facility block here", snap(frozenset({(BLK_FACILITY, "F1")})), BLK_FACILITY),
    ("facility block elsewhere", snap(frozenset({(BLK_FACILITY, "F2")})), None),
    ("party block all", snap(frozenset({(BLK_PARTY, None)})), BLK_PARTY),
    ("party block this facility", snap(frozenset({(BLK_PARTY, "F1")})), BLK_PARTY),
    ("party block other facility", snap(frozenset({(BLK_PARTY, "F9")})), None),
    ("new number", snap(frozenset({(BLK_NEWNUM, None)})), BLK_NEWNUM),
    ("carrier restricts, prepaid pays", snap(frozenset({(BLK_CARRIER, None)})), None),
    ("carrier restricts collect", snap(frozenset({(BLK_CARRIER, None)}), kind="collect"), BLK_CARRIER),
    ("collect within limit", snap(kind="collect", available=5000), None),
    ("collect limit reached", snap(kind="collect", available=20), BLK_SPEND),
    ("no money", snap(available=0), BLK_FUNDS),
    ("less than first minute", snap(available=20), BLK_FUNDS),
    ("exactly first minute", snap(available=21), None),
    ("expired account", snap(status="expired"), BLK_FUNDS),
    ("spending limit reached", snap(limit=1000, spent=990), BLK_SPEND),
    ("spending limit room", snap(limit=1000, spent=900), None),
    ("facility block wins over funds", snap(frozenset({(BLK_FACILITY, None)}), available=0), BLK_FACILITY),
]


@pytest.mark.parametrize(("name", "snapshot", "reason"), DECIDE_CASES, ids=[c[0] for c in DECIDE_CASES])
def test_decide_applies_every_blk_rule(name: str, snapshot: rules.Snapshot, reason: str | None) -> None:
    """Each BLK rule refuses with its DOMAIN id; everything else is granted."""
    decision = rules.decide(facts("c", NUMBER), snapshot)
    if reason is None:
        assert isinstance(decision, rules.Grant), decision
    else:
        assert isinstance(decision, Refused) and decision.reason == reason


def test_allowed_time_is_smaller_of_limit_and_money() -> None:
    """LIM-1: 5 minutes of money under a 15-minute limit allows 5 minutes; the hold is their cost."""
    decision = rules.decide(facts("c", NUMBER), snap(available=5 * 21 + 20))
    assert isinstance(decision, rules.Grant)
    assert decision.allowed_seconds == 300
    assert decision.hold_minor == max_cost_minor(300, TARIFF) == 105


def test_untimed_call_is_capped_by_money_only() -> None:
    """REG-3 untimed numbers: only the balance bounds the allowed time."""
    decision = rules.decide(facts("c", NUMBER, max_seconds=None), snap(available=21 * 100))
    assert isinstance(decision, rules.Grant) and decision.allowed_seconds == 6000


def test_free_tariff_needs_no_money() -> None:
    """A zero-rate tariff is allowed on an empty balance, with a zero hold."""
    decision = rules.decide(facts("c", NUMBER, tariff=Tariff(0)), snap(available=0))
    assert isinstance(decision, rules.Grant) and decision.hold_minor == 0 and decision.allowed_seconds == 900


def test_spending_limit_caps_allowed_time() -> None:
    """BLK-SPEND: what is left under the limit bounds the hold, not only the balance."""
    decision = rules.decide(facts("c", NUMBER), snap(available=10_000, limit=1000, spent=1000 - 63))
    assert isinstance(decision, rules.Grant) and decision.allowed_seconds == 180


def test_settle_posts_rated_cost_and_releases_rest() -> None:
    """ACT-3: post rate_call(billed).total, release hold - posted."""
    hold = max_cost_minor(900, TAXED)
    amounts = rules.settle_amounts(125, 900, hold, TAXED, system_drop=False)
    assert amounts.posted_minor == rate_call(125, TAXED).total_minor == 66
    assert amounts.released_minor == hold - 66
    assert amounts.credited_minor == 0


@pytest.mark.parametrize(
    ("billed", "system_drop", "posted", "credited"),
    [(30, True, 0, 21), (60, True, 0, 21), (61, True, 42, 0), (30, False, 21, 0), (0, True, 0, 0)],
)
def test_system_drop_in_first_minute_is_credited(billed: int, system_drop: bool, posted: int, credited: int) -> None:
    """ACT-4: a system drop within 60 s of conversation costs nothing and shows a credit."""
    amounts = rules.settle_amounts(billed, 900, max_cost_minor(900, TARIFF), TARIFF, system_drop)
    assert (amounts.posted_minor, amounts.credited_minor) == (posted, credited)
    if credited:
        assert "ACT-4" in amounts.label


def test_billed_time_beyond_allowed_is_not_charged() -> None:
    """Signalling lag past the allowed time never posts more than the hold."""
    hold = max_cost_minor(300, TARIFF)
    amounts = rules.settle_amounts(301, 300, hold, TARIFF, False)
    assert amounts.posted_minor == hold and amounts.billed_seconds == 300


def test_per_second_tariff_rates_per_second() -> None:
    """ACT-2: per-second tariffs are rated per second by ivr.rating."""
    tariff = Tariff(60, increment=Increment.SECOND)
    amounts = rules.settle_amounts(90, 900, max_cost_minor(900, tariff), tariff, False)
    assert amounts.posted_minor == 90


@pytest.mark.parametrize(
    ("period", "at", "start"),
    [
        ("day", datetime(2026, 3, 4, 15, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)),
        ("week", datetime(2026, 3, 4, 15, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
        ("month", datetime(2026, 3, 4, 15, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
    ],
)
def test_spending_period_start(period: str, at: datetime, start: datetime) -> None:
    """BLK-SPEND periods: UTC day, ISO week from Monday, calendar month."""
    assert rules.period_start(period, at) == start


@pytest.mark.parametrize(
    ("text", "minor"), [("10.00", 1000), ("10", 1000), ("0.01", 1), ("2.5", 250), ("1000000.99", 100000099)]
)
def test_parse_dollars_accepts_cents(text: str, minor: int) -> None:
    """Amounts are dollars with at most cents."""
    assert rules.parse_dollars(text) == minor


@pytest.mark.parametrize("text", ["-1", "0", "abc", "1.001", "", "nan", "inf", "1e400"])
def test_parse_dollars_refuses_bad_amounts(text: str) -> None:
    """Negative, zero, non-numeric and sub-cent amounts are refused."""
    with pytest.raises(ValueError):
        rules.parse_dollars(text)


@pytest.mark.parametrize(
    ("number", "ok"),
    [("+15551234567", True), ("+442071838750", True), ("15551234567", False), ("+0555", False),
     ("+1555123456789012", False), ("+1 555 123", False), ("", False)],
)  # fmt: skip
def test_e164_validation(number: str, ok: bool) -> None:
    """Numbers are E.164: '+', a non-zero country digit, at most 15 digits."""
    assert rules.is_e164(number) is ok


def test_expiry_is_180_days_except_alaska() -> None:
    """ACT-5: 180 days after the last activity; Alaska (state data) does not expire."""
    assert rules.expires_at(T0, "TX") == T0 + timedelta(days=180)
    assert rules.expires_at(T0, None) == T0 + timedelta(days=180)
    assert rules.expires_at(T0, "AK") is None


@pytest.mark.parametrize(
    ("days_left", "sent", "due"),
    [(40, [], []), (30, [], [30]), (20, [30], []), (7, [30], [7]), (6, [], [7]), (3, [30, 7], []), (0, [], [])],
)
def test_expiry_notices_at_30_and_7_days(days_left: int, sent: list[int], due: list[int]) -> None:
    """ACT-5: notices at 30 and 7 days before expiry, each once."""
    expiry = T0 + timedelta(days=days_left)
    assert rules.notices_due(expiry, T0, sent) == due


def test_latest_block_row_wins() -> None:
    """Lifting is a new row: the latest row per (kind, scope) decides."""
    rows = [
        rules.BlockRow(BLK_PARTY, None, "block"),
        rules.BlockRow(BLK_PARTY, "F1", "block"),
        rules.BlockRow(BLK_PARTY, None, "lift"),
    ]
    assert rules.active_blocks(rows) == frozenset({(BLK_PARTY, "F1")})


def test_refund_goes_to_card_or_check() -> None:
    """ACT-5: last card used, else a mailed check for cash and money transfers."""
    assert rules.refund_method("card") == "card"
    assert rules.refund_method("cash") == "check"
    assert rules.refund_method("money-transfer") == "check"


def test_month_bounds_and_bad_months() -> None:
    """Invoice months are YYYY-MM, December rolls into the next year."""
    assert rules.month_bounds("2026-12") == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    for bad in ("2026-13", "2026-1", "march"):
        with pytest.raises(ValueError):
            rules.month_bounds(bad)


def test_naive_times_are_refused() -> None:
    """The ledger never guesses a time zone."""
    with pytest.raises(ValueError):
        rules.utc(datetime(2026, 1, 1))
    assert rules.utc(datetime(2026, 1, 1, tzinfo=UTC)).date() == date(2026, 1, 1)
