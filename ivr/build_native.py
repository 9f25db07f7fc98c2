"""Compile the media path (:mod:`ivr.native`) with mypyc, in place.

    python3 -m ivr.build_native build     # install.sh runs this (needs gcc, the Python headers, mypy)
    python3 -m ivr.build_native status    # compiled or Python, and why
    python3 -m ivr.build_native clean     # remove the compiled modules

A failed build leaves nothing behind and the engine runs on the Python sources (exit 1 with the
reason); so does any later edit of a compiled module's source, until the next build.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ivr.native import GROUP, MANIFEST, MODULES, ROOT, compiled_files, digest, source_path, status, why_not_native


def clean() -> list[Path]:

    removed = compiled_files()
    for path in removed:
        path.unlink()
    if MANIFEST.exists():
        MANIFEST.unlink()
        removed.append(MANIFEST)
    return removed


def build() -> None:
    """Compile :data:`MODULES` in place with mypyc and record the sources they came from."""
    # Build-time only: setuptools and mypy (the dev extra).
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]
    from setuptools.command.build_ext import build_ext  # type: ignore[import-untyped]

    clean()
    paths = [str(source_path(m).relative_to(ROOT)) for m in MODULES]
    digests = {m: digest(source_path(m)) for m in MODULES}
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypyc names modules by their path relative to the working directory
    try:
        extensions = mypycify(paths, group_name=GROUP, opt_level="3")
        dist = Distribution({"name": "ivr-native", "ext_modules": extensions})
        command = build_ext(dist)
        command.inplace = True
        command.build_temp = str(ROOT / "build" / "native")
        command.ensure_finalized()
        command.run()
    finally:
        os.chdir(cwd)
    # Sources edited while compiling would make the record lie: hash before, check after.
    if any(digest(source_path(m)) != d for m, d in digests.items()):
        clean()
        raise RuntimeError("sources changed during the build; run it again")
    MANIFEST.write_text(json.dumps({"python": sys.implementation.cache_tag, "sources": digests}, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args else "status"
    if command == "build":
        try:
            build()
        except (Exception, SystemExit) as exc:  # no compiler, no mypy, a type error: the Python sources still work
            print(f"ivr.native: build failed, the engine runs on the Python sources: {exc}", file=sys.stderr)
            return 1
        print(f"ivr.native: compiled {len(MODULES)} modules into {GROUP}")
        return 0
    if command == "clean":
        for path in clean():
            print(f"removed {path.relative_to(ROOT)}")
        return 0
    if command == "status":
        why = why_not_native()
        print("compiled" if why is None else f"python: {why}")
        print(f"this process: {status()['path']} ({status()['why']})")
        return 0
    print("usage: python3 -m ivr.build_native build|status|clean", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
