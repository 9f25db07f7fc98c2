"""The call record (DESIGN.md section 3, 7): what happened, why, with the evidence and the cost.

Built only from the machine's inputs (signalling times relative to the INVITE, the dialplan and the
events), so the same inputs give a byte-identical record (``dumps``). The cost is recomputed from
the record's own billed seconds and tariff with ivr.rating (ACT-2: reproducible rating).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ivr.rating import CostLine, rate_call

if TYPE_CHECKING:
    from ivr.call.machine import CallMachine

RECORD_VERSION = 1


def _cost(m: CallMachine) -> dict[str, Any]:
    tariff = m.plan.tariff
    billable = m.outcome is not None and m.outcome.billable and m.hold_id is not None
    breakdown = rate_call(m.billed_seconds if billable else 0, tariff)
    lines: list[CostLine] = list(breakdown.lines)
    if m.credited and breakdown.total_minor:
        lines.append(CostLine("credit", "ACT-4 system drop in the first 60 s", -breakdown.total_minor))
    return {
        "currency": tariff.currency,
        "rate_minor_per_min": tariff.rate_minor_per_min,
        "increment": tariff.increment.value,
        "billed_seconds": breakdown.billed_seconds,
        "billed_minutes": breakdown.billed_minutes,
        "lines": [{"kind": ln.kind, "name": ln.name, "amount_minor": ln.amount_minor} for ln in lines],
        "total_minor": sum(ln.amount_minor for ln in lines),
        "taxes": [{"name": t.name, "rate_bp": t.rate_bp} for t in tariff.taxes],
        "fees": [{"name": f.name, "amount_minor": f.amount_minor} for f in tariff.fees],
    }


def build_record(m: CallMachine) -> dict[str, Any]:
    assert m.outcome is not None and m.reason is not None
    times = dict(m._times)
    return {
        "record_version": RECORD_VERSION,
        "call_id": m.call_id,
        "sip_call_id": m.sip_call_id,
        "facility_id": m.plan.facility.id,
        "facility_name": m.plan.facility.name,
        "caller_id": m.caller_id,
        "caller_name": m.caller_name,
        "called_number": m.called_number,
        "call_type": m.call_type,
        "account_kind": m.account_kind,
        "language": m.language,
        "name_clip": m.name_clip,
        "started_at": m.started_at,
        "times_ms": times,
        "duration_ms": times.get("ended", 0),
        "outcome": m.outcome.value,
        "billable": m.outcome.billable,
        "reason": m.reason,
        "decision": m.decision,
        "acceptance": {
            "attempts_used": m.attempt,
            "attempts_allowed": m.plan.acceptance.attempts,
            "accepted_key": m.accepted_key,
            "keys": list(m._keys),
        },
        "limit_seconds": m.limit_s,
        "allowed_seconds": m.allowed_seconds,
        "funds_limited": m._funds_limited,
        "hold_id": m.hold_id,
        "hold_minor": m.hold_minor,
        "talk_ms": m.talk_ms,
        "billed_seconds": m.billed_seconds if m.outcome.billable else 0,
        "system_drop": m.system_drop,
        "credited": m.credited,
        "cost": _cost(m),
        "errors": list(m.errors),
        "detections": list(m._detections),
        "warnings": list(m._warnings),
        "recorded": m.call_type != "privileged",
        "dialplan": {"source": m.plan.source, "facility_id": m.plan.facility.id},
        "timeline": list(m._timeline),
    }


def dumps(record: dict[str, Any]) -> str:
    """The canonical JSON text of a record: sorted keys, fixed separators, so equal inputs give equal bytes."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def dumps_pretty(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False)
