"""Facility dialplans: ``dialplans/*.toml`` validated into frozen objects.

A bad file is refused whole with a message naming the file, the key and what is wrong
(``InputError``: the CLI exits 2). Unknown keys are errors too: a misspelt threshold must not
silently fall back to a default on a live facility. Rates are checked against the REG-1 rate caps
(``ledger.ratecaps``, data with effective dates) at load: an over-cap tariff is refused.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.errors import InputError
from ivr.rating import Fee, Increment, Tariff, Tax
from ivr.types import DTMF_KEYS, Leg

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
FACILITY_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
LANGUAGES = ("en", "es")


class Action(enum.StrEnum):
    """What a connected-call detector does (DOMAIN.md DIS preamble)."""

    OFF = "off"  # record the evidence, do nothing
    WARN = "warn"  # warn ``warnings`` times, disconnect on the next occurrence
    DISCONNECT = "disconnect"  # disconnect at once


@dataclass(frozen=True, slots=True)
class Facility:
    id: str
    name: str
    type: str  # jail | prison
    population: int
    state: str
    languages: tuple[str, ...]
    timezone: str | None = None  # IANA name: weekday/weekend limits follow the facility's clock (LIM-1)


@dataclass(frozen=True, slots=True)
class Keys:
    accept: str = "1"
    refuse: str = "2"
    block: str = "6"
    language: str | None = "9"


@dataclass(frozen=True, slots=True)
class Identify:
    pin_digits: int = 6
    pin_timeout_s: float = 10.0
    pin_attempts: int = 3
    name_max_ms: int = 3000


@dataclass(frozen=True, slots=True)
class Acceptance:
    attempts: int = 2
    digit_timeout_s: float = 8.0
    barge_in: bool = True
    ring_timeout_s: float = 45.0
    key_dedupe_ms: int = 250
    ledger_timeout_s: float = 5.0
    closing_timeout_s: float = 20.0


@dataclass(frozen=True, slots=True)
class Limit:
    """Maximum talk time of a call type; ``None`` means untimed (attorneys, LIM-1)."""

    weekday_s: int | None
    weekend_s: int | None

    def for_day(self, weekend: bool) -> int | None:
        return self.weekend_s if weekend else self.weekday_s


@dataclass(frozen=True, slots=True)
class Policy:
    action: Action
    warnings: int = 1


@dataclass(frozen=True, slots=True)
class SilencePolicy:
    action: Action
    warn_after_s: float = 30.0
    disconnect_after_s: float = 45.0


@dataclass(frozen=True, slots=True)
class Policies:
    hold: Policy  # DIS-HOLD: hold and transfer
    three_way: Policy  # DIS-3WAY: hookflash and call waiting
    digit: Policy  # DIS-DIGIT
    digit_legs: tuple[Leg, ...]
    silence: SilencePolicy  # DIS-SILENCE
    noise: Policy  # DIS-NOISE
    media_timeout_s: float  # DIS-MEDIA


@dataclass(frozen=True, slots=True)
class Dialplan:
    source: str
    facility: Facility
    keys: Keys
    identify: Identify
    acceptance: Acceptance
    limits: Mapping[str, Limit]
    warnings_s: tuple[int, ...]
    policies: Policies
    privileged_numbers: frozenset[str]
    privileged_untimed: bool
    blocked_numbers: frozenset[str]
    tariff: Tariff
    rate_cap_minor_per_min: int | None
    detectors: Any  # ivr.detect.config.DetectorConfigs, or the raw table before detectors exist
    raw: Mapping[str, Any]

    def call_type_for(self, number: str) -> str:
        return "privileged" if number in self.privileged_numbers else "standard"

    def limit_seconds(self, call_type: str, weekend: bool) -> int | None:
        if call_type == "privileged" and self.privileged_untimed:
            return None
        limit = self.limits.get(call_type) or self.limits["standard"]
        return limit.for_day(weekend)


class _Table:
    """A TOML table being read: typed getters, and unknown keys reported at the end."""

    def __init__(self, data: Mapping[str, Any], where: str, prefix: str) -> None:
        self.data = data
        self.where = where
        self.prefix = prefix
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def fail(self, name: str, message: str) -> InputError:
        return InputError(message, where=f"{self.where}: {self.key(name)}")

    def _get(self, name: str, default: Any, required: bool) -> Any:
        self.seen.add(name)
        if name not in self.data:
            if required:
                raise self.fail(name, "missing (required)")
            return default
        return self.data[name]

    def table(self, name: str, required: bool = False) -> _Table:
        value = self._get(name, {}, required)
        if not isinstance(value, dict):
            raise self.fail(name, f"must be a table, got {type(value).__name__}")
        return _Table(value, self.where, self.key(name))

    def array(self, name: str, needs: str) -> list[_Table]:
        """An array of tables (``[[tariff.taxes]]``), each item a table of its own for errors."""
        value = self._get(name, [], False)
        if not isinstance(value, list):
            raise self.fail(name, f"must be an array of tables ([[{self.key(name)}]])")
        items: list[_Table] = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise self.fail(f"{name}[{i}]", f"must be a table with {needs}")
            items.append(_Table(item, self.where, f"{self.key(name)}[{i}]"))
        return items

    def string(self, name: str, default: str | None = None, *, required: bool = False) -> str:
        value = self._get(name, default, required)
        if not isinstance(value, str) or not value:
            raise self.fail(name, f"must be a non-empty string, got {value!r}")
        return value

    def opt_string(self, name: str, default: str | None) -> str | None:
        value = self._get(name, default, False)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, got {value!r}")
        return value

    def integer(self, name: str, default: int | None = None, *, lo: int = 0, hi: int = 10**9,
                required: bool = False) -> int:
        value = self._get(name, default, required)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be an integer, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(name, f"must be between {lo} and {hi}, got {value}")
        return value

    def number(self, name: str, default: float, *, lo: float = 0.0, hi: float = 1e9) -> float:
        value = self._get(name, default, False)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, got {value!r}")
        if not lo <= float(value) <= hi:
            raise self.fail(name, f"must be between {lo:g} and {hi:g}, got {value}")
        return float(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default, False)
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, got {value!r}")
        return value

    def strings(self, name: str, default: list[str]) -> list[str]:
        value = self._get(name, default, False)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(name, f"must be a list of strings, got {value!r}")
        return list(value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key (misspelt?)")


def _timezone(table: _Table) -> str | None:
    name = table.opt_string("timezone", None)
    if name is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise table.fail("timezone", f"not an IANA time zone (e.g. America/Chicago): {name!r}") from None
    return name


def _key(table: _Table, name: str, default: str | None) -> str | None:
    value = table.opt_string(name, default)
    if value is not None and (len(value) != 1 or value not in DTMF_KEYS):
        raise table.fail(name, f"must be one DTMF key (0-9, *, #, A-D), got {value!r}")
    return value


def _numbers(table: _Table, name: str) -> frozenset[str]:
    numbers = table.strings(name, [])
    for number in numbers:
        if not E164.match(number):
            raise table.fail(name, f"{number!r} is not an E.164 number (+ and 7 to 15 digits)")
    return frozenset(numbers)


def _policy(table: _Table, name: str, default_action: Action) -> Policy:
    sub = table.table(name)
    action = _action(sub, default_action)
    warnings = sub.integer("warnings", 1, lo=1, hi=10)
    sub.finish()
    return Policy(action, warnings)


def _action(sub: _Table, default: Action) -> Action:
    value = sub.string("action", default.value)
    try:
        return Action(value)
    except ValueError:
        raise sub.fail("action", f"must be one of off, warn, disconnect; got {value!r}") from None


def _limit(table: _Table, name: str) -> Limit:
    sub = table.table(name)
    if sub.boolean("untimed", False):
        sub.finish()
        return Limit(None, None)
    weekday = sub.integer("weekday_s", required=True, lo=10, hi=24 * 3600)
    weekend = sub.integer("weekend_s", weekday, lo=10, hi=24 * 3600)
    sub.finish()
    return Limit(weekday, weekend)


def _tariff(table: _Table) -> Tariff:
    sub = table.table("tariff", required=True)
    rate = sub.integer("rate_minor_per_min", required=True, lo=0, hi=10_000)
    increment_name = sub.string("increment", "minute")
    try:
        increment = Increment(increment_name)
    except ValueError:
        raise sub.fail("increment", f"must be minute or second, got {increment_name!r}") from None
    currency = sub.string("currency", "USD")
    taxes: list[Tax] = []
    for t in sub.array("taxes", "name and rate_bp"):
        taxes.append(Tax(t.string("name", required=True), t.integer("rate_bp", required=True, hi=10_000)))
        t.finish()
    fees: list[Fee] = []
    for f in sub.array("fees", "name and amount_minor"):
        fees.append(Fee(f.string("name", required=True), f.integer("amount_minor", required=True, hi=100_000)))
        f.finish()
    sub.finish()
    return Tariff(rate, increment, tuple(taxes), tuple(fees), currency)


def _detectors(table: _Table) -> Any:
    raw = table._get("detectors", {}, False)
    if not isinstance(raw, dict):
        raise table.fail("detectors", "must be a table")
    try:
        from ivr.detect.config import detector_configs_from_table
    except ImportError:  # the detectors are a separate module; without them keep the table as data
        return dict(raw)
    return detector_configs_from_table(raw, table.where)


def parse_dialplan(data: Mapping[str, Any], source: str, *, as_of: dt.date | None = None) -> Dialplan:
    """Validate a parsed TOML document. ``as_of`` picks the rate caps in force (default: no check)."""
    root = _Table(data, source, "")
    fac = root.table("facility", required=True)
    facility_id = fac.string("id", required=True)
    if not FACILITY_ID.match(facility_id):
        raise fac.fail("id", f"must be lowercase letters, digits and dashes, got {facility_id!r}")
    facility_type = fac.string("type", required=True)
    if facility_type not in ("jail", "prison"):
        raise fac.fail("type", f"must be jail or prison, got {facility_type!r}")
    languages = tuple(fac.strings("languages", ["en"]))
    if not languages or any(lang not in LANGUAGES for lang in languages) or len(set(languages)) != len(languages):
        raise fac.fail("languages", f"must be a non-empty list of distinct {LANGUAGES}, got {list(languages)}")
    facility = Facility(
        id=facility_id,
        name=fac.string("name", required=True),
        type=facility_type,
        population=fac.integer("population", required=True, lo=1, hi=1_000_000),
        state=fac.string("state", required=True),
        languages=languages,
        timezone=_timezone(fac),
    )
    fac.finish()

    keys_t = root.table("keys")
    keys = Keys(
        accept=_key(keys_t, "accept", "1") or "1",
        refuse=_key(keys_t, "refuse", "2") or "2",
        block=_key(keys_t, "block", "6") or "6",
        language=_key(keys_t, "language", "9" if len(languages) > 1 else None),
    )
    keys_t.finish()
    used = [k for k in (keys.accept, keys.refuse, keys.block, keys.language) if k is not None]
    if len(set(used)) != len(used):
        raise InputError(f"accept, refuse, block and language keys must differ, got {used}", where=f"{source}: keys")
    if keys.language is not None and len(languages) < 2:
        raise InputError("a language key needs at least two languages", where=f"{source}: keys.language")

    idt = root.table("identify")
    identify = Identify(
        pin_digits=idt.integer("pin_digits", 6, lo=4, hi=12),
        pin_timeout_s=idt.number("pin_timeout_s", 10.0, lo=1, hi=120),
        pin_attempts=idt.integer("pin_attempts", 3, lo=1, hi=5),
        name_max_ms=idt.integer("name_max_ms", 3000, lo=500, hi=10_000),
    )
    idt.finish()

    acc = root.table("acceptance")
    acceptance = Acceptance(
        attempts=acc.integer("attempts", 2, lo=1, hi=5),
        digit_timeout_s=acc.number("digit_timeout_s", 8.0, lo=1, hi=60),
        barge_in=acc.boolean("barge_in", True),
        ring_timeout_s=acc.number("ring_timeout_s", 45.0, lo=5, hi=300),
        key_dedupe_ms=acc.integer("key_dedupe_ms", 250, lo=0, hi=2000),
        ledger_timeout_s=acc.number("ledger_timeout_s", 5.0, lo=0.5, hi=60),
        closing_timeout_s=acc.number("closing_timeout_s", 20.0, lo=1, hi=120),
    )
    acc.finish()

    lim = root.table("limits", required=True)
    limits: dict[str, Limit] = {}
    warnings_s = tuple(sorted({int(v) for v in lim._get("warnings_s", [60, 30], False)}, reverse=True))
    for name in sorted(set(lim.data) - {"warnings_s"}):
        if not re.match(r"^[a-z][a-z0-9_]*$", name):
            raise lim.fail(name, "call type names are lowercase words")
        limits[name] = _limit(lim, name)
    if "standard" not in limits:
        raise lim.fail("standard", "missing (required): the limit of an ordinary call")
    if any(w <= 0 for w in warnings_s):
        raise lim.fail("warnings_s", "warnings are positive seconds before the end")
    lim.finish()

    dis = root.table("disconnect")
    sil = dis.table("silence")
    silence = SilencePolicy(
        action=_action(sil, Action.WARN),
        warn_after_s=sil.number("warn_after_s", 30.0, lo=5, hi=3600),
        disconnect_after_s=sil.number("disconnect_after_s", 45.0, lo=5, hi=3600),
    )
    if silence.action is Action.WARN and silence.disconnect_after_s <= silence.warn_after_s:
        raise sil.fail("disconnect_after_s", "must be later than warn_after_s")
    sil.finish()
    dig = dis.table("digit")
    digit = Policy(_action(dig, Action.WARN), dig.integer("warnings", 1, lo=1, hi=10))
    legs_raw = dig.strings("legs", ["called"])
    try:
        digit_legs = tuple(Leg(v) for v in legs_raw)
    except ValueError:
        raise dig.fail("legs", f"must list facility and/or called, got {legs_raw}") from None
    dig.finish()
    policies = Policies(
        hold=_policy(dis, "hold", Action.DISCONNECT),
        three_way=_policy(dis, "three_way", Action.DISCONNECT),
        digit=digit,
        digit_legs=digit_legs,
        silence=silence,
        noise=_policy(dis, "noise", Action.OFF),
        media_timeout_s=dis.number("media_timeout_s", 20.0, lo=1, hi=600),
    )
    dis.finish()

    priv = root.table("privileged")
    privileged = _numbers(priv, "numbers")
    privileged_untimed = priv.boolean("untimed", True)
    priv.finish()
    blk = root.table("blocked")
    blocked = _numbers(blk, "numbers")
    blk.finish()

    tariff = _tariff(root)
    cap = None
    if as_of is not None:
        from ledger.ratecaps import NoCapError, rate_cap

        at = dt.datetime(as_of.year, as_of.month, as_of.day, 12, tzinfo=dt.UTC)
        try:
            cap = rate_cap(facility.type, facility.population, at)
        except NoCapError:
            cap = None
        if cap is not None and tariff.rate_minor_per_min > cap:
            raise InputError(
                f"rate {tariff.rate_minor_per_min} cents/min exceeds the REG-1 cap of {cap} cents/min for a "
                f"{facility.type} of {facility.population} people in force on {as_of.isoformat()}",
                where=f"{source}: tariff.rate_minor_per_min",
            )
    detectors = _detectors(root)
    root.finish()
    return Dialplan(
        source=source,
        facility=facility,
        keys=keys,
        identify=identify,
        acceptance=acceptance,
        limits=limits,
        warnings_s=warnings_s,
        policies=policies,
        privileged_numbers=privileged,
        privileged_untimed=privileged_untimed,
        blocked_numbers=blocked,
        tariff=tariff,
        rate_cap_minor_per_min=cap,
        detectors=detectors,
        raw=data,
    )


def load_dialplan(path: str | Path, *, as_of: dt.date | None = None) -> Dialplan:
    """Read and validate one dialplan file; ``InputError`` names the file and key on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read dialplan: {exc.strerror}", where=str(p)) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", where=str(p)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", where=str(p)) from None
    return parse_dialplan(data, str(p), as_of=as_of)


def load_dialplans(folder: str | Path, *, as_of: dt.date | None = None) -> dict[str, Dialplan]:
    """Every ``*.toml`` of a folder, by facility id; duplicate ids are an error."""
    plans: dict[str, Dialplan] = {}
    for path in sorted(Path(folder).glob("*.toml")):
        plan = load_dialplan(path, as_of=as_of)
        if plan.facility.id in plans:
            raise InputError(
                f"facility id {plan.facility.id!r} already defined in {plans[plan.facility.id].source}",
                where=f"{path}: facility.id",
            )
        plans[plan.facility.id] = plan
    return plans
