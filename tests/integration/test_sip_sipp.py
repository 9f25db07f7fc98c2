"""Interop of our SIP user agent with SIPp on 127.0.0.1 (real UDP, the asyncio adapter).

SIPp plays the facility gateway (UAC) against our UAS, and the called party (UAS) behind the
trunk against our UAC. Each test runs one short scenario (``-m 1`` with a global timeout) and
checks both SIPp's verdict (exit code 0) and the events our user agent reported.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ivr.net.sip_udp import SipUdpEndpoint, open_sip_endpoint
from ivr.sip import events as ev
from ivr.sip.sdp import build_answer, build_offer
from ivr.sip.useragent import Credentials, UAConfig, UserAgent

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).parent / "sipp"

pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp (Debian sip-tester) not installed")]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    errors: str


async def run_sipp(
    scenario: str,
    workdir: Path,
    *,
    remote: tuple[str, int] | None,
    port: int,
    timeout_s: float = 15.0,
    service: str = "15551234567",
) -> SippResult:
    """Run SIPp once (``-m 1``); ``remote`` None means SIPp waits as a UAS on ``port``."""
    assert SIPP is not None
    args = [
        SIPP,
        "-sf",
        str(SCENARIOS / scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mp",
        str(free_udp_port()),
        "-m",
        "1",
        "-timeout",
        f"{int(timeout_s)}s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-s",
        service,
    ]
    if remote is not None:
        args.append(f"{remote[0]}:{remote[1]}")
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s + 10)
    errors = "\n".join(p.read_text(errors="replace") for p in workdir.glob("*_errors.log"))
    return SippResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"), errors)


@dataclass
class SipApp:
    """A tiny application on top of the UA: answers (or rings), hangs up, records events."""

    answer_invites: bool = True
    hang_up_after_answer: bool = True
    hang_up_on_hold: bool = False
    cancel_on_ringing: bool = False
    events: list[ev.UAEvent] = field(default_factory=list)
    endpoint: SipUdpEndpoint | None = None

    def on_events(self, events: list[ev.UAEvent]) -> None:
        # commands issued inside the sink are sent by the adapter right after it returns
        assert self.endpoint is not None
        ua, now = self.endpoint.ua, self.endpoint.now()
        for e in events:
            self.events.append(e)
            if isinstance(e, ev.InviteReceived):
                if self.answer_invites and e.sdp is not None:
                    ua.answer(e.call_id, build_answer(e.sdp, "127.0.0.1", 40000, session_id=7), now)
                else:
                    ua.ringing(e.call_id, now)
            elif isinstance(e, ev.CallAnswered | ev.HoldDetected) and self._hang_up_on(e):
                ua.bye(e.call_id, now)
            elif isinstance(e, ev.CallRinging) and self.cancel_on_ringing:
                ua.cancel(e.call_id, now)

    def _hang_up_on(self, e: ev.UAEvent) -> bool:
        if isinstance(e, ev.CallAnswered):
            return self.hang_up_after_answer
        return isinstance(e, ev.HoldDetected) and self.hang_up_on_hold

    def of(self, kind: type) -> list[ev.UAEvent]:
        return [e for e in self.events if isinstance(e, kind)]


async def start_app(app: SipApp, config: UAConfig | None = None) -> SipUdpEndpoint:
    ua = UserAgent(config or UAConfig(local_addr=("127.0.0.1", 0)))
    app.endpoint = await open_sip_endpoint(ua, ("127.0.0.1", 0), app.on_events)
    return app.endpoint


async def settle(app: SipApp, kinds: tuple[type, ...], timeout_s: float = 5.0) -> None:
    """Wait until an event of one of ``kinds`` arrived (the final state of the scenario)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not any(isinstance(e, kinds) for e in app.events) and loop.time() < end:
        await asyncio.sleep(0.02)


def uas_case(scenario: str, app: SipApp, tmp_path: Path) -> SippResult:
    async def main() -> SippResult:
        ep = await start_app(app)
        try:
            return await run_sipp(scenario, tmp_path, remote=ep.local_addr, port=free_udp_port())
        finally:
            await asyncio.sleep(0.05)
            ep.close()

    return asyncio.run(main())


