"""Schema: the Alembic migrations produce exactly the models; REG-1 rate caps are data with dates."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select

from ledger import models
from ledger.ratecaps import CAPS, NoCapError, rate_cap
from ledger.repo import make_engine, migrate


def _diff(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), models.metadata))


def test_migrations_match_models_sqlite(tmp_path: Path) -> None:
    """The migrated SQLite schema has no difference from ledger.models."""
    engine = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(engine)
    assert _diff(engine) == []


@pytest.mark.postgres
def test_migrations_match_models_postgres(pg_url: str) -> None:
    """The migrated PostgreSQL schema has no difference from ledger.models."""
    engine = make_engine(pg_url)
    migrate(engine)
    assert _diff(engine) == []
    engine.dispose()


def test_rate_cap_table_is_seeded_from_the_data(tmp_path: Path) -> None:
    """The rate_caps table holds the REG-1 rows of ledger.ratecaps."""
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    migrate(engine)
    table = models.RateCap.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(table).order_by(table.c.id)).all()
    assert [(r.order_ref, r.facility_type, r.population_min, r.population_max, r.rate_minor_per_min,
             r.effective_from) for r in rows] == [
        (c.order_ref, c.facility_type, c.population_min, c.population_max, c.rate_minor_per_min, c.effective_from)
        for c in CAPS
    ]  # fmt: skip


AFTER = datetime(2025, 6, 1, tzinfo=UTC)
CAP_CASES = [
    ("prison", 20_000, AFTER, 6),
    ("prison", 50, AFTER, 6),
    ("jail", 1000, AFTER, 6),
    ("jail", 999, AFTER, 7),
    ("jail", 350, AFTER, 7),
    ("jail", 349, AFTER, 9),
    ("jail", 100, AFTER, 9),
    ("jail", 99, AFTER, 12),
    ("jail", 0, AFTER, 12),
    # Before the 2024 order's compliance dates the 2021 interim caps apply.
    ("prison", 5000, datetime(2024, 12, 31, tzinfo=UTC), 14),
    ("jail", 1500, datetime(2024, 12, 31, tzinfo=UTC), 16),
    ("jail", 200, datetime(2025, 3, 31, tzinfo=UTC), 21),
    ("jail", 1500, datetime(2025, 1, 1, tzinfo=UTC), 6),
    ("jail", 200, datetime(2025, 4, 1, tzinfo=UTC), 9),
]


@pytest.mark.parametrize(("kind", "population", "at", "cap"), CAP_CASES)
def test_rate_cap_by_type_size_and_date(kind: str, population: int, at: datetime, cap: int) -> None:
    """REG-1: FCC 2024 audio caps by tier, in force from their effective dates."""
    assert rate_cap(kind, population, at) == cap


def test_rate_cap_refuses_unknowns() -> None:
    """Unknown facility types, negative sizes and dates before any order are errors."""
    with pytest.raises(ValueError):
        rate_cap("camp", 10, AFTER)
    with pytest.raises(ValueError):
        rate_cap("jail", -1, AFTER)
    with pytest.raises(NoCapError):
        rate_cap("jail", 10, datetime(2020, 1, 1, tzinfo=UTC))


def _first_use_race(url: str) -> None:
    import threading

    from ledger.service import LedgerService

    errors: list[BaseException] = []

    def start() -> None:
        try:
            LedgerService(url).close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = make_engine(url)
    assert _diff(engine) == []
    engine.dispose()


def test_concurrent_first_use_migrates_once_sqlite(tmp_path: Path) -> None:
    """Several engines starting on a new SQLite file at once: one migrates, none fails."""
    _first_use_race(f"sqlite:///{tmp_path / 'race.db'}")


@pytest.mark.postgres
def test_concurrent_first_use_migrates_once_postgres(pg_url: str) -> None:
    """Several engines starting on a new PostgreSQL schema at once: one migrates (advisory lock)."""
    _first_use_race(pg_url)
