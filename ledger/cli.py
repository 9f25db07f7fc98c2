"""``ivr ledger``: a stable command-line contract (issue 5, DESIGN.md section 7).

Amounts in dollars (``10.00``); every command takes ``--json``; bad input prints a message on stderr
and exits 2 having written nothing (arguments are validated before the database is opened, and the
ledger validates before it writes). ``--db URL`` (default ``sqlite:///ivr.db``, or env ``IVR_DB``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ivr.errors import InputError
from ledger import rules
from ledger.api import BLK_CARRIER, BLK_FACILITY, BLK_NEWNUM, BLK_PARTY
from ledger.core import Balance, parse_when
from ledger.repo import DEFAULT_URL

KINDS = {"party": BLK_PARTY, "facility": BLK_FACILITY}
RESTRICTIONS = {"carrier": BLK_CARRIER, "new-number": BLK_NEWNUM}


def db_url(args: argparse.Namespace) -> str:
    return str(getattr(args, "db", None) or os.environ.get("IVR_DB") or DEFAULT_URL)


def _service(args: argparse.Namespace) -> Any:
    from ledger.service import LedgerService  # imported late: argument errors never touch the database

    return LedgerService(db_url(args))


def _now(args: argparse.Namespace) -> datetime:
    text = getattr(args, "now", None)
    return parse_when(text) if text else datetime.now(UTC)


def _amount(text: str) -> int:
    try:
        return rules.parse_dollars(text)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _number(text: str) -> str:
    if not rules.is_e164(text):
        raise InputError(f"not an E.164 number: {text!r} (write +15551234567)")
    return text


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    if getattr(args, "json", False):
        print(json.dumps(payload, sort_keys=True, default=str))
    else:
        print(text)


def _balance_payload(b: Balance) -> dict[str, Any]:
    return {
        "account_id": b.account_id,
        "kind": b.kind,
        "holder": b.holder,
        "status": b.status,
        "available_minor": b.available_minor,
        "pending_minor": b.pending_minor,
        "posted_minor": b.posted_minor,
        "expires_at": b.expires_at.isoformat() if b.expires_at else None,
        "numbers": list(b.numbers),
    }


# ---------------------------------------------------------------------------------------- handlers


def cmd_migrate(args: argparse.Namespace) -> int:
    from ledger.repo import make_engine, migrate

    engine = make_engine(db_url(args))
    before, after = migrate(engine)
    _emit(args, {"from": before, "to": after}, f"schema at {after} (was {before})")
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    numbers = [_number(n) for n in args.number]
    limit = _amount(args.spend_limit) if args.spend_limit else None
    account_id = _service(args).open_account(
        args.holder,
        numbers,
        _now(args),
        state=args.state,
        pin=args.pin,
        number_type=args.type,
        spend_limit_minor=limit,
        spend_period=args.spend_period,
    )
    _emit(args, {"account_id": account_id}, account_id)
    return 0


def cmd_add_number(args: argparse.Namespace) -> int:
    number = _number(args.number)
    _service(args).add_number(args.account, number, _now(args), args.type)
    _emit(args, {"account_id": args.account, "number": number}, f"{number} added to {args.account}")
    return 0


def cmd_deposit(args: argparse.Namespace) -> int:
    amount = _amount(args.amount)
    svc = _service(args)
    svc.deposit(args.account, amount, args.method, _now(args), card_last4=args.card_last4)
    b = svc.balance(args.account)
    _emit(
        args,
        {**_balance_payload(b), "deposited_minor": amount},
        f"deposited {rules.format_minor(amount)}; available {rules.format_minor(b.available_minor)}",
    )
    return 0


def cmd_balance(args: argparse.Namespace) -> int:
    b = _service(args).balance(args.account)
    expiry = b.expires_at.date().isoformat() if b.expires_at else "never"
    text = (
        f"{b.account_id} ({b.holder}, {b.status})\n"
        f"  available {rules.format_minor(b.available_minor):>10}\n"
        f"  pending   {rules.format_minor(b.pending_minor):>10}\n"
        f"  posted    {rules.format_minor(b.posted_minor):>10}\n"
        f"  expires   {expiry}\n"
        f"  numbers   {' '.join(b.numbers)}"
    )
    _emit(args, _balance_payload(b), text)
    return 0


def cmd_calls(args: argparse.Namespace) -> int:
    calls = _service(args).calls(args.account)
    rows = [
        {
            "call_id": c.call_id,
            "authorized_at": c.authorized_at.isoformat(),
            "number": c.called_number,
            "facility_id": c.facility_id,
            "status": c.status,
            "billed_seconds": c.billed_seconds,
            "rate_minor_per_min": c.rate_minor_per_min,
            "hold_minor": c.hold_minor,
            "posted_minor": c.posted_minor,
            "credited_minor": c.credited_minor,
            "end_reason": c.end_reason,
            "label": c.label,
        }
        for c in calls
    ]
    text = "\n".join(
        f"{r['authorized_at'][:16]} {r['call_id']:<24} {r['number']:<16} {r['facility_id']:<12} "
        f"{r['status']:<8} {r['billed_seconds']:>6}s {rules.format_minor(int(r['posted_minor'])):>8} "
        f"{r['end_reason']}"
        for r in rows
    )
    _emit(args, {"account_id": args.account, "calls": rows}, text or "no calls")
    return 0


def cmd_refund(args: argparse.Namespace) -> int:
    amount = _amount(args.amount) if args.amount is not None else None
    refund = _service(args).refund(args.account, amount, _now(args))
    payload = {
        "account_id": args.account,
        "refunded_minor": refund.amount_minor,
        "method": refund.method,
        "destination": refund.destination,
        "status": refund.status,
    }
    _emit(
        args,
        payload,
        f"refund {rules.format_minor(refund.amount_minor)} to {refund.destination} ({refund.status})",
    )
    return 0


def cmd_block(args: argparse.Namespace) -> int:
    number = _number(args.number)
    if not args.reason.strip():
        raise InputError("--reason must not be empty")
    kind = KINDS[args.kind]
    if kind == BLK_FACILITY and args.facility is None:
        raise InputError("a facility block needs --facility ID")
    added = _service(args).add_block(number, args.facility, kind, args.reason, args.who, _now(args))
    scope = args.facility or "all facilities"
    _emit(
        args,
        {"number": number, "kind": kind, "facility_id": args.facility, "changed": added},
        f"{number} {'blocked' if added else 'was already blocked'} ({kind}, {scope})",
    )
    return 0


def cmd_unblock(args: argparse.Namespace) -> int:
    number = _number(args.number)
    kind = KINDS[args.kind]
    lifted = _service(args).lift_block(number, args.facility, kind, args.reason, args.who, _now(args))
    if not lifted:
        raise InputError(f"no {kind} block on {number} for {args.facility or 'all facilities'}")
    _emit(
        args,
        {"number": number, "kind": kind, "facility_id": args.facility, "changed": True},
        f"{number} unblocked",
    )
    return 0


def cmd_restrict(args: argparse.Namespace) -> int:
    number = _number(args.number)
    kind = RESTRICTIONS[args.kind]
    added = _service(args).restrict(number, kind, args.reason, args.who, _now(args))
    _emit(args, {"number": number, "kind": kind, "changed": added}, f"{number} restricted ({kind})")
    return 0


def cmd_lift(args: argparse.Namespace) -> int:
    number = _number(args.number)
    kind = RESTRICTIONS[args.kind]
    since = parse_when(args.since).date() if args.since else None
    lifted = _service(args).lift(number, kind, args.who, _now(args), since)
    if not lifted:
        raise InputError(f"no {kind} restriction on {number}")
    _emit(args, {"number": number, "kind": kind, "changed": True}, f"{number}: {kind} lifted")
    return 0


def cmd_invoice(args: argparse.Namespace) -> int:
    from ledger.invoice import render

    try:
        rules.month_bounds(args.month)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    data = _service(args).invoice_data(args.account, args.month)
    body = render(data, args.format)
    if args.out or args.format == "pdf":
        path = Path(args.out or f"invoice-{args.account}-{args.month}.pdf")
        path.write_bytes(body)
        _emit(args, {"account_id": args.account, "month": args.month, "path": str(path)}, f"wrote {path}")
    else:
        sys.stdout.write(body.decode())
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    report = _service(args).expire(_now(args))
    notices = [
        {"account_id": n.account_id, "days_before": n.days_before, "expires_at": n.expires_at.isoformat()}
        for n in report.notices
    ]
    expired = [{"account_id": a, "forfeited_minor": m} for a, m in report.expired]
    lines = [
        f"notice: {n['account_id']} expires {n['expires_at'][:10]} ({n['days_before']} days)"
        for n in notices
        if n["days_before"]
    ]
    lines += [f"expired: {e['account_id']} forfeited {rules.format_minor(int(e['forfeited_minor']))}" for e in expired]
    _emit(args, {"notices": notices, "expired": expired}, "\n".join(lines) or "nothing to do")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    voided = _service(args).sweep(_now(args))
    _emit(args, {"voided": voided}, "\n".join(f"voided hold of {c}" for c in voided) or "no expired holds")
    return 0


def cmd_collect_export(args: argparse.Namespace) -> int:
    try:
        rules.month_bounds(args.month)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    rows = _service(args).collect_export(args.month)
    if getattr(args, "json", False):
        print(json.dumps({"month": args.month, "rows": rows}, sort_keys=True))
        return 0
    out = io.StringIO()
    fields = ["billing_number", "call_id", "date", "facility_id", "billed_seconds", "billed_minutes",
              "rate_minor_per_min", "usage_minor", "fees_minor", "taxes_minor", "total_minor"]  # fmt: skip
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    if args.out:
        Path(args.out).write_text(out.getvalue())
    else:
        sys.stdout.write(out.getvalue())
    return 0


def cmd_collect_limit(args: argparse.Namespace) -> int:
    number = _number(args.number)
    amount = _amount(args.amount)
    account_id = _service(args).set_collect_limit(number, amount, _now(args))
    _emit(args, {"account_id": account_id, "credit_limit_minor": amount}, f"{account_id} limit {args.amount}")
    return 0


def cmd_spend_limit(args: argparse.Namespace) -> int:
    amount = None if args.amount == "none" else _amount(args.amount)
    _service(args).set_spend_limit(args.account, amount, args.period, _now(args))
    payload = {"account_id": args.account, "spend_limit_minor": amount, "period": args.period}
    _emit(args, payload, f"{args.account}: spending limit {args.amount} per {args.period}")
    return 0


# ---------------------------------------------------------------------------------------- parser


def _common() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the subcommand is not reset by the subcommand's default.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help="database URL (default sqlite:///ivr.db, env IVR_DB)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    common.add_argument("--now", default=argparse.SUPPRESS, help="the time to act at (YYYY-MM-DD or ISO), UTC")
    return common


def register(subparsers: Any) -> None:
    common = _common()
    ledger = subparsers.add_parser("ledger", parents=[common], help="prepaid and collect accounts, money, blocks")
    sub = ledger.add_subparsers(dest="ledger_command", metavar="COMMAND")
    sub.required = True

    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help_text)
        parser.set_defaults(handler=handler)
        return parser

    add("migrate", cmd_migrate, "create or upgrade the schema (Alembic)")

    p = add("open", cmd_open, "open a prepaid account")
    p.add_argument("--holder", required=True)
    p.add_argument("--number", action="append", required=True, help="E.164; repeat for several")
    p.add_argument("--state", help="two-letter state (expiry rules, ACT-5)")
    p.add_argument("--pin", help="account PIN for customer service (stored hashed)")
    p.add_argument("--type", choices=rules.NUMBER_TYPES, default="landline")
    p.add_argument("--spend-limit", help="spending limit in dollars per period (BLK-SPEND)")
    p.add_argument("--spend-period", choices=rules.SPEND_PERIODS, default="month")

    p = add("add-number", cmd_add_number, "add a number to an account")
    p.add_argument("account")
    p.add_argument("number")
    p.add_argument("--type", choices=rules.NUMBER_TYPES, default="landline")

    p = add("deposit", cmd_deposit, "add money")
    p.add_argument("account")
    p.add_argument("amount", help="dollars, e.g. 10.00")
    p.add_argument("--method", choices=rules.DEPOSIT_METHODS, required=True)
    p.add_argument("--card-last4")

    p = add("balance", cmd_balance, "available, pending and posted balance")
    p.add_argument("account")

    p = add("calls", cmd_calls, "the account's calls")
    p.add_argument("account")

    p = add("refund", cmd_refund, "refund all or part of the available balance (ACT-5)")
    p.add_argument("account")
    p.add_argument("amount", nargs="?", help="dollars; default: everything available")

    p = add("block", cmd_block, "block a number (BLK-PARTY or BLK-FACILITY)")
    p.add_argument("number")
    p.add_argument("--facility", help="only for this facility (default: all)")
    p.add_argument("--reason", required=True)
    p.add_argument("--kind", choices=sorted(KINDS), default="party")
    p.add_argument("--who", default="customer-service")

    p = add("unblock", cmd_unblock, "lift a block")
    p.add_argument("number")
    p.add_argument("--facility")
    p.add_argument("--kind", choices=sorted(KINDS), default="party")
    p.add_argument("--reason", default="lifted on request")
    p.add_argument("--who", default="customer-service")

    p = add("restrict", cmd_restrict, "carrier (BLK-CARRIER) or new-number (BLK-NEWNUM) restriction")
    p.add_argument("number")
    p.add_argument("--kind", choices=sorted(RESTRICTIONS), required=True)
    p.add_argument("--reason", default="restriction placed")
    p.add_argument("--who", default="customer-service")

    p = add("lift", cmd_lift, "lift a restriction")
    p.add_argument("number")
    p.add_argument("--kind", choices=sorted(RESTRICTIONS), required=True)
    p.add_argument("--since", help="new-number: the date the holder got the number (YYYY-MM-DD)")
    p.add_argument("--who", default="customer-service")

    p = add("invoice", cmd_invoice, "monthly invoice (ACT-6)")
    p.add_argument("account")
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--format", choices=("text", "csv", "json", "pdf"), default="text")
    p.add_argument("--out", help="write to this file (pdf default: invoice-ACCOUNT-MONTH.pdf)")

    add("expire", cmd_expire, "expiry notices (30 and 7 days) and expiry (ACT-5)")
    add("sweep", cmd_sweep, "void holds past their timeout (ACT-3)")

    p = add("collect-export", cmd_collect_export, "collect charges of a month for the clearinghouse (CSV)")
    p.add_argument("--month", required=True)
    p.add_argument("--out")

    p = add("collect-limit", cmd_collect_limit, "set a collect number's monthly credit limit")
    p.add_argument("number")
    p.add_argument("amount")

    p = add("spend-limit", cmd_spend_limit, "set an account's spending limit (BLK-SPEND)")
    p.add_argument("account")
    p.add_argument("amount", help="dollars, or 'none'")
    p.add_argument("--period", choices=rules.SPEND_PERIODS, default="month")
