"""Media relay between the two legs after acceptance (bridging). Sans-I/O, one object per direction.

A packet received on one leg becomes a packet on the other leg's outgoing stream:

* the SSRC is the outgoing stream's (each leg sees one stream from us for the whole call);
* sequence numbers and timestamps are the incoming ones plus an offset fixed when relaying starts
  (or when the incoming SSRC changes, or our own paced sender spoke in between), chosen so that the
  outgoing stream continues where it was: gaps (loss, silence suppression) and reordering pass
  through unchanged, so the far end's jitter buffer and loss statistics stay truthful
  (RFC 3550 section 7.2 on translators, RFC 7667 section 3.2.1.3 on media-switching middleboxes);
* the marker bit is set on the first relayed packet after each re-anchoring (a new talkspurt for
  the receiver, RFC 3551 section 4.1);
* when both legs use the same G.711 law the payload is copied untouched; otherwise it is converted
  through the 256-entry tables of :mod:`ivr.rtp.g711` (payload size unchanged, timestamps unchanged);
* RFC 4733 telephone-events are passed with the outgoing leg's payload type, or dropped when that
  leg did not negotiate telephone-event. Any other payload type (comfort noise, an unexpected
  codec) is dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.rtp.g711 import Codec, transcode
from ivr.rtp.packet import FIXED_HEADER, MAX_SEQ, MAX_TIMESTAMP, RtpPacket
from ivr.rtp.session import RtpSender


@dataclass(frozen=True, slots=True)
class RelayStats:
    relayed: int
    transcoded: int
    dropped_payload_type: int
    reanchors: int


class MediaRelay:
    """One direction of a bridge: packets from the source leg -> packets for ``out``'s leg."""

    def __init__(
        self,
        out: RtpSender,
        *,
        source_codec: Codec,
        source_event_pt: int | None,
    ) -> None:
        self.out = out
        self._source_codec = source_codec
        self._source_pt = source_codec.payload_type  # kept with it: see RtpSender.payload_type
        self.source_event_pt = source_event_pt
        self._in_ssrc: int | None = None
        self._seq_offset = 0
        self._ts_offset = 0
        self._expected_next_seq: int | None = None
        self._marker_next = False
        self._relayed = 0
        self._transcoded = 0
        self._dropped = 0
        self._reanchors = 0

    @property
    def source_codec(self) -> Codec:
        """The law the source leg sends (it may switch between the offered ones)."""
        return self._source_codec

    @source_codec.setter
    def source_codec(self, codec: Codec) -> None:
        self._source_codec = codec
        self._source_pt = codec.payload_type

    @property
    def passthrough(self) -> bool:
        """True when audio is relayed without re-encoding (same codec on both legs)."""
        return self.source_codec is self.out.codec

    def relay(self, packet: RtpPacket, now: float) -> RtpPacket | None:
        """The packet to send on the other leg, or None when it is not relayed.

        Stops the outgoing leg's paced sender (a leg hears either prompts or the other party).
        """
        mapped = self._map(packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc, packet.marker,
                           packet.payload, now)
        if mapped is None:
            return None
        payload_type, sequence, timestamp, payload, marker = mapped
        return RtpPacket(payload_type=payload_type, sequence=sequence, timestamp=timestamp, ssrc=self.out.ssrc,
                         payload=payload, marker=marker)

    def relay_wire(self, payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool,
                   payload: bytes, now: float) -> bytes | None:
        """:meth:`relay` for a packet given by its header fields, straight to the wire bytes.

        The engine's per-packet fast path: no :class:`RtpPacket` in or out, one precompiled
        header pack. Byte for byte what ``relay(packet).to_bytes()`` gives (a relayed packet never
        carries CSRCs, an extension or padding: RFC 3550 section 5.1 with CC=0, X=0, P=0).
        """
        mapped = self._map(payload_type, sequence, timestamp, ssrc, marker, payload, now)
        if mapped is None:
            return None
        out_type, out_seq, out_ts, out_payload, out_marker = mapped
        return FIXED_HEADER.pack(0x80, (0x80 | out_type) if out_marker else out_type, out_seq, out_ts,
                            self.out.ssrc) + out_payload

    def _map(self, payload_type: int, sequence: int, timestamp: int, ssrc: int, marker: bool, payload: bytes,
             now: float) -> tuple[int, int, int, bytes, bool] | None:
        """The relayed packet's (payload type, sequence, timestamp, payload, marker), or None."""
        if self.source_event_pt is not None and payload_type == self.source_event_pt:
            if self.out.telephone_event_pt is None:
                self._dropped += 1
                return None
            out_type = self.out.telephone_event_pt
        elif payload_type == self._source_pt:
            out_type = self.out.payload_type
            if self._source_codec is not self.out.codec:
                payload = transcode(payload, self._source_codec, self.out.codec)
                self._transcoded += 1
        else:
            self._dropped += 1
            return None
        out = self.out
        if out.running:
            out.stop()
        if ssrc != self._in_ssrc or self._expected_next_seq is None or out.next_sequence != self._expected_next_seq:
            self._reanchor(ssrc, sequence, timestamp, now)
        marker = marker or self._marker_next
        self._marker_next = False
        out_seq = (sequence + self._seq_offset) % MAX_SEQ
        out_ts = (timestamp + self._ts_offset) % MAX_TIMESTAMP
        out.note_relayed_header(out_seq, out_ts, len(payload), now)
        self._expected_next_seq = out.next_sequence
        self._relayed += 1
        return out_type, out_seq, out_ts, payload, marker

    def _reanchor(self, ssrc: int, sequence: int, timestamp: int, now: float) -> None:
        self._in_ssrc = ssrc
        self._seq_offset = (self.out.next_sequence - sequence) % MAX_SEQ
        self._ts_offset = (self.out.next_timestamp(now) - timestamp) % MAX_TIMESTAMP
        self._marker_next = True
        self._reanchors += 1

    def stats(self) -> RelayStats:
        return RelayStats(self._relayed, self._transcoded, self._dropped, self._reanchors)
