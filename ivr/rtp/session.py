"""RTP sending and receiving state for one leg: SSRC, sequence, timestamps, pacing, statistics.

Sans-I/O: every method takes ``now`` (monotonic seconds); nothing here reads a clock or a socket.

Sending (:class:`RtpSender`)
    The SSRC and the initial sequence number and timestamp are random (RFC 3550 section 5.1), drawn
    from an injected ``random.Random`` so tests and replay are exact. Frames leave on a fixed grid:
    slot ``n`` is due at ``anchor + n * ptime`` (``next_send_at()``); ``due_packets(now)`` returns
    every packet whose slot has come. The grid never drifts (it is not "sleep 20 ms after each
    send"), and a stalled loop catches up at most ``max_catch_up_frames`` slots at once: older slots
    are skipped (their audio is delayed, not lost; the timestamp keeps following the grid, and the
    next packet carries the marker bit, so the receiver sees an ordinary gap). The RTP timestamp is
    tied to the slot (``ts0 + n * 160``), so it advances with real time whatever is sent.
    Marker bit (RFC 3551 section 4.1): first packet after ``start``, after a resync, and after an
    idle gap (``IdlePolicy.SKIP``). RFC 4733 key presses replace audio in their slots.

Receiving (:class:`RtpReceiver`)
    Per-SSRC sequence validation and loss accounting (RFC 3550 appendix A.1 and A.3), interarrival
    jitter (appendix A.8), ``last_packet_at`` and ``timed_out(now, timeout_s)`` for the media
    timeout of the leg (DIS-MEDIA), with the evidence for the call record.

Symmetric RTP (the choice)
    We always *send* to the address and port of the peer's SDP (``set_remote``). We *accept*
    packets only from the SDP's host (any port: some gateways send from another port than they
    announce), which keeps off-path hosts from injecting key presses into a call. Latching
    (``latch=True``) is for peers behind NAT whose SDP names a private address: before the first
    valid stream (two packets in sequence from one SSRC, RFC 3550 appendix A.1) any source is
    accepted; then the destination switches to that source and only it is accepted. Off by
    default: trunks and gateways are configured peers with correct SDP.
"""

from __future__ import annotations

import collections
import enum
import math
import random
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from ivr.rtp.g711 import SAMPLE_RATE_HZ, Codec, transcode
from ivr.rtp.packet import MAX_SEQ, MAX_TIMESTAMP, RtpPacket, seq_diff
from ivr.rtp.rfc4733 import MUTED, EventSlot, TelephoneEventSender
from ivr.types import Evidence, Leg

Address = tuple[str, int]

DEFAULT_PTIME_MS = 20
DEFAULT_TELEPHONE_EVENT_PT = 101


class IdlePolicy(enum.Enum):
    """What the sender does in a slot with no queued audio."""

    SILENCE = "silence"  # send a silent frame: keeps the peer's media timeout and NAT bindings happy
    SKIP = "skip"  # send nothing (silence suppression); the next audio packet gets the marker bit


@dataclass(frozen=True, slots=True)
class SenderStats:
    packets_sent: int
    octets_sent: int  # payload octets (RTCP's sender octet count, RFC 3550 section 6.4.1)
    frames_skipped: int  # grid slots skipped after stalls
    resyncs: int
    event_packets_sent: int


