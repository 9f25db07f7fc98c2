"""Ledger backends for the tests: the same rule tests run on memory, SQLite and PostgreSQL.

PostgreSQL comes from ``IVR_TEST_PG`` (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test);
each test gets its own uniquely named schema, dropped afterwards. Without the variable the
PostgreSQL cases are skipped with a message saying how to run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from ledger.core import LedgerCore
from ledger.memory import InMemoryLedger

PG_URL = os.environ.get("IVR_TEST_PG")
PG_SKIP = "PostgreSQL tests need IVR_TEST_PG=postgresql+psycopg://postgres@127.0.0.1:5432/test"


def pg_engine(schema: str) -> Engine:
    assert PG_URL is not None
    return create_engine(PG_URL, connect_args={"options": f"-csearch_path={schema}"}, pool_size=60, max_overflow=20)


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped at the end."""
    if not PG_URL:
        pytest.skip(PG_SKIP)
    schema = f"ivr_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_ledger(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> LedgerCore:
    from ledger.service import LedgerService

    if backend == "memory":
        return InMemoryLedger()
    if backend == "sqlite":
        service = LedgerService(f"sqlite:///{tmp_path / 'ledger.db'}")
        request.addfinalizer(service.close)
        return service
    schema = request.getfixturevalue("pg_schema")
    service = LedgerService(pg_engine(schema))
    request.addfinalizer(service.close)
    return service


BACKENDS = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerCore:
    """A fresh ledger on each backend."""
    return make_ledger(request.param, tmp_path, request)


@pytest.fixture
def pg_url(pg_schema: str) -> str:
    """A PostgreSQL URL whose connections use a fresh schema (for subprocesses and benches)."""
    assert PG_URL is not None
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{pg_schema}"
