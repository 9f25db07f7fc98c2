"""Issue 4 point 3: SIGTERM ends every call cleanly before ``ivr serve`` exits.

Two calls are up: the first accepted (RFC 4733 '1') and talking, the second still hearing the
announcement. SIGTERM: both legs of both calls get BYE (each SIPp scenario ends on the BYE it must
receive), the accepted call is settled as a system drop (dropped / SYS-SHUTDOWN, billed, credited
under 60 s of talk, ACT-4), the other ends free (failed / SYS-SHUTDOWN, ACC-4), the ledger has no
pending hold left, and the process exits 0.
"""

from __future__ import annotations

import json
import signal
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.integration.engine_harness import (
    FS,
    NUMBER,
    SIPP,
    CalledParty,
    EngineRun,
    dialplan_text,
    ivr,
    line_noise,
    short_prompts,
    start_engine,
    ulaw_file,
)
from tests.integration.engine_load import call_states, start_calls, wait_records

pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp (Debian sip-tester) not installed")]

TALK_S = 3.0
PROMPT_S = 1.0  # every prompt segment lasts 1 s: the announcement (many segments) lasts well over 10 s


def one_second_prompts(dest: Path) -> Path:
    """The real prompt texts with every segment ``PROMPT_S`` long, so a call can be caught mid-announcement."""
    short_prompts(dest)
    t = np.arange(int(PROMPT_S * FS)) / FS
    tone = (300 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    for path in dest.rglob("*.wav"):
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(FS)
            w.writeframes(tone)
    return dest


def first_accepts_second_listens(called: CalledParty) -> str:
    """The SIPp called party's scenario, branching on SIPp's call number: call 1 presses '1' during the
    announcement; every other call presses nothing. Both then wait for the engine's BYE."""
    xml = called.xml()
    start = f'  <nop><action><exec rtp_stream="{called.audio},-1,0"/></action></nop>'
    branch = """
  <nop><action>
    <assignstr assign_to="n" value="[call_number]"/>
    <todouble assign_to="nd" variable="n"/>
    <test assign_to="listener" variable="nd" compare="greater_than" value="1"/>
  </action></nop>
  <nop test="listener" next="wait_bye"/>
  <Reference variables="n,nd,listener"/>"""
    wait = '  <recv request="BYE" timeout="60000"/>'
    assert xml.count(start) == 1 and xml.count(wait) == 1
    xml = xml.replace(start, start + branch).replace(wait, '  <label id="wait_bye"/>\n' + wait)
    return xml


def account_balance(run: EngineRun) -> dict[str, int]:
    import sqlite3

    con = sqlite3.connect(str(run.workdir / "ivr.db"))
    try:
        account = con.execute("select account_id from phone_numbers where number = ?", (NUMBER,)).fetchone()[0]
    finally:
        con.close()
    return dict(json.loads(ivr("ledger", "--db", run.db_url, "balance", str(account), "--json")))


def test_sigterm_settles_the_accepted_call_and_frees_the_other_then_exits_zero(tmp_path: Path) -> None:
    """SIGTERM: BYE on all four legs; talking call dropped SYS-SHUTDOWN and credited; announcing call free; exit 0."""
    prompts = one_second_prompts(tmp_path / "prompts")
    noise = ulaw_file(tmp_path / "noise.ulaw", line_noise(60))
    run = start_engine(tmp_path / "engine", prompts,
                       dialplan_text(digit_timeout_s="10", ring_timeout_s="10", closing_timeout_s="3"),
                       deposit="100.00")
    before = account_balance(run)
    called = CalledParty(audio=noise).then("pause", 1500).then("key", "1")
    # Two gateway calls 1 s apart; the first accepts and talks while the second hears its announcement.
    pair = start_calls(run, called, gateway_audio=noise, calls=2, rate_per_s=1, timeout_s=60,
                       called_xml=first_accepts_second_listens(called))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sorted(call_states(run).values()) != ["announce", "connected"]:
            time.sleep(0.1)
        assert sorted(call_states(run).values()) == ["announce", "connected"], run.log()[-3000:]
        time.sleep(TALK_S)  # the first call talks a little (billed seconds), the second still announces
        assert sorted(call_states(run).values()) == ["announce", "connected"], run.log()[-3000:]
        run.process.send_signal(signal.SIGTERM)
        exit_code = run.process.wait(timeout=20)
        (uas_rc, uas_log), (uac_rc, uac_log) = pair.wait(20)
    finally:
        pair.kill()
        run.stop()
    assert exit_code == 0, run.log()[-3000:]
    assert uas_rc == 0, uas_log  # the called party got BYE on both calls
    assert uac_rc == 0, uac_log  # the gateway got BYE on both calls
    records = {r["outcome"]: r for r in wait_records(run, 2, 5)}
    assert set(records) == {"dropped", "failed"}, json.dumps(list(records.values()))[:3000]
    talked, announced = records["dropped"], records["failed"]
    assert talked["reason"] == announced["reason"] == "SYS-SHUTDOWN"
    assert TALK_S <= talked["billed_seconds"] < 60 and talked["credited"] is True  # ACT-4: under 60 s of talk
    assert talked["system_drop"] is True
    assert talked["cost"]["total_minor"] == 0
    assert announced["billed_seconds"] == 0 and announced["cost"]["total_minor"] == 0  # ACC-4
    after = account_balance(run)
    assert after["pending_minor"] == 0  # every hold settled or voided
    assert after["available_minor"] == before["available_minor"]  # credited and free: nothing charged