class RtpSender:
    """The outgoing RTP stream of one leg, paced on a monotonic 20 ms grid."""

    def __init__(
        self,
        codec: Codec,
        rng: random.Random,
        *,
        telephone_event_pt: int | None = DEFAULT_TELEPHONE_EVENT_PT,
        ptime_ms: int = DEFAULT_PTIME_MS,
        max_catch_up_frames: int = 3,
        idle: IdlePolicy = IdlePolicy.SILENCE,
    ) -> None:
        if ptime_ms <= 0 or max_catch_up_frames < 1:
            raise ValueError("ptime and the catch-up bound must be positive")
        self.codec = codec
        self.telephone_event_pt = telephone_event_pt
        self.ptime_ms = ptime_ms
        self.frame_samples = SAMPLE_RATE_HZ * ptime_ms // 1000
        # The codec's payload type and idle frame, kept with it (set_codec): Codec is a Python
        # enum whose properties are Python calls, too dear once per packet on the compiled path.
        self.payload_type = codec.payload_type
        self._silence = codec.silence(self.frame_samples)
        self.max_catch_up_frames = max_catch_up_frames
        self.idle = idle
        # RFC 3550 section 5.1: random SSRC, initial sequence number and timestamp.
        self.ssrc = rng.getrandbits(32)
        self._seq = rng.getrandbits(16)
        self._ts0 = rng.getrandbits(32)
        self._anchor: float | None = None
        self._slot = 0  # next slot to send, counted from the anchor
        self._slot_base = 0  # slots before the current anchor (keeps timestamps continuous)
        self._marker_next = True
        self._frames: collections.deque[tuple[bytes, str | None]] = collections.deque()
        self._finished_tags: list[str] = []
        self._events = TelephoneEventSender(ptime_ms=ptime_ms, frame_samples=self.frame_samples)
        self._resume_ref: float | None = None  # when stopped: the time of absolute slot _slot_base
        self._last_timestamp: int | None = None
        self._packets = 0
        self._octets = 0
        self._skipped = 0
        self._resyncs = 0
        self._event_packets = 0

    # -- audio in ---------------------------------------------------------------------------

    def queue_audio(self, samples: NDArray[np.int16], *, tag: str | None = None) -> int:
        """Encode 16-bit PCM and queue it as frames (the last one padded with silence).

        ``tag`` (e.g. a prompt id) is reported by :meth:`pop_finished` once its last frame is sent.
        Returns the number of frames queued.
        """
        payload = self.codec.encode(samples)
        n = self.frame_samples
        frames = [payload[i : i + n] for i in range(0, len(payload), n)]
        if frames and len(frames[-1]) < n:
            frames[-1] = frames[-1] + bytes([self.codec.silence_byte]) * (n - len(frames[-1]))
        for index, frame in enumerate(frames):
            self._frames.append((frame, tag if index == len(frames) - 1 else None))
        if not frames and tag is not None:
            self._finished_tags.append(tag)
        return len(frames)

    def clear_audio(self) -> int:
        """Drop queued audio (barge-in: a key stops the prompt). Returns the frames dropped."""
        dropped = len(self._frames)
        self._frames.clear()
        return dropped

    def set_codec(self, codec: Codec) -> None:
        """Switch law (a re-INVITE changed the codec); queued frames are converted, not lost."""
        if codec is self.codec:
            return
        self._frames = collections.deque((transcode(frame, self.codec, codec), tag) for frame, tag in self._frames)
        self.codec = codec
        self.payload_type = codec.payload_type
        self._silence = codec.silence(self.frame_samples)

    @property
    def queued_frames(self) -> int:
        return len(self._frames)

    def pop_finished(self) -> list[str]:
        """Tags whose last frame has been sent since the last call (PromptFinished for the machine)."""
        tags, self._finished_tags = self._finished_tags, []
        return tags

    def send_key(self, key: str, *, duration_ms: int = 100, volume: int = 10, gap_ms: int = 60) -> None:
        """Queue an RFC 4733 key press (needs a negotiated telephone-event payload type)."""
        if self.telephone_event_pt is None:
            raise ValueError("the peer did not negotiate telephone-event")
        self._events.queue_key(key, duration_ms=duration_ms, volume=volume, gap_ms=gap_ms)

    @property
    def sending_keys(self) -> bool:
        return self._events.busy

    # -- pacing -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._anchor is not None

    def start(self, now: float) -> None:
        """Start (or restart) the grid at ``now``. After a pause the timestamp jumps by the time
        elapsed, so the peer's playout sees real time (RFC 3550 section 5.1)."""
        if self._anchor is not None:
            return
        if self._resume_ref is not None:
            self._slot_base += max(0, math.floor((now - self._resume_ref) * 1000 / self.ptime_ms + 1e-6))
        self._anchor = now
        self._slot = 0
        self._marker_next = True

    def stop(self) -> None:
        """Stop sending (e.g. while relaying); queued audio stays queued."""
        if self._anchor is None:
            return
        self._slot_base += self._slot
        self._resume_ref = self._anchor + self._slot * self.ptime_ms / 1000
        self._anchor = None
        self._slot = 0

    def next_send_at(self) -> float | None:
        """When the next slot is due (``anchor + n * ptime``), or None when stopped."""
        if self._anchor is None:
            return None
        return self._anchor + self._slot * self.ptime_ms / 1000

    def due_packets(self, now: float) -> list[RtpPacket]:
        """Every packet whose slot is due at ``now``, oldest first (bounded catch-up)."""
        if self._anchor is None:
            return []
        # +1e-6 slot (20 ns): a timer firing on the slot (or a hair early) must not miss it.
        current = math.floor((now - self._anchor) * 1000 / self.ptime_ms + 1e-6)
        due = current - self._slot + 1
        if due <= 0:
            return []
        if due > self.max_catch_up_frames:
            skipped = due - self.max_catch_up_frames
            self._slot += skipped
            self._skipped += skipped
            self._resyncs += 1
            self._marker_next = True
        packets: list[RtpPacket] = []
        while self._slot <= current:
            packet = self._packet_for_slot(self._slot_base + self._slot)
            self._slot += 1
            if packet is not None:
                packets.append(packet)
        return packets

    def _slot_timestamp(self, absolute_slot: int) -> int:
        return (self._ts0 + absolute_slot * self.frame_samples) % MAX_TIMESTAMP

    def _packet_for_slot(self, absolute_slot: int) -> RtpPacket | None:
        timestamp = self._slot_timestamp(absolute_slot)
        event = self._events.slot(timestamp) if self.telephone_event_pt is not None else None
        if isinstance(event, EventSlot):
            assert self.telephone_event_pt is not None
            self._event_packets += 1
            return self._stamp(event.payload, self.telephone_event_pt, event.timestamp, event.marker)
        if event is MUTED:
            return None
        if self._frames:
            payload, tag = self._frames.popleft()
            if tag is not None:
                self._finished_tags.append(tag)
        elif self.idle is IdlePolicy.SILENCE:
            payload = self._silence
        else:
            self._marker_next = True
            return None
        marker, self._marker_next = self._marker_next, False
        return self._stamp(payload, self.payload_type, timestamp, marker)

    def _stamp(self, payload: bytes, payload_type: int, timestamp: int, marker: bool) -> RtpPacket:
        packet = RtpPacket(
            payload_type=payload_type,
            sequence=self._seq,
            timestamp=timestamp,
            ssrc=self.ssrc,
            payload=payload,
            marker=marker,
        )
        self._seq = (self._seq + 1) % MAX_SEQ
        self._last_timestamp = timestamp
        self._packets += 1
        self._octets += len(payload)
        return packet

    # -- relaying (see relay.py) ------------------------------------------------------------

    @property
    def next_sequence(self) -> int:
        return self._seq

    def next_timestamp(self, now: float) -> int:
        """The timestamp a packet sent at ``now`` should carry to continue this stream in real time."""
        if self._anchor is not None:
            elapsed = math.floor((now - self._anchor) * 1000 / self.ptime_ms + 1e-6)
            return self._slot_timestamp(self._slot_base + max(elapsed, self._slot))
        gap = 0
        if self._resume_ref is not None:
            gap = max(0, math.floor((now - self._resume_ref) * 1000 / self.ptime_ms + 1e-6))
        return self._slot_timestamp(self._slot_base + gap)

    def note_relayed(self, packet: RtpPacket, now: float) -> None:
        """Account for a packet the relay sent on this (stopped) stream, so that paced sending
        continues after it with increasing sequence numbers and timestamps."""
        self.note_relayed_header(packet.sequence, packet.timestamp, len(packet.payload), now)

    def note_relayed_header(self, sequence: int, timestamp: int, payload_octets: int, now: float) -> None:
        """:meth:`note_relayed` from the header fields (the relay's wire fast path)."""
        if seq_diff(sequence, self._seq) >= 0:
            self._seq = (sequence + 1) % MAX_SEQ
        self._packets += 1
        self._octets += payload_octets
        self._last_timestamp = timestamp
        if self._anchor is None:
            slots = ((timestamp - self._ts0) % MAX_TIMESTAMP) // self.frame_samples
            self._slot_base = slots + 1
            self._resume_ref = now + self.ptime_ms / 1000

    @property
    def last_timestamp(self) -> int | None:
        """The RTP timestamp of the last packet sent on this stream (paced or relayed)."""
        return self._last_timestamp

    def stats(self) -> SenderStats:
        return SenderStats(self._packets, self._octets, self._skipped, self._resyncs, self._event_packets)


