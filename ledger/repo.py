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
    PayerView,
    PaymentMethodRow,
    R,
    RefundRow,
    Row,
    TransferRow,
    payer_view_steps,
    place_hold_steps,
    resolve_hold_steps,
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

        # PostgreSQL: authorize and settle in two statements each (plus BEGIN and COMMIT), the
        # composite steps of ledger.store in one statement apiece. The block rows ride along the
        # account lock as one array (read at the statement's start, as the steps read them before
        # the lock); the hold's conditional UPDATE feeds the two INSERTs, which write nothing when
        # it matched no row; settle's UPDATE, INSERTs and UPDATE are data-modifying CTEs, each run
        # exactly once (PostgreSQL 15 manual, 7.8.4).
        blocks = (
            "(SELECT array_agg(ARRAY[b.kind, b.facility_id, b.action] ORDER BY b.at, b.id) "
            f"FROM blocks b WHERE b.number = {self.p('k')})"
        )
        self.payer_view = f"SELECT {accounts}, {blocks} FROM accounts a WHERE a.id = ({active_number}){self.for_update}"
        transfer_cols = self.columns[TransferRow]
        call_cols = self.columns[CallRow]
        self.place_hold = (
            f"WITH b AS ({self.balance_covered} RETURNING 1), "
            f"h AS (INSERT INTO transfers ({', '.join(transfer_cols)}) "
            f"SELECT {', '.join(self.p('t_' + n) for n in transfer_cols)} FROM b) "
            f"INSERT INTO calls ({', '.join(call_cols)}) SELECT {', '.join(self.p('c_' + n) for n in call_cols)} FROM b"
        )
        self.place_hold_uncovered = self.place_hold.replace(self.balance_covered, self.balance, 1)
        self.resolve: dict[tuple[int, bool, tuple[str, ...]], str] = {}

    def resolve_sql(self, transfers: int, touch: bool, fields: tuple[str, ...]) -> str:
        """Settle/void in one statement: the counters, ``transfers`` rows, the call's row."""
        sql = self.resolve.get((transfers, touch, fields))
        if sql is None:
            balance = self.balance_touch if touch else self.balance
            names = self.columns[TransferRow]
            rows = ", ".join(
                "(" + ", ".join(self.p(f"t{i}_{n}") for n in names) + ")" for i in range(transfers)
            )
            sets = ", ".join(f"{n} = {self.p('v_' + n)}" for n in fields)
            sql = self.resolve[(transfers, touch, fields)] = (
                f"WITH b AS ({balance}), t AS (INSERT INTO transfers ({', '.join(names)}) VALUES {rows}) "
                f"UPDATE calls SET {sets} WHERE call_id = {self.p('call')}"
            )
        return sql

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
    """One transaction on a DBAPI connection (the store begins and ends it)."""

    def __init__(self, raw: Any, dialect: _Dialect, integrity_error: type[Exception]) -> None:
        self.d = dialect
        self.cursor = raw.cursor()
        self.integrity_error = integrity_error

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

    def payer_view(self, number: str, call_id: str) -> PayerView:
        if not self.d.postgres:
            return payer_view_steps(self, number, call_id)
        found = self._run(self.d.payer_view, {"k": number}).fetchone()
        if found is None:  # not a prepaid number: its blocks alone (a collect payer is looked up next)
            blocks = tuple((r.kind, r.facility_id, r.action) for r in self.find(BlockRecord, number=number))
            return PayerView(blocks, None, self.get(CallRow, call_id))
        *account, block_rows = found
        blocks = tuple((kind, facility, action) for kind, facility, action in block_rows or ())
        return PayerView(blocks, self.d.row(AccountRow, account), self.get(CallRow, call_id))

    def place_hold(self, hold: TransferRow, call: CallRow, *, require_cover: bool) -> bool:
        if not self.d.postgres:
            return place_hold_steps(self, hold, call, require_cover=require_cover)
        params: dict[str, Any] = {"k": hold.debit_account_id, "dpe": hold.amount_minor, "dpo": 0, "cpo": 0}
        params.update({f"t_{n}": getattr(hold, n) for n in self.d.columns[TransferRow]})
        params.update({f"c_{n}": getattr(call, n) for n in self.d.columns[CallRow]})
        sql = self.d.place_hold if require_cover else self.d.place_hold_uncovered
        try:
            return int(self._run(sql, params).rowcount) == 1
        except self.integrity_error as exc:
            raise DuplicateKeyError(str(exc)) from exc

    def resolve_hold(
        self,
        call_id: str,
        account_id: str,
        transfers: list[TransferRow],
        *,
        debits_pending: int,
        debits_posted: int,
        last_activity_at: datetime | None,
        **call_fields: Any,
    ) -> None:
        if not self.d.postgres:
            resolve_hold_steps(
                self,
                call_id,
                account_id,
                transfers,
                debits_pending=debits_pending,
                debits_posted=debits_posted,
                last_activity_at=last_activity_at,
                **call_fields,
            )
            return
        fields = tuple(sorted(call_fields))
        params: dict[str, Any] = {"k": account_id, "dpe": debits_pending, "dpo": debits_posted, "cpo": 0}
        if last_activity_at is not None:
            params["seen"] = last_activity_at
        names = self.d.columns[TransferRow]
        for index, row in enumerate(transfers):
            params.update({f"t{index}_{n}": getattr(row, n) for n in names})
        params.update({f"v_{n}": call_fields[n] for n in fields})
        params["call"] = call_id
        sql = self.d.resolve_sql(len(transfers), last_activity_at is not None, fields)
        try:
            self._run(sql, params)
        except self.integrity_error as exc:
            raise DuplicateKeyError(str(exc)) from exc


