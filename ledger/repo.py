"""The only module of the ledger that runs SQL: :class:`SqlStore` implements ``ledger.store.Store``.

Plain SQL generated once from the tables of ``ledger.models``, run on the driver's cursor inside
SQLAlchemy-managed transactions (engine, pool, migrations stay SQLAlchemy/Alembic). Concurrency:
PostgreSQL locks the account row (``SELECT ... FOR UPDATE``) for the whole transaction and the
balance change is a conditional UPDATE (DESIGN.md section 6); SQLite write transactions start with
``BEGIN IMMEDIATE`` (one writer at a time, readers in WAL mode never block).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, Table, create_engine, event, text

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
            cursor.execute("PRAGMA busy_timeout=60000")
            _set_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
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


def _set_wal(cursor: Any, attempts: int = 200) -> None:
    """Switch a SQLite file to WAL. Several processes opening a new file at once can get "database is
    locked" here at once, without SQLite's busy handler (the journal-mode change takes an exclusive
    lock): retry briefly, as the busy timeout would. Measured: 4 of 60 four-way races failed without."""
    import sqlite3
    import time

    for attempt in range(attempts):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01 + 0.001 * attempt)


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


_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DateTime text format (ordered as text)


class _Dialect:
    """Plain SQL text for every statement of the hot path, generated once from ``ledger.models``.

    Executed on the DBAPI cursor of the SQLAlchemy connection (same transaction): SQLAlchemy's
    per-statement execution costs ~220 us of CPU against ~40 us for the driver (measured on the
    machine of bench/ledger.py), and CPU was the limit of the authorize+settle cycle.
    """

    def __init__(self, name: str) -> None:
        self.postgres = name == "postgresql"
        self.for_update = " FOR UPDATE" if self.postgres else ""  # SQLite: BEGIN IMMEDIATE locks the file
        self.columns = {kind: [c.name for c in t.columns] for kind, t in TABLES.items()}
        self.times = {
            kind: {c.name for c in t.columns if isinstance(c.type, models.UTCDateTime)} for kind, t in TABLES.items()
        }
        self.bools = {kind: {c.name for c in t.columns if c.type.python_type is bool} for kind, t in TABLES.items()}
        self.get = {kind: self._select(kind, [KEYS[kind]]) for kind in TABLES}
        self.find: dict[tuple[type[Any], tuple[str, ...]], str] = {}
        self.insert: dict[tuple[type[Any], bool], str] = {}
        self.update: dict[tuple[type[Any], tuple[str, ...]], str] = {}
        accounts = ", ".join(f"a.{c}" for c in self.columns[AccountRow])
        calls = ", ".join(f"c.{c}" for c in self.columns[CallRow])
        active_number = f"SELECT n.account_id FROM phone_numbers n WHERE n.number = {self.p('k')} AND n.active"
        self.account_by_number = f"SELECT {accounts} FROM accounts a WHERE a.id = ({active_number})"
        self.lock_account_by_number = self.account_by_number + self.for_update
        self.lock_account = f"SELECT {accounts} FROM accounts a WHERE a.id = {self.p('k')}{self.for_update}"
        # Locks the call's row and its account's row; after waiting for a concurrent settle,
        # PostgreSQL re-reads both locked rows (READ COMMITTED), so the status seen is the latest.
        self.lock_call = (
            f"SELECT {calls} FROM calls c JOIN accounts a ON a.id = c.account_id "
            f"WHERE c.call_id = {self.p('k')}{self.for_update}"
        )
        self.account_for_number = active_number
        self.collect_account_for = f"SELECT {accounts} FROM accounts a WHERE a.billing_number = {self.p('k')}"
        self.posted_since = (
            f"SELECT COALESCE(SUM(posted_minor), 0) FROM calls WHERE account_id = {self.p('k')} "
            f"AND status = 'settled' AND ended_at >= {self.p('since')}"
        )
        self.expired_holds = f"SELECT call_id FROM calls WHERE status = 'held' AND hold_expires_at < {self.p('now')}"
        balance = (
            f"UPDATE accounts SET debits_pending = debits_pending + {self.p('dpe')}, "
            f"debits_posted = debits_posted + {self.p('dpo')}, credits_posted = credits_posted + {self.p('cpo')}"
        )
        where = f" WHERE id = {self.p('k')}"
        self.balance = balance + where
        self.balance_touch = balance + f", last_activity_at = {self.p('seen')}" + where
        # The conditional UPDATE of DESIGN.md section 6: debits never exceed posted credits.
        self.balance_covered = (
            balance
            + where
            + f" AND (credits_posted + {self.p('cpo')}) - (debits_posted + {self.p('dpo')})"
            + f" - (debits_pending + {self.p('dpe')}) >= 0"
        )

    def p(self, name: str) -> str:
        return f"%({name})s" if self.postgres else f":{name}"

    def _select(self, kind: type[Any], names: list[str]) -> str:
        table = TABLES[kind].name
        where = " AND ".join(f"{n} = {self.p('w_' + n)}" for n in names) or "1 = 1"
        order = "at" if "at" in self.columns[kind] else KEYS[kind]
        return f"SELECT {', '.join(self.columns[kind])} FROM {table} WHERE {where} ORDER BY {order}, {KEYS[kind]}"

    def find_sql(self, kind: type[Any], names: tuple[str, ...]) -> str:
        sql = self.find.get((kind, names))
        if sql is None:
            sql = self.find[(kind, names)] = self._select(kind, list(names))
        return sql

    def insert_sql(self, kind: type[Any], with_key: bool) -> str:
        sql = self.insert.get((kind, with_key))
        if sql is None:
            names = [n for n in self.columns[kind] if with_key or n != KEYS[kind]]
            values = ", ".join(self.p(n) for n in names)
            sql = self.insert[(kind, with_key)] = (
                f"INSERT INTO {TABLES[kind].name} ({', '.join(names)}) VALUES ({values})"
            )
        return sql

    def update_sql(self, kind: type[Any], names: tuple[str, ...]) -> str:
        sql = self.update.get((kind, names))
        if sql is None:
            sets = ", ".join(f"{n} = {self.p('v_' + n)}" for n in names)
            sql = self.update[(kind, names)] = (
                f"UPDATE {TABLES[kind].name} SET {sets} WHERE {KEYS[kind]} = {self.p('k')}"
            )
        return sql

    def bind(self, value: Any) -> Any:
        """Aware UTC -> naive UTC (PostgreSQL) or SQLAlchemy's text format (SQLite)."""
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the ledger; pass UTC-aware times")
            naive = value.astimezone(UTC).replace(tzinfo=None)
            return naive if self.postgres else naive.strftime(_SQLITE_TIME)
        return value

    def row(self, kind: type[R], values: Any) -> R:
        names = self.columns[kind]
        times, bools = self.times[kind], self.bools[kind]
        out: dict[str, Any] = {}
        for name, value in zip(names, values, strict=True):
            if value is not None and name in times:
                if isinstance(value, str):
                    value = datetime.fromisoformat(value)
                value = value.replace(tzinfo=UTC)
            elif value is not None and name in bools:
                value = bool(value)
            out[name] = value
        return kind(**out)