# -- receiving ------------------------------------------------------------------------------

_MIN_SEQUENTIAL = 2  # RFC 3550 appendix A.1
_MAX_DROPOUT = 3000
_MAX_MISORDER = 100


@dataclass(slots=True)
class SourceState:
    """Per-SSRC reception state (RFC 3550 appendix A.1, A.3, A.8)."""

    ssrc: int
    first_at: float
    last_at: float
    max_seq: int = 0
    cycles: int = 0
    base_seq: int = 0
    bad_seq: int = MAX_SEQ + 1
    probation: int = _MIN_SEQUENTIAL
    received: int = 0
    duplicates_or_late: int = 0
    transit: int | None = None
    jitter: float = 0.0  # timestamp units (A.8)
    payload_types: set[int] = field(default_factory=set)

    @property
    def valid(self) -> bool:
        return self.probation == 0

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """A.3: packets expected since the first valid one."""
        return self.extended_max - self.base_seq + 1 if self.valid else 0

    @property
    def lost(self) -> int:
        """A.3: cumulative packets lost (may be negative with duplicates, as the RFC notes)."""
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000 / SAMPLE_RATE_HZ

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = MAX_SEQ + 1
        self.cycles = 0
        self.received = 0

    def update_seq(self, seq: int) -> bool:
        """RFC 3550 appendix A.1 ``update_seq``: False for a packet not (yet) part of a valid stream."""
        udelta = (seq - self.max_seq) % MAX_SEQ
        if self.probation:
            if seq == (self.max_seq + 1) % MAX_SEQ:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = _MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < _MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += MAX_SEQ  # wrapped
            self.max_seq = seq
        elif udelta <= MAX_SEQ - _MAX_MISORDER:
            if seq == self.bad_seq:
                self._init_seq(seq)  # two in sequence after a jump: the sender restarted
            else:
                self.bad_seq = (seq + 1) % MAX_SEQ
                return False
        else:
            self.duplicates_or_late += 1  # duplicate or reordered: counted, still delivered
        self.received += 1
        return True


