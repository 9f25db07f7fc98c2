"""A tiny engine-side peer for the simulator's tests: places a call through the trunk to a
simulated called party, or answers a simulated facility caller, and records what arrives.

Built on the engine's own stack (ivr.sip UserAgent, ivr.rtp RFC 4733 receiver, ivr.detect DTMF
receiver for in-band keys), so a phone behaviour that passes here is seen the same way by the
engine.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ivr.detect.bank import detect_samples
from ivr.net.rtp_udp import RtpEndpoint
from ivr.net.sip_udp import SipUdpEndpoint, open_sip_endpoint
from ivr.rtp import g711
from ivr.rtp.packet import RtpPacket
from ivr.rtp.rfc4733 import KeyStarted, TelephoneEventReceiver
from ivr.rtp.session import RtpSender
from ivr.sip.events import (
    ByeReceived,
    CallAnswered,
    CallEnded,
    CallFailed,
    CallRinging,
    HoldDetected,
    HoldResumed,
    InviteReceived,
    KeyReceived,
    TransferRequested,
    UAEvent,
)
from ivr.sip.sdp import SessionDescription, build_answer, build_offer, negotiate
from ivr.sip.useragent import UAConfig, UserAgent

Addr = tuple[str, int]


@dataclass
class PeerLog:
    events: list[tuple[float, str, Any]] = field(default_factory=list)
    rfc4733_keys: list[str] = field(default_factory=list)
    info_keys: list[str] = field(default_factory=list)
    holds: list[SessionDescription] = field(default_factory=list)
    refers: list[str] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    audio: list[np.ndarray[Any, Any]] = field(default_factory=list)
    invite: InviteReceived | None = None

    def kinds(self) -> list[str]:
        return [k for _, k, _ in self.events]

    def pcm(self) -> np.ndarray[Any, Any]:
        return np.concatenate(self.audio) if self.audio else np.zeros(0, dtype=np.int16)

    def detections(self) -> list[Any]:
        """Every detector (ivr.detect) over what this leg received."""
        return detect_samples(self.pcm().astype(np.int16))


class Peer:
    """One call leg on the engine's side."""

    def __init__(self) -> None:
        self.ua = UserAgent(UAConfig(local_addr=("127.0.0.1", 0), contact_user="engine"))
        self.log = PeerLog()
        self.sip: SipUdpEndpoint | None = None
        self.rtp: RtpEndpoint | None = None
        self.call_id: str | None = None
        self.local: SessionDescription | None = None
        self.remote: SessionDescription | None = None
        self.answered = asyncio.Event()
        self.ended = asyncio.Event()
        self.invited = asyncio.Event()
        self._te = TelephoneEventReceiver()
        self._sender: RtpSender | None = None
        self._t0 = 0.0
        self.answer_with_dtmf = True

    async def open(self) -> Peer:
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self.sip = await open_sip_endpoint(self.ua, ("127.0.0.1", 0), self._on_events)
        self.rtp = await RtpEndpoint.open(self._on_rtp)
        return self

    @property
    def address(self) -> Addr:
        assert self.sip is not None
        return self.sip.local_addr

    def _now(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    def _on_events(self, events: list[UAEvent]) -> None:
        for ev in events:
            self.log.events.append((self._now(), type(ev).__name__, ev))
            if isinstance(ev, InviteReceived):
                self.log.invite = ev
                self.call_id = ev.call_id
                self.remote = ev.sdp
                self.invited.set()
            elif isinstance(ev, CallAnswered):
                self.remote = ev.sdp
                self._start_media()
                self.answered.set()
            elif isinstance(ev, CallRinging):
                self.log.statuses.append(ev.status)
            elif isinstance(ev, CallFailed):
                self.log.statuses.append(ev.status)
                self.ended.set()
            elif isinstance(ev, ByeReceived | CallEnded):
                self.ended.set()
            elif isinstance(ev, KeyReceived):
                self.log.info_keys.append(ev.key)
            elif isinstance(ev, HoldDetected):
                self.log.holds.append(ev.sdp)
            elif isinstance(ev, HoldResumed):
                pass
            elif isinstance(ev, TransferRequested):
                self.log.refers.append(ev.refer_to)

    def _on_rtp(self, packet: RtpPacket, source: Addr, now: float) -> None:
        if packet.payload_type == 101:
            for out in self._te.receive(packet, now):
                if isinstance(out, KeyStarted):
                    self.log.rfc4733_keys.append(out.key)
            return
        codec = g711.Codec.from_payload_type(packet.payload_type)
        if codec is None:
            return
        pcm = codec.decode(packet.payload)
        self.log.audio.append(pcm)

    def _start_media(self) -> None:
        assert self.rtp is not None and self.local is not None and self.remote is not None
        params = negotiate(self.local, self.remote)
        codec = g711.Codec.from_name(params.codec.name) or g711.Codec.PCMU
        self._sender = RtpSender(codec, random.Random(1), telephone_event_pt=params.dtmf_payload_type)
        self.rtp.start_paced(self._sender, (params.remote_address, params.remote_port))

    # -- as UAC towards the trunk

    def call(self, trunk: Addr, number: str, *, dtmf: bool = True) -> str:
        assert self.rtp is not None and self.sip is not None
        from ivr.sip.sdp import TELEPHONE_EVENT

        self.local = build_offer(
            "127.0.0.1", self.rtp.local_address[1], session_id=7, dtmf=TELEPHONE_EVENT if dtmf else None
        )
        uri = f"sip:{number}@{trunk[0]}:{trunk[1]}"
        local = self.local
        self.call_id = self.sip.command(lambda ua, now: ua.invite(uri, local, now, dest=trunk))
        return self.call_id

    # -- as UAS for a facility caller

    def answer(self) -> None:
        assert self.rtp is not None and self.sip is not None and self.remote is not None and self.call_id
        self.local = build_answer(self.remote, "127.0.0.1", self.rtp.local_address[1], session_id=9)
        call_id, local = self.call_id, self.local
        self.sip.command(lambda ua, now: ua.answer(call_id, local, now))
        self._start_media()
        self.answered.set()

    def hangup(self) -> None:
        assert self.sip is not None and self.call_id
        call_id = self.call_id
        self.sip.command(lambda ua, now: ua.hangup(call_id, now))

    def close(self) -> None:
        if self.rtp is not None:
            self.rtp.close()
        if self.sip is not None:
            self.sip.close()
