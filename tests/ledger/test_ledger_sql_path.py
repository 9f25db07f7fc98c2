"""The SQL stores' fast path keeps the reference behaviour (issue 5 benchmark work).

PostgreSQL runs authorize and settle as prepared statements sent with BEGIN and COMMIT in one
string, with literals bound by psycopg on the client; SQLite and memory run the same steps one
primitive at a time. These tests pin what that must not change: text arrives verbatim, a call
authorized from many threads at once holds once, the connections go back to the pool as they
came, and a connection that died is replaced.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from ivr.rating import max_cost_minor, rate_call
from ledger.api import Authorized, CallFacts
from ledger.core import LedgerCore
from ledger.service import LedgerService
from ledger.testing import T0, TARIFF, TAXED, facts

from .conftest import make_ledger

HOME = "+15551230001"
AWKWARD = "F'1 \\ %s %(x)s; COMMIT; --"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sql_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerService:
    """A fresh SQL ledger (SQLite, PostgreSQL)."""
    service = make_ledger(request.param, tmp_path, request)
    assert isinstance(service, LedgerService)
    return service


@pytest.mark.parametrize("backend", ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_quotes_backslashes_and_percent_signs_are_stored_verbatim(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Facility, caller and end reason with quotes, a backslash, %s and SQL come back as written."""
    ledger: LedgerCore = make_ledger(backend, tmp_path, request)
    account = ledger.open_account("Ann Lee", [HOME], T0)
    ledger.deposit(account, 1000, "card", T0)
    call = CallFacts("c'1\\%s", AWKWARD, "O'Brien %(y)s", HOME, "local", TAXED, 900, T0)
    auth = ledger.authorize(call)
    assert isinstance(auth, Authorized)
    assert ledger.authorize(call) == auth
    settled = ledger.settle("c'1\\%s", 125, "DIS-HANGUP 'x' \\ %s", False, T0 + timedelta(minutes=3))
    assert settled.posted_minor == rate_call(125, TAXED).total_minor
    (row,) = ledger.calls(account)
    assert (row.call_id, row.facility_id, row.caller_id) == ("c'1\\%s", AWKWARD, "O'Brien %(y)s")
    assert (row.end_reason, row.status) == ("DIS-HANGUP 'x' \\ %s", "settled")
    assert ledger.check_invariants() == []


