"""Several calls at once through the real engine: SIPp gateway and SIPp called party with ``-m N``.

Builds on tests/integration/engine_harness.py (which places one call at a time). Used by the flood
and shutdown tests and by bench/engine_capacity.py.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.engine_harness import (
    NUMBER,
    SIPP,
    CalledParty,
    EngineRun,
    free_even_port,
    free_port,
    gateway_xml,
)


@dataclass
class SippPair:
    """A running SIPp called party (UAS) and gateway (UAC); ``wait`` returns their exit codes and tails."""

    uas: subprocess.Popen[bytes]
    uac: subprocess.Popen[bytes]

    def wait(self, timeout_s: float) -> tuple[tuple[int | None, str], tuple[int | None, str]]:
        out = []
        deadline = time.monotonic() + timeout_s
        for p in (self.uac, self.uas):
            try:
                data, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                data, _ = p.communicate()
            out.append((p.returncode, (data or b"").decode(errors="replace")[-3000:]))
        return out[1], out[0]

    def kill(self) -> None:
        for p in (self.uac, self.uas):
            if p.poll() is None:
                p.kill()
                p.communicate()


def start_calls(run: EngineRun, called: CalledParty, *, gateway_audio: Path, calls: int, rate_per_s: int = 10,
                hangup_after_ms: int | None = None, number: str = NUMBER, timeout_s: float = 90.0,
                taskset: str | None = None, uas_extra: tuple[str, ...] = (), uac_extra: tuple[str, ...] = (),
                tag: str = "", called_xml: str | None = None) -> SippPair:
    """Start ``calls`` calls (at most all at once) and return without waiting for them.
    ``called_xml`` replaces ``called.xml()`` (a scenario edited for one test)."""
    assert SIPP is not None
    wd = run.workdir
    (wd / f"called{tag}.xml").write_text(called_xml if called_xml is not None else called.xml())
    (wd / f"gateway{tag}.xml").write_text(gateway_xml(gateway_audio, hangup_after_ms=hangup_after_ms))
    prefix = ["taskset", "-c", taskset] if taskset else []
    common = ["-m", str(calls), "-timeout", str(int(timeout_s)), "-timeout_error", "-nostdin", "-trace_err",
              "-i", "127.0.0.1", "-mi", "127.0.0.1"]
    uas = subprocess.Popen(
        [*prefix, SIPP, "-sf", str(wd / f"called{tag}.xml"), "-p", str(run.trunk_port), "-mp", str(free_even_port()),
         *common, *uas_extra], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.3)
    uac = subprocess.Popen(
        [*prefix, SIPP, "-sf", str(wd / f"gateway{tag}.xml"), "-p", str(free_port()), "-mp", str(free_even_port()),
         "-s", number, "-l", str(calls), "-r", str(rate_per_s), *common, *uac_extra, f"127.0.0.1:{run.sip_port}"],
        cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return SippPair(uas, uac)


def call_states(run: EngineRun) -> dict[str, str]:
    """Each call's current CallMachine state, from the engine's JSON log (``"event": "state"`` lines)."""
    states: dict[str, str] = {}
    for line in run.log().splitlines():
        if '"event": "state"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        states[str(entry.get("call_id"))] = str(entry.get("new"))
    return states


def wait_records(run: EngineRun, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """Wait until ``count`` call records exist; return them (fewer on timeout)."""
    deadline = time.monotonic() + timeout_s
    records = run.records()
    while len(records) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        records = run.records()
    return records


def udp_drops(port: int, host: str = "127.0.0.1") -> int | None:
    """Datagrams the kernel dropped on the UDP socket bound to host:port (receive buffer full), from
    /proc/net/udp; None when no such socket (or not Linux)."""
    want = f"{''.join(f'{int(b):02X}' for b in reversed(host.split('.')))}:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if fields[1] == want:
            return int(fields[-1])
    return None


def tolerate_invite_retransmission(xml: str) -> str:
    """Make a CalledParty scenario answer a retransmitted INVITE with its 200 OK again (RFC 3261
    section 13.3.1.4), as a real UAS does. Plain SIPp aborts the call on a retransmitted INVITE
    while it waits for the ACK ("Aborting call on unexpected message"), which turns any engine stall
    longer than T1 (500 ms, then Timer A retransmits) into a failed call."""
    ok = '  <send retrans="500">\n    <![CDATA[\n      SIP/2.0 200 OK'
    ack = '  <recv request="ACK" crlf="true"/>'
    if xml.count(ok) != 1 or ack not in xml or '<label id="answer"/>' in xml:
        return xml  # busy / no-answer scenarios (no 200 OK to repeat), or already tolerant
    xml = xml.replace(ok, '  <label id="answer"/>\n' + ok)
    return xml.replace(ack, '  <recv request="INVITE" optional="true" next="answer"/>\n' + ack, 1)
