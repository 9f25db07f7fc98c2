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
