"""A tcpdump capture of real engine calls (``ivr serve`` against SIPp) replays to the engine's own
outcomes and reasons through ``ivr replay capture.pcap`` (issue 6 points 4 and 6).

One engine, one capture, three calls: accepted by RFC 4733 then ended by the called party's BYE,
refused with '2', and put on hold by a re-INVITE after acceptance. tcpdump listens on loopback
only to the engine's SIP port and its RTP port range, so other tests' traffic stays out.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.engine_harness import (
    NUMBER,
    ROOT,
    SIPP,
    CalledParty,
    EngineRun,
    dialplan_text,
    free_even_port,
    free_port,
    gateway_xml,
    line_noise,
    seed_ledger,
    short_prompts,
    ulaw_file,
)

TCPDUMP = shutil.which("tcpdump")

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(SIPP is None, reason="SIPp (Debian sip-tester) not installed"),
    pytest.mark.skipif(TCPDUMP is None, reason="tcpdump not installed"),
]

FAST = {"digit_timeout_s": "2", "ring_timeout_s": "5", "closing_timeout_s": "3"}


@dataclass
class Captured:
    run: EngineRun
    pcap: Path
    plan: Path
    prompts: Path
    records: list[dict[str, Any]]


def _start_engine(workdir: Path, prompts: Path, rtp_low: int) -> tuple[EngineRun, Path]:
    """``ivr serve`` with its RTP ports in [rtp_low, rtp_low + 99], so tcpdump can be told them."""
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{workdir / 'ivr.db'}"
    seed_ledger(db_url)
    plan = workdir / "example-county-jail.toml"
    plan.write_text(dialplan_text(**FAST))
    sip_port, trunk_port = free_port(), free_port()
    config = workdir / "serve.toml"
    config.write_text(f'rtp_ports = [{rtp_low}, {rtp_low + 99}]\n')
    env = dict(os.environ, IVR_PROMPTS_DIR=str(prompts))
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 - the engine writes it until stopped
    process = subprocess.Popen(
        [sys.executable, "-m", "ivr.cli", "serve", "--config", str(config), "--listen", f"127.0.0.1:{sip_port}",
         "--gateway", "127.0.0.1", "--trunk", f"127.0.0.1:{trunk_port}", "--dialplan", str(plan),
         "--db", db_url, "--recordings", str(workdir / "recordings")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    run = EngineRun(workdir, sip_port, trunk_port, process, db_url)
    deadline = time.monotonic() + 20
    while "engine_started" not in run.log():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"engine did not start:\n{run.log()}")
        time.sleep(0.05)
    return run, plan


def _call(run: EngineRun, called: CalledParty, gateway_audio: Path, n_records: int) -> dict[str, Any]:
    """One call: SIPp UAS behind the trunk, SIPp UAC as the gateway; the engine's record of it."""
    wd = run.workdir
    (wd / "called.xml").write_text(called.xml())
    (wd / "gateway.xml").write_text(gateway_xml(gateway_audio))
    assert SIPP is not None
    common = ["-i", "127.0.0.1", "-mi", "127.0.0.1", "-m", "1", "-timeout", "40", "-timeout_error", "-nostdin"]
    uas = subprocess.Popen([SIPP, "-sf", str(wd / "called.xml"), "-p", str(run.trunk_port),
                            "-mp", str(free_even_port()), *common],
                           cwd=wd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    subprocess.run([SIPP, "-sf", str(wd / "gateway.xml"), "-p", str(free_port()), "-mp", str(free_even_port()),
                    "-s", NUMBER, *common, f"127.0.0.1:{run.sip_port}"],
                   cwd=wd, capture_output=True, timeout=50)
    try:
        uas.wait(timeout=40)
    except subprocess.TimeoutExpired:
        uas.kill()
        uas.wait()
    deadline = time.monotonic() + 20
    while len(run.records()) < n_records:
        if time.monotonic() > deadline:
            raise AssertionError(f"no call record; engine log:\n{run.log()[-3000:]}")
        time.sleep(0.1)
    records = {r["call_id"]: r for r in run.records()}
    return max(records.values(), key=lambda r: str(r["call_id"]))


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Captured]:
    wd = tmp_path_factory.mktemp("pcap_replay")
    prompts = short_prompts(wd / "prompts")
    rtp_low = random.randrange(30000, 39800, 2)
    run, plan = _start_engine(wd / "engine", prompts, rtp_low)
    noise = ulaw_file(wd / "noise.ulaw", line_noise(60))
    pcap = wd / "capture.pcap"
    assert TCPDUMP is not None
    tcpdump = subprocess.Popen(
        [TCPDUMP, "-i", "lo", "-U", "-n", "-w", str(pcap),
         f"udp and host 127.0.0.1 and (port {run.sip_port} or portrange {rtp_low}-{rtp_low + 99})"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)  # tcpdump opens the interface before the first INVITE
        if tcpdump.poll() is not None:
            err = tcpdump.stderr.read().decode(errors="replace") if tcpdump.stderr else ""
            pytest.skip(f"tcpdump cannot capture on lo here: {err.strip()}")
        calls = [
            CalledParty(audio=noise).then("pause", 1500).then("key", "1").then("pause", 3000).then("bye"),
            CalledParty(audio=noise).then("pause", 1500).then("key", "2"),
            CalledParty(audio=noise).then("pause", 1500).then("key", "1").then("pause", 2500)
            .then("reinvite", ("sendonly", "[media_ip]")),
        ]
        records = [_call(run, called, noise, i + 1) for i, called in enumerate(calls)]
        time.sleep(0.5)
    finally:
        if tcpdump.poll() is None:
            tcpdump.send_signal(signal.SIGTERM)
        tcpdump.wait(timeout=10)
        run.stop()
    yield Captured(run, pcap, plan, prompts, records)


def _replay(captured: Captured, plan: Path, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
    env = dict(os.environ, IVR_PROMPTS_DIR=str(captured.prompts))
    result = subprocess.run([sys.executable, "-m", "ivr.cli", "replay", str(captured.pcap), "--dialplan", str(plan),
                             *extra],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.returncode, lines, result.stderr


def test_engine_calls_were_what_the_capture_must_reproduce(captured: Captured) -> None:
    """The three captured calls ended as designed (accepted+hang-up, refused, hold), per the engine's records."""
    got = [(r["outcome"], r["reason"]) for r in captured.records]
    assert got == [("completed", "DIS-HANGUP"), ("refused", "ACC-2"), ("disconnected", "DIS-HOLD")]


def test_capture_replays_to_each_calls_outcome_and_reason(captured: Captured, tmp_path: Path) -> None:
    """Issue 6 point 6: ``ivr replay capture.pcap`` gives every call the engine's outcome and reason, the
    same hung-up legs within the tolerance, and the outcome the signalling implies; exit 0; one
    timeline picture per call with --plot."""
    code, lines, stderr = _replay(captured, captured.plan, "--plot", str(tmp_path / "timeline.png"))
    assert code == 0, stderr + "\n" + "\n".join(json.dumps(line) for line in lines)
    by_sip = {line["sip_call_id"]: line for line in lines}
    assert len(by_sip) == len(captured.records) == 3
    for record in captured.records:
        line = by_sip[record["sip_call_id"]]
        assert (line["outcome"], line["reason"]) == (record["outcome"], record["reason"]), line
        assert line["ok"] and not line["mismatches"], line
        assert line["wire"]["outcome"] == record["outcome"], line
        assert set(line["replay_hangups_ms"]) == set(line["wire"]["hangups_ms"]), line
    assert sorted(p.name for p in tmp_path.glob("timeline-*.png")) == [f"timeline-{n}.png" for n in (1, 2, 3)]


def test_capture_replayed_with_another_policy_reports_the_difference(captured: Captured, tmp_path: Path) -> None:
    """A dialplan whose hold policy is off cannot explain the engine's BYEs after the re-INVITE: exit 1,
    and only the hold call differs."""
    text = captured.plan.read_text().replace('[disconnect.hold]              # DIS-HOLD: hold and transfer\n'
                                             'action = "disconnect"', '[disconnect.hold]\naction = "off"')
    assert 'action = "off"' in text.split("[disconnect.hold]")[1].split("[")[0]
    other = tmp_path / "hold-off.toml"
    other.write_text(text)
    code, lines, _ = _replay(captured, other)
    assert code == 1
    by_sip = {line["sip_call_id"]: line for line in lines}
    bad = [r["reason"] for r in captured.records if by_sip[r["sip_call_id"]]["mismatches"]]
    assert bad == ["DIS-HOLD"]
