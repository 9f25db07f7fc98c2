"""The asyncio UDP adapter of the sans-I/O SIP user agent: feed, drain, send, re-arm.

No call logic lives here. Each datagram goes to ``ua.receive(data, addr, loop.time())``; the
events go to the ``on_events`` callback; queued datagrams are sent; one timer is re-armed at
``ua.next_deadline()``. Commands issued by the engine (``ua.answer(...)``) are followed by
:meth:`SipUdpEndpoint.flush`, or run through :meth:`SipUdpEndpoint.command`, which does both.

    endpoint = await open_sip_endpoint(ua, ("127.0.0.1", 5060), on_events)
    endpoint.command(lambda ua, now: ua.invite("sip:+15551234567@127.0.0.1:5070", offer, now))
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TypeVar

from ivr.log import get_logger
from ivr.sip.events import UAEvent
from ivr.sip.useragent import UserAgent

log = get_logger("ivr.net.sip_udp")

Addr = tuple[str, int]
EventSink = Callable[[list[UAEvent]], None]
T = TypeVar("T")


class SipUdpEndpoint:
    """One UDP socket serving one :class:`UserAgent`.

    The socket is ours, watched with ``loop.add_reader``, and each wake-up drains up to
    ``READ_BATCH`` datagrams: an asyncio datagram transport reads one per event-loop iteration,
    and with hundreds of RTP sockets in every iteration that capped signalling at a few hundred
    messages a second, so a burst of new calls waited long enough for INVITEs to be retransmitted.
    """

    READ_BATCH = 64
    MAX_DATAGRAM = 65535

    def __init__(
        self, ua: UserAgent, on_events: EventSink, loop: asyncio.AbstractEventLoop, *, trace: bool = False
    ) -> None:
        self.ua = ua
        self.trace = trace  # log every datagram's start line (debug level): for interop debugging
        self._on_events = on_events
        self._loop = loop
        self._sock: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.closed = loop.create_future()

    # -- the socket

    def attach(self, sock: socket.socket) -> None:
        """Serve ``sock`` (bound, non-blocking)."""
        self._sock = sock
        host, port = sock.getsockname()[:2]
        self.ua.set_local_addr((host, port))  # the real (maybe ephemeral) port goes into Via/Contact
        self._loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        for _ in range(self.READ_BATCH):
            sock = self._sock
            if sock is None:
                return
            try:
                data, addr = sock.recvfrom(self.MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            self.datagram_received(data, addr)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        source = (str(addr[0]), int(str(addr[1])))
        if self.trace:
            log.debug("sip.rx", peer=f"{source[0]}:{source[1]}", line=_first_line(data))
        events = self.ua.receive(data, source, self._loop.time())
        self._deliver(events)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: UDP gives no delivery guarantee, the transactions'
        # timers handle the loss (RFC 3261 section 17). Just note it.
        log.debug("sip.udp_error", error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.closed.done():
            self.closed.set_result(None)

    # -- pumping

    @property
    def local_addr(self) -> Addr:
        return self.ua.local_addr

    def now(self) -> float:
        return self._loop.time()

    def command(self, fn: Callable[[UserAgent, float], T]) -> T:
        """Run a UA command with the current time, then send and re-arm."""
        result = fn(self.ua, self._loop.time())
        self.flush()
        return result

    def flush(self) -> None:
        """Send every queued datagram and re-arm the timer at the UA's next deadline."""
        sock = self._sock
        if sock is not None:
            for data, addr in self.ua.datagrams_to_send():
                if self.trace:
                    log.debug("sip.tx", peer=f"{addr[0]}:{addr[1]}", line=_first_line(data))
                try:
                    sock.sendto(data, addr)
                except (BlockingIOError, InterruptedError):
                    # The socket buffer is full: the datagram is lost like any UDP datagram, and
                    # the transaction's retransmission timer covers it (RFC 3261 section 17).
                    log.debug("sip.send_dropped", peer=f"{addr[0]}:{addr[1]}")
                except OSError as exc:
                    self.error_received(exc)
        else:
            self.ua.datagrams_to_send()  # closed: drop
        self._rearm()

    def _deliver(self, events: list[UAEvent]) -> None:
        self.flush()
        if events:
            self._on_events(events)
            self.flush()  # the sink may have issued commands

    def _rearm(self) -> None:
        deadline = self.ua.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        events = self.ua.handle_timer(self._loop.time())
        self._deliver(events)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()
            self._loop.call_soon(self.connection_lost, None)


def _first_line(data: bytes) -> str:
    """The start line, for debug logs (never the whole message: it may carry credentials)."""
    return data[:120].split(b"\r\n", 1)[0].decode("utf-8", "replace")


async def open_sip_endpoint(
    ua: UserAgent,
    local_addr: Addr,
    on_events: EventSink,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    trace: bool = False,
) -> SipUdpEndpoint:
    """Bind a UDP socket at ``local_addr`` (port 0: ephemeral) and serve ``ua`` on it."""
    loop = loop or asyncio.get_running_loop()
    infos = await loop.getaddrinfo(local_addr[0], local_addr[1], type=socket.SOCK_DGRAM)
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    endpoint = SipUdpEndpoint(ua, on_events, loop, trace=trace)
    endpoint.attach(sock)
    return endpoint
