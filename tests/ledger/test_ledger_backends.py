"""Every ledger rule, run identically on memory, SQLite and PostgreSQL (DOMAIN.md ACT, BLK)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ivr.errors import InputError
from ivr.rating import max_cost_minor, rate_call
from ledger.api import (
    BLK_CARRIER,
    BLK_FACILITY,
    BLK_FUNDS,
    BLK_NEWNUM,
    BLK_PARTY,
    BLK_SPEND,
    Allowed,
    Authorized,
    LedgerPort,
    Refused,
)
from ledger.core import LedgerCore
from ledger.testing import T0, TARIFF, TAXED, facts

HOME = "+15551230001"
MOBILE = "+15551230002"
STRANGER = "+15559990000"


def funded(ledger: LedgerCore, amount_minor: int = 1000, state: str | None = "TX") -> str:
    account = ledger.open_account("Ann Lee", [HOME], T0, state=state)
    ledger.deposit(account, amount_minor, "card", T0, card_last4="4242")
    return account


def test_implements_the_port(ledger: LedgerCore) -> None:
    """Each backend is a LedgerPort the engine can use."""
    assert isinstance(ledger, LedgerPort)


def test_authorize_holds_the_most_the_call_may_cost(ledger: LedgerCore) -> None:
    """ACT-3: the hold is max_cost_minor(allowed_seconds); available drops by it, posted does not."""
    account = funded(ledger)
    auth = ledger.authorize(facts("c1", HOME))
    assert isinstance(auth, Authorized)
    assert auth.allowed_seconds == 900 and auth.hold_minor == max_cost_minor(900, TARIFF)
    balance = ledger.balance(account)
    assert balance.pending_minor == auth.hold_minor
    assert balance.available_minor == 1000 - auth.hold_minor and balance.posted_minor == 1000


def test_settle_posts_once_and_releases_the_rest(ledger: LedgerCore) -> None:
    """ACT-3: settle posts rate_call(billed).total; a second settle changes nothing."""
    account = funded(ledger)
    ledger.authorize(facts("c1", HOME, tariff=TAXED))
    first = ledger.settle("c1", 125, "DIS-HANGUP", False, T0 + timedelta(minutes=3))
    second = ledger.settle("c1", 500, "DIS-HANGUP", False, T0 + timedelta(minutes=9))
    assert first == second
    assert first.posted_minor == rate_call(125, TAXED).total_minor == 66
    balance = ledger.balance(account)
    assert (balance.available_minor, balance.pending_minor, balance.posted_minor) == (934, 0, 934)
    assert ledger.check_invariants() == []


def test_authorize_twice_returns_the_same_hold(ledger: LedgerCore) -> None:
    """ACT-3: a retried authorize finds its hold and holds nothing more."""
    account = funded(ledger)
    first = ledger.authorize(facts("c1", HOME))
    second = ledger.authorize(facts("c1", HOME))
    assert first == second
    assert ledger.balance(account).pending_minor == max_cost_minor(900, TARIFF)


def test_void_releases_everything_and_is_idempotent(ledger: LedgerCore) -> None:
    """ACC-4: a call that never reached conversation costs nothing; void twice is harmless."""
    account = funded(ledger)
    ledger.authorize(facts("c1", HOME))
    ledger.void("c1", "ACC-3 no input", T0)
    ledger.void("c1", "ACC-3 no input", T0)
    ledger.void("never-authorized", "busy", T0)
    balance = ledger.balance(account)
    assert (balance.available_minor, balance.pending_minor, balance.posted_minor) == (1000, 0, 1000)
    assert ledger.settle("c1", 60, "DIS-HANGUP", False, T0).posted_minor == 0
    assert ledger.check_invariants() == []


def test_system_drop_in_first_minute_is_credited(ledger: LedgerCore) -> None:
    """ACT-4: DIS-MEDIA after 30 s posts nothing and records a visible credit."""
    account = funded(ledger)
    ledger.authorize(facts("c1", HOME))
    settlement = ledger.settle("c1", 30, "DIS-MEDIA", True, T0)
    assert settlement.posted_minor == 0 and settlement.credited_minor == 21 and "ACT-4" in settlement.label
    assert ledger.balance(account).available_minor == 1000
    invoice = ledger.invoice_data(account, "2026-03")
    assert [line.kind for line in invoice.lines if line.call_id == "c1"] == ["call", "credit"]


def test_drop_outside_our_control_is_charged(ledger: LedgerCore) -> None:
    """ACT-4: a drop that is not a system drop (mobile network) is billed as usual."""
    funded(ledger)
    ledger.authorize(facts("c1", HOME))
    assert ledger.settle("c1", 30, "DIS-HANGUP", False, T0).posted_minor == 21


def test_check_refuses_blocked_party_before_dialing(ledger: LedgerCore) -> None:
    """BLK-PARTY: immediate, free, and the check (before dialing) already refuses."""
    funded(ledger)
    ledger.block(HOME, None, "ACC-6 key", "called-party", T0)
    refused = ledger.check(facts("c1", HOME))
    assert isinstance(refused, Refused) and refused.reason == BLK_PARTY
    assert isinstance(ledger.authorize(facts("c1", HOME)), Refused)


def test_party_block_is_reversible(ledger: LedgerCore) -> None:
    """BLK-PARTY: the holder can lift it; calls go through again."""
    funded(ledger)
    ledger.block(HOME, "F1", "asked", "called-party", T0)
    assert isinstance(ledger.check(facts("c1", HOME)), Refused)
    assert isinstance(ledger.check(facts("c1", HOME, facility="F2")), Allowed)
    assert ledger.lift_block(HOME, "F1", BLK_PARTY, "holder", "holder", T0)
    assert isinstance(ledger.check(facts("c1", HOME)), Allowed)


def test_facility_block_applies_to_that_facility(ledger: LedgerCore) -> None:
    """BLK-FACILITY: a number the facility forbids (victim, staff) is refused there only."""
    funded(ledger)
    ledger.facility_block(HOME, "F1", "victim", "warden", T0)
    refused = ledger.check(facts("c1", HOME))
    assert isinstance(refused, Refused) and refused.reason == BLK_FACILITY
    assert isinstance(ledger.check(facts("c1", HOME, facility="F2")), Allowed)


def test_new_number_restricted_until_date_confirmed(ledger: LedgerCore) -> None:
    """BLK-NEWNUM: refused until the holder gives the date they got the number."""
    funded(ledger)
    ledger.restrict(HOME, BLK_NEWNUM, "reassigned", "carrier-feed", T0)
    refused = ledger.check(facts("c1", HOME))
    assert isinstance(refused, Refused) and refused.reason == BLK_NEWNUM
    with pytest.raises(InputError):
        ledger.lift(HOME, BLK_NEWNUM, "cs", T0)
    assert ledger.lift(HOME, BLK_NEWNUM, "cs", T0, date(2026, 2, 1))
    assert isinstance(ledger.check(facts("c1", HOME)), Allowed)


def test_carrier_restriction_refuses_collect_but_prepaid_pays(ledger: LedgerCore) -> None:
    """BLK-CARRIER: a collect call is refused; a prepaid account on the number still pays."""
    funded(ledger)
    ledger.restrict(HOME, BLK_CARRIER, "LEC", "carrier-feed", T0)
    ledger.restrict(STRANGER, BLK_CARRIER, "LEC", "carrier-feed", T0)
    assert ledger.check(facts("c1", HOME)) == Allowed(ledger.calls_owner(HOME), "prepaid")
    refused = ledger.check(facts("c2", STRANGER))
    assert isinstance(refused, Refused) and refused.reason == BLK_CARRIER


def test_collect_call_within_credit_limit(ledger: LedgerCore) -> None:
    """Collect calls bill the called number's account up to its monthly credit limit (BLK-SPEND beyond)."""
    ledger.set_collect_limit(STRANGER, 300, T0)
    auth = ledger.authorize(facts("c1", STRANGER))
    assert isinstance(auth, Authorized) and auth.kind == "collect"
    assert auth.hold_minor == max_cost_minor(14 * 60, TARIFF)  # 14 minutes fit in 3.00
    ledger.settle("c1", 600, "DIS-HANGUP", False, T0 + timedelta(minutes=11))  # 2.10 used, 0.90 left
    second = ledger.authorize(facts("c2", STRANGER, at=T0 + timedelta(minutes=20)))
    assert isinstance(second, Authorized) and second.allowed_seconds == 240  # 4 minutes fit in 0.90
    third = ledger.authorize(facts("c3", STRANGER, at=T0 + timedelta(minutes=21)))  # c2's hold counts
    assert isinstance(third, Refused) and third.reason == BLK_SPEND
    ledger.settle("c2", 240, "DIS-FUNDS", False, T0 + timedelta(minutes=25))
    final = ledger.authorize(facts("c4", STRANGER, at=T0 + timedelta(minutes=40)))
    assert isinstance(final, Refused) and final.reason == BLK_SPEND
    rows = ledger.collect_export("2026-03")
    assert [r["total_minor"] for r in rows] == [210, 84]
    assert ledger.collect_export("2026-04") == []


