"""``ivr demo``: the whole system in one command, on loopback, with nothing to set up (issue 6).

Starts the engine with a fresh SQLite ledger (funded accounts, a roster), the simulated trunk and
simulated phones; places the twenty calls of ``scenarios/demo.toml`` five at a time with a live
table; then prints the call records' summary, the ledger's balances, one invoice, and where the
recordings and a timeline picture are. Everything it writes goes to ``demo-output/``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from ivr.errors import InputError
from sim.runner import CallResult, RunOptions, run_scenario
from sim.scenarios import CallSpec, Scenario, load_scenario
from sim.trunk import SimTrunk

ROOT = Path(__file__).resolve().parent.parent
DEMO_SCENARIO = ROOT / "scenarios" / "demo.toml"


class Board:
    """The live table: one row per call, updated as calls start and end."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.started: dict[int, float] = {}
        self.results: dict[int, CallResult] = {}
        self.t0 = time.monotonic()

    def start(self, spec: CallSpec) -> None:
        self.started[spec.index] = time.monotonic()

    def done(self, result: CallResult, done: int, total: int) -> None:
        self.results[result.spec.index] = result

    def table(self) -> Table:
        elapsed = time.monotonic() - self.t0
        ok = sum(1 for r in self.results.values() if r.ok)
        table = Table(title=f"ivr demo: {len(self.results)}/{len(self.scenario.calls)} calls done, {ok} as expected, "
                            f"{elapsed:4.0f} s", title_justify="left")
        for col in ("#", "caller", "number", "the family...", "state", "expected", "engine decided", "billed", ""):
            table.add_column(col, no_wrap=True)
        for spec in self.scenario.calls:
            result = self.results.get(spec.index)
            if result is not None:
                record = result.record or {}
                state = "done"
                actual = f"{result.actual_outcome} {result.actual_reason or ''}"
                billed = f"{record.get('billed_seconds', 0)} s  {record.get('cost', {}).get('total_minor', 0)}c"
                mark = "[green]ok[/green]" if result.ok else "[red]MISMATCH[/red]"
            elif spec.index in self.started:
                state = f"[yellow]in call {time.monotonic() - self.started[spec.index]:3.0f} s[/yellow]"
                actual, billed, mark = "", "", ""
            else:
                state, actual, billed, mark = "[dim]waiting[/dim]", "", "", ""
            table.add_row(str(spec.index), spec.caller, spec.number, spec.behaviour.replace("_", " "), state,
                          f"{spec.expect.outcome} {spec.expect.reason}", actual, billed, mark)
        return table


async def _run(scenario: Scenario, workdir: Path, console: Console) -> tuple[list[CallResult], Path, str]:
    from sim.cli import local_engine

    board = Board(scenario)
    trunk = await SimTrunk.start(("127.0.0.1", 0))
    try:
        async with local_engine(scenario, trunk, workdir) as (addr, recordings):
            console.print(f"engine on {addr[0]}:{addr[1]} (SQLite ledger {workdir / 'ledger.db'}), "
                          f"simulated trunk on {trunk.host_port}; {len(scenario.calls)} calls, "
                          f"{scenario.parallel} at a time")
            opts = RunOptions(engine=addr, parallel=scenario.parallel, trunk=trunk, recordings=recordings,
                              on_start=board.start, on_done=board.done)
            if console.is_terminal:
                with Live(board.table(), console=console, refresh_per_second=4) as live:
                    task = asyncio.ensure_future(run_scenario(scenario, opts))
                    while not task.done():
                        live.update(board.table())
                        await asyncio.sleep(0.25)
                    results = await task
                    live.update(board.table())
            else:
                def progress(result: CallResult, done: int, total: int) -> None:
                    board.done(result, done, total)
                    mark = "ok" if result.ok else "MISMATCH"
                    console.print(f"[{done:>2}/{total}] {mark:<8} #{result.spec.index:<2} {result.spec.behaviour:<22} "
                                  f"-> {result.actual_outcome} {result.actual_reason}")

                opts.on_done = progress
                results = await run_scenario(scenario, opts)
            return results, recordings, f"sqlite:///{workdir / 'ledger.db'}"
    finally:
        trunk.close()


