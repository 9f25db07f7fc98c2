"""Helpers for tests of the ledger and of code that uses it (the engine's tests, the simulator).

Kept in the package (not under tests/) so any test layout and import mode can use them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ivr.rating import Tariff, Tax
from ledger.api import CallFacts

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TARIFF = Tariff(rate_minor_per_min=21)
TAXED = Tariff(rate_minor_per_min=21, taxes=(Tax("state", 500),))


def facts(
    call_id: str,
    number: str,
    *,
    facility: str = "F1",
    tariff: Tariff = TARIFF,
    max_seconds: int | None = 900,
    at: datetime = T0,
    call_type: str = "local",
) -> CallFacts:
    """CallFacts with sensible defaults: a 15-minute local call at $0.21/min from facility F1."""
    return CallFacts(call_id, facility, "inmate-1", number, call_type, tariff, max_seconds, at)
