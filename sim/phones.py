"""Simulated phones over real UDP and RTP (issue 6): called parties and facility callers.

Each phone is one :class:`~sim.sipua.SimUserAgent` on its own loopback UDP socket (served by
:mod:`ivr.net.sip_udp`) and one RTP socket (:mod:`ivr.net.rtp_udp`, paced on the 20 ms grid by
:class:`ivr.rtp.session.RtpSender`). What it says comes from :class:`sim.media.AudioScript`.

A :class:`CalledPhone` waits for the trunk to bring it an INVITE and then follows its
:class:`CalledBehaviour`: ring N times then answer, or be busy (486), or never answer (until the
CANCEL), or decline (603); after answering it presses a key (RFC 4733, SIP INFO or in-band tones,
or several ways at once), talks (speech clips), and runs timed :class:`Step` s: hold by re-INVITE
(``sendonly``, ``inactive``, ``c=0.0.0.0``), transfer by REFER, a three-way flash, a call-waiting
tone, stray keys, silence, static, RTP that stops, and the hang-up.

A :class:`FacilityCaller` INVITEs the engine as the facility gateway, with ``X-Inmate-Id`` or by
entering a PIN as RFC 4733 keys, says its name clip when asked (a delay after the answer),
talks, and hangs up at a given time.

Every phone keeps an :class:`Observation` of what it did and heard (key times, BYE times, RTP
counts, responses to its requests) for tests and for ``ivr sim run``'s table when the engine's
records are not at hand. Times in an observation are seconds since the phone's call began
(INVITE sent or received), from the event loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ivr.log import get_logger
from ivr.net.rtp_udp import RtpEndpoint
from ivr.net.sip_udp import SipUdpEndpoint, open_sip_endpoint
from ivr.rtp import g711
from ivr.rtp.packet import RtpPacket
from ivr.rtp.rfc4733 import TelephoneEventPayload, event_to_key
from ivr.rtp.session import RtpSender
from ivr.sip.events import (
    ByeReceived,
    CallAnswered,
    CallCancelled,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallRinging,
    InviteReceived,
    KeyReceived,
    MediaUpdated,
    UAEvent,
)
from ivr.sip.sdp import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    Codec,
    Direction,
    MediaParams,
    SdpError,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
)
from ivr.sip.useragent import UAConfig
from sim import media
from sim.sipua import InDialogResponse, SimUserAgent

log = get_logger("sim.phones")

Addr = tuple[str, int]
FRAME_SAMPLES = 160
TOP_UP_FRAMES = 6  # audio kept queued ahead of the pacer (120 ms): inserts start within that
VOICE_RMS = 200.0  # a received frame louder than this (about -44 dBm0) counts as heard sound
SAFETY_CALL_S = 3600.0  # a simulated call never outlives this, whatever the script says


class KeyMethod(enum.StrEnum):
    """How a called party sends its keys (ACC-5)."""

    RFC4733 = "rfc4733"
    INFO = "info"
    INBAND = "inband"
    RFC4733_INFO = "rfc4733+info"  # the same key two ways at once: must count once (ACC-5)
    RFC4733_INBAND = "rfc4733+inband"

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.value.split("+"))


class Answer(enum.StrEnum):
    ANSWER = "answer"
    BUSY = "busy"  # 486 Busy Here
    NO_ANSWER = "no_answer"  # rings until CANCEL
    DECLINE = "decline"  # 603 Decline


class Action(enum.StrEnum):
    """Timed actions of a called party (DOMAIN.md DIS-*)."""

    HOLD = "hold"  # arg: sendonly | inactive | 0.0.0.0 (DIS-HOLD)
    RESUME = "resume"
    REFER = "refer"  # arg: the number to transfer to (DIS-HOLD)
    FLASH = "flash"  # arg: the digits of the third party (DIS-3WAY)
    CALL_WAITING = "call_waiting"  # DIS-3WAY
    KEYS = "keys"  # arg: stray keys, sent by the behaviour's key method (DIS-DIGIT)
    SILENCE = "silence"  # digital silence from now on (DIS-SILENCE)
    STATIC = "static"  # static noise from now on (DIS-NOISE)
    STOP_RTP = "stop_rtp"  # no more RTP (DIS-MEDIA)
    TALK = "talk"  # start talking again
    HANGUP = "hangup"


class HoldMode(enum.StrEnum):
    SENDONLY = "sendonly"
    INACTIVE = "inactive"
    ZERO = "0.0.0.0"


@dataclass(frozen=True, slots=True)
class Step:
    """An action ``at_s`` seconds after the acceptance key (after the answer when there is none)."""

    at_s: float
    action: Action
    arg: str = ""


@dataclass(frozen=True, slots=True)
class CalledBehaviour:
    """What a called party does. Times are seconds of the simulated call (already scaled)."""

    answer: Answer = Answer.ANSWER
    rings: int = 1
    ring_interval_s: float = 1.0
    key: str | None = "1"  # pressed after the answer; None: says nothing
    key_method: KeyMethod = KeyMethod.RFC4733
    key_after_s: float = 3.0  # after the answer (barge-in: during the announcement)
    telephone_event: bool = True  # False: our SDP answer has no telephone-event (in-band only)
    codec: str = "PCMU"  # preferred; the offer's order wins when we support it
    talk: bool = True
    static: bool = False  # a static-filled line from the start (DIS-NOISE)
    steps: tuple[Step, ...] = ()
    hangup_after_s: float | None = 30.0  # after the key (after the answer without key); None: never
    talk_clips: tuple[str, ...] = ()  # default: the shipped family-* clips

    def __post_init__(self) -> None:
        if self.rings < 0:
            raise ValueError("rings must be >= 0")
        if self.key is not None and (len(self.key) != 1 or self.key.upper() not in "0123456789*#ABCD"):
            raise ValueError(f"not a DTMF key: {self.key!r}")
        if self.codec.upper() not in ("PCMU", "PCMA"):
            raise ValueError("codec must be PCMU or PCMA")


@dataclass(frozen=True, slots=True)
class CallerBehaviour:
    """What a facility caller does (times in seconds after the engine answers)."""

    inmate_id: str | None = None  # sent as X-Inmate-Id (trusted from gateways only)
    pin: str | None = None  # entered as RFC 4733 keys when there is no inmate id
    pin_after_s: float = 2.0
    name_clip: str | None = "name-marcus"  # said when asked for the name (ACC-1)
    name_after_s: float = 5.0
    talk: bool = True
    talk_after_s: float = 8.0
    silent_after_s: float | None = None  # digital silence from then on (DIS-SILENCE)
    hangup_after_s: float | None = None  # None: wait for the engine's BYE
    codec: str = "PCMU"
    talk_clips: tuple[str, ...] = ()  # default: the shipped caller-* clips


@dataclass(slots=True)
class Observation:
    """What one phone did and heard. Times: seconds since its call began."""

    role: str  # "called" | "facility"
    number: str
    call_id: str | None = None
    invited_at: float | None = None
    ringing: int = 0  # provisional responses sent (called) or received (facility)
    answered_at: float | None = None
    final_status: int | None = None  # of the INVITE: 200, 486, 487 (cancelled), 408 ...
    cancelled_at: float | None = None
    bye_received_at: float | None = None
    bye_sent_at: float | None = None
    ended_at: float | None = None
    ended_by: str | None = None  # "us" | "peer" | None (never established)
    keys_sent: list[tuple[float, str, str]] = field(default_factory=list)  # (at, key, method)
    actions: list[tuple[float, str, str]] = field(default_factory=list)  # (at, action, arg)
    responses: list[tuple[float, str, int]] = field(default_factory=list)  # (at, method, status)
    info_keys_received: list[str] = field(default_factory=list)
    rfc4733_keys_received: list[str] = field(default_factory=list)
    media_updates: int = 0
    rtp_packets_sent: int = 0
    rtp_packets_received: int = 0
    rtp_bytes_received: int = 0
    heard_sound_ms: int = 0  # received frames above VOICE_RMS
    first_rtp_at: float | None = None
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = [list(v) for v in value] if name in ("keys_sent", "actions", "responses") else value
        return out


def _codec_pref(name: str) -> tuple[Codec, ...]:
    return (PCMU, PCMA) if name.upper() == "PCMU" else (PCMA, PCMU)


class _Phone:
    """The parts every simulated phone shares: SIP endpoint, RTP endpoint, pacing, recording."""

    def __init__(self, role: str, number: str, *, seed: int, host: str = "127.0.0.1", tap: Any = None) -> None:
        self.obs = Observation(role=role, number=number)
        self.host = host
        self._rng = random.Random(seed)
        self._tap = tap
        self.sip: SipUdpEndpoint | None = None
        self.ua: SimUserAgent | None = None
        self.rtp: RtpEndpoint | None = None
        self.sender: RtpSender | None = None
        self.script: media.AudioScript | None = None
        self.params: MediaParams | None = None
        self.call_id: str | None = None
        self.done = asyncio.Event()
        self.established = asyncio.Event()
        self._t0: float | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._codec: g711.Codec = g711.Codec.PCMU
        self._keep_audio = False
        self.heard: list[np.ndarray[Any, np.dtype[np.int16]]] = []
        self._top_up_handle: asyncio.TimerHandle | None = None
        self._sent_seen = 0

    # -- plumbing ----------------------------------------------------------------------------

    async def _open(self, contact_user: str, *, tap_sip: bool = True) -> None:
        # A called phone's SIP all passes the trunk, which has its own tap: not twice in a capture.
        self.ua = SimUserAgent(
            UAConfig(local_addr=(self.host, 0), contact_user=contact_user, user_agent="ivr-sim-phone"),
            tap=self._tap if tap_sip else None,
        )
        self.sip = await open_sip_endpoint(self.ua, (self.host, 0), self._on_events)
        self.rtp = await RtpEndpoint.open(self._on_rtp, host=self.host)

    @property
    def sip_address(self) -> Addr:
        assert self.sip is not None
        return self.sip.local_addr

    @property
    def loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def t(self) -> float:
        """Seconds since this phone's call began."""
        now = self.loop_time
        if self._t0 is None:
            self._t0 = now
        return round(now - self._t0, 4)

    def _on_events(self, events: list[UAEvent]) -> None:
        for event in events:
            try:
                self.on_event(event)
            except Exception as exc:  # a phone bug must not kill the loop: note it, end the call
                log.exception("phone.event_failed", event=type(event).__name__)
                self.obs.errors.append(f"{type(event).__name__}: {exc}")
        self._drain_in_dialog()

    def _drain_in_dialog(self) -> None:
        if self.ua is None:
            return
        while self.ua.in_dialog_events:
            ev = self.ua.in_dialog_events.pop(0)
            self.on_in_dialog(ev)

    def on_event(self, event: UAEvent) -> None:  # overridden
        raise NotImplementedError

    def on_in_dialog(self, ev: InDialogResponse) -> None:
        self.obs.responses.append((self.t(), ev.method, ev.status))

    def command(self, fn: Any) -> Any:
        assert self.sip is not None
        result = self.sip.command(fn)
        self._drain_in_dialog()
        return result

    def _on_rtp(self, packet: RtpPacket, source: Addr, now: float) -> None:
        if self._tap is not None:
            self._tap(packet.to_bytes(), source, self.rtp.local_address if self.rtp else source)
        obs = self.obs
        obs.rtp_packets_received += 1
        obs.rtp_bytes_received += len(packet.payload)
        if obs.first_rtp_at is None:
            obs.first_rtp_at = self.t()
        params = self.params
        if params is not None and params.dtmf_payload_type == packet.payload_type:
            block = TelephoneEventPayload.parse(packet.payload)
            if block is not None and packet.marker:
                key = event_to_key(block.event)
                if key:
                    obs.rfc4733_keys_received.append(key)
            return
        codec = g711.Codec.from_payload_type(packet.payload_type)
        if codec is None:
            return
        pcm = codec.decode(packet.payload)
        if len(pcm) and float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) > VOICE_RMS:
            obs.heard_sound_ms += len(pcm) // 8
        if self._keep_audio:
            self.heard.append(pcm)

    def _start_media(self, local: SessionDescription, remote: SessionDescription | None, talk_clips: list[str]) -> None:
        if remote is None or self.rtp is None:
            self.obs.errors.append("no SDP from the peer: no media")
            return
        try:
            self.params = negotiate(local, remote)
        except SdpError as exc:
            self.obs.errors.append(f"negotiation failed: {exc}")
            return
        codec = g711.Codec.from_name(self.params.codec.name) or g711.Codec.PCMU
        self._codec = codec
        self.sender = RtpSender(codec, self._rng, telephone_event_pt=self.params.dtmf_payload_type)
        self.script = media.AudioScript(self._rng, talk_clips=talk_clips)
        self._top_up()
        dest = (self.params.remote_address, self.params.remote_port)
        self.rtp.start_paced(self.sender, lambda: self._destination(), on_sent=self._on_sent)
        log.debug("phone.media", number=self.obs.number, dest=f"{dest[0]}:{dest[1]}", codec=codec.name)

    def _destination(self) -> Addr | None:
        p = self.params
        if p is None or p.remote_address in ("0.0.0.0", "::", "") or p.remote_port == 0:
            return None
        return (p.remote_address, p.remote_port)

    def _on_sent(self, packets: list[RtpPacket], now: float) -> None:
        self.obs.rtp_packets_sent += len(packets)
        if self._tap is not None and self.rtp is not None:
            dest = self._destination()
            if dest is not None:
                for p in packets:
                    self._tap(p.to_bytes(), self.rtp.local_address, dest)
        self._top_up()

    def _top_up(self) -> None:
        sender, script = self.sender, self.script
        if sender is None or script is None:
            return
        missing = TOP_UP_FRAMES - sender.queued_frames
        if missing > 0:
            sender.queue_audio(script.next(missing * FRAME_SAMPLES))

    def _flush_audio(self) -> None:
        """Drop what is queued so an insert starts at once (within one frame)."""
        if self.sender is not None:
            self.sender.clear_audio()
            self._top_up()

    def stop_media(self) -> None:
        if self.rtp is not None:
            self.rtp.stop_paced()

    def _ended(self, by: str | None) -> None:
        if self.obs.ended_at is None:
            self.obs.ended_at = self.t()
            self.obs.ended_by = by
        self.stop_media()
        self.done.set()

    async def sleep_until(self, at_s: float) -> bool:
        """Sleep until ``at_s`` seconds into the call; False when the call ended first."""
        delay = at_s - self.t()
        if self.done.is_set():
            return False
        if delay <= 0:
            return True
        try:
            await asyncio.wait_for(self.done.wait(), delay)
        except TimeoutError:
            return True
        return False

    def send_keys(self, keys: str, method: KeyMethod) -> None:
        for part in method.parts:
            for key in keys:
                self.obs.keys_sent.append((self.t(), key, part))
            if part == "rfc4733":
                if self.sender is None or self.sender.telephone_event_pt is None:
                    self.obs.errors.append("rfc4733 key without negotiated telephone-event")
                    continue
                for key in keys:
                    self.sender.send_key(key, duration_ms=120)
            elif part == "info":
                for key in keys:
                    self.info_key(key)
            elif part == "inband" and self.script is not None:
                self.script.insert(media.dtmf_pcm(keys))
                self._flush_audio()

    def info_key(self, key: str) -> None:
        signal = {"*": "10", "#": "11"}.get(key, key)
        body = f"Signal={signal}\r\nDuration=160\r\n".encode()
        call_id = self.call_id
        if call_id is None:
            return
        self.command(lambda ua, now: ua.request(call_id, "INFO", now, body=body, content_type="application/dtmf-relay"))

    def hangup(self) -> None:
        call_id = self.call_id
        if call_id is None or self.done.is_set():
            return
        self.obs.bye_sent_at = self.t()
        self.command(lambda ua, now: ua.hangup(call_id, now))
        self.stop_media()

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.rtp is not None:
            self.rtp.close()
        if self.sip is not None:
            self.sip.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.append(task)


