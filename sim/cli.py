"""``ivr sim``: the SIP simulator's commands (issue 6).

``ivr sim run SCENARIO [--engine ADDR] [--parallel N] [--recordings DIR] [--db URL] [--pcap FILE]``
    Places the scenario's calls and prints expected vs actual outcome and reason; exit 1 on any
    mismatch, 2 on a bad scenario. Without ``--engine`` it starts the engine in-process
    (``ivr.engine``) with a temporary SQLite ledger seeded from the scenario (roster, funded
    accounts, blocks) and the scenario's dialplan. With ``--engine`` the engine runs elsewhere: its
    trunk must point at ``--trunk`` (default 127.0.0.1:5070, where the simulated trunk listens);
    ``--recordings`` lets the table use its call records, ``--db`` seeds its database first.

``ivr sim trunk [--listen 127.0.0.1:5070] [--route NUMBER=BEHAVIOUR ...]``
    Runs the simulated trunk and registrar alone, so a softphone (baresip, linphone) can register
    under a number and take the engine's calls; ``--route`` adds simulated phones.

``ivr sim check SCENARIO``: validates a scenario and prints its calls (exit 2 on errors).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ivr.errors import InputError
from sim.pcap import PcapWriter
from sim.runner import CallResult, RunOptions, run_scenario
from sim.scenarios import BEHAVIOURS, Scenario, load_scenario
from sim.trunk import SimTrunk, is_loopback

Addr = tuple[str, int]


def parse_addr(text: str, default_port: int = 5060, *, what: str = "address") -> Addr:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = text, str(default_port)
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(f"bad {what} {text!r}: expected HOST:PORT")
    if not is_loopback(host):
        raise InputError(f"the simulator works on loopback only; {what} {text!r} is not a loopback address")
    return host, int(port)


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------ seeding


def seed_database(scenario: Scenario, db_url: str) -> None:
    """Roster callers, funded prepaid accounts and called-party blocks from the scenario."""
    from ivr.dialplan import load_dialplan
    from ivr.roster import Roster
    from ledger.service import LedgerService

    facility_id = load_dialplan(scenario.dialplan).facility.id if scenario.dialplan else "sim-county-jail"
    now = datetime.now(UTC)
    roster = Roster(db_url)
    for c in scenario.callers:
        clip = None
        if c.name_clip:
            from sim.media import AUDIO_DIR

            candidate = Path(c.name_clip)
            clip = str(candidate if candidate.suffix else AUDIO_DIR / f"{c.name_clip}.wav")
        if roster.get(c.id) is None:
            roster.add(c.id, c.name, facility_id, c.pin, name_clip_path=clip, at=now)
        if c.status != "active":
            roster.set_status(c.id, c.status)
    ledger = LedgerService(db_url)
    try:
        for a in scenario.accounts:
            account = ledger.open_account(a.holder, list(a.numbers), now, state=a.state)
            if a.deposit_minor > 0:
                ledger.deposit(account, a.deposit_minor, "card", now, card_last4="4242")
        for number in scenario.blocked_numbers:
            ledger.block(number, None, "the called party asked (scenario)", "sim", now)
    finally:
        ledger.close()


# ------------------------------------------------------------------ the engine in-process


@contextlib.asynccontextmanager
async def local_engine(scenario: Scenario, trunk: SimTrunk, workdir: Path) -> AsyncIterator[tuple[Addr, Path]]:
    """Start ``ivr.engine.Engine`` on loopback with a fresh SQLite ledger; yields (address, recordings)."""
    try:
        from ivr import engine as engine_mod
    except ImportError as exc:
        raise InputError(
            "ivr.engine is not available in this installation: start `ivr serve` and pass --engine HOST:PORT"
        ) from exc
    if scenario.dialplan is None:
        raise InputError(f"{scenario.path}: [scenario].dialplan is needed to start an engine")
    db_url = f"sqlite:///{workdir / 'ledger.db'}"
    seed_database(scenario, db_url)
    recordings = workdir / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    from ivr.dialplan import load_dialplan

    facility_id = load_dialplan(scenario.dialplan).facility.id
    listen = ("127.0.0.1", free_udp_port())
    config = engine_mod.EngineConfig(
        listen=listen,
        gateways=(engine_mod.Gateway("127.0.0.1", facility_id),),
        trunk=trunk.address,
        dialplans=(scenario.dialplan,),
        db_url=db_url,
        recordings_dir=recordings,
    )
    engine = engine_mod.Engine(config)
    await engine.start()
    try:
        yield listen, recordings
    finally:
        await engine.stop()


# ------------------------------------------------------------------ output


def _progress(result: CallResult, done: int, total: int) -> None:
    mark = "ok " if result.ok else "BAD"
    actual = f"{result.actual_outcome} {result.actual_reason or '?'}"
    expected = f"{result.spec.expect.outcome} {result.spec.expect.reason}"
    extra = f"  ({result.error})" if result.error else ""
    print(
        f"[{done:>3}/{total}] {mark} #{result.spec.index:<3} {result.spec.behaviour:<22} {result.spec.number}"
        f"  expected {expected:<26} actual {actual}{extra}  {result.duration_s:5.1f} s",
        flush=True,
    )


def print_table(results: list[CallResult], scenario: Scenario) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{scenario.name}: expected vs actual", show_lines=False)
    for col in ("#", "caller", "number", "behaviour", "expected", "actual", "from", ""):
        table.add_column(col)
    for r in results:
        actual = f"{r.actual_outcome or '-'} {r.actual_reason or '?'}"
        table.add_row(
            str(r.spec.index),
            r.spec.caller,
            r.spec.number,
            r.spec.behaviour,
            f"{r.spec.expect.outcome} {r.spec.expect.reason}",
            actual if r.error is None else f"{actual} ({r.error})",
            r.source,
            "[green]ok[/green]" if r.ok else "[red]MISMATCH[/red]",
        )
    console = Console(width=160)
    console.print(table)
    by_outcome = Counter(r.actual_outcome for r in results)
    bad = sum(1 for r in results if not r.ok)
    console.print(
        f"{len(results)} calls, {len(results) - bad} as expected, {bad} mismatched; outcomes: "
        + ", ".join(f"{k}={v}" for k, v in sorted(by_outcome.items(), key=lambda kv: str(kv[0])))
    )


# ------------------------------------------------------------------ commands


def _only(text: str | None) -> frozenset[int] | None:
    if not text:
        return None
    out: set[int] = set()
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if not lo.strip().isdigit() or (sep and not hi.strip().isdigit()):
            raise InputError(f"--only takes call numbers like 1,5,10-20, not {text!r}")
        out.update(range(int(lo), int(hi) + 1) if sep else {int(lo)})
    return frozenset(out)


async def _run(args: argparse.Namespace, scenario: Scenario) -> list[CallResult]:
    tap = PcapWriter(args.pcap) if args.pcap else None
    trunk_addr = parse_addr(args.trunk, 5070, what="--trunk") if args.trunk else ("127.0.0.1", 0)
    if args.engine and not args.trunk:
        trunk_addr = ("127.0.0.1", 5070)  # where a separately started engine's trunk points
    trunk = await SimTrunk.start(trunk_addr, tap=tap)
    print(f"simulated trunk at {trunk.host_port}; {len(scenario.calls)} calls, {args.parallel} at a time", flush=True)
    opts = RunOptions(
        engine=("127.0.0.1", 0),
        parallel=args.parallel,
        trunk=trunk,
        tap=tap,
        only=_only(args.only),
        on_done=_progress,
    )
    try:
        if args.engine:
            opts.engine = parse_addr(args.engine, what="--engine")
            opts.recordings = Path(args.recordings) if args.recordings else None
            if args.db:
                seed_database(scenario, args.db)
            return await run_scenario(scenario, opts)
        with tempfile.TemporaryDirectory(prefix="ivr-sim-") as tmp:
            workdir = Path(args.workdir) if args.workdir else Path(tmp)
            workdir.mkdir(parents=True, exist_ok=True)
            async with local_engine(scenario, trunk, workdir) as (addr, recordings):
                opts.engine, opts.recordings = addr, recordings
                print(f"engine at {addr[0]}:{addr[1]}, recordings in {recordings}", flush=True)
                return await run_scenario(scenario, opts)
    finally:
        trunk.close()
        if tap is not None:
            tap.close()


def cmd_run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    if args.parallel is None:
        args.parallel = scenario.parallel
    if args.parallel < 1:
        raise InputError("--parallel must be at least 1")
    results = asyncio.run(_run(args, scenario))
    print_table(results, scenario)
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in results], indent=2), encoding="utf-8")
    return 0 if results and all(r.ok for r in results) else 1


def cmd_check(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    counts = Counter(c.behaviour for c in scenario.calls)
    print(
        f"{scenario.path}: {scenario.name}: {len(scenario.calls)} calls, {len(scenario.callers)} callers, "
        f"{len(scenario.accounts)} accounts, time scale {scenario.time_scale:g}"
    )
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {n:>4}  {name:<24} {BEHAVIOURS[name].description}")
    return 0


async def _serve_trunk(args: argparse.Namespace) -> None:
    from sim.phones import CalledPhone
    from sim.scenarios import _called, _Where

    addr = parse_addr(args.listen, 5070, what="--listen")
    credentials = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep:
            raise InputError("--auth takes USER:PASSWORD")
        credentials = {user: password}
    trunk = await SimTrunk.start(addr, credentials=credentials)
    tasks: list[asyncio.Task[None]] = []

    async def serve_number(number: str, behaviour: str) -> None:
        # one simulated phone per call: a fresh one is routed as soon as the last call ended
        called = _called(BEHAVIOURS[behaviour], {}, _Where(Path("--route"), number), 1.0)
        assert called is not None
        while True:
            phone = await CalledPhone.open(number, called)
            trunk.route(number, phone.sip_address)
            try:
                await phone.done.wait()
            finally:
                phone.close()

    for spec in args.route or []:
        number, sep, behaviour = spec.partition("=")
        if not sep or behaviour not in BEHAVIOURS or behaviour == "not_called":
            raise InputError(f"--route takes NUMBER=BEHAVIOUR (one of {', '.join(BEHAVIOURS)}), not {spec!r}")
        tasks.append(asyncio.create_task(serve_number(number, behaviour)))
    print(f"simulated trunk and registrar at sip:{trunk.host_port} (Ctrl-C to stop)", flush=True)
    try:
        while True:
            await asyncio.sleep(3600)
    finally:
        for task in tasks:
            task.cancel()
        trunk.close()


def cmd_trunk(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_serve_trunk(args))
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_baresip(args: argparse.Namespace) -> int:
    from sim.softphone import write_baresip_config

    trunk = parse_addr(args.trunk, 5070, what="--trunk")
    number = args.number
    if not (number.startswith("+") and number[1:].isdigit()):
        raise InputError(f"--number must be an E.164 number like +15125550201, not {number!r}")
    cfg = write_baresip_config(
        args.folder, number, trunk, auto_answer=args.auto_answer, live_audio=args.alsa, source_clip=args.clip
    )
    print(f"wrote {cfg.folder}/config and accounts (SIP on 127.0.0.1:{cfg.sip_port})")
    print(f"run:  baresip -f {cfg.folder}")
    print(
        f"it registers {number} at sip:{trunk[0]}:{trunk[1]}; when the engine calls {number}, "
        f"{'it answers by itself' if args.auto_answer else 'press a to answer'}, then type 1 to accept"
    )
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("sim", help="the SIP simulator: scenarios, simulated trunk and phones")
    sub = p.add_subparsers(dest="sim_command", metavar="SUBCOMMAND")
    sub.required = True

    run = sub.add_parser("run", help="place a scenario's calls and compare outcomes (exit 1 on mismatch)")
    run.add_argument("scenario", help="scenario file (TOML), e.g. scenarios/day-at-the-county-jail.toml")
    run.add_argument("--engine", metavar="HOST:PORT", help="a running engine (default: start one in-process)")
    run.add_argument("--parallel", type=int, default=None, metavar="N", help="calls at a time (default: scenario's)")
    run.add_argument(
        "--trunk",
        metavar="HOST:PORT",
        help="where the simulated trunk listens (default with --engine: 127.0.0.1:5070; otherwise any free port)",
    )
    run.add_argument("--recordings", metavar="DIR", help="with --engine: the engine's recordings folder")
    run.add_argument("--db", metavar="URL", help="with --engine: seed this database (roster, accounts, blocks)")
    run.add_argument("--workdir", metavar="DIR", help="keep the in-process engine's ledger and recordings here")
    run.add_argument("--pcap", metavar="FILE", help="write every SIP and RTP datagram the simulator saw")
    run.add_argument("--only", metavar="LIST", help="run only these calls, e.g. 1,5,10-20")
    run.add_argument("--json", metavar="FILE", help="write the results (and what each phone observed) as JSON")
    run.set_defaults(handler=cmd_run)

    check = sub.add_parser("check", help="validate a scenario file and summarise it")
    check.add_argument("scenario")
    check.set_defaults(handler=cmd_check)

    trunk = sub.add_parser("trunk", help="run the simulated trunk/registrar alone (softphones register here)")
    trunk.add_argument("--listen", default="127.0.0.1:5070", metavar="HOST:PORT")
    trunk.add_argument("--route", action="append", metavar="NUMBER=BEHAVIOUR", help="a simulated phone")
    trunk.add_argument("--auth", metavar="USER:PASSWORD", help="challenge REGISTER (401) and INVITE (407)")
    trunk.set_defaults(handler=cmd_trunk)

    bs = sub.add_parser("baresip", help="write a baresip config that registers a number at the simulated trunk")
    bs.add_argument("folder", help="config folder to write (then: baresip -f FOLDER)")
    bs.add_argument("--number", required=True, help="E.164 number to register, e.g. +15125550201")
    bs.add_argument("--trunk", default="127.0.0.1:5070", metavar="HOST:PORT")
    bs.add_argument("--auto-answer", action="store_true", help="answer incoming calls by itself")
    bs.add_argument("--alsa", action="store_true", help="use the sound card (headset) instead of WAV files")
    bs.add_argument("--clip", default="family-1", help="speech clip it plays when not using --alsa")
    bs.set_defaults(handler=cmd_baresip)
