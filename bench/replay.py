"""How fast a recorded 15-minute call replays: the CallMachine over events.jsonl, and the detectors
re-run over both legs' WAVs (issue 6 goal: the whole call in under 1 s).

    python3 bench/replay.py [--minutes 15] [--streaming] [--keep DIR] [--repeat N]

A call folder is built the way the engine builds one: two 8 kHz legs of turn-taking "speech"
(band-limited noise bursts with pauses and line hiss), the detectors run over each leg on the
engine's frame clock to write detections.jsonl, and the journal of a 15-minute accepted call
(the flow lim1-time-limit-with-warnings) as events.jsonl. Then ``ivr replay``'s two parts are
timed separately and together (CPU and wall time): the detectors by the whole-recording path
(ivr.detect.offline), and with ``--streaming`` also by the frame-by-frame bank it must equal.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.call.journal import journal_lines
from ivr.call.machine import CallMachine
from ivr.detect.config import DetectorConfigs
from ivr.log import configure
from ivr.replay import check_detections, load_flow, run_flow, streaming_detections

ROOT = Path(__file__).resolve().parents[1]
FS = 8000


def conversation(seconds: int, seed: int, talking_first: bool) -> np.ndarray:
    """Turns of ~2-6 s of speech-like noise (300-3000 Hz) and pauses, over -60 dBm0 hiss."""
    rng = np.random.default_rng(seed)
    out = rng.normal(0, 25, seconds * FS)
    t, talking = 0.0, talking_first
    while t < seconds:
        turn = rng.uniform(2, 6)
        if talking:
            n = int(min(turn, seconds - t) * FS)
            burst = np.fft.irfft(np.fft.rfft(rng.normal(0, 1, n)) * _band(n), n)
            envelope = 0.5 + 0.5 * np.abs(np.sin(np.arange(n) * 2 * np.pi * 4 / FS))  # syllables
            start = int(t * FS)
            out[start:start + n] += 2500 * burst / (np.std(burst) + 1e-9) * envelope
        t += turn
        talking = not talking
    return np.clip(out, -32768, 32767).astype(np.int16)


def _band(n: int) -> np.ndarray:
    f = np.fft.rfftfreq(n, 1 / FS)
    return ((f > 300) & (f < 3000)).astype(float)


def write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(FS)
        w.writeframes(pcm.astype("<i2").tobytes())


def live_detections(leg: str, pcm: np.ndarray, origin_ms: int, configs: DetectorConfigs) -> list[dict[str, object]]:
    """What the engine writes to detections.jsonl for one leg: the streaming bank on the frame clock."""
    frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
    out: list[dict[str, object]] = []
    for k, event in streaming_detections(frames, origin_ms, configs):
        entry: dict[str, object] = {"leg": leg, "origin_ms": origin_ms, "frame": k, "kind": type(event).__name__}
        entry.update(event.to_json())
        out.append(entry)
    return out


def build_call(folder: Path, flow: Any, seconds: int) -> None:
    """The call folder as the engine leaves it: journal, record, both legs' WAVs, live detections."""
    machine = CallMachine(flow.dialplan)
    for t_ms, event in flow.inputs:
        machine.handle(event, t_ms / 1000)
    while not machine.ended and (deadline := machine.next_deadline()) is not None:
        machine.handle_timer(deadline)
    (folder / "events.jsonl").write_text("\n".join(journal_lines(machine)) + "\n")
    (folder / "record.json").write_text(json.dumps(machine.record))
    configs = flow.dialplan.detectors if isinstance(flow.dialplan.detectors, DetectorConfigs) else DetectorConfigs()
    legs = {"facility": conversation(seconds, 1, True), "called": conversation(seconds, 2, False)}
    detections = []
    for i, (leg, pcm) in enumerate(legs.items()):
        write_wav(folder / f"{leg}.wav", pcm)
        detections += live_detections(leg, pcm, 1000 * i, configs)
    (folder / "detections.jsonl").write_text("\n".join(json.dumps(d, sort_keys=True) for d in detections) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=int, default=15)
    parser.add_argument("--streaming", action="store_true",
                        help="also time the frame-by-frame streaming bank (the reference the fast path equals)")
    parser.add_argument("--keep", metavar="DIR", help="build the call folder in DIR once and reuse it on later runs "
                        "(building it runs the streaming detectors: ~1 min of CPU)")
    parser.add_argument("--repeat", type=int, default=1, help="time the replay N times, report the median run")
    args = parser.parse_args()
    configure(level="ERROR")
    seconds = args.minutes * 60
    flow = load_flow(ROOT / "tests" / "data" / "flows" / "lim1-time-limit-with-warnings.jsonl")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.keep) if args.keep else Path(tmp)
        marker = folder / f".built-{args.minutes}min"
        if not marker.is_file():
            folder.mkdir(parents=True, exist_ok=True)
            build_call(folder, flow, seconds)
            marker.write_text("")
        detections = (folder / "detections.jsonl").read_text().splitlines()
        runs = []
        for _ in range(args.repeat):
            c0, w0 = time.process_time(), time.perf_counter()
            result = run_flow(load_flow(folder))
            machine_s, machine_w = time.process_time() - c0, time.perf_counter() - w0
            c0, w0 = time.process_time(), time.perf_counter()
            problems, frames = check_detections(folder, result.flow.dialplan)
            detect_s, detect_w = time.process_time() - c0, time.perf_counter() - w0
            runs.append((machine_s + detect_s, machine_s, machine_w, detect_s, detect_w, result, problems))
        # The median run by CPU time (the machine is shared: single runs vary).
        _, machine_s, machine_w, detect_s, detect_w, result, problems = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
        reference: tuple[list[str], float, float] | None = None
        if args.streaming:
            c0, w0 = time.process_time(), time.perf_counter()
            ref_problems, _ = check_detections(folder, result.flow.dialplan, streaming=True)
            reference = (ref_problems, time.process_time() - c0, time.perf_counter() - w0)
    audio_s = frames * 0.02
    rows = [
        ("CallMachine over events.jsonl", f"{len(flow.inputs)} inputs", machine_s, machine_w,
         "same" if not result.mismatches else "DIFFERENT"),
        ("detectors over both WAVs", f"{audio_s:.0f} s of audio, {len(detections)} events", detect_s, detect_w,
         "same" if not problems else "DIFFERENT"),
        ("whole replay", f"{seconds} s call", machine_s + detect_s, machine_w + detect_w, ""),
    ]
    if reference is not None:
        rows.append(("(reference) frame-by-frame bank", f"{audio_s:.0f} s of audio", reference[1], reference[2],
                     "same" if not reference[0] else "DIFFERENT"))
    print(f"{'part':<32} {'work':<34} {'cpu s':>8} {'wall s':>8} {'x real time (cpu)':>18} {'decisions':>10}")
    for name, work, cpu, wall, same in rows:
        speed = seconds / cpu if cpu > 0 else float("inf")
        print(f"{name:<32} {work:<34} {cpu:>8.3f} {wall:>8.3f} {speed:>18.0f} {same:>10}")
    for problem in result.mismatches + problems + (reference[0] if reference else []):
        print(problem, file=sys.stderr)
    return 0 if not result.mismatches and not problems else 1


if __name__ == "__main__":
    sys.exit(main())
