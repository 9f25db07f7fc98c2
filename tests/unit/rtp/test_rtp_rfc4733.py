"""RFC 4733 telephone-events: one key per event on receive; start/updates/three ends on send."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.rtp.packet import RtpPacket
from ivr.rtp.rfc4733 import (
    MAX_DURATION,
    MUTED,
    EventSlot,
    FlashEvent,
    KeyEnded,
    KeyStarted,
    TelephoneEventPayload,
    TelephoneEventReceiver,
    TelephoneEventSender,
    event_to_key,
    key_to_event,
)

PT = 101


def ev(seq: int, ts: int, event: int, duration: int, end: bool = False, ssrc: int = 7, volume: int = 10) -> RtpPacket:
    payload = TelephoneEventPayload(event, end, volume, duration).to_bytes()
    return RtpPacket(PT, seq, ts, ssrc, payload, marker=False)


def press(event: int, ts: int, seq0: int, duration: int = 800, step: int = 320) -> list[RtpPacket]:
    """A well-behaved sender's packets for one press: start, updates, three ends."""
    out = [ev(seq0, ts, event, min(step, duration))]
    d = step
    while d + step < duration:
        d += step
        out.append(ev(seq0 + len(out), ts, event, d))
    out.extend(ev(seq0 + len(out) + i, ts, event, duration, end=True) for i in range(3))
    return out


def feed(rx: TelephoneEventReceiver, packets: list[RtpPacket], t0: float = 0.0, dt: float = 0.02) -> list[object]:
    out: list[object] = []
    for i, p in enumerate(packets):
        out.extend(rx.receive(p, t0 + i * dt))
    return out


def test_payload_round_trip_and_fields() -> None:
    """Section 2.3 layout: event, E bit, volume, duration."""
    block = TelephoneEventPayload(11, True, 63, 1234)
    assert block.to_bytes() == bytes([11, 0x80 | 63]) + (1234).to_bytes(2, "big")
    assert TelephoneEventPayload.parse(block.to_bytes()) == block
    assert TelephoneEventPayload.parse(b"\x01\x02\x03") is None


@pytest.mark.parametrize(("event", "key"), [(0, "0"), (9, "9"), (10, "*"), (11, "#"), (12, "A"), (15, "D"), (16, None)])
def test_event_codes_map_to_keys(event: int, key: str | None) -> None:
    """Section 3.2 Table 7: 0-9, *, #, A-D; 16 (flash) is not a key."""
    assert event_to_key(event) == key
    if key is not None:
        assert key_to_event(key) == event
        assert key_to_event(key.lower()) == event


def test_one_key_per_event_with_three_end_packets() -> None:
    """A full press (start, updates, three retransmitted ends) gives one start and one end."""
    rx = TelephoneEventReceiver()
    out = feed(rx, press(1, ts=1000, seq0=10))
    assert [type(o) for o in out] == [KeyStarted, KeyEnded]
    end = out[1]
    assert isinstance(end, KeyEnded)
    assert (end.key, end.duration_ms, end.rtp_timestamp, end.end_seen, end.volume_dbm0) == (
        "1",
        100,
        1000,
        True,
        10,
    )
    assert rx.duplicates == 2


def test_lost_start_packet_still_one_key() -> None:
    """Section 2.5.2: the first packet seen (an update) starts the event."""
    rx = TelephoneEventReceiver()
    out = feed(rx, press(5, ts=2000, seq0=1)[1:])
    assert [type(o) for o in out] == [KeyStarted, KeyEnded]
    assert isinstance(out[0], KeyStarted) and out[0].key == "5"


def test_only_an_end_packet_arrives() -> None:
    """Everything but one end packet lost: still exactly one key, with the final duration."""
    rx = TelephoneEventReceiver()
    out = rx.receive(ev(9, 3000, 11, 960, end=True), 1.0)
    assert [type(o) for o in out] == [KeyStarted, KeyEnded]
    assert isinstance(out[1], KeyEnded) and out[1].key == "#" and out[1].duration_ms == 120


