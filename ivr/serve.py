"""``ivr serve --config FILE``: the live engine, with flags that override the file.

The config file is TOML::

    listen = "127.0.0.1:5060"          # where facility gateways send INVITEs
    trunk = "127.0.0.1:5070"           # the SIP trunk towards the families
    db = "sqlite:///ivr.db"            # the ledger and roster (PostgreSQL: postgresql+psycopg://...)
    recordings = "recordings"          # one folder per call
    dialplans = "dialplans"            # a folder of facility dialplans (or a list of files)
    rtp_host = "127.0.0.1"
    rtp_ports = [20000, 29999]         # optional
    [[gateways]]                       # INVITEs from anywhere else get 403
    address = "127.0.0.1"
    facility = "example-county-jail"
    [trunk_auth]                       # optional digest credentials (401/407) and registration
    username = "engine"
    password = "secret"
    register = true

Logs are JSON lines on stderr, bound to the call id. SIGTERM (or Ctrl-C) ends every call cleanly —
settled, free if not yet accepted — before the process exits.
"""

from __future__ import annotations

import argparse
import asyncio
import tomllib
from pathlib import Path
from typing import Any

from ivr.engine import Engine, EngineConfig, Gateway
from ivr.errors import InputError
from ivr.log import configure


def parse_addr(value: str, where: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(f"must be HOST:PORT, got {value!r}", where=where)
    return host, int(port)


def config_from(args: argparse.Namespace) -> EngineConfig:
    data: dict[str, Any] = {}
    source = "command line"
    if args.config:
        source = args.config
        try:
            data = tomllib.loads(Path(args.config).read_text(encoding="utf-8"))
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror}", where=args.config) from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"not valid TOML: {exc}", where=args.config) from None
    known = {"listen", "trunk", "trunk_host", "db", "recordings", "dialplans", "rtp_host", "rtp_ports", "gateways",
             "trunk_auth"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError("unknown key (misspelt?)", where=f"{source}: {unknown[0]}")
    listen = parse_addr(args.listen or data.get("listen", "127.0.0.1:5060"), f"{source}: listen")
    trunk = parse_addr(args.trunk or data.get("trunk", "127.0.0.1:5070"), f"{source}: trunk")
    dialplan_files: list[Path] = [Path(p) for p in (args.dialplan or [])]
    dialplans_dir: Path | None = None
    raw_plans = data.get("dialplans")
    if not dialplan_files and raw_plans is not None:
        if isinstance(raw_plans, str):
            dialplans_dir = Path(raw_plans)
        elif isinstance(raw_plans, list) and all(isinstance(p, str) for p in raw_plans):
            dialplan_files = [Path(p) for p in raw_plans]
        else:
            raise InputError("must be a folder or a list of files", where=f"{source}: dialplans")
    if not dialplan_files and dialplans_dir is None:
        dialplans_dir = Path("dialplans")
    gateways: list[Gateway] = []
    for i, g in enumerate(data.get("gateways", [])):
        if not isinstance(g, dict) or not isinstance(g.get("address"), str) or not isinstance(g.get("facility"), str):
            raise InputError("each gateway needs address and facility", where=f"{source}: gateways[{i}]")
        gateways.append(Gateway(g["address"], g["facility"]))
    auth = data.get("trunk_auth", {})
    rtp_ports = data.get("rtp_ports")
    port_range = None
    if rtp_ports is not None:
        if (not isinstance(rtp_ports, list) or len(rtp_ports) != 2 or not all(isinstance(p, int) for p in rtp_ports)
                or not 1024 <= rtp_ports[0] < rtp_ports[1] < 65536):
            raise InputError("must be [low, high] ports above 1023", where=f"{source}: rtp_ports")
        port_range = (rtp_ports[0], rtp_ports[1])
    config = EngineConfig(
        listen=listen,
        gateways=tuple(gateways),
        trunk=trunk,
        trunk_host=data.get("trunk_host"),
        trunk_username=auth.get("username"),
        trunk_password=auth.get("password"),
        register=bool(auth.get("register", False)),
        dialplans=tuple(dialplan_files),
        dialplans_dir=dialplans_dir,
        db_url=args.db or data.get("db") or "sqlite:///ivr.db",
        recordings_dir=Path(args.recordings or data.get("recordings", "recordings")),
        rtp_host=data.get("rtp_host", listen[0]),
        rtp_port_range=port_range,
        manage_gc=True,  # `ivr serve` is the engine's own process
    )
    return config


def _gateways_for(config: EngineConfig, engine: Engine, flags: list[str]) -> EngineConfig:
    """``--gateway HOST`` flags: each gateway serves the only facility loaded (or the first)."""
    if not flags:
        return config
    if not engine.plans:
        raise InputError("no dialplan loaded", where="--dialplan")
    facility = sorted(engine.plans)[0]
    from dataclasses import replace

    return replace(config, gateways=tuple(Gateway(h, facility) for h in flags))


async def serve(config: EngineConfig, gateway_flags: list[str]) -> int:
    engine = Engine(config)
    engine.config = _gateways_for(config, engine, gateway_flags)
    if not engine.config.gateways:
        raise InputError("no facility gateway configured: nobody could call", where="--gateway / [[gateways]]")
    for g in engine.config.gateways:
        if g.facility_id not in engine.plans:
            raise InputError(f"facility {g.facility_id!r} has no dialplan (loaded: {sorted(engine.plans)})",
                             where="gateways")
    await engine.start()
    done = asyncio.Event()
    engine.install_signal_handlers(done)
    await done.wait()
    await engine.stop()
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    configure(json=True, level=args.log_level)
    config = config_from(args)
    return asyncio.run(serve(config, args.gateway or []))


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the live engine (B2BUA) on UDP")
    p.add_argument("--config", help="TOML config file (see ivr/serve.py)")
    p.add_argument("--listen", help="SIP listen address HOST:PORT (default 127.0.0.1:5060)")
    p.add_argument("--gateway", action="append", help="facility gateway source address (repeatable)")
    p.add_argument("--trunk", help="SIP trunk HOST:PORT (default 127.0.0.1:5070)")
    p.add_argument("--dialplan", action="append", help="dialplan file (repeatable; default: dialplans/)")
    p.add_argument("--db", help="ledger URL (default sqlite:///ivr.db)")
    p.add_argument("--recordings", help="folder for call records and recordings (default recordings/)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(handler=cmd_serve)
