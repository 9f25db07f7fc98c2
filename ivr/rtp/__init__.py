"""Sans-I/O RTP, G.711 and RFC 4733 (DESIGN.md sections 4 and 5).

Nothing in this package opens a socket or reads a clock: every entry point takes ``now``
(monotonic seconds, e.g. ``loop.time()``). The asyncio side is :mod:`ivr.net.rtp_udp`.

Public API (import from the submodules)
=======================================

``ivr.rtp.packet`` (RFC 3550 section 5.1, RFC 5761 section 4)
    ``parse_datagram(data) -> RtpPacket | RtcpPacket | Dropped``  never raises
    ``RtpPacket(payload_type, sequence, timestamp, ssrc, payload, marker=False, csrcs=(),
    extension=None, padding_len=0).to_bytes()``; ``Dropped.reason: DropReason``;
    ``seq_diff(a, b)``, ``ts_diff(a, b)`` (wrap-aware signed distances)

``ivr.rtp.g711`` (ITU-T G.711, bit-exact with G.191)
    ``Codec.PCMU | Codec.PCMA``: ``.payload_type``, ``.encode(int16 array) -> bytes``,
    ``.decode(bytes) -> int16 array``, ``.silence(n)``, ``Codec.from_payload_type(pt)``,
    ``Codec.from_name("PCMA")``; ``ulaw_encode/ulaw_decode/alaw_encode/alaw_decode``;
    ``transcode(payload, source, target)``; tables ``ULAW_ENCODE`` (65536) ``ULAW_DECODE`` (256) ...

``ivr.rtp.session``
    ``RtpSender(codec, rng, *, telephone_event_pt=101, ptime_ms=20, max_catch_up_frames=3,
    idle=IdlePolicy.SILENCE)``: ``queue_audio(samples, tag=None) -> frames``, ``clear_audio()``,
    ``pop_finished() -> [tag]`` (PromptFinished), ``send_key(key, duration_ms=100)``,
    ``start(now)``, ``stop()``, ``next_send_at() -> float | None``, ``due_packets(now) -> [RtpPacket]``,
    ``ssrc``, ``stats()``.
    ``RtpReceiver(now, *, leg=None, latch=False, event_payload_types={101})``: ``set_remote(addr)``,
    ``receive(packet, source, now) -> Verdict``, ``destination``, ``source(ssrc) -> SourceState``
    (``lost``, ``expected``, ``jitter_ms``), ``last_packet_at``,
    ``timed_out(now, timeout_s) -> MediaTimedOut | None`` (``.evidence`` for the call record),
    ``timeout_deadline(timeout_s)``.

``ivr.rtp.rfc4733`` (RFC 4733)
    ``TelephoneEventReceiver(end_timeout_s=0.3)``: ``receive(packet, now) -> [KeyStarted | KeyEnded
    | FlashEvent]`` (exactly one KeyStarted, with ``onset_at``, and one KeyEnded per event),
    ``next_deadline()``, ``handle_timer(now)``. ``TelephoneEventSender`` is used by ``RtpSender.send_key``.

``ivr.rtp.keys`` (ACC-5, DESIGN.md section 3)
    ``KeyNormalizer(leg, window_s=0.2, retention_s=10)``:
    ``feed(key, source, now, *, started_at=None) -> bool`` (new press?),
    ``press(key, source, now, *, started_at=None) -> KeyPress | None``; ``normalize_key(raw)``.
    De-duplication compares press *onsets*: pass ``started_at`` when a source reports late
    (the in-band detector reports at the tone's end).

``ivr.rtp.jitter``
    ``JitterBuffer(initial_delay_frames=2, ...)``: ``push(timestamp, samples, now)``,
    ``pull(now) -> PlayoutFrame(samples, kind)`` once per 20 ms, ``stats()``.

``ivr.rtp.relay``
    ``MediaRelay(out_sender, source_codec=..., source_event_pt=...)``:
    ``relay(packet, now) -> RtpPacket | None`` (payload untouched when codecs match).

``ivr.rtp.leg`` (the per-leg bundle the engine holds)
    ``MediaLeg(leg, rng, now, RemoteMedia(address, codec, telephone_event_pt,
    local_telephone_event_pt))``:
    ``receive(packet, source, now) -> Received(verdict, events, relay)`` where events are
    ``KeyPress`` (normalized), ``KeyEnded``, ``FlashEvent`` and ``relay`` are packets for the
    other leg; ``pull_frame(now)`` for the detectors;
    ``inband_key(key, now, started_at=DtmfEvent.start_ms / 1000)``, ``info_key(key, now)``;
    ``next_deadline()``/``handle_timer(now)``;
    ``media_timeout(now, timeout_s)``; ``bridge_to(other)``, ``unbridge()``; ``sender``;
    ``destination``; ``update_remote(RemoteMedia)`` on re-INVITE.

``ivr.net.rtp_udp``
    ``await RtpEndpoint.open(on_packet, host="127.0.0.1", port=0, port_range=None)``;
    ``start_paced(sender, destination_or_callable, on_sent=None)``, ``stop_paced()``,
    ``send(packet, addr)``, ``local_address``, ``close()``.
    ``RtpPacer(loop)``: ``add(endpoint, sender, destination)``, ``remove(sender)``: one shared
    20 ms timer for all streams (preferred with many calls; see bench/rtp_pacing.py).
"""