_DIALECTS: dict[str, _Dialect] = {}


def _dialect(name: str) -> _Dialect:
    found = _DIALECTS.get(name)
    if found is None:
        found = _DIALECTS[name] = _Dialect(name)
    return found


class _SqlTx:
    def __init__(self, conn: Connection, dialect: _Dialect) -> None:
        self.conn = conn
        self.d = dialect
        raw = conn.connection.dbapi_connection
        assert raw is not None
        self.cursor = raw.cursor()
        self.integrity_error: type[Exception] = conn.dialect.dbapi.IntegrityError  # type: ignore[union-attr]

    def _run(self, sql: str, params: dict[str, Any]) -> Any:
        self.cursor.execute(sql, {k: self.d.bind(v) for k, v in params.items()})
        return self.cursor

    def get(self, table: type[R], key: str | int) -> R | None:
        found = self._run(self.d.get[table], {f"w_{KEYS[table]}": key}).fetchone()
        return None if found is None else self.d.row(table, found)

    def find(self, table: type[R], **eq: Any) -> list[R]:
        names = tuple(sorted(eq))
        rows = self._run(self.d.find_sql(table, names), {f"w_{n}": eq[n] for n in names}).fetchall()
        return [self.d.row(table, r) for r in rows]

    def insert(self, row: Row) -> None:
        self.insert_many([row])

    def insert_many(self, rows: list[Row]) -> None:
        """Rows of one type in one executemany."""
        if not rows:
            return
        kind = type(rows[0])
        key = KEYS[kind]
        with_key = getattr(rows[0], key) is not None  # None: the database numbers it
        names = [n for n in self.d.columns[kind] if with_key or n != key]
        params = [{n: self.d.bind(getattr(row, n)) for n in names} for row in rows]
        try:
            # No savepoint: a duplicate aborts the whole transaction, and the caller retries it whole.
            sql = self.d.insert_sql(kind, with_key)
            if len(params) == 1:
                self.cursor.execute(sql, params[0])  # psycopg's executemany enters pipeline mode: a sync more
            else:
                self.cursor.executemany(sql, params)
        except self.integrity_error as exc:
            raise DuplicateKeyError(str(exc)) from exc

    def update(self, table: type[Any], key: str | int, **fields: Any) -> None:
        names = tuple(sorted(fields))
        self._run(self.d.update_sql(table, names), {"k": key, **{f"v_{n}": fields[n] for n in names}})

    def lock_account(self, account_id: str) -> AccountRow | None:
        found = self._run(self.d.lock_account, {"k": account_id}).fetchone()
        return None if found is None else self.d.row(AccountRow, found)

    def lock_call(self, call_id: str) -> CallRow | None:
        found = self._run(self.d.lock_call, {"k": call_id}).fetchone()
        return None if found is None else self.d.row(CallRow, found)

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
            sql = self.d.balance_touch
        else:
            sql = self.d.balance_covered if require_cover else self.d.balance
        return int(self._run(sql, params).rowcount) == 1

    def account_for_number(self, number: str) -> str | None:
        found = self._run(self.d.account_for_number, {"k": number}).fetchone()
        return None if found is None else str(found[0])

    def account_by_number(self, number: str, *, lock: bool) -> AccountRow | None:
        sql = self.d.lock_account_by_number if lock else self.d.account_by_number
        found = self._run(sql, {"k": number}).fetchone()
        return None if found is None else self.d.row(AccountRow, found)

    def collect_account_for(self, number: str) -> AccountRow | None:
        found = self._run(self.d.collect_account_for, {"k": number}).fetchone()
        return None if found is None else self.d.row(AccountRow, found)

    def posted_since(self, account_id: str, since: datetime) -> int:
        return int(self._run(self.d.posted_since, {"k": account_id, "since": since}).fetchone()[0])

    def expired_holds(self, now: datetime) -> list[str]:
        return [str(r[0]) for r in self._run(self.d.expired_holds, {"now": now}).fetchall()]


class SqlStore:
    """The ledger's store on SQLite or PostgreSQL. A new database is migrated on first use."""

    def __init__(self, engine_or_url: Engine | str, *, auto_migrate: bool = True) -> None:
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        self.postgres = self.engine.dialect.name == "postgresql"
        self.dialect = _dialect(self.engine.dialect.name)
        # SQLite has one writer at a time and makes waiting writers sleep with back-off; threads of
        # one process (the engine's ledger calls) queue on this lock instead, in order and awake.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        if auto_migrate:
            migrate(self.engine)

    @contextmanager
    def write(self) -> Iterator[_SqlTx]:
        with self._write_lock or nullcontext(), self.engine.begin() as conn:
            yield _SqlTx(conn, self.dialect)

    @contextmanager
    def read(self) -> Iterator[_SqlTx]:
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn, conn.begin():
            yield _SqlTx(conn, self.dialect)