def test_one_call_authorized_from_many_threads_holds_once(sql_ledger: LedgerService) -> None:
    """ACT-3: 12 threads authorize the same call at once: one hold, the same answer for all."""
    account = sql_ledger.open_account("Ann Lee", [HOME], T0)
    sql_ledger.deposit(account, 1000, "card", T0)
    barrier = threading.Barrier(12)
    answers: list[object] = []

    def one() -> None:
        barrier.wait()
        answers.append(sql_ledger.authorize(facts("same", HOME)))

    threads = [threading.Thread(target=one) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 12 and all(answer == answers[0] for answer in answers)
    assert isinstance(answers[0], Authorized)
    assert sql_ledger.balance(account).pending_minor == max_cost_minor(900, TARIFF)
    assert sql_ledger.check_invariants() == []


def _count_blocks(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM blocks")).scalar_one())


def test_other_transactions_on_the_engine_still_roll_back(sql_ledger: LedgerService) -> None:
    """After ledger work (and a failed ledger call), a transaction on the same engine is still one;
    the ledger works on after it rolled back."""
    account = sql_ledger.open_account("Ann Lee", [HOME], T0)
    sql_ledger.deposit(account, 1000, "card", T0)
    with pytest.raises(KeyError):
        sql_ledger.settle("unknown", 60, "DIS-HANGUP", False, T0)
    sql_ledger.authorize(facts("c1", HOME))
    sql_ledger.settle("c1", 60, "DIS-HANGUP", False, T0)
    before = _count_blocks(sql_ledger.engine)
    with pytest.raises(RuntimeError), sql_ledger.engine.begin() as conn:
        insert = (
            "INSERT INTO blocks (number, kind, action, reason, who, at, detail) "
            "VALUES (:n, :k, 'block', '', '', :t, '')"
        )
        conn.execute(text(insert), {"n": HOME, "k": "BLK-PARTY", "t": T0.replace(tzinfo=None)})
        raise RuntimeError("the caller fails before committing")
    assert _count_blocks(sql_ledger.engine) == before
    # That ROLLBACK made psycopg DEALLOCATE ALL on its connection (PostgreSQL): the ledger prepares again.
    sql_ledger.authorize(facts("c2", HOME))
    assert sql_ledger.settle("c2", 60, "DIS-HANGUP", False, T0).posted_minor == TARIFF.rate_minor_per_min
    assert sql_ledger.check_invariants() == []


@pytest.mark.postgres
def test_a_connection_killed_by_the_server_is_replaced(pg_url: str) -> None:
    """A pooled connection the server terminated fails at most one call; the next one works."""
    from sqlalchemy import create_engine

    name = f"ivr-test-{uuid.uuid4().hex[:8]}"
    service = LedgerService(create_engine(pg_url, connect_args={"application_name": name}))
    admin = create_engine(pg_url)
    try:
        account = service.open_account("Ann Lee", [HOME], T0)
        service.deposit(account, 1000, "card", T0)
        with admin.connect() as conn:  # every connection of the ledger's pool, idle in it
            killed = conn.execute(
                text("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = :n"),
                {"n": name},
            ).scalar_one()
        assert killed >= 1
        failures = 0
        for attempt in range(2):
            try:
                auth = service.authorize(facts(f"c{attempt}", HOME))
            except Exception:  # the dead connection's error, whatever psycopg calls it
                failures += 1
            else:
                assert isinstance(auth, Authorized)
        assert failures <= 1
        assert isinstance(service.authorize(facts("after", HOME)), Authorized)
        assert service.check_invariants() == []
    finally:
        service.close()
        admin.dispose()


@pytest.fixture
def twin(sql_ledger: LedgerService) -> LedgerService:
    """A second ledger instance on the same database (another engine process, or one restarted)."""
    url = sql_ledger.engine.url
    twin = LedgerService(url.render_as_string(hide_password=False)) if url.get_backend_name() == "sqlite" else None
    if twin is None:
        from sqlalchemy import create_engine

        with sql_ledger.engine.connect() as conn:
            schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        twin = LedgerService(create_engine(url, connect_args={"options": f"-csearch_path={schema}"}))
    return twin


def test_settled_elsewhere_first_the_settle_of_the_authorizer_charges_once(
    sql_ledger: LedgerService, twin: LedgerService
) -> None:
    """ACT-3, idempotent settle: the instance that authorized a call settles it in one conditional
    statement; when another instance settled it first, that statement writes nothing and the
    answer is the first settle's."""
    try:
        account = sql_ledger.open_account("Ann Lee", [HOME], T0)
        sql_ledger.deposit(account, 1000, "card", T0)
        sql_ledger.authorize(facts("c1", HOME, tariff=TAXED))
        first = twin.settle("c1", 125, "DIS-HANGUP", False, T0 + timedelta(minutes=3))
        again = sql_ledger.settle("c1", 500, "DIS-TIMELIMIT", False, T0 + timedelta(minutes=9))
        assert again == first and first.posted_minor == rate_call(125, TAXED).total_minor
        balance = sql_ledger.balance(account)
        assert (balance.pending_minor, balance.posted_minor) == (0, 1000 - first.posted_minor)
        (row,) = sql_ledger.calls(account)
        assert (row.end_reason, row.billed_seconds) == ("DIS-HANGUP", 125)
        assert sql_ledger.check_invariants() == []
    finally:
        twin.close()


def test_voided_by_another_instance_the_settle_of_the_authorizer_charges_nothing(
    sql_ledger: LedgerService, twin: LedgerService
) -> None:
    """ACT-3: the sweeper of another instance voided the hold (the engine was gone too long): the
    authorizer's late settle writes nothing and charges nothing."""
    try:
        account = sql_ledger.open_account("Ann Lee", [HOME], T0)
        sql_ledger.deposit(account, 1000, "card", T0)
        sql_ledger.authorize(facts("c1", HOME))
        assert twin.sweep(T0 + timedelta(hours=1)) == ["c1"]
        late = sql_ledger.settle("c1", 60, "DIS-HANGUP", False, T0 + timedelta(hours=2))
        assert (late.posted_minor, late.label) == (0, "hold voided before settle")
        balance = sql_ledger.balance(account)
        assert (balance.available_minor, balance.pending_minor, balance.posted_minor) == (1000, 0, 1000)
        assert sql_ledger.check_invariants() == []
    finally:
        twin.close()


def test_one_call_settled_from_two_instances_and_many_threads_posts_once(
    sql_ledger: LedgerService, twin: LedgerService
) -> None:
    """ACT-3: 6 threads of the authorizer (one of them takes the one-statement path) and 6 of another
    instance (the locked path) settle the same call at once: one post, the same answer for all."""
    try:
        account = sql_ledger.open_account("Ann Lee", [HOME], T0)
        sql_ledger.deposit(account, 1000, "card", T0)

        def one(ledger: LedgerService, call_id: str, barrier: threading.Barrier, answers: list[object]) -> None:
            barrier.wait()
            answers.append(ledger.settle(call_id, 125, "DIS-HANGUP", False, T0 + timedelta(minutes=3)))

        for round_ in range(5):
            call_id = f"c{round_}"
            sql_ledger.authorize(facts(call_id, HOME, tariff=TAXED))
            barrier = threading.Barrier(12)
            answers: list[object] = []
            threads = [
                threading.Thread(target=one, args=(sql_ledger if i % 2 else twin, call_id, barrier, answers))
                for i in range(12)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert len(answers) == 12 and all(answer == answers[0] for answer in answers)
        charge = rate_call(125, TAXED).total_minor
        balance = sql_ledger.balance(account)
        assert (balance.pending_minor, balance.posted_minor) == (0, 1000 - 5 * charge)
        assert sql_ledger.check_invariants() == []
    finally:
        twin.close()
