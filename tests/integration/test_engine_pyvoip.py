"""Issue 4 point 4: the engine against pyVoIP 1.6.8 (optional ``pyvoip`` extra) registered at the simulated trunk.

``ivr serve`` runs as a subprocess whose ``--trunk`` is a :class:`sim.trunk.SimTrunk` on 127.0.0.1
(run on its own event loop in a thread). The pyVoIP phone REGISTERs +15125550123 there, the trunk
routes the engine's INVITE to its registered contact, pyVoIP answers and accepts with an in-band
'1' written into its 8-bit audio; SIPp is the facility gateway. The call record must say: accepted
in-band, completed, ended by whoever hung up (DIS-HANGUP).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytest.importorskip("pyVoIP")

from sim.pyvoip_phone import PyVoIPCalledParty
from sim.trunk import LogEntry, SimTrunk
from tests.integration.engine_harness import (
    NUMBER,
    SIPP,
    EngineRun,
    dialplan_text,
    free_even_port,
    free_port,
    gateway_xml,
    line_noise,
    short_prompts,
    start_engine,
    ulaw_file,
)

T = TypeVar("T")
pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp (Debian sip-tester) not installed")]


class TrunkThread:
    """A SimTrunk on its own asyncio loop in a daemon thread (the test itself is synchronous)."""

    def __init__(self, port: int) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="sim-trunk", daemon=True)
        self._thread.start()
        self.trunk: SimTrunk = self._run(SimTrunk.start(("127.0.0.1", port)))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def log(self) -> list[LogEntry]:
        async def copy() -> list[LogEntry]:  # read the deque on the loop that appends to it
            return list(self.trunk.core.log)

        return self._run(copy())

    def close(self) -> None:
        async def shut() -> None:
            self.trunk.close()

        self._run(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        self.loop.close()


def _gateway(run: EngineRun, audio: Path, hangup_after_ms: int | None) -> subprocess.Popen[bytes]:
    assert SIPP is not None
    (run.workdir / "gateway.xml").write_text(gateway_xml(audio, hangup_after_ms=hangup_after_ms))
    return subprocess.Popen(
        [SIPP, "-sf", str(run.workdir / "gateway.xml"), "-i", "127.0.0.1", "-p", str(free_port()), "-mi",
         "127.0.0.1", "-mp", str(free_even_port()), "-s", NUMBER, "-m", "1", "-timeout", "45", "-timeout_error",
         "-nostdin", "-trace_err", f"127.0.0.1:{run.sip_port}"],
        cwd=run.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


@pytest.mark.parametrize("ender", ["pyvoip", "gateway"])
def test_registered_pyvoip_accepts_with_inband_one(tmp_path: Path, ender: str) -> None:
    """ACC-5: registered pyVoIP answers, writes an in-band '1': accepted inband; DIS-HANGUP by either side."""
    prompts = short_prompts(tmp_path / "prompts")
    run = start_engine(tmp_path / "engine", prompts,
                       dialplan_text(digit_timeout_s="5", ring_timeout_s="10", closing_timeout_s="3"))
    # The engine's --trunk names run.trunk_port; the simulated trunk listens there.
    trunk = phone = gateway = None
    try:
        trunk = TrunkThread(run.trunk_port)
        phone = PyVoIPCalledParty(NUMBER, trunk.trunk.address, accept_delay_s=1.0,
                                  talk_s=3.0 if ender == "pyvoip" else 60.0).start()
        assert NUMBER in trunk.trunk.core.bindings, "pyVoIP's REGISTER made no binding"
        audio = ulaw_file(tmp_path / "noise.ulaw", line_noise(60))
        gateway = _gateway(run, audio, hangup_after_ms=12000 if ender == "gateway" else None)
        result = phone.wait(timeout_s=40)
        out, _ = gateway.communicate(timeout=30)
        record = run.wait_record(15)
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.kill()
            gateway.wait()
        if phone is not None:
            phone.stop()
        log = trunk.log() if trunk is not None else []
        if trunk is not None:
            trunk.close()
        run.stop()

    assert result.error is None, result
    assert gateway.returncode == 0, out.decode(errors="replace")[-2000:]
    # pyVoIP's side: answered with PCMU only, got the ACK, heard the engine's RTP, ended as expected.
    assert result.key_at_s is not None
    assert result.ack_received
    assert result.received_audio_bytes > 0
    assert result.ended_by == ("phone" if ender == "pyvoip" else "remote"), result
    if ender == "pyvoip":
        assert result.bye_answered, result
    # The engine's record.
    assert (record["outcome"], record["reason"]) == ("completed", "DIS-HANGUP"), record["decision"]
    assert record["acceptance"]["accepted_key"]["key"] == "1"
    assert record["acceptance"]["accepted_key"]["source"] == "inband"
    assert record["decision"]["evidence"].get("hung_up") == ("called" if ender == "pyvoip" else "facility")
    assert record["billed_seconds"] >= 1
    # The SIP exchange at the trunk: REGISTER bound the number; the INVITE for it went to the
    # registered contact (Request-URI rewritten); pyVoIP's 180 and 200 came back through the trunk.
    lines = [(e.direction, e.first_line) for e in log]
    assert ("out", "SIP/2.0 200 OK") in lines[:2], lines
    invites_out = [line for d, line in lines if d == "out" and line.startswith("INVITE ")]
    assert len(invites_out) == 1 and f"sip:{NUMBER}@127.0.0.1:{phone.sip_port}" in invites_out[0], lines
    responses_in = [line for d, line in lines if d == "in" and line.startswith("SIP/2.0 ")]
    assert "SIP/2.0 180 Ringing" in responses_in and "SIP/2.0 200 OK" in responses_in, lines
    byes_out = [e for e in log if e.direction == "out" and e.first_line.startswith("BYE ")]
    if ender == "pyvoip":
        # pyVoIP sends its BYE to the trunk (its "server"), which forwards it to the engine.
        assert len(byes_out) == 1 and byes_out[0].call_id == result.call_id, lines
