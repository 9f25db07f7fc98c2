"""The ``ivr ledger`` contract (issue 5, item 6): dollars in, cents in --json, exit 2 on bad input
with a message on stderr and nothing written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from ivr.cli import main
from ledger import models

NUMBER = "+15551230001"


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("IVR_DB", url)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["ledger", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def counts(url: str) -> dict[str, int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        result = {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in models.metadata.sorted_tables
        }
    engine.dispose()
    return result


def open_account(capsys: pytest.CaptureFixture[str]) -> str:
    code, out, _ = run(capsys, "open", "--holder", "Ann Lee", "--number", NUMBER, "--state", "TX", "--json")
    assert code == 0
    account: str = json.loads(out)["account_id"]
    return account


def test_open_deposit_balance_json(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """open prints {"account_id"}; balance --json prints integer cents."""
    account = open_account(capsys)
    assert run(capsys, "deposit", account, "10.00", "--method", "card")[0] == 0
    code, out, _ = run(capsys, "balance", account, "--json")
    body = json.loads(out)
    assert code == 0
    assert {k: body[k] for k in ("account_id", "available_minor", "pending_minor", "posted_minor")} == {
        "account_id": account,
        "available_minor": 1000,
        "pending_minor": 0,
        "posted_minor": 1000,
    }


def test_db_option_overrides_env(tmp_path: Path, db: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--db URL wins over IVR_DB; a new SQLite file is migrated on first use."""
    other = f"sqlite:///{tmp_path / 'other.db'}"
    code, out, _ = run(capsys, "--db", other, "open", "--holder", "Bo", "--number", NUMBER, "--json")
    assert code == 0 and counts(other)["accounts"] == 1 and json.loads(out)["account_id"].startswith("acct-")
    assert not (tmp_path / "cli.db").exists()


BAD_INPUTS = [
    ("unknown account", ["deposit", "acct-nope", "10.00", "--method", "card"]),
    ("negative amount", ["deposit", "{account}", "-5.00", "--method", "card"]),
    ("non-numeric amount", ["deposit", "{account}", "ten", "--method", "card"]),
    ("sub-cent amount", ["deposit", "{account}", "1.005", "--method", "cash"]),
    ("malformed number", ["open", "--holder", "Bo", "--number", "555-1234"]),
    ("number on another account", ["open", "--holder", "Bo", "--number", NUMBER]),
    ("malformed number to add", ["add-number", "{account}", "12345"]),
    ("refund above available", ["refund", "{account}", "20.01"]),
    ("refund negative", ["refund", "{account}", "-1"]),
    ("unknown account balance", ["balance", "acct-nope"]),
    ("bad month", ["invoice", "{account}", "--month", "2026-13"]),
    ("unblock nothing", ["unblock", "+15559990000"]),
    ("lift new-number without date", ["lift", NUMBER, "--kind", "new-number"]),
]


@pytest.mark.parametrize(("name", "argv"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_exits_2_and_writes_nothing(
    name: str, argv: list[str], db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad input: a clear message on stderr, exit code 2, no row written."""
    account = open_account(capsys)
    run(capsys, "deposit", account, "20.00", "--method", "cash")
    run(capsys, "restrict", NUMBER, "--kind", "new-number")
    before = counts(db)
    code, out, err = run(capsys, *[a.format(account=account) for a in argv])
    assert code == 2 and out == ""
    assert err.startswith("ivr: error: ") and len(err.strip()) > len("ivr: error: ")
    assert counts(db) == before


def test_refund_calls_block_invoice_expire(db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The other commands answer in JSON with the documented keys."""
    account = open_account(capsys)
    run(capsys, "deposit", account, "10.00", "--method", "card", "--card-last4", "4242")
    code, out, _ = run(capsys, "refund", account, "2.50", "--json")
    assert code == 0 and json.loads(out)["refunded_minor"] == 250 and json.loads(out)["method"] == "card"
    code, out, _ = run(capsys, "calls", account, "--json")
    assert code == 0 and json.loads(out)["calls"] == []
    code, out, _ = run(capsys, "block", "+15559990000", "--facility", "F1", "--reason", "asked", "--json")
    assert code == 0 and json.loads(out)["kind"] == "BLK-PARTY"
    assert run(capsys, "unblock", "+15559990000", "--facility", "F1")[0] == 0
    code, out, _ = run(capsys, "invoice", account, "--month", datetime.now(UTC).strftime("%Y-%m"), "--format", "json")
    assert code == 0 and json.loads(out)["closing_minor"] == 750
    pdf = tmp_path / "i.pdf"
    assert run(capsys, "invoice", account, "--month", "2026-01", "--format", "pdf", "--out", str(pdf))[0] == 0
    assert pdf.read_bytes().startswith(b"%PDF")
    code, out, _ = run(capsys, "expire", "--now", "2099-01-01", "--json")
    assert code == 0 and json.loads(out)["expired"] == [{"account_id": account, "forfeited_minor": 750}]


def test_migrate_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """ivr ledger migrate brings a new database to the head revision."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    code, out, _ = run(capsys, "--db", url, "migrate", "--json")
    assert code == 0 and json.loads(out) == {"from": None, "to": "0001"}
    code, out, _ = run(capsys, "--db", url, "migrate", "--json")
    assert json.loads(out) == {"from": "0001", "to": "0001"}