def test_gateway_call_is_answered_and_hung_up_by_bye(tmp_path: Path) -> None:
    """SIPp INVITE -> our 200 with an SDP answer -> ACK -> BYE -> 200; X-Inmate-Id reaches the engine."""
    app = SipApp()
    result = uas_case("uac_basic.xml", app, tmp_path)
    assert result.returncode == 0, result.errors or result.stderr
    invite = app.of(ev.InviteReceived)[0]
    assert isinstance(invite, ev.InviteReceived)
    assert invite.inmate_id == "A1234" and invite.request_uri.startswith("sip:15551234567@")
    assert invite.source[0] == "127.0.0.1"
    assert [type(e) for e in app.events] == [ev.InviteReceived, ev.CallConfirmed, ev.ByeReceived]


def test_gateway_cancel_gets_200_and_487(tmp_path: Path) -> None:
    """SIPp CANCELs after our 180: 200 to the CANCEL, 487 to the INVITE, CallCancelled reported."""
    app = SipApp(answer_invites=False)
    result = uas_case("uac_cancel.xml", app, tmp_path)
    assert result.returncode == 0, result.errors or result.stderr
    assert [type(e) for e in app.events] == [ev.InviteReceived, ev.CallCancelled]


def test_options_probe_gets_200_with_allow(tmp_path: Path) -> None:
    """OPTIONS outside a dialog (load-balancer probe) is answered 200 listing INVITE, BYE, OPTIONS."""
    app = SipApp()
    result = uas_case("options.xml", app, tmp_path)
    assert result.returncode == 0, result.errors or result.stderr
    assert app.events == []


def test_info_dtmf_relay_becomes_key(tmp_path: Path) -> None:
    """INFO application/dtmf-relay Signal=5 Duration=160 -> 200 and KeyReceived('5', 160)."""
    app = SipApp()
    result = uas_case("uac_info.xml", app, tmp_path)
    assert result.returncode == 0, result.errors or result.stderr
    keys = app.of(ev.KeyReceived)
    assert len(keys) == 1 and isinstance(keys[0], ev.KeyReceived)
    assert (keys[0].key, keys[0].duration_ms) == ("5", 160)


def test_reinvite_sendonly_is_hold_answered_recvonly(tmp_path: Path) -> None:
    """A re-INVITE with a=sendonly is answered a=recvonly (checked by SIPp) and reported as hold."""
    app = SipApp()
    result = uas_case("uac_reinvite_hold.xml", app, tmp_path)
    assert result.returncode == 0, result.errors or result.stderr
    assert len(app.of(ev.HoldDetected)) == 1
    assert app.of(ev.ByeReceived)


def uac_case(
    scenario: str, app: SipApp, tmp_path: Path, final: tuple[type, ...], config: UAConfig | None = None
) -> SippResult:
    async def main() -> SippResult:
        port = free_udp_port()
        sipp = asyncio.create_task(run_sipp(scenario, tmp_path, remote=None, port=port))
        await asyncio.sleep(0.3)  # let SIPp bind; a lost INVITE is retransmitted anyway (Timer A)
        ep = await start_app(app, config)
        offer = build_offer("127.0.0.1", 41000, session_id=9)
        ep.command(
            lambda ua, now: ua.invite(f"sip:15551234567@127.0.0.1:{port}", offer, now, headers=(("X-Test", "1"),))
        )
        await settle(app, final)
        result = await sipp
        await asyncio.sleep(0.05)
        ep.close()
        return result

    return asyncio.run(main())


def test_trunk_answer_then_our_bye(tmp_path: Path) -> None:
    """SIPp rings and answers with PCMA: we ACK, report CallRinging then CallAnswered, BYE it."""
    app = SipApp()
    result = uac_case("uas_answer.xml", app, tmp_path, (ev.CallEnded, ev.CallFailed))
    assert result.returncode == 0, result.errors or result.stderr
    assert [type(e) for e in app.events] == [ev.CallRinging, ev.CallAnswered, ev.CallEnded]
    answered = app.of(ev.CallAnswered)[0]
    assert isinstance(answered, ev.CallAnswered) and answered.sdp is not None
    audio = answered.sdp.audio()
    assert audio is not None and audio.codecs[0].name == "PCMA"