def _summary(results: list[CallResult], console: Console) -> None:
    table = Table(title="call records", title_justify="left")
    for col in ("#", "number", "outcome", "reason", "decided by", "evidence", "billed", "charge"):
        table.add_column(col)
    for r in results:
        record = r.record or {}
        decision = record.get("decision") or {}
        evidence = ", ".join(f"{k}={v}" for k, v in sorted((decision.get("evidence") or {}).items())
                             if not isinstance(v, dict | list))[:60]
        table.add_row(str(r.spec.index), r.spec.number, str(record.get("outcome")), str(record.get("reason")),
                      str(decision.get("source", "")), evidence, f"{record.get('billed_seconds', 0)} s",
                      f"${record.get('cost', {}).get('total_minor', 0) / 100:.2f}")
    console.print(table)


def _ledger(scenario: Scenario, db_url: str, console: Console) -> str | None:
    from ledger.invoice import to_text
    from ledger.service import LedgerService

    service = LedgerService(db_url)
    first_account: str | None = None
    try:
        table = Table(title="the ledger after the demo", title_justify="left")
        for col in ("account", "holder", "numbers", "deposited", "available", "pending", "calls"):
            table.add_column(col)
        for account in scenario.accounts:
            account_id = service.calls_owner(account.numbers[0])
            if account_id is None:
                continue
            first_account = first_account or account_id
            balance = service.balance(account_id)
            calls = service.calls(account_id)
            table.add_row(account_id, account.holder, str(len(account.numbers)),
                          f"${account.deposit_minor / 100:.2f}", f"${balance.available_minor / 100:.2f}",
                          f"${balance.pending_minor / 100:.2f}", str(len(calls)))
        console.print(table)
        invariants = service.check_invariants()
        console.print("ledger invariants: " + ("all hold" if not invariants else "; ".join(invariants)))
        if first_account is not None:
            month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
            console.print(f"\ninvoice of {first_account} for {month} (ivr ledger invoice {first_account} "
                          f"--month {month} --db {db_url}):")
            console.print(to_text(service.invoice_data(first_account, month)), markup=False, highlight=False)
    finally:
        service.close()
    return first_account


def _timeline(results: list[CallResult], workdir: Path, console: Console) -> Path | None:
    from ivr.timeline import plot_timeline

    preferred = ("DIS-3WAY", "DIS-DIGIT", "DIS-SILENCE", "DIS-HOLD", "DIS-LIMIT")
    records = [(r.record, r.record_path) for r in results if r.record and r.record_path]
    for reason in preferred:
        for record, path in records:
            if record.get("reason") == reason and path is not None:
                out = plot_timeline(record, workdir / "timeline.png", folder=Path(path))  # the call's folder
                console.print(f"timeline of call {record['call_id']} ({reason}): {out}")
                return out
    return None


def cmd_demo(args: argparse.Namespace) -> int:
    console = Console(width=args.width) if args.width else Console()
    scenario = load_scenario(Path(args.scenario))
    workdir = Path(args.output)
    if workdir.exists():
        if not (workdir / ".ivr-demo").exists():
            raise InputError("exists and was not made by ivr demo: choose another --output", where=str(workdir))
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / ".ivr-demo").write_text("made by ivr demo; removed by the next run\n")
    t0 = time.monotonic()
    results, recordings, db_url = asyncio.run(_run(scenario, workdir, console))
    console.print()
    _summary(results, console)
    _ledger(scenario, db_url, console)
    picture = _timeline(results, workdir, console)
    bad = [r for r in results if not r.ok]
    (workdir / "results.json").write_text(json.dumps([r.as_dict() for r in results], indent=2, default=str))
    console.print(f"\nrecordings and call records: {recordings}/<call id>/ (record.json, events.jsonl, "
                  f"facility.wav, called.wav); replay one with: ivr replay {recordings}/<call id>")
    if picture is not None:
        console.print(f"timeline picture: {picture}")
    console.print(f"{len(results)} calls in {time.monotonic() - t0:.0f} s: {len(results) - len(bad)} as expected"
                  + (f", {len(bad)} NOT: " + ", ".join(f"#{r.spec.index}" for r in bad) if bad else ""))
    return 1 if bad else 0


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="the whole system on loopback: engine, trunk, phones, ledger; 20 calls")
    p.add_argument("--scenario", default=str(DEMO_SCENARIO), help="scenario file (default: scenarios/demo.toml)")
    p.add_argument("--output", default="demo-output", help="folder for the ledger, recordings and pictures")
    p.add_argument("--width", type=int, default=None, help="terminal width for the tables")
    p.set_defaults(handler=cmd_demo)
