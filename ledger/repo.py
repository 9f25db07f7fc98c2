"""The only module of the ledger that runs SQL: :class:`SqlStore` implements ``ledger.store.Store``.

SQLAlchemy Core over the tables of ``ledger.models`` (fast, explicit statements). Concurrency:
PostgreSQL locks the account row (``SELECT ... FOR UPDATE``) for the whole transaction and the
balance change is a conditional UPDATE (DESIGN.md section 6); SQLite write transactions start with
``BEGIN IMMEDIATE`` (one writer at a time, readers in WAL mode never block).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event, func, select, update
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
    return create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)


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
    """Bring the schema to the head revision; returns (before, after)."""
    before = current_revision(engine)
    head = head_revision()
    if before != head:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
    return before, head


class _SqlTx:
    def __init__(self, conn: Connection, postgres: bool) -> None:
        self.conn = conn
        self.postgres = postgres

    @staticmethod
    def _row(kind: type[R], mapping: Any) -> R:
        return kind(**dict(mapping))

    def get(self, table: type[R], key: str | int) -> R | None:
        t = TABLES[table]
        found = self.conn.execute(select(t).where(t.c[KEYS[table]] == key)).first()
        return None if found is None else self._row(table, found._mapping)

    def find(self, table: type[R], **eq: Any) -> list[R]:
        t = TABLES[table]
        stmt = select(t)
        for name, value in eq.items():
            stmt = stmt.where(t.c[name] == value)
        order = t.c["at"] if "at" in t.c else t.c[KEYS[table]]
        stmt = stmt.order_by(order, t.c[KEYS[table]])
        return [self._row(table, r._mapping) for r in self.conn.execute(stmt)]

    def insert(self, row: Row) -> None:
        values = dataclasses.asdict(row)
        key = KEYS[type(row)]
        if values[key] is None:
            del values[key]  # autoincrement
        try:
            # No savepoint: a duplicate aborts the whole transaction, and the caller retries it whole.
            self.conn.execute(TABLES[type(row)].insert(), values)
        except IntegrityError as exc:
            raise DuplicateKeyError(str(exc.orig)) from exc

    def update(self, table: type[Any], key: str | int, **fields: Any) -> None:
        t = TABLES[table]
        self.conn.execute(update(t).where(t.c[KEYS[table]] == key).values(**fields))

    def lock_account(self, account_id: str) -> AccountRow | None:
        stmt = select(ACCOUNTS).where(ACCOUNTS.c.id == account_id).with_for_update()
        found = self.conn.execute(stmt).first()
        return None if found is None else self._row(AccountRow, found._mapping)

    def apply_balance(
        self,
        account_id: str,
        *,
        debits_pending: int = 0,
        debits_posted: int = 0,
        credits_posted: int = 0,
        require_cover: bool,
    ) -> bool:
        c = ACCOUNTS.c
        stmt = (
            update(ACCOUNTS)
            .where(c.id == account_id)
            .values(
                debits_pending=c.debits_pending + debits_pending,
                debits_posted=c.debits_posted + debits_posted,
                credits_posted=c.credits_posted + credits_posted,
            )
        )
        if require_cover:
            stmt = stmt.where(
                (c.credits_posted + credits_posted)
                - (c.debits_posted + debits_posted)
                - (c.debits_pending + debits_pending)
                >= 0
            )
        return self.conn.execute(stmt).rowcount == 1

    def account_for_number(self, number: str) -> str | None:
        stmt = select(NUMBERS.c.account_id).where(NUMBERS.c.number == number, NUMBERS.c.active.is_(True))
        found = self.conn.execute(stmt).scalar()
        return None if found is None else str(found)

    def collect_account_for(self, number: str) -> AccountRow | None:
        found = self.conn.execute(select(ACCOUNTS).where(ACCOUNTS.c.billing_number == number)).first()
        return None if found is None else self._row(AccountRow, found._mapping)

    def posted_since(self, account_id: str, since: datetime) -> int:
        stmt = select(func.coalesce(func.sum(CALLS.c.posted_minor), 0)).where(
            CALLS.c.account_id == account_id, CALLS.c.status == "settled", CALLS.c.ended_at >= since
        )
        return int(self.conn.execute(stmt).scalar_one())

    def expired_holds(self, now: datetime) -> list[str]:
        stmt = select(CALLS.c.call_id).where(CALLS.c.status == "held", CALLS.c.hold_expires_at < now)
        return [str(x) for x in self.conn.execute(stmt).scalars()]


class SqlStore:
    """The ledger's store on SQLite or PostgreSQL. A new database is migrated on first use."""

    def __init__(self, engine_or_url: Engine | str, *, auto_migrate: bool = True) -> None:
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        self.postgres = self.engine.dialect.name == "postgresql"
        if auto_migrate:
            migrate(self.engine)

    @contextmanager
    def write(self) -> Iterator[_SqlTx]:
        with self.engine.begin() as conn:
            yield _SqlTx(conn, self.postgres)

    @contextmanager
    def read(self) -> Iterator[_SqlTx]:
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn, conn.begin():
            yield _SqlTx(conn, self.postgres)
