"""The per-packet media path compiled to C with mypyc, and the guard that keeps it honest.

Built by ``python3 -m ivr.build_native build`` (install.sh runs it; see that module).

Why: at a few hundred bridged calls every RTP packet runs the same few hundred lines of Python
(receive, RFC 3550 statistics, jitter buffer, relay mapping, send) and the interpreter's overhead,
not the work, was the largest cost of a core (issue 4, bench/engine_capacity.py). mypyc compiles
exactly these typed sources (``mypy --strict`` clean already) into extension modules: the same code,
so the same behaviour, with native attribute access and direct calls between them.

The sources stay the truth. :func:`guard` (run by ``ivr/__init__.py`` before anything else of the
package is imported) uses the compiled modules only when every one of them was built from the
sources now on disk (SHA-256 recorded at build time in ``ivr/_native.json``); after an edit, a
checkout, a missing or partial build, or with ``IVR_NATIVE=0``, all of them are imported from
their ``.py`` files. It is all or nothing because compiled modules call each other's native code
directly: a mix of a compiled leg and an interpreted session would be two different classes.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
MANIFEST = PACKAGE_DIR / "_native.json"
GROUP = "ivr._native_rtp"  # mypyc's "group": the compiled modules share one library,
GROUP_LIBRARY = GROUP + "__mypyc"  # named so by mypyc
# The modules every relayed RTP packet goes through (ivr/net/rtp_udp.py -> ivr/rtp/leg.py -> ...).
MODULES = (
    "ivr.rtp.packet",
    "ivr.rtp.session",
    "ivr.rtp.jitter",
    "ivr.rtp.relay",
    "ivr.rtp.leg",
    "ivr.net.rtp_udp",
    "ivr.net.media_path",
)
ENV = "IVR_NATIVE"

_state: dict[str, str] = {"path": "python", "why": "not checked"}


def source_path(module: str, root: Path = ROOT) -> Path:
    return root / (module.replace(".", "/") + ".py")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compiled_files(root: Path = ROOT) -> list[Path]:
    """The extension modules of the build present under ``root`` (for this interpreter's suffixes)."""
    found: list[Path] = []
    for name in (*MODULES, GROUP_LIBRARY):
        base = root / name.replace(".", "/")
        found.extend(p for p in (base.with_name(base.name + s) for s in importlib.machinery.EXTENSION_SUFFIXES)
                     if p.exists())
    return found


def why_not_native(root: Path = ROOT, env: Mapping[str, str] = os.environ) -> str | None:
    """None when the compiled modules under ``root`` match its sources; otherwise why they are not used."""
    if env.get(ENV, "1") == "0":
        return f"{ENV}=0"
    manifest = root / MANIFEST.relative_to(ROOT)
    if not manifest.exists():
        return "not built (python3 -m ivr.build_native build)"
    try:
        recorded = json.loads(manifest.read_text())
        sources = dict(recorded["sources"])
        tag = recorded["python"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{manifest.name} unreadable: {exc!r}"
    if tag != sys.implementation.cache_tag:
        return f"built for {tag}, running {sys.implementation.cache_tag}"
    for module in MODULES:
        path = source_path(module, root)
        if not path.exists() or sources.get(module) != digest(path):
            return f"{path.relative_to(root)} changed since the build"
    present = {p.name.split(".")[0] for p in compiled_files(root)}
    missing = [m for m in (*MODULES, GROUP_LIBRARY) if m.rsplit(".", 1)[-1] not in present]
    if missing:
        return f"compiled module missing: {', '.join(missing)}"
    return None


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Import the listed modules from their ``.py`` files even where an extension module sits
    beside them (the normal finder prefers the extension)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def guard() -> None:
    """Decide once, before any listed module is imported, which path this process runs."""
    why = why_not_native()
    if why is None:
        _state.update(path="compiled", why="built from the sources on disk")
        return
    _state.update(path="python", why=why)
    if not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())


def status() -> dict[str, str]:
    """Which path runs in this process (``compiled`` or ``python``) and why; for logs and benchmarks."""
    return dict(_state)