def test_first_minute_needs_money(ledger: LedgerCore) -> None:
    """BLK-FUNDS: less than the first billed minute refuses; exactly one minute allows one minute."""
    funded(ledger, 20)
    refused = ledger.check(facts("c1", HOME))
    assert isinstance(refused, Refused) and refused.reason == BLK_FUNDS
    account = ledger.calls_owner(HOME)
    assert account is not None
    ledger.deposit(account, 1, "cash", T0)
    auth = ledger.authorize(facts("c1", HOME))
    assert isinstance(auth, Authorized) and auth.allowed_seconds == 60


def test_spending_limit_refuses_once_reached(ledger: LedgerCore) -> None:
    """BLK-SPEND: the period's spending limit bounds holds and then refuses."""
    account = funded(ledger, 10_000)
    ledger.set_spend_limit(account, 100, "day", T0)
    auth = ledger.authorize(facts("c1", HOME))
    assert isinstance(auth, Authorized) and auth.hold_minor == 84  # 4 minutes fit under 1.00
    ledger.settle("c1", 240, "DIS-FUNDS", False, T0 + timedelta(minutes=5))
    refused = ledger.check(facts("c2", HOME, at=T0 + timedelta(minutes=6)))
    assert isinstance(refused, Refused) and refused.reason == BLK_SPEND
    assert isinstance(ledger.check(facts("c2", HOME, at=T0 + timedelta(days=1))), Allowed)


