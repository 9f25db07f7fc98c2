"""An in-memory ledger with the very same rules and logic as the SQL one (for engine tests and sims).

``InMemoryLedger`` is ``LedgerCore`` over :class:`MemoryStore`: dictionaries of frozen rows behind
one lock. A write transaction copies a table the first time it writes to it (copy on write) and
swaps the copies in on success, so an exception half-way leaves nothing written (as a database
rollback would) and a transaction costs only the tables it touches.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ledger.core import LedgerCore
from ledger.store import (
    KEYS,
    AccountRow,
    CallRow,
    DuplicateKeyError,
    NumberRow,
    R,
    Row,
    StepwiseComposites,
)


class _MemoryTx(StepwiseComposites):
    def __init__(self, tables: dict[type[Any], dict[Any, Any]], counters: dict[type[Any], int]) -> None:
        self.tables = dict(tables)  # references; a table is copied by _writable before its first change
        self.counters = counters
        self._copied: set[type[Any]] = set()

    def _writable(self, kind: type[Any]) -> dict[Any, Any]:
        if kind not in self._copied:
            self.tables[kind] = dict(self.tables[kind])
            self._copied.add(kind)
        return self.tables[kind]

    def get(self, table: type[R], key: str | int) -> R | None:
        row: R | None = self.tables[table].get(key)
        return row

    def find(self, table: type[R], **eq: Any) -> list[R]:
        rows: list[R] = [row for row in self.tables[table].values() if all(getattr(row, k) == v for k, v in eq.items())]
        return rows

    def insert(self, row: Row) -> None:
        kind = type(row)
        key_field = KEYS[kind]
        key = getattr(row, key_field)
        if key is None:
            self.counters[kind] = self.counters.get(kind, 0) + 1
            key = self.counters[kind]
            row = dataclasses.replace(row, **{key_field: key})  # type: ignore[arg-type]
        table = self._writable(kind)
        if key in table:
            raise DuplicateKeyError(f"{kind.__name__} {key!r} exists")
        table[key] = row

    def insert_many(self, rows: list[Row]) -> None:
        for row in rows:
            self.insert(row)

    def lock_call(self, call_id: str) -> CallRow | None:
        call: CallRow | None = self.tables[CallRow].get(call_id)
        return call

    def update(self, table: type[Any], key: str | int, **fields: Any) -> None:
        rows = self._writable(table)
        rows[key] = dataclasses.replace(rows[key], **fields)

    def lock_account(self, account_id: str) -> AccountRow | None:
        return self.get(AccountRow, account_id)  # the store's one lock is held for the whole transaction

    def apply_balance(
        self,
        account_id: str,
        *,
        debits_pending: int = 0,
        debits_posted: int = 0,
        credits_posted: int = 0,
        require_cover: bool,
        last_activity_at: datetime | None = None,
    ) -> bool:
        account = self.tables[AccountRow][account_id]
        new = dataclasses.replace(
            account,
            debits_pending=account.debits_pending + debits_pending,
            debits_posted=account.debits_posted + debits_posted,
            credits_posted=account.credits_posted + credits_posted,
            last_activity_at=last_activity_at or account.last_activity_at,
        )
        if require_cover and new.available_minor < 0:
            return False
        self._writable(AccountRow)[account_id] = new
        return True

    def account_for_number(self, number: str) -> str | None:
        for row in self.tables[NumberRow].values():
            if row.number == number and row.active:
                account_id: str = row.account_id
                return account_id
        return None

    def account_by_number(self, number: str, *, lock: bool) -> AccountRow | None:
        account_id = self.account_for_number(number)
        return None if account_id is None else self.get(AccountRow, account_id)

    def collect_account_for(self, number: str) -> AccountRow | None:
        row: AccountRow | None = self.tables[AccountRow].get(f"collect:{number}")
        return row

    def posted_since(self, account_id: str, since: datetime) -> int:
        return sum(
            call.posted_minor
            for call in self.tables[CallRow].values()
            if call.account_id == account_id
            and call.status == "settled"
            and call.ended_at is not None
            and call.ended_at >= since
        )

    def expired_holds(self, now: datetime) -> list[str]:
        return [
            call.call_id
            for call in self.tables[CallRow].values()
            if call.status == "held" and call.hold_expires_at < now
        ]



class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._tables: dict[type[Any], dict[Any, Any]] = {kind: {} for kind in KEYS}
        self._counters: dict[type[Any], int] = {}

    @contextmanager
    def write(self) -> Iterator[_MemoryTx]:
        with self._lock:
            tx = _MemoryTx(self._tables, dict(self._counters))
            yield tx
            self._tables, self._counters = tx.tables, tx.counters  # commit only when the block finished

    @contextmanager
    def read(self) -> Iterator[_MemoryTx]:
        with self._lock:
            yield _MemoryTx(self._tables, dict(self._counters))


class InMemoryLedger(LedgerCore):
    """LedgerPort (and the admin operations) in memory, for tests of the engine and the simulator."""

    def __init__(self) -> None:
        super().__init__(MemoryStore())
