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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ivr", description="Collect-call acceptance engine")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
