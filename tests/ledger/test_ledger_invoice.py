"""Invoices (ACT-6): the lines add up to the balance change (property), and every format renders."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import invoice
from ledger.api import Authorized
from ledger.core import InvoiceData
from ledger.memory import InMemoryLedger
from ledger.testing import T0, TAXED, facts

NUMBER = "+15551230001"

operation = st.one_of(
    st.tuples(st.just("deposit"), st.integers(1, 5000)),
    st.tuples(st.just("call"), st.integers(0, 1500)),
    st.tuples(st.just("drop"), st.integers(1, 120)),
    st.tuples(st.just("refund"), st.integers(1, 3000)),
    st.tuples(st.just("wait"), st.integers(1, 40 * 86400)),
)


@settings(max_examples=80, deadline=None)
@given(st.lists(operation, min_size=1, max_size=30))
def test_invoice_lines_add_up_to_balance_change_every_month(ops: list[tuple[str, int]]) -> None:
    """ACT-6 property: for every month, the sum of the signed lines equals closing - opening."""
    ledger = InMemoryLedger()
    account = ledger.open_account("Ann", [NUMBER], T0)
    now = T0
    for index, (kind, value) in enumerate(ops):
        now += timedelta(minutes=1)
        if kind == "deposit":
            ledger.deposit(account, value, "card", now)
        elif kind in ("call", "drop"):
            auth = ledger.authorize(facts(f"c{index}", NUMBER, tariff=TAXED, at=now))
            if isinstance(auth, Authorized):
                now += timedelta(seconds=value)
                ledger.settle(f"c{index}", value, "DIS-MEDIA" if kind == "drop" else "DIS-HANGUP", kind == "drop", now)
        elif kind == "refund":
            if 0 < value <= ledger.balance(account).available_minor:
                ledger.refund(account, value, now)
        else:
            now += timedelta(seconds=value)
    month = T0.replace(day=1, hour=0, minute=0, second=0, microsecond=0)  # months start at midnight
    total = 0
    while month <= now:
        data = ledger.invoice_data(account, month.strftime("%Y-%m"))
        assert sum(line.amount_minor for line in data.lines) == data.closing_minor - data.opening_minor
        total += data.closing_minor - data.opening_minor
        month = (month + timedelta(days=32)).replace(day=1)
    assert total == ledger.balance(account).posted_minor


def _sample() -> InvoiceData:
    ledger = InMemoryLedger()
    account = ledger.open_account("Ann", [NUMBER], T0)
    ledger.deposit(account, 1000, "card", T0, card_last4="4242")
    ledger.authorize(facts("c1", NUMBER, tariff=TAXED))
    ledger.settle("c1", 125, "DIS-HANGUP", False, T0 + timedelta(minutes=3))
    ledger.authorize(facts("c2", NUMBER, tariff=TAXED, at=T0 + timedelta(minutes=5)))
    ledger.settle("c2", 20, "DIS-MEDIA", True, T0 + timedelta(minutes=6))
    return ledger.invoice_data(account, "2026-03")


def test_invoice_json_has_every_line_and_totals() -> None:
    """JSON: opening, closing, total and one object per line with signed minor amounts."""
    body = json.loads(invoice.render(_sample(), "json"))
    assert [line["kind"] for line in body["lines"]] == ["deposit", "call", "tax", "call", "tax", "credit"]
    assert body["total_minor"] == body["closing_minor"] - body["opening_minor"] == 1000 - 66


def test_invoice_csv_rows_match_lines() -> None:
    """CSV: a header and one row per line, amounts in cents and dollars."""
    rows = list(csv.DictReader(io.StringIO(invoice.render(_sample(), "csv").decode())))
    assert len(rows) == 6 and rows[1]["billed_minutes"] == "3" and rows[1]["amount"] == "-0.63"


def test_invoice_text_shows_balances() -> None:
    """Text: opening, each line, total and closing balance."""
    text = invoice.render(_sample(), "text").decode()
    assert "Opening balance" in text and "Closing balance          9.34" in text and "ACT-4" in text


def test_invoice_pdf_is_a_pdf() -> None:
    """PDF through matplotlib's PDF backend: a real PDF document."""
    body = invoice.render(_sample(), "pdf")
    assert body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF")
