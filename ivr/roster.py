"""The caller roster: who may call, from which facility, identified by PIN (DOMAIN.md "Who is on a call").

Same database as the ledger (table ``callers``, created by the ledger's migrations). PINs are stored
hashed with scrypt and a per-caller salt (ledger.pins). To find a caller by PIN without running
scrypt against the whole facility, each row also keeps an 8-bit tag (HMAC-SHA256 of the PIN keyed
by the facility id): it narrows the search to about 1/256 of the callers and, being 8 bits, leaks
far less than the PIN itself. A PIN is unique among the active callers of a facility.

CLI: ``ivr roster [--db URL] add ID --name NAME --facility FACILITY --pin PIN [--clip PATH]``,
``list [--facility F] [--json]``, ``set-status ID active|released|suspended``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table, select, update
from sqlalchemy.exc import IntegrityError

from ivr.errors import InputError
from ledger import models
from ledger.pins import hash_pin, valid_pin, verify_pin_hash
from ledger.repo import DEFAULT_URL, make_engine, migrate

STATUSES: tuple[str, ...] = ("active", "released", "suspended")
CALLERS: Table = models.Caller.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Caller:
    id: str
    name: str
    facility_id: str
    name_clip_path: str | None
    status: str
    created_at: datetime


def pin_tag(pin: str, facility_id: str) -> str:
    """Two hex digits: a coarse bucket for the PIN lookup (see the module docstring)."""
    return hmac.new(facility_id.encode(), pin.encode(), hashlib.sha256).hexdigest()[:2]


def _caller(row: Any) -> Caller:
    return Caller(row.id, row.name, row.facility_id, row.name_clip_path, row.status, row.created_at)


class Roster:
    """``Roster("sqlite:///ivr.db")``: callers in the ledger's database (migrated on first use)."""

    def __init__(self, url_or_engine: str | Engine = DEFAULT_URL) -> None:
        self.engine = make_engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
        migrate(self.engine)

    def add(
        self,
        caller_id: str,
        name: str,
        facility_id: str,
        pin: str,
        name_clip_path: str | None = None,
        at: datetime | None = None,
    ) -> Caller:
        if not caller_id.strip() or not name.strip() or not facility_id.strip():
            raise InputError("caller id, name and facility must not be empty")
        if not valid_pin(pin):
            raise InputError("PIN must be 4 to 12 digits")
        created = at or datetime.now(UTC)
        with self.engine.begin() as conn:
            if conn.execute(select(CALLERS.c.id).where(CALLERS.c.id == caller_id)).first():
                raise InputError(f"caller {caller_id!r} is already on the roster")
            if self._match(conn, pin, facility_id) is not None:
                raise InputError(f"that PIN is already used by an active caller of {facility_id}")
            try:
                conn.execute(
                    CALLERS.insert(),
                    {
                        "id": caller_id,
                        "name": name.strip(),
                        "facility_id": facility_id,
                        "pin_hash": hash_pin(pin),
                        "pin_tag": pin_tag(pin, facility_id),
                        "name_clip_path": name_clip_path,
                        "status": "active",
                        "created_at": created,
                    },
                )
            except IntegrityError:
                raise InputError(f"caller {caller_id!r} is already on the roster") from None
        return Caller(caller_id, name.strip(), facility_id, name_clip_path, "active", created)

    def get(self, caller_id: str) -> Caller | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(CALLERS).where(CALLERS.c.id == caller_id)).first()
        return None if row is None else _caller(row)

    @staticmethod
    def _match(conn: Any, pin: str, facility_id: str) -> Caller | None:
        stmt = select(CALLERS).where(
            CALLERS.c.facility_id == facility_id,
            CALLERS.c.pin_tag == pin_tag(pin, facility_id),
            CALLERS.c.status == "active",
        )
        for row in conn.execute(stmt):
            if verify_pin_hash(pin, row.pin_hash):
                return _caller(row)
        return None

    def verify_pin(self, pin: str, facility_id: str) -> Caller | None:
        """The active caller of this facility with this PIN, or None (unknown, released, suspended)."""
        if not valid_pin(pin):
            return None
        with self.engine.connect() as conn:
            return self._match(conn, pin, facility_id)

    def list(self, facility_id: str | None = None) -> list[Caller]:
        stmt = select(CALLERS).order_by(CALLERS.c.facility_id, CALLERS.c.id)
        if facility_id is not None:
            stmt = stmt.where(CALLERS.c.facility_id == facility_id)
        with self.engine.connect() as conn:
            return [_caller(row) for row in conn.execute(stmt)]

    def set_status(self, caller_id: str, status: str) -> Caller:
        if status not in STATUSES:
            raise InputError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        with self.engine.begin() as conn:
            done = conn.execute(update(CALLERS).where(CALLERS.c.id == caller_id).values(status=status))
            if done.rowcount != 1:
                raise InputError(f"unknown caller {caller_id!r}")
        caller = self.get(caller_id)
        assert caller is not None
        return caller


# ------------------------------------------------------------------------------------------ CLI


def _roster(args: argparse.Namespace) -> Roster:
    return Roster(str(getattr(args, "db", None) or os.environ.get("IVR_DB") or DEFAULT_URL))


def _as_dict(caller: Caller) -> dict[str, Any]:
    return {
        "id": caller.id,
        "name": caller.name,
        "facility_id": caller.facility_id,
        "name_clip_path": caller.name_clip_path,
        "status": caller.status,
        "created_at": caller.created_at.isoformat(),
    }


def _cmd_add(args: argparse.Namespace) -> int:
    if not valid_pin(args.pin):
        raise InputError("PIN must be 4 to 12 digits")
    caller = _roster(args).add(args.id, args.name, args.facility, args.pin, args.clip)
    print(json.dumps(_as_dict(caller)) if getattr(args, "json", False) else f"added {caller.id}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    callers = _roster(args).list(args.facility)
    if getattr(args, "json", False):
        print(json.dumps([_as_dict(c) for c in callers]))
    else:
        for c in callers:
            print(f"{c.id:<16} {c.facility_id:<16} {c.status:<10} {c.name}")
    return 0


def _cmd_set_status(args: argparse.Namespace) -> int:
    if args.status not in STATUSES:
        raise InputError(f"status must be one of {', '.join(STATUSES)}, not {args.status!r}")
    caller = _roster(args).set_status(args.id, args.status)
    print(json.dumps(_as_dict(caller)) if getattr(args, "json", False) else f"{caller.id} is {caller.status}")
    return 0


def register(subparsers: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help="database URL (default sqlite:///ivr.db, env IVR_DB)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    roster = subparsers.add_parser("roster", parents=[common], help="callers: add, list, set-status")
    sub = roster.add_subparsers(dest="roster_command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("add", parents=[common], help="add a caller")
    p.add_argument("id")
    p.add_argument("--name", required=True)
    p.add_argument("--facility", required=True)
    p.add_argument("--pin", required=True)
    p.add_argument("--clip", help="enrolled name recording (WAV path)")
    p.set_defaults(handler=_cmd_add)
    p = sub.add_parser("list", parents=[common], help="list callers")
    p.add_argument("--facility")
    p.set_defaults(handler=_cmd_list)
    p = sub.add_parser("set-status", parents=[common], help="active, released or suspended")
    p.add_argument("id")
    p.add_argument("status")
    p.set_defaults(handler=_cmd_set_status)
