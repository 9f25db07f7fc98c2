"""Issue 4 point 4: the engine against baresip (Debian) as the called party, directly on the trunk side.

The engine INVITEs ``sip:<number>@127.0.0.1:PORT`` where baresip listens; baresip answers by itself
(answermode=auto), hears the announcement and presses '1' as an RFC 4733 telephone-event (ctrl_tcp
``sndcode``). The gateway is SIPp. The record must show the call accepted by rfc4733 and ended by
whoever hung up: the gateway (SIPp BYE) or baresip (its ``hangup`` command).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.baresip_harness import Baresip, available, start_baresip, write_wav
from tests.integration.engine_harness import (
    NUMBER,
    SIPP,
    EngineRun,
    dialplan_text,
    free_port,
    line_noise,
    short_prompts,
    start_engine,
    start_gateway,
    ulaw_file,
)
from tests.integration.engine_load import call_states

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(SIPP is None, reason="SIPp (Debian sip-tester) not installed"),
    pytest.mark.skipif(not available(), reason="baresip (Debian baresip) or its modules not installed"),
]


def _wait_state(run: EngineRun, state: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if state in call_states(run).values():
            return
        time.sleep(0.05)
    raise AssertionError(f"no call reached {state!r}; engine log:\n{run.log()[-3000:]}")


def _setup(tmp_path: Path) -> tuple[EngineRun, Baresip, Path]:
    prompts = short_prompts(tmp_path / "prompts")
    run = start_engine(tmp_path / "engine", prompts,
                       dialplan_text(digit_timeout_s="5", ring_timeout_s="10", closing_timeout_s="3"))
    # baresip listens where the engine's trunk points: the engine calls it directly.
    voice = write_wav(tmp_path / "baresip_voice.wav", line_noise(120, level=300.0, seed=7))
    try:
        phone = start_baresip(tmp_path, run.trunk_port, free_port(), voice, NUMBER)
    except BaseException:
        run.stop()
        raise
    return run, phone, ulaw_file(tmp_path / "noise.ulaw", line_noise(60))


def _gateway(run: EngineRun, audio: Path, hangup_after_ms: int | None) -> subprocess.Popen[bytes]:
    return start_gateway(run, audio, hangup_after_ms=hangup_after_ms, timeout_s=60)


@pytest.mark.parametrize("ender", ["gateway", "baresip"])
def test_baresip_auto_answers_and_accepts_with_rfc4733_one(tmp_path: Path, ender: str) -> None:
    """ACC-5: baresip answers, sends '1' by RFC 4733 during the announcement: accepted; ends on either side's BYE."""
    run, phone, audio = _setup(tmp_path)
    try:
        gateway = _gateway(run, audio, hangup_after_ms=12000 if ender == "gateway" else None)
        _wait_state(run, "announce")
        assert phone.command("sndcode", "1").get("ok") is True, phone.log()[-2000:]
        _wait_state(run, "connected")
        if ender == "baresip":
            time.sleep(2.0)
            assert phone.command("hangup").get("ok") is True, phone.log()[-2000:]
        out, _ = gateway.communicate(timeout=40)
        record = run.wait_record(15)
    finally:
        phone.stop()
        run.stop()
    assert gateway.returncode == 0, out.decode(errors="replace")[-2000:]
    assert (record["outcome"], record["reason"]) == ("completed", "DIS-HANGUP"), record["decision"]
    assert record["acceptance"]["accepted_key"]["key"] == "1"
    assert record["acceptance"]["accepted_key"]["source"] == "rfc4733"
    hung_up = record["decision"]["evidence"].get("hung_up")
    assert hung_up == ("facility" if ender == "gateway" else "called"), record["decision"]
    assert record["billed_seconds"] >= 1
