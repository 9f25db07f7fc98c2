"""``ivr replay CALL_FOLDER`` re-runs the detectors over the legs' WAVs (issue 6 point 4).

The folder is built as the engine leaves one: the journal and record of a call, both legs' audio,
and ``detections.jsonl`` written by the streaming bank (as tall as the engine's) on the engine's frame clock. The
replay's whole-recording path must find exactly those events, and say so when they differ.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from ivr.call.journal import journal_lines
from ivr.call.machine import CallMachine
from ivr.cli import main
from ivr.detect import synth
from ivr.replay import check_detections, load_flow, streaming_detections

ROOT = Path(__file__).resolve().parents[2]
FLOW = ROOT / "tests" / "data" / "flows" / "lim1-time-limit-with-warnings.jsonl"


def leg_audio(seed: int) -> npt.NDArray[np.int16]:
    """Keys, a dial tone, call waiting, a click between silences, pauses and static, over hiss."""
    rng = np.random.default_rng(seed)
    parts = [synth.silence(900)]
    for d in "1#5":
        parts += [synth.dtmf(d, float(rng.uniform(45, 110)), -12), synth.silence(float(rng.uniform(60, 400)))]
    parts += [synth.white_noise(2500, -22, rng), synth.silence(1200), synth.tone([440], 300, -16)]
    parts += [synth.silence(800), synth.click(12, -12, rng), synth.white_noise(700, -80, rng)]
    parts += [synth.tone([350, 440], 1500, -13), synth.silence(1500)]
    x = np.concatenate(parts)
    return synth.to_pcm16(x + synth.white_noise(len(x) / 8, -60, rng))


def write_wav(path: Path, pcm: npt.NDArray[np.int16]) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.astype("<i2").tobytes())


@pytest.fixture(scope="module")
def call_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("call")
    flow = load_flow(FLOW)
    machine = CallMachine(flow.dialplan)
    for t_ms, event in flow.inputs:
        machine.handle(event, t_ms / 1000)
    while not machine.ended and (deadline := machine.next_deadline()) is not None:
        machine.handle_timer(deadline)
    (folder / "events.jsonl").write_text("\n".join(journal_lines(machine)) + "\n")
    (folder / "record.json").write_text(json.dumps(machine.record))
    lines = []
    for origin_ms, (leg, seed) in zip((40, 7060), (("facility", 1), ("called", 2)), strict=True):
        pcm = leg_audio(seed)
        write_wav(folder / f"{leg}.wav", pcm)
        frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
        for k, event in streaming_detections(frames, origin_ms, flow.dialplan.detectors):
            entry = {"leg": leg, "origin_ms": origin_ms, "frame": k, "kind": type(event).__name__}
            entry.update(event.to_json())
            lines.append(json.dumps(entry, sort_keys=True))
    (folder / "detections.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def recorded(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "detections.jsonl").read_text().splitlines() if line]


def copy_with(folder: Path, target: Path, detections: list[dict[str, object]]) -> Path:
    target.mkdir()
    for name in ("events.jsonl", "record.json", "facility.wav", "called.wav"):
        (target / name).write_bytes((folder / name).read_bytes())
    (target / "detections.jsonl").write_text("\n".join(json.dumps(d, sort_keys=True) for d in detections) + "\n")
    return target


def test_the_folder_exercises_every_reported_kind(call_folder: Path) -> None:
    """The live side really reported keys, tones, silences and a flash (else equality proves little)."""
    kinds = {d["kind"] for d in recorded(call_folder)}
    assert {"DtmfEvent", "ToneEvent", "SilenceStarted", "SilenceEnded", "HookflashEvent"} <= kinds


def test_replayed_detections_equal_the_live_ones(call_folder: Path) -> None:
    """The whole-recording path finds every live event: same frame, times and evidence."""
    plan = load_flow(call_folder).dialplan
    problems, frames = check_detections(call_folder, plan)
    assert problems == []
    assert frames == sum(len(_frames(call_folder / f"{leg}.wav")) for leg in ("facility", "called"))


def test_frame_by_frame_reference_agrees(call_folder: Path) -> None:
    """The streaming bank fed frame by frame (``streaming=True``) agrees as well."""
    assert check_detections(call_folder, load_flow(call_folder).dialplan, streaming=True)[0] == []


def test_a_changed_measurement_is_reported(call_folder: Path, tmp_path: Path) -> None:
    """A live key whose level differs by 0.1 dB from what the audio gives is a mismatch."""
    detections = recorded(call_folder)
    key = next(d for d in detections if d["kind"] == "DtmfEvent")
    key["low_dbm0"] = float(key["low_dbm0"]) + 0.1  # type: ignore[arg-type]
    folder = copy_with(call_folder, tmp_path / "changed", detections)
    problems, _ = check_detections(folder, load_flow(folder).dialplan)
    assert len(problems) == 1 and problems[0].startswith("detection differs")


def test_a_missing_live_event_is_reported(call_folder: Path, tmp_path: Path) -> None:
    """One live event fewer than the audio gives: the counts differ."""
    detections = recorded(call_folder)
    folder = copy_with(call_folder, tmp_path / "missing", detections[:-1])
    problems, _ = check_detections(folder, load_flow(folder).dialplan)
    assert problems[-1] == f"live detectors reported {len(detections) - 1} events, the replay {len(detections)}"


def test_ivr_replay_exit_code_follows_the_detections(call_folder: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``ivr replay FOLDER``: 0 when every decision matches, 1 when a detection differs."""
    assert main(["replay", str(call_folder), "--compact"]) == 0
    assert "same events" in capsys.readouterr().err
    detections = recorded(call_folder)
    detections[0]["start_ms"] = int(detections[0]["start_ms"]) + 20  # type: ignore[call-overload]
    folder = copy_with(call_folder, tmp_path / "bad", detections)
    assert main(["replay", str(folder), "--compact"]) == 1
    assert "detection differs" in capsys.readouterr().err


def _frames(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return pcm[: len(pcm) // 160 * 160].reshape(-1, 160)


def test_replay_reproduces_the_engines_bank_height() -> None:
    """The replay rounds like the engine's banks only if it knows their height: keep them in step."""
    from ivr.engine import DetectorPool
    from ivr.replay import ENGINE_BANK_ROWS

    assert ENGINE_BANK_ROWS == DetectorPool.PRODUCT_ROWS
