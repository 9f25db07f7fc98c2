"""Simulated phones over real loopback UDP/RTP, against a tiny engine-side peer (tests/sim/peer.py)
built on ivr.sip / ivr.rtp / ivr.detect: each behaviour is seen the way the engine sees it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from ivr.detect import events as det
from ivr.sip.sdp import Direction
from sim.phones import (
    Action,
    Answer,
    CalledBehaviour,
    CalledPhone,
    CallerBehaviour,
    FacilityCaller,
    HoldMode,
    KeyMethod,
    Step,
)
from sim.trunk import SimTrunk
from tests.sim.peer import Peer

NUMBER = "+15125550101"
T = TypeVar("T")


def run(coro: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(asyncio.wait_for(coro(), 30))


async def place(behaviour: CalledBehaviour, *, dtmf: bool = True, wait_s: float = 10.0) -> tuple[CalledPhone, Peer]:
    """Peer (the engine) -> trunk -> called phone; returns when the phone's call is over."""
    trunk = await SimTrunk.start()
    phone = await CalledPhone.open(NUMBER, behaviour, seed=3)
    trunk.route(NUMBER, phone.sip_address)
    peer = await Peer().open()
    try:
        peer.call(trunk.address, NUMBER, dtmf=dtmf)
        await asyncio.wait_for(phone.done.wait(), wait_s)
        await asyncio.wait_for(peer.ended.wait(), 3)
        await asyncio.sleep(0.05)
    finally:
        phone.close()
        peer.close()
        trunk.close()
    return phone, peer


def quick(**kw: Any) -> CalledBehaviour:
    base: dict[str, Any] = {"rings": 1, "ring_interval_s": 0.1, "key_after_s": 0.3, "hangup_after_s": 0.6}
    base.update(kw)
    return CalledBehaviour(**base)


@pytest.mark.parametrize(
    ("method", "rfc4733", "info"),
    [("rfc4733", ["1"], []), ("info", [], ["1"]), ("rfc4733+info", ["1"], ["1"])],
)
def test_called_party_accepts_by_key_transport(method: str, rfc4733: list[str], info: list[str]) -> None:
    """ACC-5: the key goes by RFC 4733, SIP INFO (application/dtmf-relay) or both at once."""
    phone, peer = run(lambda: place(quick(key_method=KeyMethod(method))))
    assert peer.log.rfc4733_keys == rfc4733
    assert peer.log.info_keys == info
    assert [k for _, k, _ in phone.obs.keys_sent] == ["1"] * len(KeyMethod(method).parts)
    assert phone.obs.ended_by == "us" and "ByeReceived" in peer.log.kinds()
    assert phone.obs.rtp_packets_received > 0 and phone.obs.rtp_packets_sent > 0


def test_inband_key_with_no_telephone_event_is_heard_by_the_dtmf_detector() -> None:
    """ACC-5: an answer without telephone-event; the key is tones in the audio (ivr.detect finds it)."""
    phone, peer = run(lambda: place(quick(key_method=KeyMethod.INBAND, telephone_event=False, hangup_after_s=0.8)))
    assert peer.log.rfc4733_keys == [] and peer.log.info_keys == []
    digits = [d.digit for d in peer.log.detections() if isinstance(d, det.DtmfEvent)]
    assert digits == ["1"]
    assert phone.obs.errors == []


def test_busy_party_answers_486() -> None:
    """A busy line: 486 Busy Here, no dialog, no media."""
    phone, peer = run(lambda: place(quick(answer=Answer.BUSY, key=None)))
    assert 486 in peer.log.statuses
    assert phone.obs.final_status == 486 and phone.obs.answered_at is None


def test_unanswered_party_rings_until_cancel() -> None:
    """No answer: the phone rings (180) until the engine CANCELs; it answers 487 (RFC 3261 9.2)."""

    async def scenario() -> tuple[CalledPhone, Peer]:
        trunk = await SimTrunk.start()
        phone = await CalledPhone.open(NUMBER, quick(answer=Answer.NO_ANSWER, key=None), seed=1)
        trunk.route(NUMBER, phone.sip_address)
        peer = await Peer().open()
        peer.call(trunk.address, NUMBER)
        await asyncio.sleep(0.5)
        peer.hangup()  # CANCEL
        await asyncio.wait_for(phone.done.wait(), 5)
        await asyncio.wait_for(peer.ended.wait(), 5)
        phone.close()
        peer.close()
        trunk.close()
        return phone, peer

    phone, peer = run(scenario)
    assert 180 in peer.log.statuses and 487 in peer.log.statuses
    assert phone.obs.cancelled_at is not None and phone.obs.answered_at is None


