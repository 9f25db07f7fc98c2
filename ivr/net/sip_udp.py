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
from collections.abc import Callable
from typing import TypeVar, cast

from ivr.log import get_logger
from ivr.sip.events import UAEvent
from ivr.sip.useragent import UserAgent

log = get_logger("ivr.net.sip_udp")

Addr = tuple[str, int]
EventSink = Callable[[list[UAEvent]], None]
T = TypeVar("T")


class SipUdpEndpoint(asyncio.DatagramProtocol):
    """One UDP socket serving one :class:`UserAgent`."""

    def __init__(
        self, ua: UserAgent, on_events: EventSink, loop: asyncio.AbstractEventLoop, *, trace: bool = False
    ) -> None:
        self.ua = ua
        self.trace = trace  # log every datagram's start line (debug level): for interop debugging
        self._on_events = on_events
        self._loop = loop
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.closed = loop.create_future()

    # -- asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a selector datagram transport is not a registered DatagramTransport subclass: cast
        self._transport = cast(asyncio.DatagramTransport, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self.ua.set_local_addr((host, port))  # the real (maybe ephemeral) port goes into Via/Contact

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
        if self._transport is not None and not self._transport.is_closing():
            for data, addr in self.ua.datagrams_to_send():
                if self.trace:
                    log.debug("sip.tx", peer=f"{addr[0]}:{addr[1]}", line=_first_line(data))
                self._transport.sendto(data, addr)
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
        if self._transport is not None:
            self._transport.close()


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
    _, protocol = await loop.create_datagram_endpoint(
        lambda: SipUdpEndpoint(ua, on_events, loop, trace=trace), local_addr=local_addr
    )
    return protocol
