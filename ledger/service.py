"""The ledger on SQLAlchemy (SQLite or PostgreSQL): ``LedgerService`` implements ``LedgerPort``.

All the logic is ``ledger.core.LedgerCore`` (shared with the in-memory ledger); this class binds it
to ``ledger.repo.SqlStore``. A new database is migrated to the head revision on first use.
"""

from __future__ import annotations

from sqlalchemy import Engine

from ledger.core import LedgerCore
from ledger.repo import SqlStore


class LedgerService(LedgerCore):
    """``LedgerService("sqlite:///ivr.db")`` or ``LedgerService(engine)``; plus the admin operations."""

    def __init__(self, engine_or_url: Engine | str, *, auto_migrate: bool = True) -> None:
        self.sql = SqlStore(engine_or_url, auto_migrate=auto_migrate)
        super().__init__(self.sql)

    @property
    def engine(self) -> Engine:
        return self.sql.engine

    def close(self) -> None:
        self.sql.engine.dispose()