def test_rings_n_times_before_answering() -> None:
    """Answer after N rings: a 180 first, the 200 only after N ring intervals."""
    phone, peer = run(lambda: place(quick(rings=3, ring_interval_s=0.2, key=None, hangup_after_s=0.2)))
    assert peer.log.statuses[:1] == [180]
    assert phone.obs.answered_at is not None and phone.obs.answered_at >= 0.6


@pytest.mark.parametrize(
    ("mode", "direction", "address"),
    [
        (HoldMode.SENDONLY, Direction.SENDONLY, "127.0.0.1"),
        (HoldMode.INACTIVE, Direction.INACTIVE, "127.0.0.1"),
        (HoldMode.ZERO, Direction.SENDRECV, "0.0.0.0"),
    ],
)
def test_hold_by_reinvite_is_detected_by_the_engine_stack(mode: HoldMode, direction: Direction, address: str) -> None:
    """DIS-HOLD: a re-INVITE with sendonly, inactive or c=0.0.0.0 (RFC 3264 section 8.4), ACKed."""
    phone, peer = run(lambda: place(quick(steps=(Step(0.1, Action.HOLD, mode.value),), hangup_after_s=0.6)))
    assert len(peer.log.holds) == 1
    sdp = peer.log.holds[0]
    m = sdp.audio()
    assert m is not None
    assert sdp.stream_direction(m) is direction and sdp.stream_address(m) == address
    assert ("INVITE", 200) in [(m_, s) for _, m_, s in phone.obs.responses]


def test_transfer_by_refer_is_declined_and_reported() -> None:
    """DIS-HOLD: REFER (RFC 3515) reaches the engine, which declines it (603)."""
    phone, peer = run(lambda: place(quick(steps=(Step(0.1, Action.REFER, "+15125550177"),))))
    assert peer.log.refers == ["<sip:+15125550177@127.0.0.1>"]
    assert ("REFER", 603) in [(m, s) for _, m, s in phone.obs.responses]


def test_three_way_flash_sounds_like_a_hookflash_and_dialing() -> None:
    """DIS-3WAY: click (< 40 ms), silence, dial tone 350+440 Hz, DTMF digits, a third voice."""
    b = quick(steps=(Step(0.1, Action.FLASH, "5551234"),), hangup_after_s=8.5, talk=False)
    _phone, peer = run(lambda: place(b, wait_s=15))
    found = peer.log.detections()
    digits = "".join(d.digit for d in found if isinstance(d, det.DtmfEvent))
    tones = [t.name for t in found if isinstance(t, det.ToneEvent)]
    assert digits == "5551234"  # the third party's number (the acceptance key went by RFC 4733)
    assert "dial" in tones
    assert any(isinstance(e, det.HookflashEvent) for e in found)


def test_call_waiting_tone_is_440_hz_for_250_ms() -> None:
    """DIS-3WAY: the call-waiting tone is detected as such by ivr.detect."""
    _phone, peer = run(lambda: place(quick(steps=(Step(0.5, Action.CALL_WAITING),), hangup_after_s=1.5, talk=False)))
    tones = [t for t in peer.log.detections() if isinstance(t, det.ToneEvent)]
    assert [t.name for t in tones] == ["call_waiting"]
    assert 200 <= tones[0].end_ms - tones[0].start_ms <= 300


def test_stray_keys_after_acceptance_use_the_key_method() -> None:
    """DIS-DIGIT: keys pressed during the conversation arrive after the acceptance key."""
    b = quick(steps=(Step(0.2, Action.KEYS, "5"), Step(0.5, Action.KEYS, "#")), hangup_after_s=1.0)
    phone, peer = run(lambda: place(b))
    assert peer.log.rfc4733_keys == ["1", "5", "#"]
    assert [a for _, a, _ in phone.obs.actions] == ["keys", "keys", "hangup"]


def test_talking_then_silence_then_rtp_stops() -> None:
    """Talk is speech the detectors hear; silence is digital silence; stop_rtp ends the RTP stream
    (DIS-SILENCE, DIS-MEDIA)."""

    async def scenario() -> tuple[CalledPhone, Peer, int, int]:
        b = quick(key=None, steps=(Step(3.0, Action.SILENCE), Step(4.0, Action.STOP_RTP)), hangup_after_s=5.5)
        trunk = await SimTrunk.start()
        phone = await CalledPhone.open(NUMBER, b, seed=11)
        trunk.route(NUMBER, phone.sip_address)
        peer = await Peer().open()
        peer.call(trunk.address, NUMBER)
        await asyncio.wait_for(peer.answered.wait(), 5)
        await asyncio.sleep(4.6)
        before = len(peer.log.audio)
        await asyncio.sleep(0.5)
        after = len(peer.log.audio)
        await asyncio.wait_for(phone.done.wait(), 5)
        phone.close()
        peer.close()
        trunk.close()
        return phone, peer, before, after

    _phone, peer, before, after = run(scenario)
    assert after == before  # no RTP after stop_rtp
    pcm = peer.log.pcm()
    assert abs(pcm[: 3 * 8000].astype(int)).max() > 1000  # speech in the first seconds
    assert abs(pcm[int(3.3 * 8000) : int(4.0 * 8000)].astype(int)).max() <= 8  # then digital silence


