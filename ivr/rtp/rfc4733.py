"""RFC 4733 telephone-events (DTMF over RTP): payload format, receiver and sender. Sans-I/O.

Payload (RFC 4733 section 2.3)::

    | event (8) |E|R| volume (6) | duration (16, in RTP timestamp units) |

Receiving (section 2.5.2): one event is identified by its SSRC and RTP *timestamp*, which stays the
same in every packet of the event (section 2.5.1.1); the E bit marks its end; the end packet is sent
three times (section 2.5.1.4). :class:`TelephoneEventReceiver` turns that into exactly one
:class:`KeyStarted` and one :class:`KeyEnded` per key press, whatever is lost, duplicated or
reordered:

* the start packet is lost -> the first packet seen (update or end) starts the event;
* every end packet is lost -> the event ends after ``end_timeout_s`` without packets, or when the
  next event (a new timestamp) begins;
* retransmitted end packets and late updates of a finished event -> ignored (its timestamp is
  remembered);
* an event longer than the 16-bit duration field (about 8.2 s at 8 kHz) arrives as segments whose
  timestamps follow each other (section 2.5.1.3) -> one event, durations added.

Event 16 (flash, section 3.2) is reported as :class:`FlashEvent` (the hookflash detector's evidence,
DIS-3WAY); other non-DTMF events are counted and ignored.

Sending (section 2.5.1): :class:`TelephoneEventSender` produces, on the sender's 20 ms slot grid,
a first packet with the marker bit (section 2.5.1.1), duration updates every
``update_interval_ms`` (about 50 ms, section 2.5.1.2), then the final packet with the E bit three
times (section 2.5.1.4); all with the event's start timestamp. Audio is muted while an event is
being sent.
"""

from __future__ import annotations

import collections
import enum
import struct
from dataclasses import dataclass

from ivr.rtp.packet import RtpPacket, ts_diff
from ivr.types import DTMF_KEYS

TELEPHONE_EVENT_CLOCK_HZ = 8000
MAX_DURATION = 0xFFFF  # the 16-bit duration field
FLASH_EVENT = 16  # RFC 4733 section 3.2, Table 7: "Flash"
_PAYLOAD = struct.Struct("!BBH")


def event_to_key(event: int) -> str | None:
    """RFC 4733 section 3.2 event code -> key: 0-9, 10 '*', 11 '#', 12-15 'A'-'D'."""
    return DTMF_KEYS[event] if 0 <= event < 16 else None


def key_to_event(key: str) -> int:
    """Key -> RFC 4733 event code. Raises ValueError for a character that is not a DTMF key."""
    index = DTMF_KEYS.find(key.upper()) if len(key) == 1 else -1
    if index < 0:
        raise ValueError(f"not a DTMF key: {key!r}")
    return index


@dataclass(frozen=True, slots=True)
class TelephoneEventPayload:
    """One event block (RFC 4733 section 2.3). ``volume`` is the power in -dBm0 (0..63)."""

    event: int
    end: bool
    volume: int
    duration: int

    def to_bytes(self) -> bytes:
        if not (0 <= self.event <= 255 and 0 <= self.volume <= 63 and 0 <= self.duration <= MAX_DURATION):
            raise ValueError(f"telephone-event field out of range: {self}")
        return _PAYLOAD.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)

    @staticmethod
    def parse(payload: bytes) -> TelephoneEventPayload | None:
        """The first event block of a payload, or None when it is shorter than 4 octets.

        (Further blocks only appear with RFC 2198 redundancy, which we do not negotiate.)
        """
        if len(payload) < 4:
            return None
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return TelephoneEventPayload(event, bool(flags & 0x80), flags & 0x3F, duration)


@dataclass(frozen=True, slots=True)
class KeyStarted:
    """The first packet of a DTMF event arrived: feed this to the key normalizer (one per press).

    ``onset_at`` estimates when the tone began: arrival minus the duration the packet reports as
    already elapsed (so a lost start packet does not move the onset)."""

    key: str
    rtp_timestamp: int
    ssrc: int
    at: float
    onset_at: float


