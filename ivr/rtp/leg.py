"""All the RTP state of one call leg, wired together: the object the engine holds per leg.

Sans-I/O. The adapter (:class:`ivr.net.rtp_udp.RtpEndpoint`) hands every parsed packet to
:meth:`MediaLeg.receive`; the engine's 20 ms tick calls :meth:`MediaLeg.pull_frame` and feeds the
frame to the detectors; key reports from SIP INFO and from the in-band detector go through
:meth:`MediaLeg.info_key` / :meth:`MediaLeg.inband_key`, so that the one :class:`KeyNormalizer`
of the leg sees every source (ACC-5).

Inside: :class:`RtpReceiver` (source filter, statistics, media timeout), :class:`JitterBuffer`
(audio for the detectors), :class:`TelephoneEventReceiver` (RFC 4733), :class:`KeyNormalizer`,
:class:`RtpSender` (prompts and RFC 4733 out, paced by the adapter) and, while bridged, a
:class:`MediaRelay` towards the other leg. Detection keeps running while bridged (stray keys,
three-way calling and silence are watched during the conversation).

Telephone-events are *not* relayed between legs by default: keys are signals to the engine, and
passing a called party's digits to the facility (or the reverse) would let a caller drive a
far-end IVR during a monitored call. ``relay_events=True`` in :meth:`bridge_to` changes that.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ivr.rtp.g711 import Codec
from ivr.rtp.jitter import Frame, JitterBuffer, PlayoutFrame
from ivr.rtp.keys import KeyNormalizer, KeyPress
from ivr.rtp.packet import FIXED_HEADER, RTP_HEADER_LEN, RtpPacket
from ivr.rtp.relay import MediaRelay
from ivr.rtp.rfc4733 import FlashEvent, KeyEnded, KeyStarted, TelephoneEventReceiver
from ivr.rtp.session import (
    DEFAULT_TELEPHONE_EVENT_PT,
    Address,
    IdlePolicy,
    MediaTimedOut,
    RtpReceiver,
    RtpSender,
    Verdict,
)
from ivr.types import KeySource, Leg

LegEvent = KeyPress | KeyEnded | FlashEvent
# The fast path's per-packet lookup: the law and its decode table (Codec's properties are Python calls).
_G711_BY_PT: dict[int, tuple[Codec, NDArray[np.int16]]] = {
    codec.payload_type: (codec, codec.decode_table) for codec in Codec
}


class NotSimple(enum.Enum):
    """:meth:`MediaLeg.receive_wire`'s answer for a datagram the fast path does not handle."""

    NOT_SIMPLE = "not_simple"


NOT_SIMPLE = NotSimple.NOT_SIMPLE


@dataclass(frozen=True, slots=True)
class RemoteMedia:
    """What offer/answer (RFC 3264) settled for this leg.

    ``telephone_event_pt`` is the payload type *the peer's* SDP gave telephone-event/8000: we send
    RFC 4733 with it (None: the peer has none, keys must go in-band). ``local_telephone_event_pt``
    is the one *our* SDP gave: the peer sends with it (RFC 3264 section 5.1: a payload type number
    is the receiver's choice, so the two may differ when we were the offerer).
    """

    address: Address
    codec: Codec
    telephone_event_pt: int | None = DEFAULT_TELEPHONE_EVENT_PT
    local_telephone_event_pt: int | None = DEFAULT_TELEPHONE_EVENT_PT


def _event_types(remote: RemoteMedia) -> frozenset[int]:
    # Accept the PT we declared and, for peers that echo their own numbering, the one they declared.
    return frozenset(pt for pt in (remote.local_telephone_event_pt, remote.telephone_event_pt) if pt is not None)


@dataclass(frozen=True, slots=True)
class Received:
    """The result of one incoming packet."""

    verdict: Verdict
    events: tuple[LegEvent, ...] = ()
    relay: tuple[RtpPacket, ...] = ()  # to send on the *other* leg (to ``other.destination``)