@dataclass(frozen=True, slots=True)
class MediaTimedOut:
    """No RTP from a leg for longer than the media timeout (DIS-MEDIA), with its evidence."""

    leg: Leg | None
    silent_for_s: float
    threshold_s: float
    last_packet_at: float | None
    packets_received: int

    @property
    def evidence(self) -> Evidence:
        return {
            "detector": "rtp_media_timeout",
            "silent_for_s": round(self.silent_for_s, 3),
            "threshold_s": self.threshold_s,
            "last_packet_at": None if self.last_packet_at is None else round(self.last_packet_at, 3),
            "packets_received": self.packets_received,
        }


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    WRONG_SOURCE = "wrong_source"  # not from the peer's SDP host (or the latched address)
    INVALID_SEQUENCE = "invalid_sequence"  # probation or a sequence jump not yet confirmed


class RtpReceiver:
    """Incoming RTP of one leg: source filtering, per-SSRC statistics, media timeout."""

    def __init__(
        self,
        now: float,
        *,
        leg: Leg | None = None,
        latch: bool = False,
        event_payload_types: frozenset[int] = frozenset({DEFAULT_TELEPHONE_EVENT_PT}),
    ) -> None:
        self.leg = leg
        self.latch = latch
        self.event_payload_types = event_payload_types
        self._created_at = now
        self._remote: Address | None = None
        self._latched: Address | None = None
        self._sources: dict[int, SourceState] = {}
        self.last_packet_at: float | None = None
        self.packets_received = 0
        self.rejected: collections.Counter[Verdict] = collections.Counter()

    def set_remote(self, address: Address | None) -> None:
        """The address and port the peer's SDP names (c= and m= lines)."""
        self._remote = address

    @property
    def destination(self) -> Address | None:
        """Where to send this leg's RTP: the latched source if latching, else the SDP address."""
        return self._latched or self._remote

    @property
    def latched(self) -> Address | None:
        return self._latched

    def _source_allowed(self, source: Address) -> bool:
        if self._latched is not None:
            return source == self._latched
        if self.latch or self._remote is None:
            return True
        return source[0] == self._remote[0]

    def receive(self, packet: RtpPacket, source: Address, now: float) -> Verdict:
        """Account for one packet; only ACCEPTED packets should reach the jitter buffer or the
        telephone-event receiver. Packets from a new SSRC in probation are accepted for media
        (dropping the first word of a stream helps nobody) but do not latch."""
        return self.receive_header(packet.ssrc, packet.sequence, packet.timestamp, packet.payload_type, source, now)

    def receive_header(self, ssrc: int, sequence: int, timestamp: int, payload_type: int, source: Address,
                       now: float) -> Verdict:
        """:meth:`receive` from the header fields alone (the engine's per-packet fast path builds no
        :class:`RtpPacket`); the one implementation of both."""
        if not self._source_allowed(source):
            self.rejected[Verdict.WRONG_SOURCE] += 1
            return Verdict.WRONG_SOURCE
        state = self._sources.get(ssrc)
        if state is None:
            state = SourceState(ssrc, first_at=now, last_at=now)
            state.max_seq = (sequence - 1) % MAX_SEQ  # A.1: new source, probation
            self._sources[ssrc] = state
        was_valid = state.probation == 0
        in_sequence = state.update_seq(sequence)
        if not in_sequence and was_valid:
            self.rejected[Verdict.INVALID_SEQUENCE] += 1
            return Verdict.INVALID_SEQUENCE
        state.last_at = now
        state.payload_types.add(payload_type)
        self.last_packet_at = now
        self.packets_received += 1
        if payload_type not in self.event_payload_types:
            # A.8: transit time in timestamp units; telephone-events repeat one timestamp, so skip them.
            arrival = round(now * SAMPLE_RATE_HZ)
            transit = arrival - timestamp
            if state.transit is not None:
                d = abs(transit - state.transit)
                if d < MAX_TIMESTAMP // 2:
                    state.jitter += (d - state.jitter) / 16
            state.transit = transit
        if self.latch and self._latched is None and state.valid:
            self._latched = source
        return Verdict.ACCEPTED

    def source(self, ssrc: int) -> SourceState | None:
        return self._sources.get(ssrc)

    @property
    def sources(self) -> list[SourceState]:
        return list(self._sources.values())

    def timed_out(self, now: float, timeout_s: float) -> MediaTimedOut | None:
        """DIS-MEDIA: the event when no packet came for more than ``timeout_s`` (counting from the
        receiver's creation if none ever came), else None."""
        since = self.last_packet_at if self.last_packet_at is not None else self._created_at
        silent = now - since
        if silent <= timeout_s:
            return None
        return MediaTimedOut(self.leg, silent, timeout_s, self.last_packet_at, self.packets_received)

    def timeout_deadline(self, timeout_s: float) -> float:
        """When :meth:`timed_out` will first report, if no packet arrives before."""
        since = self.last_packet_at if self.last_packet_at is not None else self._created_at
        return since + timeout_s
