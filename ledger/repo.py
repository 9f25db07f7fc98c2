"""The only module of the ledger that runs SQL: :class:`SqlStore` implements ``ledger.store.Store``.

Plain SQL generated once from the tables of ``ledger.models``, run on the driver's cursor (engine,
pool, migrations stay SQLAlchemy/Alembic). Concurrency: PostgreSQL locks the account row
(``SELECT ... FOR UPDATE``) for the whole transaction and the balance change is a conditional
UPDATE (DESIGN.md section 6); SQLite write transactions start with ``BEGIN IMMEDIATE`` (one writer
at a time, readers in WAL mode never block).

PostgreSQL's hot path (issue 5's benchmark goal): authorize takes two round trips, [BEGIN; the
reads under the lock] then [the writes; COMMIT]; settle of a call the same instance authorized takes
one, [BEGIN; the writes, only if the call is still held; COMMIT] (a call settled or voided elsewhere
meanwhile goes the locked two-round-trip way). Prepared statements in one simple query each
(``_PgTx``); SQLite and memory run the same steps one primitive call at a time
(``ledger.store.*_steps``), and every backend test runs on all three.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
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
    RetryableError,
    Row,
    StatementsLostError,
    StepwiseComposites,
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

_PG_IDLE = 0  # psycopg.pq.TransactionStatus.IDLE (libpq PQTRANS_IDLE)

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

    Executed on the DBAPI cursor (SQLite: of the SQLAlchemy connection; PostgreSQL: of the pooled
    psycopg connection): SQLAlchemy's per-statement execution costs ~220 us of CPU against ~40 us
    for the driver (measured on the machine of bench/ledger.py), and CPU limits the cycle.
    """

    def __init__(self, name: str) -> None:
        self.postgres = name == "postgresql"
        self.for_update = " FOR UPDATE" if self.postgres else ""  # SQLite: BEGIN IMMEDIATE locks the file
        self.columns = {kind: [c.name for c in t.columns] for kind, t in TABLES.items()}
        self.times = {
            kind: {c.name for c in t.columns if isinstance(c.type, models.UTCDateTime)} for kind, t in TABLES.items()
        }
        self.bools = {kind: {c.name for c in t.columns if c.type.python_type is bool} for kind, t in TABLES.items()}
        # Positions of the columns row() converts; the rows' fields are the columns, in order
        # (tests/ledger/test_ledger_schema.py), so a row is built positionally.
        self.time_at = {k: tuple(i for i, n in enumerate(self.columns[k]) if n in self.times[k]) for k in TABLES}
        self.bool_at = {k: tuple(i for i, n in enumerate(self.columns[k]) if n in self.bools[k]) for k in TABLES}
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
        # Rows travel as one JSON parameter each (json_populate_record, PostgreSQL 15 manual 9.16):
        # binding 33 literals client-side cost more CPU than the whole rest of the statement.
        transfer_cols = ", ".join(self.columns[TransferRow])
        call_cols = ", ".join(self.columns[CallRow])
        self.place_hold = (
            f"WITH b AS ({self.balance_covered} RETURNING 1), "
            f"h AS (INSERT INTO transfers ({transfer_cols}) "
            f"SELECT {transfer_cols} FROM b, json_populate_record(NULL::transfers, {self.p('hold')})) "
            f"INSERT INTO calls ({call_cols}) "
            f"SELECT {call_cols} FROM b, json_populate_record(NULL::calls, {self.p('row')})"
        )
        self.place_hold_uncovered = self.place_hold.replace(self.balance_covered, self.balance, 1)
        self.resolve: dict[tuple[bool, tuple[str, ...], bool], str] = {}  # (touch, fields, only_held)
        self._prepared: dict[str, _Prepared] = {}
        # SQL types of the parameters of the prepared statements (PREPARE), by parameter name.
        self.param_types: dict[str, str] = {"k": "text", "dpe": "bigint", "dpo": "bigint", "cpo": "bigint"}
        self.param_types.update({"seen": "timestamp", "call": "text", "w_call_id": "text"})
        self.param_types.update({"hold": "json", "row": "json", "rows": "json", "fields": "json"})

    def prepared(self, sql: str) -> _Prepared:
        """``sql`` as a named prepared statement (one name per statement text)."""
        stmt = self._prepared.get(sql)
        if stmt is None:
            stmt = self._prepared[sql] = _Prepared(f"ivr_ledger_{len(self._prepared)}", sql, self.param_type)
        return stmt

    def param_type(self, name: str) -> str:
        """The SQL type of a hot statement's parameter."""
        return self.param_types[name]

    def resolve_sql(self, touch: bool, fields: tuple[str, ...], *, only_held: bool = False) -> str:
        """Settle/void in one statement: the counters, the transfers (a JSON array), the call's
        ``fields`` (a JSON object).

        ``only_held``: only if the call is still held, and the statement returns one row when it
        wrote. Then the call's row is updated (and locked) first, its account's after: the order
        in which ``lock_call`` locks them, so the two never wait on each other crosswise."""
        sql = self.resolve.get((touch, fields, only_held))
        if sql is None:
            balance = self.balance_touch if touch else self.balance
            names = ", ".join(self.columns[TransferRow])
            sets = ", ".join(fields)
            update_call = (
                f"UPDATE calls SET ({sets}) = "
                f"(SELECT {sets} FROM json_populate_record(NULL::calls, {self.p('fields')})) "
                f"WHERE call_id = {self.p('call')}"
            )
            transfers = f"json_populate_recordset(NULL::transfers, {self.p('rows')})"
            if only_held:
                sql = (
                    f"WITH c AS ({update_call} AND status = 'held' RETURNING 1), "
                    f"b AS ({balance} AND EXISTS (SELECT 1 FROM c)), "
                    f"t AS (INSERT INTO transfers ({names}) SELECT {names} FROM c, {transfers}) "
                    "SELECT 1 FROM c"
                )
            else:
                sql = (
                    f"WITH b AS ({balance}), t AS (INSERT INTO transfers ({names}) SELECT {names} FROM {transfers}) "
                    f"{update_call}"
                )
            self.resolve[(touch, fields, only_held)] = sql
        return sql

    def json(self, value: Any) -> str:
        """Rows or fields (from ``fields``) as one JSON parameter."""
        return json.dumps(value, separators=(",", ":"))

    def fields(self, row: Row | dict[str, Any]) -> dict[str, Any]:
        """A row's columns (or some of a call's, by name) for ``json``: times as naive UTC ISO 8601."""
        bind = self.bind
        names = list(row) if isinstance(row, dict) else self.columns[type(row)]
        values = row.values() if isinstance(row, dict) else (getattr(row, n) for n in names)
        return {n: bind(v).isoformat() if isinstance(v, datetime) else v for n, v in zip(names, values, strict=True)}

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
        """A database row -> the frozen row type: times come back aware UTC, SQLite's 0/1 as bool."""
        out = list(values)
        if len(out) != len(self.columns[kind]):
            raise ValueError(f"{kind.__name__}: {len(out)} values for {len(self.columns[kind])} columns")
        for i in self.time_at[kind]:
            value = out[i]
            if value is not None:
                if isinstance(value, str):
                    value = datetime.fromisoformat(value)
                out[i] = value.replace(tzinfo=UTC)
        for i in self.bool_at[kind]:
            if out[i] is not None:
                out[i] = bool(out[i])
        return kind(*out)