class MediaLeg:
    """RTP in and out for one leg of one call."""

    def __init__(
        self,
        leg: Leg,
        rng: random.Random,
        now: float,
        remote: RemoteMedia,
        *,
        latch: bool = False,
        idle: IdlePolicy = IdlePolicy.SILENCE,
        key_window_s: float = 0.2,
        jitter: JitterBuffer | None = None,
    ) -> None:
        self.leg = leg
        self.remote = remote
        self.sender = RtpSender(remote.codec, rng, telephone_event_pt=remote.telephone_event_pt, idle=idle)
        self.receiver = RtpReceiver(
            now,
            leg=leg,
            latch=latch,
            event_payload_types=_event_types(remote),
        )
        self.receiver.set_remote(remote.address)
        self.jitter = jitter or JitterBuffer()
        self.events = TelephoneEventReceiver()
        self.keys = KeyNormalizer(leg, window_s=key_window_s)
        self._relay: MediaRelay | None = None
        self._relay_events = False
        self.unknown_payload_types = 0

    def update_remote(self, remote: RemoteMedia) -> None:
        """A re-INVITE changed the peer's address, codec or event payload type."""
        self.remote = remote
        self.receiver.set_remote(remote.address)
        self.receiver.event_payload_types = _event_types(remote)
        self.sender.set_codec(remote.codec)
        self.sender.telephone_event_pt = remote.telephone_event_pt

    @property
    def destination(self) -> Address | None:
        """Where this leg's RTP goes (the SDP address, or the latched source)."""
        return self.receiver.destination

    # -- receive ----------------------------------------------------------------------------

    def receive(self, packet: RtpPacket, source: Address, now: float) -> Received:
        """One parsed packet from the adapter."""
        verdict = self.receiver.receive(packet, source, now)
        if verdict is not Verdict.ACCEPTED:
            return Received(verdict)
        events: list[LegEvent] = []
        relay: list[RtpPacket] = []
        if packet.payload_type in self.receiver.event_payload_types:
            for output in self.events.receive(packet, now):
                if isinstance(output, KeyStarted):
                    press = self.keys.press(output.key, KeySource.RFC4733, now, started_at=output.onset_at)
                    if press is not None:
                        events.append(press)
                else:
                    events.append(output)
            if self._relay is not None and self._relay_events:
                relayed = self._relay.relay(packet, now)
                if relayed is not None:
                    relay.append(relayed)
            return Received(verdict, tuple(events), tuple(relay))
        codec = Codec.from_payload_type(packet.payload_type)
        if codec is None:
            self.unknown_payload_types += 1
            return Received(verdict)
        # Decode by the packet's own payload type: a peer may switch between the offered laws.
        self.jitter.push_encoded(packet.timestamp, packet.payload, codec.decode_table, now)
        if self._relay is not None:
            if codec is not self._relay.source_codec:
                self._relay.source_codec = codec
            relayed = self._relay.relay(packet, now)
            if relayed is not None:
                relay.append(relayed)
        return Received(verdict, (), tuple(relay))

    def receive_wire(self, data: bytes, source: Address, now: float) -> bytes | NotSimple | None:
        """The per-packet fast path for the commonest datagram: plain G.711 audio (RFC 3550 fixed
        header only: V=2, no padding, extension or CSRCs) of a payload type we decode.

        Does exactly what ``receive(parse_datagram(data), source, now)`` does for such a packet,
        without building an :class:`RtpPacket`, and returns the relayed packet's wire bytes (or
        None: not accepted, or not bridged). Anything else (telephone-events, RTCP, CSRCs, an
        unknown payload type, malformed data) returns :data:`NOT_SIMPLE`: the caller takes the
        general path. tests/unit/rtp/test_rtp_leg.py proves both paths equal.
        """
        if len(data) < RTP_HEADER_LEN or data[0] != 0x80:
            return NOT_SIMPLE
        second = data[1]
        payload_type = second & 0x7F
        # RTCP (second octet 192..223) has payload-type bits 64..95: never a G.711 type, so it
        # falls through to the general path like every other unknown type.
        g711 = _G711_BY_PT.get(payload_type)
        if g711 is None or payload_type in self.receiver.event_payload_types:
            return NOT_SIMPLE
        codec, table = g711
        _, _, sequence, timestamp, ssrc = FIXED_HEADER.unpack_from(data)
        if self.receiver.receive_header(ssrc, sequence, timestamp, payload_type, source, now) is not Verdict.ACCEPTED:
            return None
        payload = data[RTP_HEADER_LEN:]
        self.jitter.push_encoded(timestamp, payload, table, now)
        relay = self._relay
        if relay is None:
            return None
        if codec is not relay.source_codec:
            relay.source_codec = codec
        return relay.relay_wire(payload_type, sequence, timestamp, ssrc, bool(second & 0x80), payload, now)

    def pull_frame(self, now: float) -> PlayoutFrame:
        """This tick's 20 ms of received audio for the detectors (call once per 20 ms)."""
        return self.jitter.pull(now)

    def pull_encoded(self, now: float) -> Frame:
        """:meth:`pull_frame`'s samples, possibly still G.711 (:class:`EncodedFrame`): the engine
        decodes all legs' frames of a tick in one pass. Call instead of pull_frame, not as well."""
        return self.jitter.pull_frame(now)[0]

    def inband_key(self, key: str, now: float, *, started_at: float | None = None) -> KeyPress | None:
        """The in-band DTMF detector reported ``key``: a new press, or None for a duplicate.

        Pass ``started_at`` = the detector's tone start (``DtmfEvent.start_ms / 1000`` on the
        engine's clock): the detector reports when the tone *ends*, and dedup against RFC 4733 is
        by onset. The jitter-buffer delay is subtracted here (the detector saw the audio that late).
        """
        onset = (now if started_at is None else started_at) - self.jitter.delay_s
        return self.keys.press(key, KeySource.INBAND, now, started_at=onset)

    def info_key(self, key: str, now: float) -> KeyPress | None:
        """A SIP INFO (application/dtmf-relay or application/dtmf) carried ``key``."""
        return self.keys.press(key, KeySource.INFO, now)

    # -- timers -----------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The next time :meth:`handle_timer` has work (an RFC 4733 event whose end was lost)."""
        return self.events.next_deadline()

    def handle_timer(self, now: float) -> list[LegEvent]:
        return [e for e in self.events.handle_timer(now) if not isinstance(e, KeyStarted)]

    def media_timeout(self, now: float, timeout_s: float) -> MediaTimedOut | None:
        """DIS-MEDIA for this leg (see :meth:`RtpReceiver.timed_out`)."""
        return self.receiver.timed_out(now, timeout_s)

    # -- bridge -----------------------------------------------------------------------------

    def bridge_to(self, other: MediaLeg, *, relay_events: bool = False) -> None:
        """Relay this leg's incoming audio to ``other``'s outgoing stream (call on both legs for
        a two-way bridge). The adapter must stop ``other``'s paced sending (relaying stops the
        sender's grid itself on the first packet)."""
        self._relay = MediaRelay(
            other.sender,
            source_codec=self.remote.codec,
            source_event_pt=self.remote.local_telephone_event_pt,
        )
        self._relay_events = relay_events

    def unbridge(self) -> None:
        self._relay = None

    @property
    def bridged(self) -> bool:
        return self._relay is not None

    @property
    def relay(self) -> MediaRelay | None:
        return self._relay
