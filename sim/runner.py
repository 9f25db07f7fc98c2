"""Run a scenario against an engine: trunk, phones, progress, expected vs actual (issue 6).

:func:`run_scenario` starts the simulated trunk, then for each call a :class:`~sim.phones.CalledPhone`
routed at the trunk under the called number and a :class:`~sim.phones.FacilityCaller` that INVITEs
the engine, ``parallel`` calls at a time. The *actual* outcome of a call is read from the engine's
call record (``<recordings>/*/record.json``, DESIGN.md section 7) when the recordings folder is
known; otherwise it is inferred from what the phones observed (:func:`infer_outcome`: the outcome
always, the reason when the phones can tell).

Records are matched to calls by the facility leg's SIP Call-ID appearing anywhere in record.json
(``call_id`` or another field), else by caller id and called number in start order.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.log import get_logger
from sim.phones import Action, CalledPhone, FacilityCaller, Observation
from sim.scenarios import CallSpec, Scenario
from sim.trunk import SimTrunk, Tap

log = get_logger("sim.runner")

Addr = tuple[str, int]
RECORD_WAIT_S = 8.0  # after both legs ended, how long the engine may take to write record.json
END_GRACE_S = 15.0  # after the facility leg ended, how long the called leg may take to end


@dataclass(slots=True)
class CallResult:
    spec: CallSpec
    facility: Observation
    called: Observation | None
    record: dict[str, Any] | None = None
    record_path: str | None = None
    actual_outcome: str | None = None
    actual_reason: str | None = None
    source: str = "phones"  # "record" | "phones"
    inferred_outcome: str | None = None  # what the phones alone tell (infer_outcome), kept beside the record
    inferred_reason: str | None = None
    error: str | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        if self.error is not None or self.actual_outcome != self.spec.expect.outcome:
            return False
        return (self.actual_reason is None and self.source == "phones") or self.actual_reason == self.spec.expect.reason

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.spec.index,
            "caller": self.spec.caller,
            "number": self.spec.number,
            "behaviour": self.spec.behaviour,
            "expected": {"outcome": self.spec.expect.outcome, "reason": self.spec.expect.reason},
            "actual": {"outcome": self.actual_outcome, "reason": self.actual_reason, "source": self.source},
            "inferred": {"outcome": self.inferred_outcome, "reason": self.inferred_reason},
            "ok": self.ok,
            "error": self.error,
            "record": self.record_path,
            "duration_s": round(self.duration_s, 3),
            "facility": self.facility.as_dict(),
            "called": self.called.as_dict() if self.called else None,
        }


@dataclass(slots=True)
class RunOptions:
    engine: Addr
    parallel: int
    recordings: Path | None = None
    trunk: SimTrunk | None = None  # an already started trunk (the engine was configured with it)
    trunk_addr: Addr = ("127.0.0.1", 0)
    tap: Tap | None = None
    only: frozenset[int] | None = None
    on_start: Callable[[CallSpec], None] | None = None
    on_done: Callable[[CallResult, int, int], None] | None = None
    seed: int = 1
    _used_records: set[str] = field(default_factory=set)


# ------------------------------------------------------------------ outcome from the phones


def infer_outcome(spec: CallSpec, facility: Observation, called: Observation | None) -> tuple[str, str | None]:
    """The outcome (and the reason when it shows) as seen from the two phones, without the record.

    Rules: the engine refusing the facility INVITE -> failed; never reaching the called party ->
    restricted (reason unknown); 486 -> busy; CANCEL -> no_answer; a party hanging up before its key
    -> abandoned; key 2 / 6 -> refused / blocked; no key -> no_input; after key 1, whoever hangs up
    first decides: a phone -> completed (DIS-HANGUP), the engine -> the last thing the called party
    did before the engine's BYE (hold/refer -> DIS-HOLD, flash/call waiting -> DIS-3WAY, keys ->
    DIS-DIGIT, silence -> DIS-SILENCE, static -> DIS-NOISE, RTP stopped -> DIS-MEDIA), else
    limited (DIS-LIMIT or DIS-FUNDS: the phones cannot tell which).
    """
    if facility.final_status is not None and facility.final_status >= 300:
        return "failed", f"SIP-{facility.final_status}"
    if called is None or called.invited_at is None:
        return "restricted", None
    if called.final_status == 486:
        return "busy", "ACC-4"
    if called.cancelled_at is not None or (called.final_status is None and called.answered_at is None):
        return "no_answer", "ACC-4"
    keys = [k for _, k, _ in called.keys_sent]
    first_key_at = called.keys_sent[0][0] if called.keys_sent else None
    engine_ended_called = called.ended_by == "peer"
    if first_key_at is None:
        if called.ended_by == "us" or facility.ended_by == "us":
            return "abandoned", "DIS-HANGUP"
        return "no_input", "ACC-3"
    if called.bye_sent_at is not None and called.bye_sent_at < first_key_at:
        return "abandoned", "DIS-HANGUP"
    first = keys[0]
    if first == "2":
        return "refused", "ACC-2"
    if first == "6":
        return "blocked", "ACC-6"
    if first != "1":
        return "no_input", "ACC-3"
    if not engine_ended_called:
        return "completed", "DIS-HANGUP"
    if facility.ended_by == "us":  # the caller's BYE ended its leg: the caller hung up first
        return "completed", "DIS-HANGUP"
    end = called.ended_at or 0.0
    before = [a for at, a, _ in called.actions if at <= end and a != Action.HANGUP.value]
    stray = [k for at, k, _ in called.keys_sent[1:] if at <= end]
    last = before[-1] if before else None
    mapping = {
        Action.HOLD.value: ("disconnected", "DIS-HOLD"),
        Action.REFER.value: ("disconnected", "DIS-HOLD"),
        Action.FLASH.value: ("disconnected", "DIS-3WAY"),
        Action.CALL_WAITING.value: ("disconnected", "DIS-3WAY"),
        Action.KEYS.value: ("disconnected", "DIS-DIGIT"),
        Action.SILENCE.value: ("disconnected", "DIS-SILENCE"),
        Action.STATIC.value: ("disconnected", "DIS-NOISE"),
        Action.STOP_RTP.value: ("dropped", "DIS-MEDIA"),
    }
    if last in mapping:
        return mapping[last]
    if stray:
        return "disconnected", "DIS-DIGIT"
    return "limited", None


# ------------------------------------------------------------------ records


def _scan_records(recordings: Path) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    for path in sorted(recordings.glob("*/record.json")):
        try:
            out.append((path, path.read_text(encoding="utf-8")))
        except OSError:
            continue
    return out


def find_record(
    recordings: Path, facility_call_id: str | None, spec: CallSpec, used: set[str], since_wall: float
) -> tuple[Path, dict[str, Any]] | None:
    """The engine's record of this call (see the module docstring)."""
    candidates = _scan_records(recordings)
    if facility_call_id:
        for path, text in candidates:
            if str(path) not in used and facility_call_id in text:
                try:
                    return path, json.loads(text)
                except json.JSONDecodeError:
                    return None  # being written: try again
    for path, text in candidates:
        if str(path) in used:
            continue
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:
            continue
        if rec.get("called_number") == spec.number and rec.get("caller_id") in (spec.caller, None):
            try:
                if path.stat().st_mtime + 1 < since_wall:
                    continue  # from an earlier run
            except OSError:
                continue
            return path, rec
    return None


