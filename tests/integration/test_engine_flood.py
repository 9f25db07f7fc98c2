"""Issue 4 point 5: an INVITE flood from a non-gateway address does not disturb the calls that are up.

Ten accepted calls (SIPp gateway on 127.0.0.1, SIPp called party accepting by RFC 4733 and talking
about 15 s) while tests/integration/sip_flooder.py sends 1,000 INVITEs per second for 5 s from
127.0.0.2 (not a gateway). Every call must complete normally with its record; the flood gets 403s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.engine_harness import (
    ROOT,
    SIPP,
    CalledParty,
    dialplan_text,
    line_noise,
    short_prompts,
    start_engine,
    ulaw_file,
)
from tests.integration.engine_load import start_calls, tolerate_invite_retransmission, udp_drops, wait_records

pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp (Debian sip-tester) not installed")]

CALLS = 10
FLOOD_RATE_PER_S = 1000
FLOOD_S = 5.0


def test_invite_flood_from_a_non_gateway_gets_403_while_ten_calls_complete(tmp_path: Path) -> None:
    """Security (DESIGN 5): 5,000 INVITEs from 127.0.0.2 get 403; the 10 calls up end DIS-HANGUP, completed."""
    prompts = short_prompts(tmp_path / "prompts")
    noise = ulaw_file(tmp_path / "noise.ulaw", line_noise(60))
    run = start_engine(tmp_path / "engine", prompts,
                       dialplan_text(digit_timeout_s="2", ring_timeout_s="5", closing_timeout_s="3"),
                       deposit="1000.00")  # ten holds of the most a call may cost at once (ACT-3)
    try:
        called = CalledParty(audio=noise).then("pause", 1500).then("key", "1").then("pause", 15000).then("bye")
        # The called party answers a retransmitted INVITE again, as RFC 3261 section 13.3.1.4 asks.
        pair = start_calls(run, called, gateway_audio=noise, calls=CALLS, rate_per_s=CALLS,
                           called_xml=tolerate_invite_retransmission(called.xml()))
        time.sleep(3.0)  # the ten calls are up (announcement or talking) when the flood starts
        flooder = subprocess.run(
            [sys.executable, "-m", "tests.integration.sip_flooder", "--target", f"127.0.0.1:{run.sip_port}",
             "--bind", "127.0.0.2", "--rate", str(FLOOD_RATE_PER_S), "--seconds", str(FLOOD_S), "--drain", "3"],
            cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert flooder.returncode == 0, flooder.stderr
        summary = json.loads(flooder.stdout)
        summary["engine_sip_socket_drops"] = udp_drops(run.sip_port)
        (uas_rc, uas_log), (uac_rc, uac_log) = pair.wait(60)
        records = wait_records(run, CALLS, 20)
    finally:
        run.stop()
    print("flood:", json.dumps(summary))  # the figure for the report (pytest -s)
    assert uas_rc == 0, uas_log
    assert uac_rc == 0, uac_log
    assert len(records) == CALLS, run.log()[-3000:]
    assert Counter((r["outcome"], r["reason"]) for r in records) == {("completed", "DIS-HANGUP"): CALLS}
    assert all(r["acceptance"]["accepted_key"]["source"] == "rfc4733" for r in records)
    assert summary["sent"] == FLOOD_RATE_PER_S * FLOOD_S
    # Every final answer the flood got is 403 (none reached a dialplan, none got a call record);
    # UDP under load may lose some datagrams, so the count is reported, and must be most of them.
    finals = {int(k): v for k, v in summary["distinct_final"].items()}
    assert set(finals) == {403}, summary
    assert finals[403] >= 0.9 * summary["sent"], summary
