"""A real softphone behind the simulated trunk: Debian's baresip registers under a number, the trunk
routes the engine's INVITE to it, it answers by itself, talks, and sends RFC 4733 '1'."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from sim.softphone import write_baresip_config
from sim.trunk import SimTrunk
from tests.sim.peer import Peer

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed")
NUMBER = "+15125550201"


def test_registered_baresip_takes_the_call_and_presses_1(tmp_path: Path) -> None:
    """REGISTER -> binding; INVITE for the number -> baresip (auto-answer); its audio and an RFC 4733
    key typed on its console reach the caller; the BYE ends it."""

    async def scenario() -> tuple[Peer, tuple[str, int], list[str]]:
        trunk = await SimTrunk.start()
        cfg = write_baresip_config(tmp_path / "baresip", NUMBER, trunk.address)
        proc = subprocess.Popen(
            ["baresip", "-f", str(cfg.folder), "-t", "30"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        peer = await Peer().open()
        try:
            binding = await trunk.wait_registered(NUMBER, 10)
            peer.call(trunk.address, NUMBER)
            await asyncio.wait_for(peer.answered.wait(), 10)
            await asyncio.sleep(0.8)
            assert proc.stdin is not None
            proc.stdin.write(b"1")  # baresip's console: a digit during a call is sent as RFC 4733
            proc.stdin.flush()
            for _ in range(40):
                if peer.log.rfc4733_keys:
                    break
                await asyncio.sleep(0.1)
            peer.hangup()
            await asyncio.wait_for(peer.ended.wait(), 5)
            lines = [e.first_line for e in trunk.core.log if e.direction == "out"]
            return peer, binding.addr, lines
        finally:
            peer.close()
            proc.kill()
            proc.wait(timeout=5)
            trunk.close()

    peer, addr, lines = asyncio.run(asyncio.wait_for(scenario(), 40))
    assert addr[0] == "127.0.0.1"
    assert peer.log.rfc4733_keys == ["1"]
    assert int(np.abs(peer.log.pcm().astype(int)).max()) > 1000  # baresip played its speech clip
    assert any(line.startswith("INVITE sip:") for line in lines)
    assert any(line.startswith("BYE ") for line in lines)  # in-dialog requests pass the trunk too
