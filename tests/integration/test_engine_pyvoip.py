"""Issue 4 point 4: the engine against pyVoIP 1.6.8 (optional ``pyvoip`` extra) registered at the simulated trunk.

``ivr serve`` runs as a subprocess whose ``--trunk`` is a :class:`sim.trunk.SimTrunk` on 127.0.0.1
(run on its own event loop in a thread). The pyVoIP phone REGISTERs +15125550123 there, the trunk
routes the engine's INVITE to its registered contact, pyVoIP answers and accepts with an in-band
'1' written into its 8-bit audio; SIPp is the facility gateway. The call record must say: accepted
in-band, completed, ended by whoever hung up (DIS-HANGUP).
"""

from __future__ import annotations

import asyncio
import socket
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
    line_noise,
    short_prompts,
    start_engine,
    start_gateway,
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
    return start_gateway(run, audio, hangup_after_ms=hangup_after_ms, timeout_s=45)


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


# ----------------------------------------------------------------------------- the wrapper's workarounds


def _headers(datagram: bytes) -> dict[str, str]:
    head = datagram.split(b"\r\n\r\n", 1)[0].decode()
    out: dict[str, str] = {}
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        out.setdefault(name, value)
    return out


def _response(request: bytes, status: str, to_tag: str = "trk1") -> bytes:
    h = _headers(request)
    vias = [line for line in request.split(b"\r\n\r\n", 1)[0].decode().split("\r\n") if line.startswith("Via: ")]
    to = h["To"] if ";tag=" in h["To"] else f"{h['To']};tag={to_tag}"
    lines = [f"SIP/2.0 {status}", *vias, f"From: {h['From']}", f"To: {to}", f"Call-ID: {h['Call-ID']}",
             f"CSeq: {h['CSeq']}", "Content-Length: 0"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_pyvoip_phone_answers_pcmu_retransmits_200_and_bye_and_keys_inband_one() -> None:
    """RFC 3261 13.3.1.4, 17.1.2: 200 and BYE resent until ACK/200; offer 8 0 101 answered 0 101; in-band '1'."""
    from ivr.detect.dtmf import DtmfDetector
    from ivr.rtp.g711 import Codec

    # This socket is the whole network for the phone: its registrar/proxy (pyVoIP sends every
    # request and response to its "server") and, on a second socket, the RTP peer.
    sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sip.bind(("127.0.0.1", 0))
    rtp.bind(("127.0.0.1", 0))
    sip.settimeout(5)
    rtp.settimeout(0.05)
    phone = PyVoIPCalledParty(NUMBER, sip.getsockname(), accept_delay_s=0.5, talk_s=1.0)
    starter = threading.Thread(target=phone.start)
    starter.start()
    try:
        register, phone_addr = sip.recvfrom(65536)
        assert register.startswith(b"REGISTER "), register
        sip.sendto(_response(register, "200 OK"), phone_addr)
        starter.join(timeout=10)
        assert phone.status == "REGISTERED"

        sdp = (f"v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {rtp.getsockname()[1]} RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\n"
               "a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n")
        port = sip.getsockname()[1]
        invite = (f"INVITE sip:{NUMBER}@127.0.0.1:{phone.sip_port} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKtest1\r\n"
                  f"From: <sip:ivr@127.0.0.1:{port}>;tag=eng1\r\nTo: <sip:{NUMBER}@127.0.0.1>\r\n"
                  "Call-ID: wrapper-test-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
                  f"Contact: <sip:ivr@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\n"
                  f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()
        sip.sendto(invite, ("127.0.0.1", phone.sip_port))
        got: list[bytes] = []
        oks: list[bytes] = []
        while len(oks) < 2:  # the first 200 OK is not ACKed: the wrapper must send it again
            data = sip.recv(65536)
            got.append(data)
            if data.startswith(b"SIP/2.0 200 OK") and b"INVITE" in data:
                oks.append(data)
        assert got[0].startswith(b"SIP/2.0 180 Ringing")
        assert oks[0] == oks[1]
        answer = oks[0].split(b"\r\n\r\n", 1)[1].decode()
        assert "m=audio" in answer and answer.split("m=audio ", 1)[1].split("\r\n")[0].endswith("RTP/AVP 0 101")
        to = _headers(oks[0])["To"]
        ack = (f"ACK sip:{NUMBER}@127.0.0.1:{phone.sip_port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKtest2\r\n"
               f"From: <sip:ivr@127.0.0.1:{port}>;tag=eng1\r\nTo: {to}\r\nCall-ID: wrapper-test-1\r\n"
               "CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        sip.sendto(ack, ("127.0.0.1", phone.sip_port))

        # The phone's RTP until its BYE: PCMU only; the first BYE goes unanswered.
        payload_types: set[int] = set()
        audio = bytearray()
        byes: list[bytes] = []
        sip.settimeout(0.01)
        while len(byes) < 2:
            try:
                packet = rtp.recv(2048)
                payload_types.add(packet[1] & 0x7F)
                audio += packet[12:]
            except TimeoutError:
                pass
            try:
                data = sip.recv(65536)
            except TimeoutError:
                continue
            if data.startswith(b"BYE "):
                byes.append(data)
            if data.startswith(b"SIP/2.0 200 OK") and b"INVITE" in data:
                pytest.fail("200 OK resent after the ACK")
        sip.sendto(_response(byes[1], "200 OK"), phone_addr)
        result = phone.wait(timeout_s=10)
        # De-registration (Expires: 0) waits for its answer: give it one.
        stopper = threading.Thread(target=phone.stop)
        stopper.start()
        sip.settimeout(5)
        while not (data := sip.recv(65536)).startswith(b"REGISTER "):
            pass
        assert b"Expires: 0" in data
        sip.sendto(_response(data, "200 OK"), phone_addr)
        stopper.join(timeout=10)
    finally:
        phone.stop()
        starter.join(timeout=10)
        sip.close()
        rtp.close()

    assert byes[0] == byes[1]
    assert result.error is None and result.ended_by == "phone" and result.ack_received and result.bye_answered
    assert result.offered_payload_types == ("8", "0", "101")
    assert result.retransmissions >= 2  # at least one 200 OK and one BYE resent
    assert payload_types == {0}
    detector = DtmfDetector()
    pcm = Codec.PCMU.decode(bytes(audio))
    keys = []
    for i in range(len(pcm) // 160):
        keys += detector.feed(pcm[i * 160 : (i + 1) * 160], i * 20)
    keys += detector.flush(len(pcm) // 160 * 20)
    assert [k.digit for k in keys] == ["1"], keys
    assert -14.0 < keys[0].low_dbm0 < -6.0 and -14.0 < keys[0].high_dbm0 < -6.0  # the -10 dBm0 written, 8-bit