class CalledPhone(_Phone):
    """A called party behind the trunk. ``await CalledPhone.open(number, behaviour)``, then
    route ``number`` to ``phone.sip_address`` at the trunk, then ``await phone.done.wait()``."""

    def __init__(self, number: str, behaviour: CalledBehaviour, *, seed: int = 0, tap: Any = None) -> None:
        super().__init__("called", number, seed=seed, tap=tap)
        self.behaviour = behaviour
        self._offer: SessionDescription | None = None
        self._local: SessionDescription | None = None
        self._version = 1
        self.invited = asyncio.Event()
        # The facility caller of the same call: "both parties silent" (DIS-SILENCE) needs the
        # caller to go quiet when the called party does.
        self.partner: _Phone | None = None

    @classmethod
    async def open(cls, number: str, behaviour: CalledBehaviour, *, seed: int = 0, tap: Any = None) -> CalledPhone:
        phone = cls(number, behaviour, seed=seed, tap=tap)
        await phone._open(number.lstrip("+") or "phone", tap_sip=False)
        return phone

    def on_event(self, event: UAEvent) -> None:
        obs = self.obs
        if isinstance(event, InviteReceived):
            if self.call_id is not None:  # one call per phone: a second INVITE is busy
                self.command(lambda ua, now: ua.reject(event.call_id, 486, now))
                return
            self.call_id = event.call_id
            obs.call_id = event.call_id
            obs.invited_at = self.t()
            self._offer = event.sdp
            self.invited.set()
            self._spawn(self._answer_flow(event.call_id))
        elif isinstance(event, CallConfirmed):
            obs.answered_at = self.t()
            self.established.set()
            assert self._local is not None
            talk = list(self.behaviour.talk_clips) or media.clips("family-")
            self._start_media(self._local, self._offer or event.sdp, talk)
            if self.script is not None:
                self.script.static = self.behaviour.static
            self._spawn(self._script())
        elif isinstance(event, CallCancelled):
            obs.cancelled_at = self.t()
            obs.final_status = 487
            self._ended(None)
        elif isinstance(event, ByeReceived):
            obs.bye_received_at = self.t()
            self._ended("peer")
        elif isinstance(event, CallEnded):
            self._ended("us")
        elif isinstance(event, CallFailed):
            obs.errors.append(f"call failed {event.status} {event.reason}")
            self._ended(None)
        elif isinstance(event, KeyReceived):
            obs.info_keys_received.append(event.key)
        elif isinstance(event, MediaUpdated):
            obs.media_updates += 1

    async def _answer_flow(self, call_id: str) -> None:
        b = self.behaviour
        await asyncio.sleep(0.02)
        if b.answer is Answer.BUSY:
            self.obs.final_status = 486
            self.command(lambda ua, now: ua.reject(call_id, 486, now))
            self._ended(None)
            return
        if b.answer is Answer.DECLINE:
            self.obs.final_status = 603
            self.command(lambda ua, now: ua.reject(call_id, 603, now))
            self._ended(None)
            return
        if b.answer is Answer.NO_ANSWER or b.rings > 0:
            self.obs.ringing += 1
            self.command(lambda ua, now: ua.ringing(call_id, now))
        if b.answer is Answer.NO_ANSWER:
            await self.sleep_until(self.t() + SAFETY_CALL_S)  # until the CANCEL
            return
        if not await self.sleep_until(self.t() + b.rings * b.ring_interval_s):
            return
        if self.done.is_set() or self.ua is None or self.ua.call_phase(call_id) is None:
            return
        assert self.rtp is not None
        if self._offer is None:
            self.obs.errors.append("INVITE without SDP offer: answered with an offer")
            local = build_offer(
                self.host,
                self.rtp.local_address[1],
                session_id=self._rng.getrandbits(31),
                codecs=_codec_pref(b.codec),
                dtmf=TELEPHONE_EVENT if b.telephone_event else None,
            )
        else:
            try:
                local = build_answer(
                    self._offer,
                    self.host,
                    self.rtp.local_address[1],
                    session_id=self._rng.getrandbits(31),
                    codecs=_codec_pref(b.codec),
                    accept_dtmf=b.telephone_event,
                )
            except SdpError as exc:
                self.obs.errors.append(f"cannot answer the offer: {exc}")
                self.command(lambda ua, now: ua.reject(call_id, 488, now))
                self._ended(None)
                return
        self._local = local
        self.obs.final_status = 200
        self.command(lambda ua, now: ua.answer(call_id, local, now))

    async def _script(self) -> None:
        b = self.behaviour
        base = self.t()
        if b.key is not None:
            if not await self.sleep_until(base + b.key_after_s):
                return
            self.send_keys(b.key, b.key_method)
            base = self.t()
        if b.talk and self.script is not None:
            self.script.talk(True)
        for step in sorted(b.steps, key=lambda s: s.at_s):
            if not await self.sleep_until(base + step.at_s):
                return
            self.perform(step)
        if b.hangup_after_s is not None:
            if not await self.sleep_until(base + b.hangup_after_s):
                return
            self.obs.actions.append((self.t(), Action.HANGUP.value, ""))
            self.hangup()
        else:
            await self.sleep_until(base + SAFETY_CALL_S)

    def perform(self, step: Step) -> None:
        """Do one timed action now."""
        self.obs.actions.append((self.t(), step.action.value, step.arg))
        script = self.script
        if step.action is Action.HOLD:
            self._reinvite(HoldMode(step.arg or "sendonly"))
        elif step.action is Action.RESUME:
            self._reinvite(None)
        elif step.action is Action.REFER:
            target = step.arg or "+15125550123"
            call_id = self.call_id
            if call_id is not None:
                refer_to = f"<sip:{target}@{self.host}>"
                self.command(lambda ua, now: ua.request(call_id, "REFER", now, headers=(("Refer-To", refer_to),)))
        elif step.action is Action.FLASH and script is not None:
            script.insert(
                media.three_way_pcm(step.arg or "5551234", rng=np.random.default_rng(self._rng.getrandbits(32)))
            )
            self._flush_audio()
        elif step.action is Action.CALL_WAITING and script is not None:
            script.insert(media.call_waiting_pcm())
            self._flush_audio()
        elif step.action is Action.KEYS:
            self.send_keys(step.arg or "5", self.behaviour.key_method)
        elif step.action is Action.SILENCE and script is not None:
            for phone in (self, self.partner):
                if phone is not None and phone.script is not None:
                    phone.script.talk(False)
                    phone.script.silent = True
                    phone.script.static = False
                    phone._flush_audio()
        elif step.action is Action.STATIC and script is not None:
            script.static = True
        elif step.action is Action.TALK and script is not None:
            script.silent = False
            script.talk(True)
        elif step.action is Action.STOP_RTP:
            self.stop_media()
        elif step.action is Action.HANGUP:
            self.hangup()

    def _reinvite(self, mode: HoldMode | None) -> None:
        call_id = self.call_id
        if call_id is None or self.rtp is None:
            return
        self._version += 1
        direction = Direction.SENDRECV
        address = self.host
        if mode is HoldMode.SENDONLY:
            direction = Direction.SENDONLY
        elif mode is HoldMode.INACTIVE:
            direction = Direction.INACTIVE
        elif mode is HoldMode.ZERO:
            address = "0.0.0.0"
        session_id = self._local.origin.session_id if self._local else 1
        te = TELEPHONE_EVENT if self.behaviour.telephone_event else None
        codecs = (self.params.codec,) if self.params else _codec_pref(self.behaviour.codec)
        offer = build_offer(
            address,
            self.rtp.local_address[1],
            session_id=session_id,
            session_version=self._version,
            codecs=codecs,
            dtmf=te,
            direction=direction,
        )
        if mode is HoldMode.INACTIVE:
            self.stop_media()  # inactive: neither side sends (RFC 3264 section 8.4)
        self.command(lambda ua, now: ua.request(call_id, "INVITE", now, body=offer.to_bytes()))


