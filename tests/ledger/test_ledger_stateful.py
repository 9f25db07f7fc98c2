"""Hypothesis stateful test: random deposits, authorize, settle, void, refund, sweep and expire keep
the ledger's invariants on every backend (issue 5, item 7).

Invariants: no prepaid account below zero available; every transfer balances (counters agree with
the journal, clearing is empty after posting); no call charged twice (a repeated settle returns the
first settlement); every hold resolved at most once and exactly once after settle/void; money is
conserved per account (deposits - charges - refunds - forfeits == posted balance).
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, initialize, invariant, rule

from ivr.errors import InputError
from ivr.rating import Fee, Increment, Tariff, Tax
from ledger.api import Authorized, Refused, Settlement
from ledger.core import LedgerCore
from ledger.memory import InMemoryLedger
from ledger.testing import T0, facts

NUMBERS = ["+15551230001", "+15551230002", "+15551230003", "+15559990000"]  # last: collect
TARIFFS = [
    Tariff(21),
    Tariff(25, taxes=(Tax("state", 725),)),
    Tariff(14, increment=Increment.SECOND),
    Tariff(21, fees=(Fee("connect", 50),), taxes=(Tax("county", 300),)),
]


class LedgerMachine(RuleBasedStateMachine):
    backend: ClassVar[str] = "memory"
    calls = Bundle("calls")

    def make(self) -> LedgerCore:
        return InMemoryLedger()

    @initialize()
    def setup(self) -> None:
        self.ledger = self.make()
        self.now = T0
        self.counter = 0
        self.accounts = [
            self.ledger.open_account("Ann", NUMBERS[:2], T0, state="TX"),
            self.ledger.open_account("Bo", NUMBERS[2:3], T0, state="AK"),
        ]
        self.money: dict[str, int] = dict.fromkeys(self.accounts, 0)
        self.settled: dict[str, Settlement] = {}

    def teardown(self) -> None:
        close = getattr(getattr(self, "ledger", None), "close", None)
        if close is not None:
            close()

    @rule(
        who=st.integers(0, 1), amount=st.integers(1, 3000), method=st.sampled_from(["card", "cash", "money-transfer"])
    )
    def deposit(self, who: int, amount: int, method: str) -> None:
        account = self.accounts[who]
        if self.ledger.balance(account).status != "active":
            return
        self.ledger.deposit(account, amount, method, self.now)
        self.money[account] += amount

    @rule(target=calls, number=st.sampled_from(NUMBERS), tariff=st.sampled_from(TARIFFS),
          limit=st.sampled_from([None, 60, 900, 1800]))  # fmt: skip
    def authorize(self, number: str, tariff: Tariff, limit: int | None) -> str:
        self.counter += 1
        call_id = f"call-{self.counter}"
        answer = self.ledger.authorize(facts(call_id, number, tariff=tariff, max_seconds=limit, at=self.now))
        if isinstance(answer, Authorized):
            assert answer.allowed_seconds >= min(60, limit or 60)
            again = self.ledger.authorize(facts(call_id, number, tariff=tariff, max_seconds=limit, at=self.now))
            assert again == answer
        else:
            assert isinstance(answer, Refused)
        return call_id

    @rule(call_id=calls, billed=st.integers(0, 2000), drop=st.booleans())
    def settle(self, call_id: str, billed: int, drop: bool) -> None:
        try:
            result = self.ledger.settle(call_id, billed, "DIS-MEDIA" if drop else "DIS-HANGUP", drop, self.now)
        except KeyError:
            return  # refused at authorize: nothing to settle
        if call_id in self.settled:
            assert result == self.settled[call_id], "a second settle must not post again"
            return
        self.settled[call_id] = result
        owner = self._owner(call_id)
        if owner in self.money:
            self.money[owner] -= result.posted_minor

    @rule(call_id=consumes(calls))
    def void(self, call_id: str) -> None:
        self.ledger.void(call_id, "ACC-4 not accepted", self.now)

    @rule(who=st.integers(0, 1), part=st.one_of(st.none(), st.integers(1, 4000)))
    def refund(self, who: int, part: int | None) -> None:
        account = self.accounts[who]
        balance = self.ledger.balance(account)
        try:
            row = self.ledger.refund(account, part, self.now)
        except InputError:
            assert (
                balance.status != "active"
                or (part or balance.available_minor) > balance.available_minor
                or (balance.available_minor == 0)
                or (balance.expires_at is not None and self.now >= balance.expires_at)
            )
            return
        assert row.amount_minor <= balance.available_minor
        self.money[account] -= row.amount_minor

    @rule(seconds=st.one_of(st.integers(1, 3600), st.integers(1, 200 * 86400)))
    def advance(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def sweep(self) -> None:
        self.ledger.sweep(self.now)

    @rule()
    def expire(self) -> None:
        report = self.ledger.expire(self.now)
        for account, forfeited in report.expired:
            self.money[account] -= forfeited

    def _owner(self, call_id: str) -> str | None:
        for account in self.accounts:
            if any(c.call_id == call_id for c in self.ledger.calls(account)):
                return account
        return None

    @invariant()
    def book_is_sound(self) -> None:
        if not hasattr(self, "ledger"):
            return
        assert self.ledger.check_invariants() == []
        for account in self.accounts:
            balance = self.ledger.balance(account)
            assert balance.available_minor >= 0
            assert balance.posted_minor == self.money[account]


def _settings(examples: int, steps: int) -> Any:
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


class MemoryMachine(LedgerMachine):
    pass


class SqliteMachine(LedgerMachine):
    def make(self) -> LedgerCore:
        from ledger.service import LedgerService

        self._dir = tempfile.TemporaryDirectory()
        return LedgerService(f"sqlite:///{Path(self._dir.name) / 'l.db'}")

    def teardown(self) -> None:
        super().teardown()
        self._dir.cleanup()


TestMemoryLedgerStateful = MemoryMachine.TestCase
TestMemoryLedgerStateful.settings = _settings(60, 40)
TestSqliteLedgerStateful = SqliteMachine.TestCase
TestSqliteLedgerStateful.settings = _settings(12, 30)


@pytest.mark.postgres
def test_postgres_ledger_stateful(pg_schema: str) -> None:
    """The same state machine on PostgreSQL (one schema, emptied between examples)."""
    from hypothesis.stateful import run_state_machine_as_test
    from sqlalchemy import create_engine, text

    from ledger.service import LedgerService

    engine = create_engine(os.environ["IVR_TEST_PG"], connect_args={"options": f"-csearch_path={pg_schema}"})
    service = LedgerService(engine)

    class PgMachine(LedgerMachine):
        def make(self) -> LedgerCore:
            with engine.begin() as conn:
                for table in ("accounts", "phone_numbers", "calls", "transfers", "blocks", "payment_methods",
                              "deposits", "refunds", "notices"):  # fmt: skip
                    conn.execute(text(f"DELETE FROM {table}"))
            return service

        def teardown(self) -> None:
            pass

    run_state_machine_as_test(PgMachine, settings=_settings(8, 25))  # type: ignore[no-untyped-call]
    engine.dispose()