def test_trunk_busy_486_fails_call(tmp_path: Path) -> None:
    """486 Busy Here -> CallFailed(486); our client transaction ACKs it (SIPp waits for the ACK)."""
    app = SipApp()
    result = uac_case("uas_busy.xml", app, tmp_path, (ev.CallFailed,))
    assert result.returncode == 0, result.errors or result.stderr
    failed = app.of(ev.CallFailed)
    assert len(failed) == 1 and isinstance(failed[0], ev.CallFailed) and failed[0].status == 486


def test_trunk_ringing_then_our_cancel(tmp_path: Path) -> None:
    """We CANCEL after 180: SIPp answers 200 + 487, we ACK the 487 and report CallFailed(487)."""
    app = SipApp(cancel_on_ringing=True)
    result = uac_case("uas_cancel.xml", app, tmp_path, (ev.CallFailed,))
    assert result.returncode == 0, result.errors or result.stderr
    assert [type(e) for e in app.events] == [ev.CallRinging, ev.CallFailed]
    failed = app.of(ev.CallFailed)[0]
    assert isinstance(failed, ev.CallFailed) and failed.status == 487


def test_trunk_digest_challenge_then_answer(tmp_path: Path) -> None:
    """401 with a digest MD5 qop=auth challenge: we retry with credentials SIPp verifies, then 200."""
    app = SipApp()
    config = UAConfig(local_addr=("127.0.0.1", 0), credentials=Credentials("engine", "s3cret"))
    result = uac_case("uas_auth.xml", app, tmp_path, (ev.CallEnded, ev.CallFailed), config)
    assert result.returncode == 0, result.errors or result.stderr
    assert [type(e) for e in app.events] == [ev.CallAnswered, ev.CallEnded]


def test_refer_is_declined_603_and_reported(tmp_path: Path) -> None:
    """REFER in a call: SIPp expects 603 Decline; the engine gets TransferRequested(refer_to)."""
    app = SipApp()
    result = uas_case("uac_refer.xml", app, tmp_path)
    assert result.returncode == 0, result.errors or result.stderr
    transfers = app.of(ev.TransferRequested)
    assert len(transfers) == 1 and isinstance(transfers[0], ev.TransferRequested)
    assert "19995550100" in transfers[0].refer_to


def test_called_party_hold_on_our_uac_leg(tmp_path: Path) -> None:
    """SIPp answers, then re-INVITEs a=sendonly: we answer a=recvonly (SIPp checks), report
    HoldDetected on the called leg, and hang up with BYE."""
    app = SipApp(hang_up_after_answer=False, hang_up_on_hold=True)
    result = uac_case("uas_hold.xml", app, tmp_path, (ev.CallEnded, ev.CallFailed))
    assert result.returncode == 0, result.errors or result.stderr
    kinds = [type(e) for e in app.events]
    assert kinds == [ev.CallAnswered, ev.MediaUpdated, ev.HoldDetected, ev.CallEnded]


def test_register_with_digest_and_refresh_before_expiry(tmp_path: Path) -> None:
    """REGISTER: 401 challenge answered with credentials SIPp verifies, 200 (Expires: 2), then our
    refresh arrives before the binding expires and is accepted: two RegistrationSucceeded."""
    app = SipApp()

    async def main() -> SippResult:
        port = free_udp_port()
        sipp = asyncio.create_task(run_sipp("uas_register.xml", tmp_path, remote=None, port=port))
        await asyncio.sleep(0.3)
        config = UAConfig(local_addr=("127.0.0.1", 0), credentials=Credentials("engine", "s3cret"))
        ep = await start_app(app, config)
        ep.command(lambda ua, now: ua.register(f"sip:127.0.0.1:{port}", "sip:engine@127.0.0.1", now, expires_s=2))
        result = await sipp
        ep.close()
        return result

    result = asyncio.run(main())
    assert result.returncode == 0, result.errors or result.stderr
    assert app.events == [ev.RegistrationSucceeded("sip:engine@127.0.0.1", 2)] * 2
