"""asyncio adapter for one RTP socket: receive with ``loop.time()``, send paced on the grid.

No media logic here: parsing is :func:`ivr.rtp.packet.parse_datagram`, numbering and pacing are
:class:`ivr.rtp.session.RtpSender`. The paced sender is driven by ``loop.call_at`` on the sender's
own schedule (``next_send_at()`` = start + n * 20 ms), never by "sleep 20 ms after sending", so
event-loop latency does not accumulate into drift; a late wake-up sends every due frame at once
(bounded catch-up, see RtpSender).

Only loopback or configured addresses: the socket binds to ``host`` (default 127.0.0.1) on port 0
(the OS picks) or on the first free even port of a configured range (RTP on even ports, RTCP on
the next odd one, RFC 3550 section 11).
"""

from __future__ import annotations

import asyncio
import collections
import math
import random
from collections.abc import Callable
from typing import Any, cast

from ivr.rtp.packet import Dropped, RtcpPacket, RtpPacket, parse_datagram
from ivr.rtp.session import Address, RtpSender

PacketHandler = Callable[[RtpPacket, Address, float], None]
SentHandler = Callable[[list[RtpPacket], float], None]
Destination = Address | Callable[[], Address | None]


class RtpEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket carrying RTP for one leg."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_packet: PacketHandler) -> None:
        self._loop = loop
        self._on_packet = on_packet
        self._transport: asyncio.DatagramTransport | None = None
        self._sender: RtpSender | None = None
        self._destination: Destination | None = None
        self._on_sent: SentHandler | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.dropped: collections.Counter[str] = collections.Counter()
        self.rtcp_ignored = 0
        self.packets_received = 0
        self.packets_sent = 0
        self.send_errors = 0

    @classmethod
    async def open(
        cls,
        on_packet: PacketHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        port_range: tuple[int, int] | None = None,
        rng: random.Random | None = None,
    ) -> RtpEndpoint:
        """Bind a socket. With ``port_range=(low, high)`` try its even ports from a random start."""
        loop = asyncio.get_running_loop()
        candidates: list[int]
        if port_range is None:
            candidates = [port]
        else:
            low, high = port_range
            evens = list(range(low + (low % 2), high + 1, 2))
            if not evens:
                raise ValueError(f"no even port in {port_range}")
            start = (rng or random.Random()).randrange(len(evens))
            candidates = evens[start:] + evens[:start]
        last_error: OSError | None = None
        for candidate in candidates:
            try:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: cls(loop, on_packet), local_addr=(host, candidate)
                )
            except OSError as exc:
                last_error = exc
                continue
            return protocol
        raise OSError(f"no free RTP port on {host} in {port_range or port}") from last_error

    # -- asyncio.DatagramProtocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport: cast.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        now = self._loop.time()
        source: Address = (str(addr[0]), int(addr[1]))
        result = parse_datagram(data)
        if isinstance(result, RtpPacket):
            self.packets_received += 1
            self._on_packet(result, source, now)
        elif isinstance(result, RtcpPacket):
            self.rtcp_ignored += 1
        else:
            assert isinstance(result, Dropped)
            self.dropped[result.reason.value] += 1

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: counted; the media timeout decides.
        self.send_errors += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self._transport = None

    # -- sending ----------------------------------------------------------------------------

    @property
    def local_address(self) -> Address:
        assert self._transport is not None, "endpoint is closed"
        host, port = self._transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    def send(self, packet: RtpPacket, destination: Address) -> None:
        """Send one packet now (relayed media, one-off packets)."""
        if self._transport is None:
            return
        self._transport.sendto(packet.to_bytes(), destination)
        self.packets_sent += 1

    def start_paced(
        self,
        sender: RtpSender,
        destination: Destination,
        *,
        on_sent: SentHandler | None = None,
    ) -> None:
        """Send ``sender``'s stream to ``destination`` (an address, or a callable giving the
        current one: symmetric RTP / latching may change it) on the sender's grid."""
        self.stop_paced()
        self._sender = sender
        self._destination = destination
        self._on_sent = on_sent
        sender.start(self._loop.time())
        self._arm()

    def stop_paced(self) -> None:
        """Stop the paced stream (the sender keeps its numbering; queued audio stays queued)."""
        self._cancel_timer()
        if self._sender is not None:
            self._sender.stop()
        self._sender = None

    def _arm(self) -> None:
        sender = self._sender
        if sender is None:
            return
        when = sender.next_send_at()
        if when is None:
            return
        self._timer = self._loop.call_at(when, self._tick)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self._timer = None
        sender = self._sender
        if sender is None:
            return
        now = self._loop.time()
        packets = sender.due_packets(now)
        destination = self._destination() if callable(self._destination) else self._destination
        if packets and destination is not None:
            for packet in packets:
                self.send(packet, destination)
        if self._on_sent is not None and packets:
            self._on_sent(packets, now)
        self._arm()

    def close(self) -> None:
        self.stop_paced()
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class RtpPacer:
    """Paces many streams with one timer: every ``ptime`` on a shared grid, each registered
    sender's due packets are sent. With hundreds of calls, one timer per tick instead of one per
    stream is what keeps the event loop's own overhead down (bench/rtp_pacing.py measures both).

    A sender added here is started on the group's next grid instant, so all streams share one
    phase; its numbering and catch-up rules are still its own (RtpSender).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, ptime_ms: int = 20) -> None:
        self._loop = loop
        self._ptime_s = ptime_ms / 1000
        self._origin = loop.time()
        self._streams: dict[int, tuple[RtpEndpoint, RtpSender, Destination]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._scheduled = 0.0
        self.ticks = 0
        self.max_lateness_s = 0.0  # worst delay of a tick after its grid instant (information)

    def _next_instant(self, now: float) -> float:
        k = math.floor((now - self._origin) / self._ptime_s + 1e-6) + 1
        return self._origin + k * self._ptime_s

    def add(self, endpoint: RtpEndpoint, sender: RtpSender, destination: Destination) -> None:
        """Start pacing ``sender`` out of ``endpoint`` (restarts the sender on the shared grid)."""
        sender.stop()
        sender.start(self._next_instant(self._loop.time()))
        self._streams[id(sender)] = (endpoint, sender, destination)
        if self._timer is None:
            self._arm(self._loop.time())

    def remove(self, sender: RtpSender) -> None:
        """Stop pacing ``sender`` (it keeps its numbering; e.g. while bridged or at hang-up)."""
        if self._streams.pop(id(sender), None) is not None:
            sender.stop()
        if not self._streams and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def __len__(self) -> int:
        return len(self._streams)

    def _arm(self, now: float) -> None:
        self._scheduled = self._next_instant(now)
        self._timer = self._loop.call_at(self._scheduled, self._tick)

    def _tick(self) -> None:
        now = self._loop.time()
        self.ticks += 1
        self.max_lateness_s = max(self.max_lateness_s, now - self._scheduled)
        for endpoint, sender, destination in list(self._streams.values()):
            packets = sender.due_packets(now)
            if not packets:
                continue
            target = destination() if callable(destination) else destination
            if target is None:
                continue
            for packet in packets:
                endpoint.send(packet, target)
        if self._streams:
            self._arm(now)
        else:
            self._timer = None