@dataclass(frozen=True, slots=True)
class KeyEnded:
    """A DTMF event is over. ``end_seen`` is False when it ended by timeout or by the next event."""

    key: str
    duration_ms: int
    rtp_timestamp: int
    ssrc: int
    volume_dbm0: int  # power as -dBm0: 10 means -10 dBm0
    end_seen: bool
    started_at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class FlashEvent:
    """A hookflash signalled as telephone-event 16 (evidence for DIS-3WAY)."""

    duration_ms: int
    rtp_timestamp: int
    ssrc: int
    at: float


TelephoneEventOutput = KeyStarted | KeyEnded | FlashEvent


@dataclass(slots=True)
class _OpenEvent:
    ssrc: int
    timestamp: int  # of the current segment
    event: int
    started_at: float
    last_packet_at: float
    duration: int  # of the current segment, samples
    earlier_segments: int  # samples in finished segments of a long event
    volume: int


class TelephoneEventReceiver:
    """Telephone-event packets in, one start and one end per event out. Never raises on input."""

    def __init__(self, *, end_timeout_s: float = 0.3, clock_rate_hz: int = TELEPHONE_EVENT_CLOCK_HZ) -> None:
        self._end_timeout_s = end_timeout_s
        self._clock_rate_hz = clock_rate_hz
        self._open: _OpenEvent | None = None
        # (ssrc, timestamp) of finished events: their stragglers and end retransmits are ignored.
        self._finished: collections.deque[tuple[int, int]] = collections.deque(maxlen=32)
        self.malformed = 0
        self.ignored_events = 0
        self.duplicates = 0

    def next_deadline(self) -> float | None:
        """When an open event ends by timeout if no packet arrives (for the adapter's timer)."""
        if self._open is None:
            return None
        return self._open.last_packet_at + self._end_timeout_s

    def handle_timer(self, now: float) -> list[TelephoneEventOutput]:
        """End an event whose end packets were all lost (no packet for ``end_timeout_s``)."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        return self._finish(now, end_seen=False)

    def receive(self, packet: RtpPacket, now: float) -> list[TelephoneEventOutput]:
        """One RTP packet whose payload type is the negotiated telephone-event type."""
        block = TelephoneEventPayload.parse(packet.payload)
        if block is None:
            self.malformed += 1
            return []
        ident = (packet.ssrc, packet.timestamp)
        if ident in self._finished:
            self.duplicates += 1  # retransmitted end packet, or a late update (section 2.5.1.4)
            return []
        out: list[TelephoneEventOutput] = []
        current = self._open
        if current is not None and (current.ssrc, current.timestamp) == ident:
            current.duration = max(current.duration, block.duration)
            current.volume = block.volume
            current.last_packet_at = now
            if block.end:
                out.extend(self._finish(now, end_seen=True))
            return out
        if current is not None:
            if self._continues(current, packet, block):
                # Section 2.5.1.3: the next segment of a long event starts where the last one ended.
                self._finished.append((current.ssrc, current.timestamp))
                current.earlier_segments += current.duration
                current.timestamp = packet.timestamp
                current.duration = block.duration
                current.volume = block.volume
                current.last_packet_at = now
                if block.end:
                    out.extend(self._finish(now, end_seen=True))
                return out
            out.extend(self._finish(now, end_seen=False))
        self._open = _OpenEvent(
            ssrc=packet.ssrc,
            timestamp=packet.timestamp,
            event=block.event,
            started_at=now,
            last_packet_at=now,
            duration=block.duration,
            earlier_segments=0,
            volume=block.volume,
        )
        key = event_to_key(block.event)
        if key is not None:
            onset = now - block.duration / self._clock_rate_hz
            out.append(KeyStarted(key, packet.timestamp, packet.ssrc, at=now, onset_at=onset))
        if block.end:
            out.extend(self._finish(now, end_seen=True))
        return out

    @staticmethod
    def _continues(current: _OpenEvent, packet: RtpPacket, block: TelephoneEventPayload) -> bool:
        return (
            packet.ssrc == current.ssrc
            and block.event == current.event
            and current.duration == MAX_DURATION
            and ts_diff(packet.timestamp, current.timestamp) == MAX_DURATION
        )

    def _finish(self, now: float, *, end_seen: bool) -> list[TelephoneEventOutput]:
        current = self._open
        if current is None:
            return []
        self._open = None
        self._finished.append((current.ssrc, current.timestamp))
        samples = current.earlier_segments + current.duration
        duration_ms = round(samples * 1000 / self._clock_rate_hz)
        start_ts = (current.timestamp - current.earlier_segments) & 0xFFFFFFFF
        key = event_to_key(current.event)
        if key is not None:
            return [
                KeyEnded(
                    key=key,
                    duration_ms=duration_ms,
                    rtp_timestamp=start_ts,
                    ssrc=current.ssrc,
                    volume_dbm0=current.volume,
                    end_seen=end_seen,
                    started_at=current.started_at,
                    ended_at=now,
                )
            ]
        if current.event == FLASH_EVENT:
            return [FlashEvent(duration_ms, start_ts, current.ssrc, current.started_at)]
        self.ignored_events += 1
        return []


@dataclass(frozen=True, slots=True)
class EventSlot:
    """What the sender puts in one 20 ms slot while an event is being sent."""

    payload: bytes
    marker: bool
    timestamp: int


@dataclass(slots=True)
class _Sending:
    event: int
    total: int  # samples
    volume: int
    timestamp: int | None = None  # fixed at the first slot
    frame: int = 0  # slots since the start
    ends_sent: int = 0
    next_update: int = 0  # slot index of the next packet


class Muted(enum.Enum):
    """A slot inside an event between two of its packets: the sender sends nothing."""

    MUTED = "muted"


MUTED = Muted.MUTED


class TelephoneEventSender:
    """Plans the packets of queued key presses on the sender's slot grid (RFC 4733 section 2.5.1).

    The RTP sender asks :meth:`slot` once per frame slot, with that slot's RTP timestamp; the reply
    is an :class:`EventSlot` (send it instead of audio), :data:`MUTED` (a slot inside an event
    between two updates: send nothing) or ``None`` (no event: send audio as usual).
    """

    def __init__(
        self,
        *,
        frame_samples: int = 160,
        ptime_ms: int = 20,
        update_interval_ms: int = 50,
    ) -> None:
        self._frame_samples = frame_samples
        # Section 2.5.1.2: updates at a regular interval; on a 20 ms grid, 50 ms becomes 40 ms.
        self._update_every = max(1, update_interval_ms // ptime_ms)
        self._queue: collections.deque[tuple[int, int, int, int]] = collections.deque()
        self._current: _Sending | None = None
        self._gap_slots = 0

    @property
    def busy(self) -> bool:
        """True while an event (or the pause after it) occupies the slots."""
        return self._current is not None or self._gap_slots > 0

    @property
    def pending(self) -> int:
        """Events queued or in progress."""
        return len(self._queue) + (1 if self._current is not None else 0)

    def queue_key(self, key: str, *, duration_ms: int = 100, volume: int = 10, gap_ms: int = 60) -> None:
        """Queue one key press: a tone of ``duration_ms``, then ``gap_ms`` of audio before the next."""
        if duration_ms <= 0 or gap_ms < 0:
            raise ValueError("duration must be positive and the gap not negative")
        total = min(round(duration_ms * TELEPHONE_EVENT_CLOCK_HZ / 1000), MAX_DURATION)
        gap_slots = -(-gap_ms * TELEPHONE_EVENT_CLOCK_HZ // 1000 // self._frame_samples)
        self._queue.append((key_to_event(key), total, volume, gap_slots))

    def slot(self, timestamp: int) -> EventSlot | Muted | None:
        """The event packet for the slot whose audio would carry ``timestamp``, if any."""
        if self._current is None:
            if self._gap_slots > 0:
                self._gap_slots -= 1
                return None
            if not self._queue:
                return None
            event, total, volume, gap_slots = self._queue.popleft()
            self._current = _Sending(event=event, total=total, volume=volume)
            self._gap_slots = gap_slots
        current = self._current
        if current.timestamp is None:
            current.timestamp = timestamp  # section 2.5.1.1: the event's timestamp is its start
        index = current.frame
        current.frame += 1
        if index < current.next_update:
            return MUTED
        current.next_update = index + self._update_every
        elapsed = min((index + 1) * self._frame_samples, current.total)
        end = elapsed >= current.total
        if end:
            current.ends_sent += 1
            if current.ends_sent >= 3:  # section 2.5.1.4: the final packet three times
                self._current = None
        block = TelephoneEventPayload(current.event, end, current.volume, elapsed)
        return EventSlot(block.to_bytes(), marker=index == 0, timestamp=current.timestamp)