def test_all_end_packets_lost_ends_by_timeout() -> None:
    """No end packet: the event ends end_timeout_s after its last packet, marked end_seen=False."""
    rx = TelephoneEventReceiver(end_timeout_s=0.3)
    packets = press(2, ts=500, seq0=1)[:-3]
    out = feed(rx, packets)
    assert [type(o) for o in out] == [KeyStarted]
    last_at = (len(packets) - 1) * 0.02
    assert rx.next_deadline() == pytest.approx(last_at + 0.3)
    assert rx.handle_timer(last_at + 0.29) == []
    ended = rx.handle_timer(last_at + 0.31)
    assert len(ended) == 1 and isinstance(ended[0], KeyEnded) and not ended[0].end_seen
    assert rx.next_deadline() is None


def test_next_event_ends_an_open_one_whose_ends_were_lost() -> None:
    """A new timestamp while an event is open ends that event first (no key is lost or doubled)."""
    rx = TelephoneEventReceiver()
    first = press(1, ts=1000, seq0=1)[:-3]
    second = press(1, ts=3000, seq0=len(first) + 1)
    out = feed(rx, first + second)
    kinds = [(type(o).__name__, getattr(o, "rtp_timestamp", None)) for o in out]
    assert kinds == [("KeyStarted", 1000), ("KeyEnded", 1000), ("KeyStarted", 3000), ("KeyEnded", 3000)]


def test_late_update_after_end_is_ignored() -> None:
    """A reordered update arriving after the end does not start a second key."""
    rx = TelephoneEventReceiver()
    packets = press(3, ts=1000, seq0=1)
    out = feed(rx, [*packets[:1], *packets[2:], packets[1]])
    assert [type(o) for o in out] == [KeyStarted, KeyEnded]


def test_same_key_twice_gives_two_keys() -> None:
    """Two presses of the same key (different timestamps) are two keys."""
    rx = TelephoneEventReceiver()
    out = feed(rx, press(1, ts=1000, seq0=1) + press(1, ts=2600, seq0=20))
    assert [o.key for o in out if isinstance(o, KeyEnded)] == ["1", "1"]


def test_long_event_segments_are_one_key() -> None:
    """Section 2.5.1.3: a press longer than 0xFFFF samples continues in a new segment."""
    rx = TelephoneEventReceiver()
    seg1 = [ev(1, 0, 4, 320), ev(2, 0, 4, 40000), ev(3, 0, 4, MAX_DURATION), ev(4, 0, 4, MAX_DURATION)]
    seg2 = [ev(5, MAX_DURATION, 4, 8000)] + [ev(6 + i, MAX_DURATION, 4, 16000, end=True) for i in range(3)]
    out = feed(rx, seg1 + seg2, dt=0.05)
    assert [type(o) for o in out] == [KeyStarted, KeyEnded]
    end = out[1]
    assert isinstance(end, KeyEnded)
    assert end.duration_ms == round((MAX_DURATION + 16000) / 8) and end.rtp_timestamp == 0


def test_flash_event_is_reported_not_a_key() -> None:
    """Event 16 becomes a FlashEvent (DIS-3WAY evidence), never a key."""
    rx = TelephoneEventReceiver()
    out = feed(rx, press(16, ts=100, seq0=1, duration=4000))
    assert len(out) == 1 and isinstance(out[0], FlashEvent) and out[0].duration_ms == 500


def test_other_ssrc_same_timestamp_is_another_event() -> None:
    """Event identity is (SSRC, timestamp): another source's event is another key."""
    rx = TelephoneEventReceiver()
    a = press(1, ts=1000, seq0=1)
    b = [ev(p.sequence, p.timestamp, 1, 800, end=True, ssrc=99) for p in a[-1:]]
    out = feed(rx, a + b)
    assert sum(isinstance(o, KeyEnded) for o in out) == 2


