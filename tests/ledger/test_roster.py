"""The caller roster (ivr.roster): PINs hashed, verify by PIN within a facility, statuses, CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from ivr.cli import main
from ivr.errors import InputError
from ivr.roster import Roster
from ledger import models


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'roster.db'}"


def test_pin_is_stored_hashed_and_verifies(url: str) -> None:
    """The PIN is never stored in clear; the right PIN in the right facility finds the caller."""
    roster = Roster(url)
    roster.add("I-1", "John Doe", "F1", "482913", "clips/i1.wav")
    engine = create_engine(url)
    with engine.connect() as conn:
        stored = conn.execute(select(models.Caller.__table__.c.pin_hash)).scalar_one()
    assert "482913" not in stored and stored.startswith("scrypt$")
    caller = roster.verify_pin("482913", "F1")
    assert caller is not None and caller.id == "I-1" and caller.name_clip_path == "clips/i1.wav"
    assert roster.verify_pin("482914", "F1") is None
    assert roster.verify_pin("482913", "F2") is None


def test_released_or_suspended_callers_do_not_verify(url: str) -> None:
    """Only active callers may call."""
    roster = Roster(url)
    roster.add("I-1", "John", "F1", "1234")
    for status in ("released", "suspended"):
        roster.set_status("I-1", status)
        assert roster.verify_pin("1234", "F1") is None
    roster.set_status("I-1", "active")
    assert roster.verify_pin("1234", "F1") is not None


def test_roster_refuses_bad_input(url: str) -> None:
    """Duplicate ids, duplicate PINs in a facility, short PINs and unknown statuses are refused."""
    roster = Roster(url)
    roster.add("I-1", "John", "F1", "1234")
    roster.add("I-2", "Jim", "F2", "1234")  # same PIN, other facility: fine
    bad_calls: list[Callable[[], object]] = [
        lambda: roster.add("I-1", "Again", "F1", "9999"),
        lambda: roster.add("I-3", "Jack", "F1", "1234"),
        lambda: roster.add("I-4", "Jo", "F1", "12"),
        lambda: roster.set_status("I-1", "gone"),
        lambda: roster.set_status("nobody", "active"),
    ]
    for bad in bad_calls:
        with pytest.raises(InputError):
            bad()
    assert [c.id for c in roster.list()] == ["I-1", "I-2"]
    assert [c.id for c in roster.list("F2")] == ["I-2"]


def test_roster_cli(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """ivr roster add/list/set-status; bad input exits 2 with a message."""
    assert main(["roster", "--db", url, "add", "I-9", "--name", "Al", "--facility", "F1", "--pin", "5555"]) == 0
    assert main(["roster", "--db", url, "add", "I-8", "--name", "Bo", "--facility", "F1", "--pin", "55"]) == 2
    assert main(["roster", "--db", url, "set-status", "I-9", "nope"]) == 2
    assert main(["roster", "--db", url, "set-status", "I-9", "suspended"]) == 0
    capsys.readouterr()
    assert main(["roster", "--db", url, "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(c["id"], c["status"]) for c in listed] == [("I-9", "suspended")]
