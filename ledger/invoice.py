"""Invoices (ACT-6): one account, one month, as text, CSV, JSON or PDF.

Every call (date, number, facility, billed minutes, rate, charge), every tax, fee and credit on its
own line, deposits, refunds and expiry; the signed lines add up to the closing minus the opening
balance (checked here and by a property test). The PDF is drawn with matplotlib's PDF backend
(already a dependency), monospace, 50 lines per page.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from ledger.core import InvoiceData, InvoiceLine
from ledger.rules import format_minor

FORMATS: tuple[str, ...] = ("text", "csv", "json", "pdf")
CSV_FIELDS: tuple[str, ...] = (
    "date",
    "kind",
    "description",
    "call_id",
    "number",
    "facility_id",
    "billed_minutes",
    "billed_seconds",
    "rate_minor_per_min",
    "amount_minor",
    "amount",
)


def total_minor(data: InvoiceData) -> int:
    return sum(line.amount_minor for line in data.lines)


def _line_dict(line: InvoiceLine) -> dict[str, Any]:
    return {
        "date": line.at.isoformat(),
        "kind": line.kind,
        "description": line.description,
        "call_id": line.call_id,
        "number": line.number,
        "facility_id": line.facility_id,
        "billed_minutes": line.billed_minutes,
        "billed_seconds": line.billed_seconds,
        "rate_minor_per_min": line.rate_minor_per_min,
        "amount_minor": line.amount_minor,
        "amount": format_minor(line.amount_minor),
    }


def to_json(data: InvoiceData) -> str:
    body = {
        "account_id": data.account_id,
        "holder": data.holder,
        "month": data.month,
        "opening_minor": data.opening_minor,
        "closing_minor": data.closing_minor,
        "total_minor": total_minor(data),
        "lines": [_line_dict(line) for line in data.lines],
    }
    return json.dumps(body, indent=2, sort_keys=True)


def to_csv(data: InvoiceData) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for line in data.lines:
        writer.writerow({k: ("" if v is None else v) for k, v in _line_dict(line).items()})
    return out.getvalue()


def to_text_lines(data: InvoiceData) -> list[str]:
    head = f"{'date':<16} {'kind':<8} {'description':<44} {'min':>4} {'rate':>6} {'amount':>10}"
    rows = [
        f"Invoice {data.month}  account {data.account_id}  holder {data.holder}",
        f"Opening balance {format_minor(data.opening_minor):>10}",
        "",
        head,
        "-" * len(head),
    ]
    for line in data.lines:
        minutes = "" if line.billed_minutes is None else str(line.billed_minutes)
        rate = "" if line.rate_minor_per_min is None else format_minor(line.rate_minor_per_min)
        rows.append(
            f"{line.at.strftime('%Y-%m-%d %H:%M'):<16} {line.kind:<8} {line.description[:44]:<44} "
            f"{minutes:>4} {rate:>6} {format_minor(line.amount_minor):>10}"
        )
    rows += [
        "-" * len(head),
        f"Total of the lines {format_minor(total_minor(data)):>10}",
        f"Closing balance    {format_minor(data.closing_minor):>10}",
    ]
    return rows


def to_text(data: InvoiceData) -> str:
    return "\n".join(to_text_lines(data)) + "\n"


def to_pdf(data: InvoiceData) -> bytes:
    """A plain PDF: the text invoice on A4-ish pages (matplotlib PdfPages, no pyplot global state)."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    lines = to_text_lines(data)
    per_page = 50
    out = io.BytesIO()
    with PdfPages(out, metadata={"Title": f"Invoice {data.account_id} {data.month}"}) as pdf:
        for start in range(0, max(len(lines), 1), per_page):
            fig = Figure(figsize=(8.27, 11.69))
            fig.text(
                0.04,
                0.97,
                "\n".join(lines[start : start + per_page]),
                family="monospace",
                fontsize=6.5,
                va="top",
                ha="left",
            )
            pdf.savefig(fig)
    return out.getvalue()


def render(data: InvoiceData, fmt: str) -> bytes:
    if total_minor(data) != data.closing_minor - data.opening_minor:
        raise AssertionError(
            f"invoice lines add up to {total_minor(data)} but the balance moved by "
            f"{data.closing_minor - data.opening_minor}"
        )
    if fmt == "text":
        return to_text(data).encode()
    if fmt == "csv":
        return to_csv(data).encode()
    if fmt == "json":
        return (to_json(data) + "\n").encode()
    if fmt == "pdf":
        return to_pdf(data)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")