# ------------------------------------------------------------------ running


async def _run_call(
    spec: CallSpec, scenario: Scenario, opts: RunOptions, trunk: SimTrunk, lock: asyncio.Lock
) -> CallResult:
    # One call per called number at a time: the trunk routes by number, and records are matched
    # by number when the engine does not name the facility leg's SIP Call-ID in them.
    async with lock:
        return await _run_call_locked(spec, scenario, opts, trunk)


async def _run_call_locked(spec: CallSpec, scenario: Scenario, opts: RunOptions, trunk: SimTrunk) -> CallResult:
    loop = asyncio.get_running_loop()
    started = loop.time()
    started_wall = time.time()
    called: CalledPhone | None = None
    facility: FacilityCaller | None = None
    result: CallResult | None = None
    try:
        if spec.called is not None:
            seed = opts.seed * 1000 + spec.index
            called = await CalledPhone.open(spec.number, spec.called, seed=seed, tap=opts.tap)
            trunk.route(spec.number, called.sip_address)
        facility = await FacilityCaller.open(
            spec.number, spec.facility, opts.engine, seed=opts.seed * 7919 + spec.index, tap=opts.tap
        )
        if called is not None:
            called.partner = facility
        facility.call()
        try:
            await asyncio.wait_for(facility.done.wait(), scenario.timeout_s)
        except TimeoutError:
            facility.hangup()
            raise TimeoutError(f"call still up after {scenario.timeout_s:g} s") from None
        if called is not None and called.invited.is_set():
            try:
                await asyncio.wait_for(called.done.wait(), END_GRACE_S)
            except TimeoutError:
                called.hangup()
                raise TimeoutError("the called leg was not ended with the facility leg") from None
        result = CallResult(spec, facility.obs, called.obs if called else None)
    except (TimeoutError, OSError) as exc:
        result = CallResult(
            spec,
            facility.obs if facility else Observation("facility", spec.number),
            called.obs if called else None,
            error=str(exc),
        )
    finally:
        if called is not None:
            trunk.unroute(spec.number)
            called.close()
        if facility is not None:
            facility.close()
    assert result is not None
    result.duration_s = loop.time() - started
    outcome, reason = infer_outcome(spec, result.facility, result.called)
    result.actual_outcome, result.actual_reason = outcome, reason
    result.inferred_outcome, result.inferred_reason = outcome, reason
    if opts.recordings is not None and result.error is None:
        deadline = loop.time() + RECORD_WAIT_S
        found = None
        while found is None and loop.time() < deadline:
            found = find_record(opts.recordings, result.facility.call_id, spec, opts._used_records, started_wall)
            if found is None:
                await asyncio.sleep(0.2)
        if found is None:
            result.error = f"no record.json for this call in {opts.recordings}"
        else:
            path, rec = found
            opts._used_records.add(str(path))
            result.record, result.record_path = rec, str(path.parent)
            result.actual_outcome, result.actual_reason = rec.get("outcome"), rec.get("reason")
            result.source = "record"
    return result