def test_number_on_one_active_account_only(ledger: LedgerCore) -> None:
    """ACT-1: a number belongs to at most one active account; an account pays for all its numbers."""
    account = funded(ledger)
    with pytest.raises(InputError):
        ledger.open_account("Bob", [HOME], T0)
    ledger.add_number(account, MOBILE, T0, "mobile")
    auth = ledger.authorize(facts("c1", MOBILE))
    assert isinstance(auth, Authorized) and auth.account_id == account
    with pytest.raises(InputError):
        ledger.add_number(account, "5551230003", T0)


def test_refund_to_last_card_or_by_check(ledger: LedgerCore) -> None:
    """ACT-5: part or all of the balance; the last card used, else a mailed check."""
    account = funded(ledger)
    part = ledger.refund(account, 250, T0)
    assert (part.method, part.destination) == ("card", "card ending 4242")
    ledger.deposit(account, 500, "money-transfer", T0 + timedelta(hours=1))
    rest = ledger.refund(account, None, T0 + timedelta(hours=2))
    assert rest.method == "check" and rest.amount_minor == 1250 and rest.status == "check-requested"
    assert ledger.balance(account).available_minor == 0
    with pytest.raises(InputError):
        ledger.refund(account, None, T0 + timedelta(hours=3))


def test_refund_above_available_is_refused(ledger: LedgerCore) -> None:
    """ACT-5: a refund above the available balance (holds excluded) is bad input, nothing written."""
    account = funded(ledger)
    ledger.authorize(facts("c1", HOME))
    with pytest.raises(InputError):
        ledger.refund(account, 1000, T0)
    assert ledger.balance(account).posted_minor == 1000


