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
import contextlib
import math
import random
import select
import socket
import weakref
from collections.abc import Callable
from typing import Any, cast

from ivr.rtp.packet import Dropped, RtcpPacket, RtpPacket, parse_datagram
from ivr.rtp.session import Address, RtpSender

PacketHandler = Callable[[RtpPacket, Address, float], None]
DatagramHandler = Callable[[bytes, Address, float], bool]
RECV_SIZE = 2048  # larger than any RTP packet we accept (G.711 20 ms: 172 octets)
SentHandler = Callable[[list[RtpPacket], float], None]
Destination = Address | Callable[[], Address | None]


class _Poller:
    """All RTP sockets of one event loop behind one epoll set, itself one reader of the loop.

    With hundreds of sockets each readable every 20 ms, asyncio's per-ready-socket machinery
    (selector key lookup, a Handle, a context switch into it) cost a few microseconds per packet;
    here one loop callback polls the set and calls each ready socket's reader directly.
    Level-triggered: a socket left with data (one datagram is read per readiness) keeps the set readable.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._epoll = select.epoll()
        self._readers: dict[int, Callable[[float | None], None]] = {}
        loop.add_reader(self._epoll.fileno(), self._ready)

    def add(self, fd: int, reader: Callable[[float | None], None]) -> None:
        self._readers[fd] = reader
        self._epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> bool:
        """Stop watching ``fd``; True when no socket is left (the poller can be closed)."""
        if self._readers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)
        return not self._readers

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, ValueError):  # the loop may already be closed
            self._loop.remove_reader(self._epoll.fileno())
        self._epoll.close()

    def _ready(self) -> None:
        readers = self._readers
        # One arrival time for the datagrams of one poll: they were all queued when it returned
        # (and the clock is a Python call, once per datagram a measurable part of the path).
        now = self._loop.time()
        for fd, _ in self._epoll.poll(0):
            reader = readers.get(fd)
            if reader is None:
                continue
            try:
                reader(now)
            except Exception as exc:  # one socket's failure must not starve the others
                self._loop.call_exception_handler(
                    {"message": "RTP socket reader failed", "exception": exc, "fd": fd})


_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Poller] = weakref.WeakKeyDictionary()


def _watch(loop: asyncio.AbstractEventLoop, fd: int, reader: Callable[[float | None], None]) -> None:
    if not hasattr(select, "epoll"):  # not Linux: one loop reader per socket
        loop.add_reader(fd, reader, None)
        return
    poller = _POLLERS.get(loop)
    if poller is None:
        poller = _POLLERS[loop] = _Poller(loop)
    poller.add(fd, reader)


def _unwatch(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    poller = _POLLERS.get(loop)
    if poller is None:
        loop.remove_reader(fd)
        return
    if poller.remove(fd):
        poller.close()
        del _POLLERS[loop]


def _ignore_packet(packet: RtpPacket, source: Address, now: float) -> None:
    """A closed endpoint's packet handler (nothing arrives on a closed socket)."""


class RtpEndpoint:
    """One bound UDP socket carrying RTP for one leg.

    The socket is ours (non-blocking, watched through the loop's :class:`_Poller`), not an asyncio datagram
    transport: at 50 packets a second per leg, a few hundred calls mean tens of thousands of
    datagrams a second on one core, and the transport's per-datagram machinery (protocol
    dispatch, write buffering, its checks) cost about as much as our whole RTP path. A datagram
    the kernel will not take at once is dropped and counted (``send_dropped``): buffering real-time
    media only delivers it late.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_packet: PacketHandler,
                 sock: socket.socket | None = None) -> None:
        self._loop = loop
        self._on_packet = on_packet
        self._on_datagram: DatagramHandler | None = None
        self._sock: socket.socket | None = None
        self._sender: RtpSender | None = None
        self._destination: Destination | None = None
        self._on_sent: SentHandler | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.dropped: collections.Counter[str] = collections.Counter()
        self.rtcp_ignored = 0
        self.packets_received = 0
        self.packets_sent = 0
        self.send_errors = 0
        self.send_dropped = 0
        if sock is not None:
            self._attach(sock)

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
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((host, candidate))
            except OSError as exc:
                sock.close()
                last_error = exc
                continue
            return cls(loop, on_packet, sock)
        raise OSError(f"no free RTP port on {host} in {port_range or port}") from last_error

    def _attach(self, sock: socket.socket) -> None:
        self._sock = sock
        self._local = cast(Address, sock.getsockname()[:2])
        _watch(self._loop, sock.fileno(), self._read_ready)

    def set_datagram_handler(self, handler: DatagramHandler | None) -> None:
        """Offer every datagram to ``handler(data, source, now)`` first; it returns False for the
        ones it leaves to the general path (parse, then ``on_packet``)."""
        self._on_datagram = handler

    # -- receiving --------------------------------------------------------------------------

    def _read_ready(self, now: float | None = None) -> None:
        """One datagram per readiness: the poller is level-triggered, so a socket with more queued
        comes up again in the next poll. Reading on until EAGAIN would end nearly every wake-up in
        a raised BlockingIOError (one packet per socket per 20 ms is the common case), the most
        expensive step of the path; one read each also keeps a flooded socket from starving the rest."""
        sock = self._sock
        if sock is None:
            return
        try:
            data, addr = sock.recvfrom(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # ICMP port unreachable from a peer that went away: counted; the media timeout decides.
            self.send_errors += 1
            return
        if now is None:  # a reader of the loop itself (no epoll), not the poller
            now = self._loop.time()
        fast = self._on_datagram
        if fast is not None and fast(data, addr, now):
            self.packets_received += 1
        else:
            self.datagram_received(data, addr, now)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int], now: float | None = None) -> None:
        """The general path: parse (never raises), count, hand RTP to ``on_packet``."""
        if now is None:
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

    # -- sending ----------------------------------------------------------------------------

    @property
    def local_address(self) -> Address:
        assert self._sock is not None, "endpoint is closed"
        return self._local

    def send(self, packet: RtpPacket, destination: Address) -> None:
        """Send one packet now (paced prompts, one-off packets)."""
        self.send_bytes(packet.to_bytes(), destination)

    def send_bytes(self, data: bytes, destination: Address) -> None:
        """Send one datagram now (relayed media comes here already on the wire format)."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(data, destination)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1
            return
        except OSError:
            self.send_errors += 1
            return
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
        sock, self._sock = self._sock, None
        if sock is not None:
            _unwatch(self._loop, sock.fileno())
            sock.close()
        # The handlers refer to the call that owns this endpoint: dropping them here lets reference
        # counting free an ended call at once, instead of a full garbage collection (which stops
        # every call's media for tens of milliseconds at a few hundred calls).
        self._on_packet = _ignore_packet
        self._on_datagram = None
        self._destination = None
        self._on_sent = None


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