async def run_scenario(scenario: Scenario, opts: RunOptions) -> list[CallResult]:
    """Place every call of ``scenario`` (``opts.parallel`` at a time); results in call order."""
    trunk = opts.trunk or await SimTrunk.start(opts.trunk_addr, tap=opts.tap)
    own_trunk = opts.trunk is None
    calls = [c for c in scenario.calls if opts.only is None or c.index in opts.only]
    sem = asyncio.Semaphore(max(1, opts.parallel))
    locks: dict[str, asyncio.Lock] = {}
    results: dict[int, CallResult] = {}
    done = 0

    async def one(spec: CallSpec, delay: float) -> None:
        nonlocal done
        await asyncio.sleep(delay)
        async with sem:
            if opts.on_start is not None:
                opts.on_start(spec)
            lock = locks.setdefault(spec.number, asyncio.Lock())
            res = await _run_call(spec, scenario, opts, trunk, lock)
            results[spec.index] = res
            done += 1
            if opts.on_done is not None:
                opts.on_done(res, done, len(calls))

    try:
        # starts are spread by start_gap_s; a call then waits for a free slot in any case
        await _staggered(calls, one, scenario.start_gap_s, opts.parallel)
    finally:
        if own_trunk:
            trunk.close()
    return [results[c.index] for c in calls]


async def _staggered(calls: list[CallSpec], one: Any, gap_s: float, parallel: int) -> None:
    """Start at most ``parallel`` calls, each at least ``gap_s`` after the previous start."""
    tasks = [asyncio.create_task(one(c, min(i, parallel) * gap_s)) for i, c in enumerate(calls)]
    await asyncio.gather(*tasks)
