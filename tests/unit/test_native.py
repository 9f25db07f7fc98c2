"""The compiled media path (ivr/native.py): used only when built from the sources on disk, all or
nothing, and the Python sources behave the same (CI also runs the RTP tests with IVR_NATIVE=0)."""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def fake_build(root: Path) -> Path:
    """A tree with every listed source, an (empty) extension file for each, and a true manifest."""
    sources = {}
    for module in native.MODULES:
        src = native.source_path(module, root)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"# {module}\n")
        src.with_name(src.stem + SUFFIX).write_bytes(b"")
        sources[module] = native.digest(src)
    group = root / (native.GROUP_LIBRARY.replace(".", "/") + SUFFIX)
    group.write_bytes(b"")
    manifest = root / native.MANIFEST.relative_to(native.ROOT)
    manifest.write_text(json.dumps({"python": sys.implementation.cache_tag, "sources": sources}))
    return manifest


def test_a_build_matching_its_sources_is_used(tmp_path: Path) -> None:
    fake_build(tmp_path)
    assert native.why_not_native(tmp_path, env={}) is None


def test_an_edited_source_sends_every_module_back_to_python(tmp_path: Path) -> None:
    fake_build(tmp_path)
    native.source_path("ivr.rtp.jitter", tmp_path).write_text("# edited\n")
    assert native.why_not_native(tmp_path, env={}) == "ivr/rtp/jitter.py changed since the build"


def test_a_missing_compiled_module_is_not_half_used(tmp_path: Path) -> None:
    fake_build(tmp_path)
    (tmp_path / "ivr" / "rtp" / ("leg" + SUFFIX)).unlink()
    assert native.why_not_native(tmp_path, env={}) == "compiled module missing: ivr.rtp.leg"


@pytest.mark.parametrize(
    ("manifest_text", "reason"),
    [
        ("{not json", "_native.json unreadable"),
        (json.dumps({"python": "cpython-20", "sources": {}}), "built for cpython-20"),
        (json.dumps({"sources": {}}), "_native.json unreadable"),
    ],
)
def test_a_bad_or_foreign_manifest_is_not_trusted(tmp_path: Path, manifest_text: str, reason: str) -> None:
    fake_build(tmp_path).write_text(manifest_text)
    why = native.why_not_native(tmp_path, env={})
    assert why is not None and why.startswith(reason)


def test_no_build_and_the_switch_both_mean_python(tmp_path: Path) -> None:
    assert native.why_not_native(tmp_path, env={}) == "not built (python3 -m ivr.build_native build)"
    fake_build(tmp_path)
    assert native.why_not_native(tmp_path, env={"IVR_NATIVE": "0"}) == "IVR_NATIVE=0"


def _loaded_from(env: dict[str, str]) -> list[str]:
    code = ("import ivr, importlib; from ivr import native; "
            "print(native.status()['path']); "
            "[print(importlib.import_module(m).__file__) for m in native.MODULES]")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env, cwd=native.ROOT).stdout.split()
    return out


def test_ivr_native_0_imports_every_module_from_its_source() -> None:
    out = _loaded_from(dict(os.environ, IVR_NATIVE="0"))
    assert out[0] == "python"
    assert all(path.endswith(".py") for path in out[1:])


def test_the_process_runs_what_the_guard_decided() -> None:
    """Compiled when a current build is on disk (CI builds it: there it must be compiled), else Python."""
    env = dict(os.environ)
    env.pop("IVR_NATIVE", None)
    out = _loaded_from(env)
    expected = "compiled" if native.why_not_native(env=env) is None else "python"
    assert out[0] == expected
    assert all(path.endswith(".py") != (expected == "compiled") for path in out[1:])
    if os.environ.get("CI") == "true":
        assert expected == "compiled", native.why_not_native(env=env)