_DIALECTS: dict[str, _Dialect] = {}


def _dialect(name: str) -> _Dialect:
    found = _DIALECTS.get(name)
    if found is None:
        found = _DIALECTS[name] = _Dialect(name)
    return found


class _SqlTx(StepwiseComposites):
    """One transaction on a DBAPI connection (the store begins and ends it)."""

    def __init__(self, cursor: Any, dialect: _Dialect, integrity_error: type[Exception]) -> None:
        self.d = dialect
        self.cursor = cursor
        self.integrity_error = integrity_error

    def _before(self) -> None:
        """Called before a statement runs on ``cursor`` (PostgreSQL: BEGIN and queued writes first)."""

    def _run(self, sql: str, params: dict[str, Any]) -> Any:
        self._before()
        bind = self.d.bind
        self.cursor.execute(sql, {k: bind(v) if isinstance(v, datetime) else v for k, v in params.items()})
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
        self._before()
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



class _Prepared:
    """A hot statement as a server-side prepared statement (SQL PREPARE, once per connection), run by
    ``EXECUTE name(literals)`` inside a multi-statement simple query (PostgreSQL 15 manual, 55.2.2):
    BEGIN, the statements and COMMIT then share round trips, and the server still plans once."""

    def __init__(self, name: str, sql: str, type_of: Callable[[str], str]) -> None:
        self.name = name
        self.params: list[str] = []

        def number(match: re.Match[str]) -> str:
            param = match.group(1)
            if param not in self.params:
                self.params.append(param)
            return f"${self.params.index(param) + 1}"

        body = re.sub(r"%\((\w+)\)s", number, sql)
        self.prepare = f"PREPARE {name} ({', '.join(type_of(p) for p in self.params)}) AS {body}"
        self.execute = f"EXECUTE {name} ({', '.join('%s' for _ in self.params)})" if self.params else f"EXECUTE {name}"

    def values(self, params: dict[str, Any]) -> list[Any]:
        return [params[p] for p in self.params]


