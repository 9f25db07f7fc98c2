"""REG-1: US per-minute audio rate caps by facility type and size, as data with effective dates.

Pure (no SQL, no clock). The dialplan loader calls :func:`rate_cap` and refuses a dialplan whose
rate exceeds it. Add later orders as new rows with their effective date; never edit an old row.

Source: FCC 24-75 (Report and Order, WC Docket 12-375 / 23-62, July 2024), audio caps:
prisons $0.06; jails by average daily population: 1,000+ $0.06, 350-999 $0.07, 100-349 $0.09,
under 100 $0.12. Compliance dates: 2025-01-01 for prisons and jails of 1,000+, 2025-04-01 for
the smaller jails. Before those dates the 2021 interim caps (FCC 21-60) applied to interstate
calls: prisons $0.14, jails of 1,000+ $0.16, other jails $0.21.
Later orders (2025) suspended and revised these; add them here as rows when the deployment needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

FACILITY_TYPES: tuple[str, ...] = ("prison", "jail")


@dataclass(frozen=True, slots=True)
class CapRow:
    order_ref: str
    facility_type: str  # prison | jail
    population_min: int  # average daily population, inclusive
    population_max: int | None  # inclusive; None: no upper bound
    rate_minor_per_min: int  # US cents per minute
    effective_from: datetime


def _d(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


CAPS: tuple[CapRow, ...] = (
    # FCC 21-60 interim interstate caps, effective 2021-10-26.
    CapRow("FCC 21-60", "prison", 0, None, 14, _d(2021, 10, 26)),
    CapRow("FCC 21-60", "jail", 1000, None, 16, _d(2021, 10, 26)),
    CapRow("FCC 21-60", "jail", 0, 999, 21, _d(2021, 10, 26)),
    # FCC 24-75 audio caps (interstate and intrastate).
    CapRow("FCC 24-75", "prison", 0, None, 6, _d(2025, 1, 1)),
    CapRow("FCC 24-75", "jail", 1000, None, 6, _d(2025, 1, 1)),
    CapRow("FCC 24-75", "jail", 350, 999, 7, _d(2025, 4, 1)),
    CapRow("FCC 24-75", "jail", 100, 349, 9, _d(2025, 4, 1)),
    CapRow("FCC 24-75", "jail", 0, 99, 12, _d(2025, 4, 1)),
)


class NoCapError(LookupError):
    """No cap row covers the facility at that date (before the first order in the table)."""


def rate_cap(facility_type: str, population: int, at: datetime, caps: tuple[CapRow, ...] = CAPS) -> int:
    """The cap in minor units per minute for a facility of this type and average daily population.

    The row in force is the one with the latest ``effective_from`` not after ``at`` among the rows
    whose tier contains ``population``. Raises ValueError for bad input, NoCapError when none applies.
    """
    if facility_type not in FACILITY_TYPES:
        raise ValueError(f"facility type must be one of {', '.join(FACILITY_TYPES)}, not {facility_type!r}")
    if population < 0:
        raise ValueError("population must be >= 0")
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    best: CapRow | None = None
    for row in caps:
        if row.facility_type != facility_type or row.effective_from > at:
            continue
        if population < row.population_min or (row.population_max is not None and population > row.population_max):
            continue
        if best is None or row.effective_from > best.effective_from:
            best = row
    if best is None:
        raise NoCapError(f"no rate cap for a {facility_type} of {population} at {at.date()}")
    return best.rate_minor_per_min
