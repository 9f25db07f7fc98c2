"""Dialplans: the examples load; a bad file is refused naming the file and the key."""

from __future__ import annotations

import datetime as dt
import tomllib
from pathlib import Path
from typing import Any

import pytest

from ivr.dialplan import Action, load_dialplan, load_dialplans, parse_dialplan
from ivr.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
COUNTY = ROOT / "dialplans" / "example-county-jail.toml"


def county() -> dict[str, Any]:
    return tomllib.loads(COUNTY.read_text())


def test_both_examples_load_with_the_issue_settings() -> None:
    """1 accepts, 2 refuses, 6 blocks, 9 Spanish; hold disconnects; digit warns once; silence 30/45 s."""
    plans = load_dialplans(ROOT / "dialplans")
    assert set(plans) >= {"example-county-jail", "example-state-prison"}
    for plan in plans.values():
        assert (plan.keys.accept, plan.keys.refuse, plan.keys.block, plan.keys.language) == ("1", "2", "6", "9")
        assert plan.policies.hold.action is Action.DISCONNECT
        assert plan.policies.digit.action is Action.WARN and plan.policies.digit.warnings == 1
        assert (plan.policies.silence.warn_after_s, plan.policies.silence.disconnect_after_s) == (30, 45)
    assert plans["example-county-jail"].limit_seconds("standard", weekend=False) == 900
    assert plans["example-state-prison"].limit_seconds("standard", weekend=True) == 1800
    assert plans["example-county-jail"].limit_seconds("privileged", weekend=False) is None


def _mutate(path: str, value: Any) -> dict[str, Any]:
    data = county()
    node = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return data


_DELETE = object()

BAD = [
    ("facility.id", "Bad Id", "facility.id"),
    ("facility.type", "camp", "facility.type"),
    ("facility.languages", ["en", "fr"], "facility.languages"),
    ("facility.population", 0, "facility.population"),
    ("facility.timezone", "Mars/Olympus", "facility.timezone"),
    ("keys.accept", "11", "keys.accept"),
    ("keys.refuse", "1", "keys"),
    ("acceptance.attempts", 0, "acceptance.attempts"),
    ("acceptance.digit_timeout_s", "eight", "acceptance.digit_timeout_s"),
    ("acceptance.barge_inn", True, "acceptance.barge_inn"),
    ("limits.standard.weekday_s", 5, "limits.standard.weekday_s"),
    ("limits.standard", _DELETE, "limits.standard"),
    ("disconnect.silence.disconnect_after_s", 20, "disconnect.silence.disconnect_after_s"),
    ("disconnect.hold.action", "explode", "disconnect.hold.action"),
    ("disconnect.digit.legs", ["both"], "disconnect.digit.legs"),
    ("privileged.numbers", ["5125550100"], "privileged.numbers"),
    ("tariff.rate_minor_per_min", -1, "tariff.rate_minor_per_min"),
    ("tariff.increment", "hour", "tariff.increment"),
    ("tariff", _DELETE, "tariff"),
]


@pytest.mark.parametrize(("path", "value", "key"), BAD, ids=[b[0] + "=" + repr(b[1])[:12] for b in BAD])
def test_bad_dialplan_is_refused_naming_file_and_key(path: str, value: Any, key: str) -> None:
    """Each bad value is refused with the file and the key in the message."""
    with pytest.raises(InputError) as info:
        parse_dialplan(_mutate(path, value), "dialplans/x.toml")
    assert info.value.where is not None
    assert info.value.where.startswith("dialplans/x.toml: ")
    assert key in info.value.where


def test_unreadable_and_invalid_toml_name_the_file(tmp_path: Path) -> None:
    """A missing file and a TOML syntax error both name the file (and the line for TOML)."""
    with pytest.raises(InputError, match="cannot read"):
        load_dialplan(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[facility\nid = 1\n")
    with pytest.raises(InputError, match="line 1") as info:
        load_dialplan(bad)
    assert str(bad) in str(info.value)


def test_rate_over_the_reg1_cap_is_refused_quoting_the_cap() -> None:
    """REG-1: a jail of 250 people charging 10 cents is over the 9-cent cap (2024 order)."""
    pytest.importorskip("ledger.ratecaps")
    data = _mutate("tariff.rate_minor_per_min", 10)
    with pytest.raises(InputError, match=r"cap of 9") as info:
        parse_dialplan(data, "x.toml", as_of=dt.date(2026, 11, 27))
    assert info.value.where == "x.toml: tariff.rate_minor_per_min"
    assert parse_dialplan(county(), "x.toml", as_of=dt.date(2026, 11, 27)).rate_cap_minor_per_min == 9


def test_duplicate_facility_ids_are_refused(tmp_path: Path) -> None:
    """Two files with one facility id: the second is named."""
    text = COUNTY.read_text()
    (tmp_path / "a.toml").write_text(text)
    (tmp_path / "b.toml").write_text(text)
    with pytest.raises(InputError, match="already defined"):
        load_dialplans(tmp_path)


def test_weekend_limits_follow_the_facilitys_own_clock() -> None:
    """LIM-1: Saturday 03:00 UTC is still Friday evening in Chicago: the weekday limit applies."""
    from ivr.call.machine import is_weekend
    from ivr.engine import facility_time

    plan = load_dialplan(COUNTY)
    assert plan.facility.timezone == "America/Chicago"
    saturday_utc = dt.datetime(2026, 11, 28, 3, 0, tzinfo=dt.UTC)
    local = facility_time(plan, saturday_utc)
    assert local.isoformat().startswith("2026-11-27T21:00:00") and local.utcoffset() == dt.timedelta(hours=-6)
    assert not is_weekend(local.isoformat())
    assert is_weekend(facility_time(plan, saturday_utc + dt.timedelta(hours=12)).isoformat())
