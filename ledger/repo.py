"""The only module of the ledger that runs SQL: :class:`SqlStore` implements ``ledger.store.Store``.

SQLAlchemy Core over the tables of ``ledger.models`` (fast, explicit statements). Concurrency:
PostgreSQL locks the account row (``SELECT ... FOR UPDATE``) for the whole transaction and the
balance change is a conditional UPDATE (DESIGN.md section 6); SQLite write transactions start with
``BEGIN IMMEDIATE`` (one writer at a time, readers in WAL mode never block).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, bindparam, create_engine, event, func, select, text, update
from sqlalchemy.exc import IntegrityError

from ledger import models
from ledger.store import (
    KEYS,
    AccountRow,
    BlockRecord,
    CallRow,
    DepositRow,
    DuplicateKeyError,
    NoticeRow,
    NumberRow,
    PaymentMethodRow,
    R,
    RefundRow,
    Row,
    TransferRow,
)

TABLES: dict[type[Any], Table] = {
    AccountRow: models.Account.__table__,  # type: ignore[dict-item]
    NumberRow: models.PhoneNumber.__table__,  # type: ignore[dict-item]
    CallRow: models.Call.__table__,  # type: ignore[dict-item]
    TransferRow: models.Transfer.__table__,  # type: ignore[dict-item]
    BlockRecord: models.Block.__table__,  # type: ignore[dict-item]
    PaymentMethodRow: models.PaymentMethod.__table__,  # type: ignore[dict-item]
    DepositRow: models.Deposit.__table__,  # type: ignore[dict-item]
    RefundRow: models.Refund.__table__,  # type: ignore[dict-item]
    NoticeRow: models.Notice.__table__,  # type: ignore[dict-item]
}
ACCOUNTS = TABLES[AccountRow]
NUMBERS = TABLES[NumberRow]
CALLS = TABLES[CallRow]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_URL = "sqlite:///ivr.db"


def make_engine(url: str) -> Engine:
    """An engine configured for the ledger: SQLite gets WAL, a busy timeout and BEGIN IMMEDIATE."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (pysqlite quirk)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # No pool_pre_ping: it costs a round trip per transaction; a dead connection fails the
    # transaction, which the caller retries (every operation is idempotent).
    return create_engine(url, pool_size=20, max_overflow=40, pool_recycle=3600)


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def migrate(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the schema to the head revision; returns (before, after).

    Safe when several processes start on a new database at once: the revision is re-read inside
    the migrating transaction, which holds SQLite's write lock (BEGIN IMMEDIATE) or a PostgreSQL
    transaction-level advisory lock.
    """
    before = current_revision(engine)
    head = head_revision()
    if before != head:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            before = MigrationContext.configure(conn).get_current_revision()
            if before != head:
                command.upgrade(alembic_config(conn), "head")
    return before, head


_MIGRATION_LOCK = 0x1C0_11EC7  # any constant: the advisory lock key of ledger migrations


class _Statements:
    """Statements built once and executed with bound parameters: building SQLAlchemy expressions per
    call was the largest cost of a cycle (measured with cProfile in bench/ledger.py's loop)."""

    def __init__(self) -> None:
        self.get = {kind: select(t).where(t.c[KEYS[kind]] == bindparam("k")) for kind, t in TABLES.items()}
        self.insert = {kind: t.insert() for kind, t in TABLES.items()}
        self.find: dict[tuple[type[Any], tuple[str, ...]], Any] = {}
        self.update: dict[tuple[type[Any], tuple[str, ...]], Any] = {}
        a, n, c = ACCOUNTS.c, NUMBERS.c, CALLS.c
        self.lock_account = select(ACCOUNTS).where(a.id == bindparam("k")).with_for_update()
        # Locks the call's row and its account's row; after waiting for a concurrent settle,
        # PostgreSQL re-reads both locked rows (READ COMMITTED), so the status seen is the latest.
        self.lock_call = (
            select(CALLS).join(ACCOUNTS, a.id == c.account_id).where(c.call_id == bindparam("k")).with_for_update()
        )
        balance = (
            update(ACCOUNTS)
            .where(a.id == bindparam("k"))
            .values(
                debits_pending=a.debits_pending + bindparam("dpe"),
                debits_posted=a.debits_posted + bindparam("dpo"),
                credits_posted=a.credits_posted + bindparam("cpo"),
            )
        )
        self.balance = balance
        self.balance_touch = balance.values(last_activity_at=bindparam("seen", type_=a.last_activity_at.type))
        # The conditional UPDATE of DESIGN.md section 6: debits never exceed posted credits.
        self.balance_covered = balance.where(
            (a.credits_posted + bindparam("cpo"))
            - (a.debits_posted + bindparam("dpo"))
            - (a.debits_pending + bindparam("dpe"))
            >= 0
        )
        self.account_for_number = select(n.account_id).where(n.number == bindparam("k"), n.active.is_(True))
        by_number = select(ACCOUNTS).where(
            a.id == select(n.account_id).where(n.number == bindparam("k"), n.active.is_(True)).scalar_subquery()
        )
        self.account_by_number = by_number
        self.lock_account_by_number = by_number.with_for_update()
        self.collect_account_for = select(ACCOUNTS).where(a.billing_number == bindparam("k"))
        self.posted_since = select(func.coalesce(func.sum(c.posted_minor), 0)).where(
            c.account_id == bindparam("k"), c.status == "settled", c.ended_at >= bindparam("since")
        )
        self.expired_holds = select(c.call_id).where(c.status == "held", c.hold_expires_at < bindparam("now"))

    def find_stmt(self, kind: type[Any], names: tuple[str, ...]) -> Any:
        stmt = self.find.get((kind, names))
        if stmt is None:
            t = TABLES[kind]
            stmt = select(t)
            for name in names:
                stmt = stmt.where(t.c[name] == bindparam(f"w_{name}"))
            order = t.c["at"] if "at" in t.c else t.c[KEYS[kind]]
            stmt = stmt.order_by(order, t.c[KEYS[kind]])
            self.find[(kind, names)] = stmt
        return stmt

    def update_stmt(self, kind: type[Any], names: tuple[str, ...]) -> Any:
        stmt = self.update.get((kind, names))
        if stmt is None:
            t = TABLES[kind]
            stmt = (
                update(t)
                .where(t.c[KEYS[kind]] == bindparam("k"))
                .values({name: bindparam(f"v_{name}", type_=t.c[name].type) for name in names})
            )
            self.update[(kind, names)] = stmt
        return stmt


STATEMENTS = _Statements()


class _SqlTx:
    def __init__(self, conn: Connection, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    @staticmethod
    def _row(kind: type[R], mapping: Any) -> R:
        return kind(**dict(mapping))

    def get(self, table: type[R], key: str | int) -> R | None:
        found = self.conn.execute(STATEMENTS.get[table], {"k": key}).first()
        return None if found is None else self._row(table, found._mapping)

    def find(self, table: type[R], **eq: Any) -> list[R]:
        names = tuple(sorted(eq))
        params = {f"w_{name}": eq[name] for name in names}
        rows = self.conn.execute(STATEMENTS.find_stmt(table, names), params)
        return [self._row(table, r._mapping) for r in rows]

    def insert(self, row: Row) -> None:
        self.insert_many([row])

    def insert_many(self, rows: list[Row]) -> None:
        """Rows of one type in one statement (executemany)."""
        if not rows:
            return
        kind = type(rows[0])
        key = KEYS[kind]
        values = []
        names = [field.name for field in dataclasses.fields(kind)]
        for row in rows:
            value = {name: getattr(row, name) for name in names}  # shallow: asdict deep-copies
            if value[key] is None:
                del value[key]  # autoincrement
            values.append(value)
        try:
            # No savepoint: a duplicate aborts the whole transaction, and the caller retries it whole.
            self.conn.execute(STATEMENTS.insert[kind], values)
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    def update(self, table: type[Any], key: str | int, **fields: Any) -> None:
        names = tuple(sorted(fields))
        params = {f"v_{name}": fields[name] for name in names}
        self.conn.execute(STATEMENTS.update_stmt(table, names), {"k": key, **params})

    def lock_account(self, account_id: str) -> AccountRow | None:
        found = self.conn.execute(STATEMENTS.lock_account, {"k": account_id}).first()
        return None if found is None else self._row(AccountRow, found._mapping)

    def lock_call(self, call_id: str) -> CallRow | None:
        found = self.conn.execute(STATEMENTS.lock_call, {"k": call_id}).first()
        return None if found is None else self._row(CallRow, found._mapping)

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
        params: dict[str, Any] = {"k": account_id, "dpe": debits_pending, "dpo": debits_posted, "cpo": credits_posted}
        if last_activity_at is not None:
            assert not require_cover  # only settle touches the clock; it never needs the cover test
            params["seen"] = last_activity_at
            return self.conn.execute(STATEMENTS.balance_touch, params).rowcount == 1
        stmt = STATEMENTS.balance_covered if require_cover else STATEMENTS.balance
        return self.conn.execute(stmt, params).rowcount == 1

    def account_for_number(self, number: str) -> str | None:
        found = self.conn.execute(STATEMENTS.account_for_number, {"k": number}).scalar()
        return None if found is None else str(found)

    def account_by_number(self, number: str, *, lock: bool) -> AccountRow | None:
        stmt = STATEMENTS.lock_account_by_number if lock else STATEMENTS.account_by_number
        found = self.conn.execute(stmt, {"k": number}).first()
        return None if found is None else self._row(AccountRow, found._mapping)

    def collect_account_for(self, number: str) -> AccountRow | None:
        found = self.conn.execute(STATEMENTS.collect_account_for, {"k": number}).first()
        return None if found is None else self._row(AccountRow, found._mapping)

    def posted_since(self, account_id: str, since: datetime) -> int:
        return int(self.conn.execute(STATEMENTS.posted_since, {"k": account_id, "since": since}).scalar_one())

    def expired_holds(self, now: datetime) -> list[str]:
        return [str(x) for x in self.conn.execute(STATEMENTS.expired_holds, {"now": now}).scalars()]


class SqlStore:
    """The ledger's store on SQLite or PostgreSQL. A new database is migrated on first use."""

    def __init__(self, engine_or_url: Engine | str, *, auto_migrate: bool = True) -> None:
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        self.postgres = self.engine.dialect.name == "postgresql"
        # SQLite has one writer at a time and makes waiting writers sleep with back-off; threads of
        # one process (the engine's ledger calls) queue on this lock instead, in order and awake.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        if auto_migrate:
            migrate(self.engine)

    @contextmanager
    def write(self) -> Iterator[_SqlTx]:
        with self._write_lock or nullcontext(), self.engine.begin() as conn:
            yield _SqlTx(conn, self.postgres)

    @contextmanager
    def read(self) -> Iterator[_SqlTx]:
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn, conn.begin():
            yield _SqlTx(conn, self.postgres)
