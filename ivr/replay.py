"""``ivr replay``: flows and recorded calls -> a fresh CallMachine on a fake clock -> the same decisions.

``ivr replay FLOW.jsonl`` prints the call record as JSON (exit 1 if it differs from the flow's
expectation); ``ivr replay DIR`` runs every flow of a folder (recursively) and prints a table (exit 1
if any differs); a call folder (``events.jsonl`` + ``record.json``) replays its journal and also
compares every output and the record with the original.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.call import events as ev
from ivr.call.codec import event_from_dict
from ivr.call.machine import CallMachine
from ivr.call.record import dumps, dumps_pretty
from ivr.detect import DETECTOR_BANK_ROWS
from ivr.dialplan import Dialplan, load_dialplan, parse_dialplan
from ivr.errors import InputError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Flow:
    path: str
    name: str
    description: str
    dialplan: Dialplan
    expect: Mapping[str, Any]
    inputs: tuple[tuple[int, ev.Event], ...]
    recorded_outputs: tuple[dict[str, Any], ...]


@dataclass(slots=True)
class ReplayResult:
    flow: Flow
    record: dict[str, Any]
    outputs: list[dict[str, Any]]
    mismatches: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _dialplan_dirs(flow_path: Path) -> list[Path]:
    dirs = [Path(p) for p in os.environ.get("IVR_DIALPLANS", "").split(os.pathsep) if p]
    dirs += [flow_path.parent, Path.cwd() / "dialplans", PROJECT_ROOT / "dialplans"]
    return dirs


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


_DIALPLAN_CACHE: dict[tuple[str, str], Dialplan] = {}


def _resolve_dialplan(spec: Any, overrides: Mapping[str, Any], flow_path: Path, where: str,
                      source: str | None = None) -> Dialplan:
    over_key = json.dumps(overrides, sort_keys=True)
    if isinstance(spec, Mapping):
        # A recorded call embeds the dialplan it ran with and names where it came from.
        return parse_dialplan(_merge(spec, overrides), source or f"{flow_path} (embedded dialplan)")
    if not isinstance(spec, str) or not spec:
        raise InputError("dialplan must be a facility id, a .toml path or a table", where=f"{where}: dialplan")
    cache_key = (str(flow_path.parent) + "|" + spec, over_key)
    if cache_key in _DIALPLAN_CACHE:
        return _DIALPLAN_CACHE[cache_key]
    candidates = [Path(spec)] if spec.endswith(".toml") else []
    candidates = [c if c.is_absolute() else flow_path.parent / c for c in candidates] + [
        d / (spec if spec.endswith(".toml") else f"{spec}.toml") for d in _dialplan_dirs(flow_path)
    ]
    for candidate in candidates:
        if candidate.is_file():
            plan = load_dialplan(candidate)
            if overrides:
                plan = parse_dialplan(_merge(plan.raw, overrides), f"{candidate} (+ overrides from {flow_path})")
            _DIALPLAN_CACHE[cache_key] = plan
            return plan
    raise InputError(f"dialplan {spec!r} not found (looked in {', '.join(str(d) for d in _dialplan_dirs(flow_path))})",
                     where=f"{where}: dialplan")


def _lines(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", where=str(path)) from None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", "//")):
            continue
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputError(f"not JSON: {exc.msg} (column {exc.colno})", where=f"{path}:{number}") from None
        if not isinstance(obj, dict):
            raise InputError("each line must be a JSON object", where=f"{path}:{number}")
        yield number, obj


def load_flow(path: str | Path) -> Flow:
    p = Path(path)
    if p.is_dir():
        p = p / "events.jsonl"
    lines = list(_lines(p))
    if not lines:
        raise InputError("empty flow: the first line must be the header", where=str(p))
    number, header = lines[0]
    if header.get("flow") != 1:
        raise InputError('the first line must be a header {"flow": 1, "dialplan": ...}', where=f"{p}:{number}")
    overrides = header.get("dialplan_overrides", {})
    if not isinstance(overrides, Mapping):
        raise InputError("dialplan_overrides must be a table", where=f"{p}:{number}")
    source = header.get("dialplan_source")
    plan = _resolve_dialplan(header.get("dialplan"), overrides, p, f"{p}:{number}",
                             source if isinstance(source, str) else None)
    expect = header.get("expect", {})
    if not isinstance(expect, Mapping):
        raise InputError("expect must be an object", where=f"{p}:{number}")
    inputs: list[tuple[int, ev.Event]] = []
    outputs: list[dict[str, Any]] = []
    last_t = 0
    for number, obj in lines[1:]:
        where = f"{p}:{number}"
        if "in" in obj:
            t_ms = obj.get("t_ms")
            if isinstance(t_ms, bool) or not isinstance(t_ms, int) or t_ms < 0:
                raise InputError("t_ms must be a non-negative integer (ms since the INVITE)", where=where)
            if t_ms < last_t:
                raise InputError(f"t_ms goes backwards ({t_ms} after {last_t})", where=where)
            last_t = t_ms
            inputs.append((t_ms, event_from_dict(obj, where)))
        elif "out" in obj:
            outputs.append(obj)
        elif "state" in obj or "note" in obj:
            continue
        else:
            raise InputError('each line after the header needs "in" (an input) or "out"', where=where)
    if not inputs or not isinstance(inputs[0][1], ev.CallStarted):
        raise InputError("the first input must be CallStarted", where=str(p))
    return Flow(str(p), str(header.get("name") or p.stem), str(header.get("description", "")), plan, expect,
                tuple(inputs), tuple(outputs))


def run_flow(flow: Flow) -> ReplayResult:
    """Run a flow on a fresh machine and a fake clock; check the expectation (and recorded outputs)."""
    machine = CallMachine(flow.dialplan)
    for t_ms, event in flow.inputs:
        machine.handle(event, t_ms / 1000)
    guard = 0
    while not machine.ended and guard < 1000:
        deadline = machine.next_deadline()
        if deadline is None:
            break
        machine.handle_timer(deadline)
        guard += 1
    # The machine's own journal holds every output with its time: no second encoding.
    outputs = [entry for entry in machine._timeline if "out" in entry]
    mismatches: list[str] = []
    if machine.record is None:
        mismatches.append(f"the call did not end (state {machine.state.value}, no deadline left)")
        record: dict[str, Any] = {"outcome": None, "reason": None, "billed_seconds": 0,
                                  "cost": {"total_minor": 0}, "warnings": []}
    else:
        record = machine.record
    mismatches += _check_expect(flow.expect, record, outputs)
    if flow.recorded_outputs:
        mismatches += _compare_outputs(flow.recorded_outputs, outputs)
    return ReplayResult(flow, record, outputs, mismatches)


def _check_expect(expect: Mapping[str, Any], record: dict[str, Any], outputs: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for key in ("outcome", "reason", "billed_seconds"):
        if key in expect and expect[key] != record.get(key):
            problems.append(f"{key}: expected {expect[key]!r}, got {record.get(key)!r}")
    if "total_minor" in expect and expect["total_minor"] != record["cost"]["total_minor"]:
        problems.append(f"total_minor: expected {expect['total_minor']}, got {record['cost']['total_minor']}")
    if "warnings" in expect and expect["warnings"] != len(record.get("warnings", [])):
        problems.append(f"warnings: expected {expect['warnings']}, got {len(record.get('warnings', []))}")
    names = [o["out"] for o in outputs]
    if "emits" in expect:
        position = 0
        for wanted in expect["emits"]:
            try:
                position = names.index(wanted, position) + 1
            except ValueError:
                problems.append(f"emits: {wanted} not emitted (in order) — emitted {names}")
                break
    for forbidden in expect.get("never_emits", []):
        if forbidden in names:
            problems.append(f"never_emits: {forbidden} was emitted")
    return problems


def _compare_outputs(recorded: tuple[dict[str, Any], ...], replayed: list[dict[str, Any]]) -> list[str]:
    for i, (a, b) in enumerate(zip(recorded, replayed, strict=False)):
        if a != b:
            recorded_text, replayed_text = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
            return [f"output {i} differs: recorded {recorded_text} replayed {replayed_text}"]
    if len(recorded) != len(replayed):
        return [f"recorded {len(recorded)} outputs, replay made {len(replayed)}"]
    return []


def _read_wav(path: Path) -> Any:
    import wave

    import numpy as np

    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


# The height of the engine's detector banks' products: numpy rounds a row bit-identically only at
# the same height, so the replay reproduces the live arithmetic at this one (ivr.net.detector_pool
# computes every bank's products in stacks of it).
ENGINE_BANK_ROWS = DETECTOR_BANK_ROWS


def check_detections(folder: Path, plan: Dialplan, *, streaming: bool = False) -> tuple[list[str], int]:
    """Re-run the detectors over a call folder's WAVs; compare with the live ``detections.jsonl``.

    The live engine feeds each leg's frames to the detectors on a frame-exact clock starting at the
    leg's ``origin_ms`` and writes the same frames to the leg's WAV, so the same frames fed again
    from the same origin must give the same events. The whole-recording path
    (:func:`ivr.detect.offline.detect_frames`, the engine's bank-height arithmetic) gives the streaming
    bank's events bit for bit at a fraction of the cost; ``streaming`` feeds an engine-height
    :class:`~ivr.detect.bank.BatchedDetectorBank` frame by frame instead (the reference, for the
    benchmark and the tests). Returns (mismatches, frames re-run).
    """
    from ivr.detect.config import DetectorConfigs

    recorded_path = folder / "detections.jsonl"
    if not recorded_path.is_file():
        return [], 0
    recorded = [json.loads(line) for line in recorded_path.read_text(encoding="utf-8").splitlines() if line]
    configs = plan.detectors if isinstance(plan.detectors, DetectorConfigs) else DetectorConfigs()
    legs = [leg for leg in ("facility", "called") if (folder / f"{leg}.wav").is_file()]
    if not legs:  # a privileged number (REG-3): never recorded, so nothing to run the detectors over
        return [], 0
    origins = {leg: next((e["origin_ms"] for e in recorded if e["leg"] == leg), 0) for leg in legs}
    frames = {}
    for leg in legs:
        pcm = _read_wav(folder / f"{leg}.wav")
        frames[leg] = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    replayed: list[dict[str, Any]] = []
    for leg in legs:
        found = streaming_detections(frames[leg], origins[leg], configs) if streaming else \
            _offline_detections(frames[leg], configs)
        for k, event in found:
            entry: dict[str, Any] = {"leg": leg, "origin_ms": origins[leg], "frame": k, "kind": type(event).__name__}
            entry.update(event.to_json())
            replayed.append(entry)
    key = lambda e: (e["leg"], e["frame"], e["kind"])  # noqa: E731
    want = sorted(recorded, key=key)
    got = sorted((json.loads(json.dumps(e)) for e in replayed), key=key)
    problems: list[str] = []
    for a, b in zip(want, got, strict=False):
        if a != b:
            live, again = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
            problems.append(f"detection differs: live {live} replay {again}")
            break
    if len(want) != len(got):
        problems.append(f"live detectors reported {len(want)} events, the replay {len(got)}")
    return problems, sum(len(f) for f in frames.values())


def _offline_detections(frames: Any, configs: Any) -> list[tuple[int, Any]]:
    from ivr.detect.offline import detect_frames

    return detect_frames(frames, configs, rows=ENGINE_BANK_ROWS)


def streaming_detections(frames: Any, origin_ms: int, configs: Any) -> list[tuple[int, Any]]:
    """The live path: the leg on row 0 of a bank as tall as the engine's, fed frame by frame."""
    import numpy as np

    from ivr.detect.bank import BatchedDetectorBank

    bank = BatchedDetectorBank(ENGINE_BANK_ROWS, configs)
    bank.reset_row(0, origin_ms)
    block = np.zeros((ENGINE_BANK_ROWS, 160), dtype=np.int16)
    found: list[tuple[int, Any]] = []
    for k, frame in enumerate(frames):
        block[0] = frame
        found += [(k, event) for event in bank.feed(block, origin_ms + 20 * k)[0]]
    return found


def find_flows(folder: Path) -> list[Path]:
    """Flow files (*.jsonl) and call folders (with events.jsonl) below ``folder``, sorted."""
    calls = sorted(p.parent for p in folder.rglob("events.jsonl"))
    inside_calls = {c for c in calls}
    found = sorted(p for p in folder.rglob("*.jsonl") if p.parent not in inside_calls)
    return sorted(found + calls)


def _table(results: list[ReplayResult]) -> str:
    rows = [("flow", "expected", "got", "reason", "billed_s", "ok")]
    for r in results:
        expected = f"{r.flow.expect.get('outcome', '-')}/{r.flow.expect.get('reason', '-')}"
        rows.append((r.flow.name, expected, str(r.record.get("outcome")), str(r.record.get("reason")),
                     str(r.record.get("billed_seconds")), "ok" if r.ok else "DIFFERS"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_replay(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise InputError("no such file or folder", where=str(path))
    if path.suffix.lower() in (".pcap", ".pcapng"):
        return _replay_capture(path, args)
    if path.is_dir() and not (path / "events.jsonl").is_file():
        flows = find_flows(path)
        if not flows:
            raise InputError("no flows (*.jsonl) or call folders (events.jsonl) here", where=str(path))
        results = []
        for p in flows:
            result = run_flow(load_flow(p))
            if p.is_dir() and not args.no_audio:  # a recorded call: its detectors too
                result.mismatches += check_detections(p, result.flow.dialplan)[0]
            results.append(result)
        print(_table(results))
        bad = [r for r in results if not r.ok]
        for r in bad:
            for problem in r.mismatches:
                print(f"{r.flow.path}: {problem}", file=sys.stderr)
        print(f"\n{len(results) - len(bad)} of {len(results)} flows as expected")
        return 1 if bad else 0
    result = run_flow(load_flow(path))
    print(dumps(result.record) if args.compact else dumps_pretty(result.record))
    if path.is_dir() and (path / "record.json").is_file():
        original = json.loads((path / "record.json").read_text(encoding="utf-8"))
        if dumps(original) != dumps(result.record):
            result.mismatches.append("record.json differs from the replayed record")
        if not args.no_audio:
            problems, frames = check_detections(path, result.flow.dialplan)
            result.mismatches += problems
            if frames:
                print(f"detectors re-run over {frames * 20 / 1000:.1f} s of recorded audio: "
                      f"{'same events' if not problems else 'DIFFERENT'}", file=sys.stderr)
    if args.plot:
        from ivr.timeline import plot_timeline

        plot_timeline(result.record, Path(args.plot), folder=path if path.is_dir() else None)
        print(f"timeline: {args.plot}", file=sys.stderr)
    for problem in result.mismatches:
        print(f"{path}: {problem}", file=sys.stderr)
    return 1 if result.mismatches else 0


# -- captures (sim/replay.py): ``ivr replay capture.pcap --dialplan FILE`` ---------------------------


def _capture_dialplan(option: str | None) -> Dialplan:
    """``--dialplan FILE``, or the only dialplan in ./dialplans/."""
    if option:
        return load_dialplan(Path(option))
    found = sorted((Path.cwd() / "dialplans").glob("*.toml"))
    if len(found) != 1:
        raise InputError(f"a capture needs the facility's dialplan: found {len(found)} in ./dialplans/, "
                         "name one with --dialplan FILE", where="--dialplan")
    return load_dialplan(found[0])


def _replay_capture(path: Path, args: argparse.Namespace) -> int:
    """One JSON record per call of the capture; exit 1 if any decision differs from the wire."""
    import tempfile

    from sim.replay import capture_summary, replay_capture

    with tempfile.TemporaryDirectory(prefix="ivr-capture-") as scratch:
        results = replay_capture(path, _capture_dialplan(getattr(args, "dialplan", None)),
                                 log=lambda line: print(line, file=sys.stderr),
                                 audio_dir=Path(scratch) if args.plot else None)
        if not results:
            raise InputError("no call the engine answered in this capture", where=str(path))
        for n, result in enumerate(results, start=1):
            print(json.dumps(capture_summary(result), sort_keys=True))
            for problem in result.mismatches:
                print(f"{path}: {result.flow.name}: {problem}", file=sys.stderr)
            if args.plot:  # one picture per call: FILE.png, or FILE-2.png ... when the capture has several
                from ivr.timeline import plot_timeline

                out = Path(args.plot)
                out = out if len(results) == 1 else out.with_name(f"{out.stem}-{n}{out.suffix}")
                plot_timeline(result.record, out, folder=Path(result.flow.expect["wire"]["audio_dir"]))
                print(f"timeline: {out}", file=sys.stderr)
    return 1 if any(not r.ok for r in results) else 0


def register(sub: Any) -> None:
    p = sub.add_parser("replay", help="replay a flow, a recorded call or a folder of them")
    p.add_argument("path", help="a flow (.jsonl), a call folder (events.jsonl) or a folder of flows")
    p.add_argument("--plot", metavar="FILE.png", help="draw the call's timeline")
    p.add_argument("--compact", action="store_true", help="one-line JSON")
    p.add_argument("--no-audio", action="store_true", help="call folders: skip re-running the detectors over the WAVs")
    p.add_argument("--dialplan", metavar="FILE", help="captures (.pcap, .pcapng): the facility's dialplan "
                   "(default: the only one in ./dialplans/)")
    p.set_defaults(handler=cmd_replay)
