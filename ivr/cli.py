"""The ``ivr`` command (DESIGN.md section 7).

Each subcommand lives in the module that owns it and exposes ``register(subparsers)``; the
handler it sets returns the exit code: 0 ok, 1 failure at run time, 2 bad input.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence

from ivr.errors import InputError
from ivr.log import configure

# Modules that add subcommands. Each has ``register(subparsers: argparse._SubParsersAction) -> None``.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "ivr.replay",
    "ivr.serve",
    "sim.demo",
    "ivr.prompts.cli",
    "ivr.detect.cli",
    "ledger.cli", "ivr.roster",
    "sim.cli",
)

# Commands whose module is known up front: ``ivr replay ...`` then imports only ivr.replay, not
# every module above (the engine, SQLAlchemy, Alembic, rich: ~1.3 s of CPU before any work).
COMMAND_MODULES: dict[str, str] = {"replay": "ivr.replay", "detect": "ivr.detect.cli"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with a ``command`` of :data:`COMMAND_MODULES`, only that command's."""
    parser = argparse.ArgumentParser(prog="ivr", description="Collect-call acceptance engine")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    names = (COMMAND_MODULES[command],) if command in COMMAND_MODULES else SUBCOMMAND_MODULES
    for name in names:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(words[0] if words else None)
    args = parser.parse_args(words)
    # Terminal commands log warnings only unless asked (IVR_LOG_LEVEL); ``serve`` configures JSON itself.
    configure(level=os.environ.get("IVR_LOG_LEVEL", "WARNING"))
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except InputError as exc:
        print(f"ivr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
