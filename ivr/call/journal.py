"""``events.jsonl``: the journal of a call, which is also a *flow* that ``ivr replay`` runs.

Format (one JSON object per line; blank lines and lines starting with ``#`` or ``//`` are comments):

1. A header: ``{"flow": 1, "name": ..., "description": ..., "dialplan": <facility id | path.toml |
   embedded table>, "dialplan_overrides": {...}, "expect": {...}}``.
   ``expect`` may hold ``outcome``, ``reason``, ``billed_seconds``, ``total_minor``, ``warnings``
   (a count), ``emits`` (command names that must appear, in this order) and ``never_emits``.
2. Then inputs ``{"t_ms": 1200, "in": "KeyPressed", "key": "1", "leg": "called", "source": "rfc4733"}``
   in time order (``t_ms`` since the facility's INVITE). ``TimerFired`` lines are allowed.
3. A journal written by the engine also holds the machine's outputs (``{"t_ms": .., "out": ..}``),
   state changes and notes; replay feeds the inputs again and compares the outputs.

Deadlines are handled at their own time whenever the next input arrives after them (see
``CallMachine._fire_due``), so a live call and its replay take the same decisions at the same times.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ivr.call.machine import CallMachine

FLOW_VERSION = 1


def journal_header(machine: CallMachine, *, name: str | None = None, embed_dialplan: bool = True) -> dict[str, Any]:
    plan = machine.plan
    header: dict[str, Any] = {
        "flow": FLOW_VERSION,
        "name": name or machine.call_id,
        "description": f"recorded call {machine.call_id} at {plan.facility.id}",
        "dialplan": dict(plan.raw) if embed_dialplan else plan.facility.id,
        "dialplan_source": plan.source,
    }
    if machine.record is not None:
        header["expect"] = {
            "outcome": machine.record["outcome"],
            "reason": machine.record["reason"],
            "billed_seconds": machine.record["billed_seconds"],
            "total_minor": machine.record["cost"]["total_minor"],
        }
    return header


def journal_lines(machine: CallMachine, *, name: str | None = None) -> Iterator[str]:
    """The whole journal of a machine (header first), one JSON text per line."""
    yield json.dumps(journal_header(machine, name=name), sort_keys=True, separators=(",", ":"))
    for entry in machine._timeline:
        yield json.dumps(entry, sort_keys=True, separators=(",", ":"))
