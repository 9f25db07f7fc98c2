"""ACT-2 rating: per started minute, per second, taxes and fees as their own lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.rating import Fee, Increment, Tariff, Tax, max_cost_minor, rate_call, seconds_covered, started_minutes

COUNTY = Tariff(9, taxes=(Tax("state sales tax", 625),))


@pytest.mark.parametrize(("seconds", "minutes"), [(0, 0), (1, 1), (59, 1), (60, 1), (61, 2), (900, 15), (901, 16)])
def test_billed_per_started_minute(seconds: int, minutes: int) -> None:
    """ACT-2: a started minute is billed in full."""
    assert started_minutes(seconds) == minutes
    assert rate_call(seconds, Tariff(9)).total_minor == 9 * minutes


def test_per_second_tariff_rounds_half_up_to_the_cent() -> None:
    """ACT-2: per-second billing where the tariff says so."""
    assert rate_call(90, Tariff(9, Increment.SECOND)).total_minor == 14  # 13.5 -> 14


def test_taxes_and_fees_are_separate_lines() -> None:
    """REG-2: every fee and tax is a visible line; tax applies to charge plus fees."""
    tariff = Tariff(10, taxes=(Tax("tax", 1000),), fees=(Fee("transaction fee", 50),))
    lines = rate_call(120, tariff).lines
    assert [(ln.kind, ln.name, ln.amount_minor) for ln in lines] == [
        ("call", "usage", 20), ("fee", "transaction fee", 50), ("tax", "tax", 7)]


def test_a_call_with_no_billed_time_costs_nothing_at_all() -> None:
    """ACC-4: no fee or tax on a call that was never billed."""
    assert rate_call(0, Tariff(10, fees=(Fee("f", 50),))).total_minor == 0


@given(st.integers(0, 100_000), st.integers(1, 50), st.integers(0, 2000))
def test_seconds_covered_never_costs_more_than_available(available: int, rate: int, tax_bp: int) -> None:
    """LIM-1/ACT-3: the time the funds cover never costs more than the funds."""
    tariff = Tariff(rate, taxes=(Tax("t", tax_bp),))
    seconds = seconds_covered(available, tariff, 1800)
    assert 0 <= seconds <= 1800
    assert max_cost_minor(seconds, tariff) <= available
    if seconds < 1800:  # one more minute would not fit
        assert max_cost_minor(seconds + 60, tariff) > available


def test_county_jail_fifteen_minutes_costs_143() -> None:
    """The example county jail: 15 x 9 cents + 6.25 % tax = 135 + 8."""
    assert max_cost_minor(900, COUNTY) == 143
