"""SIPp (Debian sip-tester) through the simulated trunk to a simulated phone: the trunk's
Record-Route and loose routing work with a third-party UA, not only with our own stack."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

import pytest

from sim.phones import CalledBehaviour, CalledPhone
from sim.trunk import SimTrunk

SIPP = shutil.which("sipp")
pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp (Debian sip-tester) not installed")]
SCENARIO = Path(__file__).parent / "sipp" / "uac_via_trunk.xml"
NUMBER = "+15125550101"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sipp_call_through_the_trunk_reaches_the_phone_and_its_bye_follows_the_route(tmp_path: Path) -> None:
    """SIPp INVITEs the number at the trunk; the phone answers; ACK and BYE go via the Record-Route."""

    async def scenario() -> tuple[int, CalledPhone, list[str]]:
        trunk = await SimTrunk.start()
        phone = await CalledPhone.open(
            NUMBER, CalledBehaviour(rings=1, ring_interval_s=0.2, key_after_s=0.5, hangup_after_s=None), seed=8
        )
        trunk.route(NUMBER, phone.sip_address)
        assert SIPP is not None
        proc = await asyncio.create_subprocess_exec(
            SIPP,
            "-sf",
            str(SCENARIO),
            "-i",
            "127.0.0.1",
            "-p",
            str(free_udp_port()),
            "-mp",
            str(free_udp_port()),
            "-m",
            "1",
            "-timeout",
            "15s",
            "-timeout_error",
            "-nostdin",
            "-s",
            NUMBER,
            f"{trunk.address[0]}:{trunk.address[1]}",
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        code = await asyncio.wait_for(proc.wait(), 20)
        await asyncio.wait_for(phone.done.wait(), 5)
        lines = [f"{e.direction} {e.first_line}" for e in trunk.core.log]
        phone.close()
        trunk.close()
        return code, phone, lines

    code, phone, lines = asyncio.run(scenario())
    assert code == 0
    assert phone.obs.answered_at is not None and phone.obs.ended_by == "peer"
    assert [k for _, k, _ in phone.obs.keys_sent] == ["1"]
    for method in ("INVITE", "ACK", "BYE"):
        assert any(line.startswith(f"out {method} ") for line in lines), method