def test_malformed_payload_is_counted_not_raised() -> None:
    """A payload under 4 octets is counted as malformed."""
    rx = TelephoneEventReceiver()
    assert rx.receive(RtpPacket(PT, 1, 1, 1, b"\x01"), 0.0) == []
    assert rx.malformed == 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(range(16)), min_size=1, max_size=6),
    st.randoms(use_true_random=False),
    st.floats(0.0, 0.6),
)
def test_any_loss_and_duplication_keeps_one_key_per_press(keys: list[int], rnd: random.Random, loss: float) -> None:
    """Property: with packet loss (not every packet of a press lost), duplication and local
    reordering, each press yields exactly one KeyStarted and one KeyEnded, in order."""
    stream: list[RtpPacket] = []
    seq, ts = 1, 1000
    kept_presses: list[int] = []
    for key in keys:
        packets = press(key, ts=ts, seq0=seq, duration=rnd.choice([320, 800, 2000]))
        seq += len(packets)
        ts += 4000
        kept = [p for p in packets if rnd.random() >= loss]
        if not kept:
            continue
        kept_presses.append(key)
        if rnd.random() < 0.5:
            kept.append(rnd.choice(kept))
        if len(kept) > 2 and rnd.random() < 0.5:
            i = rnd.randrange(len(kept) - 1)
            kept[i], kept[i + 1] = kept[i + 1], kept[i]
        stream.extend(kept)
    rx = TelephoneEventReceiver()
    out = feed(rx, stream)
    out.extend(rx.handle_timer(1e9))
    started = [o.key for o in out if isinstance(o, KeyStarted)]
    ended = [o.key for o in out if isinstance(o, KeyEnded)]
    expected = [event_to_key(k) for k in kept_presses]
    assert started == expected
    assert ended == expected


def run_sender(sender: TelephoneEventSender, slots: int) -> list[tuple[int, EventSlot | str | None]]:
    out: list[tuple[int, EventSlot | str | None]] = []
    for n in range(slots):
        result = sender.slot(n * 160)
        out.append((n, "muted" if result is MUTED else result))  # type: ignore[arg-type]
    return out


def test_sender_start_updates_and_three_ends() -> None:
    """Sections 2.5.1.1-2.5.1.4: marker on the first, same timestamp, growing duration, three ends."""
    sender = TelephoneEventSender()  # 20 ms slots, updates every 40 ms
    sender.queue_key("7", duration_ms=100)
    out = run_sender(sender, 14)
    packets = [(n, r) for n, r in out if isinstance(r, EventSlot)]
    blocks = [(n, TelephoneEventPayload.parse(r.payload), r.marker, r.timestamp) for n, r in packets]
    assert [n for n, *_ in blocks] == [0, 2, 4, 6, 8]
    assert all(b is not None and b.event == 7 for _, b, _, _ in blocks)
    assert [b.duration for _, b, _, _ in blocks if b] == [160, 480, 800, 800, 800]
    assert [b.end for _, b, _, _ in blocks if b] == [False, False, True, True, True]
    assert [m for *_, m, _ in blocks] == [True, False, False, False, False]
    assert {ts for *_, ts in blocks} == {0}
    assert out[1][1] == "muted" and out[3][1] == "muted"
    # after the last end: 60 ms gap of audio (3 slots of None), then idle
    assert [r for _, r in out[9:]] == [None] * 5
    assert not sender.busy


def test_sent_events_are_received_as_the_same_keys() -> None:
    """Our sender's packets, fed to our receiver, give back the keys in order with their durations."""
    sender = TelephoneEventSender()
    for key in "19#":
        sender.queue_key(key, duration_ms=120, gap_ms=80)
    rx = TelephoneEventReceiver()
    out: list[object] = []
    seq = 0
    for n in range(60):
        r = sender.slot(n * 160)
        if isinstance(r, EventSlot):
            seq += 1
            out.extend(rx.receive(RtpPacket(PT, seq, r.timestamp, 5, r.payload, r.marker), n * 0.02))
    ends = [o for o in out if isinstance(o, KeyEnded)]
    assert [(e.key, e.duration_ms, e.end_seen) for e in ends] == [
        ("1", 120, True),
        ("9", 120, True),
        ("#", 120, True),
    ]


def test_sender_rejects_bad_keys() -> None:
    """Only DTMF keys can be sent."""
    with pytest.raises(ValueError):
        TelephoneEventSender().queue_key("x")