class FacilityCaller(_Phone):
    """A facility phone behind the gateway, calling ``number`` through the engine at ``engine``."""

    def __init__(
        self, number: str, behaviour: CallerBehaviour, engine: Addr, *, seed: int = 0, tap: Any = None
    ) -> None:
        super().__init__("facility", number, seed=seed, tap=tap)
        self.behaviour = behaviour
        self.engine = engine
        self._local: SessionDescription | None = None

    @classmethod
    async def open(
        cls, number: str, behaviour: CallerBehaviour, engine: Addr, *, seed: int = 0, tap: Any = None
    ) -> FacilityCaller:
        phone = cls(number, behaviour, engine, seed=seed, tap=tap)
        await phone._open(behaviour.inmate_id or "gateway")
        return phone

    def call(self) -> str:
        """Send the INVITE (``sip:<number>@<engine>``); returns the SIP Call-ID."""
        assert self.rtp is not None
        b = self.behaviour
        self._local = build_offer(
            self.host, self.rtp.local_address[1], session_id=self._rng.getrandbits(31), codecs=_codec_pref(b.codec)
        )
        headers: tuple[tuple[str, str], ...] = (("X-Inmate-Id", b.inmate_id),) if b.inmate_id else ()
        host, port = self.engine
        uri = f"sip:{self.obs.number}@{host}:{port}"
        self.t()
        offer = self._local
        call_id: str = self.command(
            lambda ua, now: ua.invite(
                uri,
                offer,
                now,
                headers=headers,
                dest=self.engine,
                from_uri=f"sip:{b.inmate_id or 'facility'}@{self.host}",
            )
        )
        self.call_id = call_id
        self.obs.call_id = call_id
        self.obs.invited_at = 0.0
        return call_id

    def on_event(self, event: UAEvent) -> None:
        obs = self.obs
        if isinstance(event, CallRinging):
            obs.ringing += 1
        elif isinstance(event, CallAnswered):
            obs.answered_at = self.t()
            obs.final_status = 200
            self.established.set()
            assert self._local is not None
            talk = list(self.behaviour.talk_clips) or media.clips("caller-")
            self._start_media(self._local, event.sdp, talk)
            self._spawn(self._script())
        elif isinstance(event, CallFailed):
            obs.final_status = event.status
            self._ended(None)
        elif isinstance(event, ByeReceived):
            obs.bye_received_at = self.t()
            self._ended("peer")
        elif isinstance(event, CallEnded):
            self._ended("us")
        elif isinstance(event, KeyReceived):
            obs.info_keys_received.append(event.key)
        elif isinstance(event, MediaUpdated):
            obs.media_updates += 1

    async def _script(self) -> None:
        b = self.behaviour
        base = self.t()
        plan: list[tuple[float, str]] = []
        if b.pin and not b.inmate_id:
            plan.append((b.pin_after_s, "pin"))
        if b.name_clip:
            plan.append((b.name_after_s, "name"))
        if b.talk:
            plan.append((b.talk_after_s, "talk"))
        if b.silent_after_s is not None:
            plan.append((b.silent_after_s, "silent"))
        if b.hangup_after_s is not None:
            plan.append((b.hangup_after_s, "hangup"))
        for at_s, what in sorted(plan, key=lambda p: p[0]):
            if not await self.sleep_until(base + at_s):
                return
            self.obs.actions.append((self.t(), what, ""))
            script = self.script
            if what == "pin" and b.pin:
                self.send_keys(b.pin, KeyMethod.RFC4733)
            elif what == "name" and script is not None and b.name_clip:
                script.say(b.name_clip)
                self._flush_audio()
            elif what == "talk" and script is not None:
                script.talk(True)
            elif what == "silent" and script is not None:
                script.talk(False)
                script.silent = True
                self._flush_audio()
            elif what == "hangup":
                self.hangup()
                return
        await self.sleep_until(base + SAFETY_CALL_S)