class SqlStore:
    """The ledger's store on SQLite or PostgreSQL. A new database is migrated on first use."""

    def __init__(self, engine_or_url: Engine | str, *, auto_migrate: bool = True) -> None:
        self.engine = make_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
        self.postgres = self.engine.dialect.name == "postgresql"
        self.dialect = _dialect(self.engine.dialect.name)
        # SQLite has one writer at a time and makes waiting writers sleep with back-off; threads of
        # one process (the engine's ledger calls) queue on this lock instead, in order and awake.
        self._write_lock = threading.Lock() if self.engine.dialect.name == "sqlite" else None
        self._integrity_error: type[Exception] = self.engine.dialect.dbapi.IntegrityError  # type: ignore[union-attr]
        if auto_migrate:
            migrate(self.engine)

    @contextmanager
    def write(self) -> Iterator[_SqlTx]:
        if self.postgres:
            with self._pg_transaction() as tx:
                yield tx
            return
        with self._write_lock or nullcontext(), self.engine.begin() as conn:
            yield self._sqlite_tx(conn)

    @contextmanager
    def read(self) -> Iterator[_SqlTx]:
        if self.postgres:
            with self._pg_transaction() as tx:
                yield tx
            return
        with self.engine.connect().execution_options(sqlite_begin="DEFERRED") as conn, conn.begin():
            yield self._sqlite_tx(conn)

    def _sqlite_tx(self, conn: Connection) -> _SqlTx:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        return _SqlTx(raw, self.dialect, self._integrity_error)

    @contextmanager
    def _pg_transaction(self) -> Iterator[_SqlTx]:
        """A transaction straight on the pooled psycopg connection: psycopg sends BEGIN with the first
        statement, we COMMIT (or ROLLBACK on any exception). SQLAlchemy's Connection costs ~100 us
        of CPU per transaction on top of that (measured by bench/ledger.py's profile), and CPU,
        client and server on 2 cores, is what limits the cycle."""
        fairy = self.engine.raw_connection()
        raw = fairy.driver_connection
        assert raw is not None
        try:
            try:
                yield _SqlTx(raw, self.dialect, self._integrity_error)
            except BaseException:
                if not raw.closed:
                    raw.rollback()
                raise
            raw.commit()
        except BaseException:
            if raw.closed or raw.broken:
                fairy.invalidate()  # a dead connection does not go back to the pool
            raise
        finally:
            fairy.close()  # back to the pool (its reset-on-return ROLLBACK is skipped when idle)