def test_static_line_is_noise_not_silence() -> None:
    """DIS-NOISE: a static-filled line carries broadband noise the whole time."""
    _phone, peer = run(lambda: place(quick(key=None, static=True, talk=False, hangup_after_s=1.0)))
    pcm = peer.log.pcm().astype(float)
    assert len(pcm) > 4000
    rms = float((pcm[1000:] ** 2).mean() ** 0.5)
    assert rms > 100


def test_engine_hangs_up_first() -> None:
    """The engine's BYE ends the phone's call: bye_received_at is recorded and its RTP stops."""

    async def scenario() -> CalledPhone:
        trunk = await SimTrunk.start()
        phone = await CalledPhone.open(NUMBER, quick(hangup_after_s=None), seed=2)
        trunk.route(NUMBER, phone.sip_address)
        peer = await Peer().open()
        peer.call(trunk.address, NUMBER)
        await asyncio.wait_for(peer.answered.wait(), 5)
        await asyncio.sleep(0.5)
        peer.hangup()
        await asyncio.wait_for(phone.done.wait(), 5)
        phone.close()
        peer.close()
        trunk.close()
        return phone

    phone = run(scenario)
    assert phone.obs.ended_by == "peer" and phone.obs.bye_received_at is not None


def test_hangup_during_announcement_before_any_key() -> None:
    """ACC-4: the called party hangs up without pressing anything."""
    phone, peer = run(lambda: place(quick(key=None, steps=(Step(0.3, Action.HANGUP),), hangup_after_s=None)))
    assert phone.obs.keys_sent == [] and phone.obs.ended_by == "us"
    assert "ByeReceived" in peer.log.kinds()


def test_facility_caller_with_inmate_id_speaks_its_name_and_hangs_up() -> None:
    """A gateway call: X-Inmate-Id in the INVITE, the name clip after the answer, hang-up on time."""

    async def scenario() -> tuple[FacilityCaller, Peer]:
        peer = await Peer().open()
        b = CallerBehaviour(
            inmate_id="A1001", name_clip="name-marcus", name_after_s=0.2, talk=False, hangup_after_s=2.0
        )
        caller = await FacilityCaller.open(NUMBER, b, peer.address, seed=5)
        caller.call()
        await asyncio.wait_for(peer.invited.wait(), 5)
        peer.answer()
        await asyncio.wait_for(caller.done.wait(), 10)
        await asyncio.wait_for(peer.ended.wait(), 5)
        caller.close()
        peer.close()
        return caller, peer

    caller, peer = run(scenario)
    invite = peer.log.invite
    assert invite is not None and invite.inmate_id == "A1001"
    assert invite.request_uri.startswith(f"sip:{NUMBER}@127.0.0.1:")
    pcm = peer.log.pcm()
    voiced = (abs(pcm.astype(int)) > 1000).sum()
    assert voiced > 800  # about a second of speech: the name clip
    assert caller.obs.ended_by == "us" and caller.obs.bye_sent_at is not None


def test_facility_caller_enters_pin_by_rfc4733() -> None:
    """Without X-Inmate-Id the caller enters its PIN as RFC 4733 keys, one event per digit."""

    async def scenario() -> tuple[FacilityCaller, Peer]:
        peer = await Peer().open()
        b = CallerBehaviour(pin="481516", pin_after_s=0.2, name_clip=None, talk=False, hangup_after_s=2.5)
        caller = await FacilityCaller.open(NUMBER, b, peer.address, seed=6)
        caller.call()
        await asyncio.wait_for(peer.invited.wait(), 5)
        peer.answer()
        await asyncio.wait_for(caller.done.wait(), 10)
        caller.close()
        peer.close()
        return caller, peer

    _caller, peer = run(scenario)
    assert peer.log.invite is not None and peer.log.invite.inmate_id is None
    assert "".join(peer.log.rfc4733_keys) == "481516"


def test_facility_caller_sees_a_rejection() -> None:
    """An engine that refuses the INVITE (403 to a non-gateway) ends the caller's attempt."""

    async def scenario() -> FacilityCaller:
        peer = await Peer().open()
        caller = await FacilityCaller.open(NUMBER, CallerBehaviour(inmate_id="A1"), peer.address)
        caller.call()
        await asyncio.wait_for(peer.invited.wait(), 5)
        call_id = peer.call_id
        assert peer.sip is not None and call_id is not None
        peer.sip.command(lambda ua, now: ua.reject(call_id, 403, now))
        await asyncio.wait_for(caller.done.wait(), 5)
        caller.close()
        peer.close()
        return caller

    assert run(scenario).obs.final_status == 403