def test_expiry_notices_then_forfeit(ledger: LedgerCore) -> None:
    """ACT-5: notices 30 and 7 days before, then expiry 180 days after the last paid call; no refund after."""
    account = funded(ledger)
    ledger.authorize(facts("c1", HOME))
    ledger.settle("c1", 60, "DIS-HANGUP", False, T0)
    expiry = T0 + timedelta(days=180)
    assert ledger.expire(expiry - timedelta(days=31)).notices == ()
    assert [n.days_before for n in ledger.expire(expiry - timedelta(days=30)).notices] == [30]
    assert ledger.expire(expiry - timedelta(days=29)).notices == ()
    assert [n.days_before for n in ledger.expire(expiry - timedelta(days=7)).notices] == [7]
    report = ledger.expire(expiry)
    assert report.expired == ((account, 979),)
    assert ledger.balance(account).status == "expired" and ledger.balance(account).posted_minor == 0
    with pytest.raises(InputError):
        ledger.refund(account, None, expiry)
    assert ledger.check_invariants() == []


def test_deposit_restarts_the_expiry_clock(ledger: LedgerCore) -> None:
    """ACT-5: a deposit is activity: the 180 days count from it."""
    account = funded(ledger)
    ledger.deposit(account, 100, "cash", T0 + timedelta(days=100))
    assert ledger.expire(T0 + timedelta(days=181)).expired == ()
    assert ledger.expire(T0 + timedelta(days=281)).expired == ((account, 1100),)


def test_alaska_balances_do_not_expire(ledger: LedgerCore) -> None:
    """ACT-5: per-state data; the FAQ's Alaska exception keeps the balance refundable."""
    account = funded(ledger, state="AK")
    assert ledger.expire(T0 + timedelta(days=400)).expired == ()
    assert ledger.refund(account, None, T0 + timedelta(days=400)).amount_minor == 1000


def test_sweeper_voids_abandoned_holds(ledger: LedgerCore) -> None:
    """ACT-3: a crashed engine's hold times out and is released by the sweeper."""
    account = funded(ledger)
    ledger.authorize(facts("c1", HOME))
    assert ledger.sweep(T0 + timedelta(minutes=10)) == []
    assert ledger.sweep(T0 + timedelta(hours=1)) == ["c1"]
    assert ledger.balance(account).available_minor == 1000
    late = ledger.settle("c1", 60, "DIS-HANGUP", False, T0 + timedelta(hours=2))
    assert late.posted_minor == 0
    assert ledger.check_invariants() == []


def test_invoice_lines_add_up_to_balance_change(ledger: LedgerCore) -> None:
    """ACT-6: every call, tax, deposit and refund on its own line; the lines sum to the balance change."""
    account = funded(ledger)
    ledger.authorize(facts("c1", HOME, tariff=TAXED))
    ledger.settle("c1", 125, "DIS-HANGUP", False, T0 + timedelta(minutes=3))
    ledger.refund(account, 100, T0 + timedelta(days=1))
    invoice = ledger.invoice_data(account, "2026-03")
    assert [line.kind for line in invoice.lines] == ["deposit", "call", "tax", "refund"]
    assert sum(line.amount_minor for line in invoice.lines) == invoice.closing_minor - invoice.opening_minor
    assert invoice.closing_minor == 1000 - 66 - 100
    call = invoice.lines[1]
    assert (call.billed_minutes, call.rate_minor_per_min, call.number, call.facility_id) == (3, 21, HOME, "F1")


def test_memory_write_failing_half_way_leaves_nothing() -> None:
    """The in-memory store rolls back like a database: a transaction that raises writes nothing."""
    from ledger.memory import MemoryStore
    from ledger.store import AccountRow

    store = MemoryStore()
    row = AccountRow("A", "prepaid", "Ann", "active", T0, T0, credits_posted=100)
    with store.write() as tx:
        tx.insert(row)
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.apply_balance("A", debits_posted=40, require_cover=True)
        tx.insert(AccountRow("B", "prepaid", "Bo", "active", T0, T0))
        raise RuntimeError("crash half-way")
    with store.read() as tx:
        assert tx.get(AccountRow, "A") == row
        assert tx.get(AccountRow, "B") is None