class _PgSession:
    """What the ledger keeps per psycopg connection (in SQLAlchemy's ``info`` of the pooled
    connection, which lives and dies with it): its cursors and the statements PREPAREd on it."""

    def __init__(self, raw: Any) -> None:
        import psycopg

        self.raw = raw
        self.cursor = raw.cursor()  # bound parameters, extended protocol
        self.client = psycopg.ClientCursor(raw)  # literals bound client-side: one string, many statements
        self.prepared: set[str] = set()  # they outlive transactions, not the connection


class _PgTx(_SqlTx):
    """A PostgreSQL transaction in as few round trips as the statements allow (psycopg in autocommit
    mode; we send BEGIN and COMMIT). The hot steps are prepared statements sent as one simple query
    each with the BEGIN before them or the COMMIT after them: authorize is [BEGIN; account lock with
    its blocks; the call] then [hold; COMMIT], settle [BEGIN; post... if still held; COMMIT] (or,
    for a call this instance did not authorize, [BEGIN; call lock] then [post...; COMMIT]):
    3 round trips a cycle instead of 9. Writes whose result nobody waits for are queued and go with
    the next round trip; every other statement runs as before (extended protocol, bound parameters)
    after them."""

    def __init__(self, session: _PgSession, dialect: _Dialect, integrity_error: type[Exception]) -> None:
        super().__init__(session.cursor, dialect, integrity_error)
        self.raw = session.raw
        self.client = session.client
        self.prepared = session.prepared
        self.begun = False
        self.pending: list[tuple[str, list[Any], list[int] | None]] = []  # queued writes (+ rowcount slot)

    def _statement(self, sql: str) -> _Prepared:
        stmt = self.d.prepared(sql)
        if stmt.name not in self.prepared:
            import psycopg

            try:
                self.cursor.execute(stmt.prepare)  # PREPARE is not transactional: it survives a ROLLBACK
            except psycopg.errors.DuplicatePreparedStatement as exc:  # prepared by a run that failed later
                self.prepared.add(stmt.name)
                if self.begun:  # the error ended our transaction: run it again
                    raise StatementsLostError(str(exc)) from exc
            self.prepared.add(stmt.name)
        return stmt

    def _send(self, tail: list[tuple[str, list[Any]]]) -> Any:
        """One round trip: BEGIN (first time), the queued writes, ``tail``; the cursor is left at the
        first result of ``tail``."""
        texts: list[str] = []
        values: list[Any] = []
        slots: list[list[int] | None] = []
        if not self.begun:
            texts.append("BEGIN")
            slots.append(None)
        for sql, vals, slot in self.pending:
            texts.append(sql)
            values.extend(vals)
            slots.append(slot)
        for sql, vals in tail:
            texts.append(sql)
            values.extend(vals)
        if not texts:
            return self.client
        self.pending = []
        self.begun = True
        import psycopg

        try:
            self.client.execute("; ".join(texts), values)
        except self.integrity_error as exc:
            raise DuplicateKeyError(str(exc)) from exc
        except psycopg.errors.InvalidSqlStatementName as exc:  # someone's ROLLBACK made psycopg DEALLOCATE ALL
            self.prepared.clear()
            raise StatementsLostError(str(exc)) from exc
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as exc:
            raise RetryableError(str(exc)) from exc  # the server rolled it back: run it again
        for slot in slots:
            if slot is not None:
                slot.append(int(self.client.rowcount))
            self.client.nextset()
        return self.client

    def _before(self) -> None:
        if not self.begun or self.pending:
            self._send([])

    def commit(self) -> None:
        if self.begun or self.pending:
            self._send([("COMMIT", [])])

    def rollback(self) -> None:
        """ROLLBACK on libpq directly: through a cursor, psycopg would DEALLOCATE ALL afterwards
        (psycopg 3.3 _preparing.py, a precaution for DROP/ALTER), our statements with its own."""
        if self.raw.pgconn.transaction_status != _PG_IDLE:
            self.raw.pgconn.exec_(b"ROLLBACK")

    def payer_view(self, number: str, call_id: str) -> PayerView:
        view, get = self._statement(self.d.payer_view), self._statement(self.d.get[CallRow])
        cur = self._send([(view.execute, [number]), (get.execute, [call_id])])
        found = cur.fetchone()
        cur.nextset()
        existing = cur.fetchone()
        call = None if existing is None else self.d.row(CallRow, existing)
        if found is None:  # not a prepaid number: its blocks alone (a collect payer is looked up next)
            blocks = tuple((r.kind, r.facility_id, r.action) for r in self.find(BlockRecord, number=number))
            return PayerView(blocks, None, call)
        *account, block_rows = found
        blocks = tuple((kind, facility, action) for kind, facility, action in block_rows or ())
        return PayerView(blocks, self.d.row(AccountRow, account), call)

    def lock_call(self, call_id: str) -> CallRow | None:
        cur = self._send([(self._statement(self.d.lock_call).execute, [call_id])])
        found = cur.fetchone()
        return None if found is None else self.d.row(CallRow, found)

    def place_hold(self, hold: TransferRow, call: CallRow, *, require_cover: bool) -> Callable[[], bool]:
        d = self.d
        params = {"k": hold.debit_account_id, "dpe": hold.amount_minor, "dpo": 0, "cpo": 0}
        params.update(hold=d.json(d.fields(hold)), row=d.json(d.fields(call)))
        stmt = self._statement(d.place_hold if require_cover else d.place_hold_uncovered)
        slot: list[int] = []
        self.pending.append((stmt.execute, stmt.values(params), slot))  # goes with the COMMIT
        return self._answer(slot)

    def _answer(self, slot: list[int]) -> Callable[[], bool]:
        """Whether a queued statement wrote its one row, asked once it has been sent."""

        def answer() -> bool:
            if not slot:
                self._send([])
            return slot[0] == 1

        return answer

    def _queue_resolve(
        self,
        call_id: str,
        account_id: str,
        transfers: list[TransferRow],
        debits_pending: int,
        debits_posted: int,
        last_activity_at: datetime | None,
        call_fields: dict[str, Any],
        only_held: bool,
    ) -> list[int]:
        """Queue the settle/void statement (``_Dialect.resolve_sql``) to go with the COMMIT; its
        rowcount lands in the returned slot."""
        d = self.d
        params: dict[str, Any] = {"k": account_id, "dpe": debits_pending, "dpo": debits_posted, "cpo": 0}
        if last_activity_at is not None:
            params["seen"] = d.bind(last_activity_at)
        rows = d.json([d.fields(row) for row in transfers])
        params.update(rows=rows, fields=d.json(d.fields(call_fields)), call=call_id)
        sql = d.resolve_sql(last_activity_at is not None, tuple(sorted(call_fields)), only_held=only_held)
        stmt = self._statement(sql)
        slot: list[int] = []
        self.pending.append((stmt.execute, stmt.values(params), slot))
        return slot

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
        self._queue_resolve(
            call_id, account_id, transfers, debits_pending, debits_posted, last_activity_at, call_fields, False
        )

    def resolve_held(
        self,
        call_id: str,
        account_id: str,
        transfers: list[TransferRow],
        *,
        debits_pending: int,
        debits_posted: int,
        last_activity_at: datetime | None,
        **call_fields: Any,
    ) -> Callable[[], bool]:
        slot = self._queue_resolve(
            call_id, account_id, transfers, debits_pending, debits_posted, last_activity_at, call_fields, True
        )
        return self._answer(slot)  # with BEGIN and COMMIT: one round trip


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
        return _SqlTx(raw.cursor(), self.dialect, self._integrity_error)

    @contextmanager
    def _pg_transaction(self) -> Iterator[_SqlTx]:
        """A transaction straight on the pooled psycopg connection, put in autocommit mode so that
        psycopg sends no BEGIN of its own (``_PgTx`` sends BEGIN and COMMIT with its statements);
        back in the pool it is as SQLAlchemy left it. SQLAlchemy's Connection would cost ~100 us of
        CPU per transaction on top, and CPU, client and server sharing 2 cores, limits the cycle."""
        fairy = self.engine.raw_connection()
        raw = fairy.driver_connection
        assert raw is not None
        try:
            raw.autocommit = True
            session = fairy.info.get("ivr_ledger")
            if session is None or session.raw is not raw:
                session = fairy.info["ivr_ledger"] = _PgSession(raw)
            tx = _PgTx(session, self.dialect, self._integrity_error)
            try:
                yield tx
            except BaseException:
                if not raw.closed:
                    tx.rollback()
                raise
            tx.commit()
            raw.autocommit = False
        except BaseException:
            if raw.closed or raw.broken:
                fairy.invalidate()  # a dead connection does not go back to the pool
            else:
                if raw.pgconn.transaction_status != _PG_IDLE:
                    raw.pgconn.exec_(b"ROLLBACK")  # the COMMIT string failed half-way: leave nothing open
                raw.autocommit = False
            raise
        finally:
            fairy.close()  # back to the pool (its reset-on-return ROLLBACK is skipped when idle)
