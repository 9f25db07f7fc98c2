"""Concurrency (issue 5, item 7): 50 concurrent authorize+settle cycles on one account with money
for exactly 20 calls -> exactly 20 authorized, never a negative balance. On PostgreSQL (the
production database) and on SQLite (one writer at a time)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ledger.api import BLK_FUNDS, Authorized, Refused
from ledger.core import LedgerCore
from ledger.service import LedgerService
from ledger.testing import T0, TARIFF, facts

NUMBER = "+15551230001"
CALLS = 50
FUNDED_CALLS = 20
CALL_SECONDS = 60  # the facility limit: one started minute, so the hold equals the charge


def _race(ledger: LedgerCore) -> None:
    account = ledger.open_account("Ann", [NUMBER], T0)
    ledger.deposit(account, FUNDED_CALLS * TARIFF.rate_minor_per_min, "card", T0)
    barrier = threading.Barrier(CALLS)
    answers: list[Authorized | Refused] = []
    lowest: list[int] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        barrier.wait()
        call_id = f"race-{index}"
        answer = ledger.authorize(facts(call_id, NUMBER, max_seconds=CALL_SECONDS))
        if isinstance(answer, Authorized):
            ledger.settle(call_id, CALL_SECONDS, "DIS-LIMIT", False, T0)
        available = ledger.balance(account).available_minor
        with lock:
            answers.append(answer)
            lowest.append(available)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    authorized = [a for a in answers if isinstance(a, Authorized)]
    refused = [a for a in answers if isinstance(a, Refused)]
    assert len(answers) == CALLS
    assert len(authorized) == FUNDED_CALLS
    assert {r.reason for r in refused} == {BLK_FUNDS}
    assert min(lowest) >= 0
    balance = ledger.balance(account)
    assert (balance.available_minor, balance.pending_minor, balance.posted_minor) == (0, 0, 0)
    assert ledger.check_invariants() == []


@pytest.mark.postgres
def test_fifty_concurrent_calls_on_twenty_calls_of_money_postgres(pg_url: str) -> None:
    """PostgreSQL: row lock + conditional UPDATE: exactly 20 of 50 concurrent calls authorized."""
    from sqlalchemy import create_engine

    service = LedgerService(create_engine(pg_url, pool_size=CALLS + 5, max_overflow=10))
    try:
        _race(service)
    finally:
        service.close()


def test_fifty_concurrent_calls_on_twenty_calls_of_money_sqlite(tmp_path: Path) -> None:
    """SQLite: BEGIN IMMEDIATE serializes writers; the same 20 of 50."""
    service = LedgerService(f"sqlite:///{tmp_path / 'race.db'}")
    try:
        _race(service)
    finally:
        service.close()
