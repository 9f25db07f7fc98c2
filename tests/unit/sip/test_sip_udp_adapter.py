"""The asyncio UDP adapter (ivr.net.sip_udp) on 127.0.0.1: pumping, timer re-arming, commands."""

from __future__ import annotations

import asyncio
import socket

from ivr.net.sip_udp import SipUdpEndpoint, open_sip_endpoint
from ivr.sip import events as ev
from ivr.sip.message import Request, build_response, parse_message
from ivr.sip.sdp import build_answer, build_offer
from ivr.sip.useragent import UAConfig, UserAgent


async def wait_for(events: list[ev.UAEvent], kind: type, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not any(isinstance(e, kind) for e in events) and loop.time() < end:
        await asyncio.sleep(0.01)


def test_two_user_agents_call_over_loopback() -> None:
    """A calls B over real UDP: B answers from its event sink, A hangs up; both see the whole call."""

    async def main() -> tuple[list[ev.UAEvent], list[ev.UAEvent]]:
        a_events: list[ev.UAEvent] = []
        b_events: list[ev.UAEvent] = []
        box: list[SipUdpEndpoint] = []

        def b_sink(events: list[ev.UAEvent]) -> None:
            b_events.extend(events)
            ep = box[0]
            for e in events:
                if isinstance(e, ev.InviteReceived) and e.sdp is not None:
                    ep.ua.answer(e.call_id, build_answer(e.sdp, "127.0.0.1", 5000, session_id=2), ep.now())

        b = await open_sip_endpoint(UserAgent(UAConfig(local_addr=("127.0.0.1", 0))), ("127.0.0.1", 0), b_sink)
        box.append(b)
        a = await open_sip_endpoint(UserAgent(UAConfig(local_addr=("127.0.0.1", 0))), ("127.0.0.1", 0), a_events.extend)
        assert a.local_addr[1] != 0  # the bound ephemeral port went into the UA (Via, Contact)
        host, port = b.local_addr
        call_id = a.command(
            lambda ua, now: ua.invite(f"sip:1@{host}:{port}", build_offer(host, 4000, session_id=1), now)
        )
        await wait_for(a_events, ev.CallAnswered)
        a.command(lambda ua, now: ua.bye(call_id, now))
        await wait_for(a_events, ev.CallEnded)
        await wait_for(b_events, ev.ByeReceived)
        a.close()
        b.close()
        return a_events, b_events

    a_events, b_events = asyncio.run(main())
    assert [type(e) for e in a_events] == [ev.CallAnswered, ev.CallEnded]
    assert [type(e) for e in b_events] == [ev.InviteReceived, ev.CallConfirmed, ev.ByeReceived]


def test_timer_rearmed_retransmission_reaches_a_slow_peer() -> None:
    """The adapter arms Timer A: a peer that ignores the first INVITE answers the retransmission
    (sent ~0.5 s later) with 486, which reaches the engine as CallFailed(486)."""

    async def main() -> list[ev.UAEvent]:
        loop = asyncio.get_running_loop()
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        port = peer.getsockname()[1]
        events: list[ev.UAEvent] = []
        a = await open_sip_endpoint(UserAgent(UAConfig(local_addr=("127.0.0.1", 0))), ("127.0.0.1", 0), events.extend)
        a.command(lambda ua, now: ua.invite(f"sip:1@127.0.0.1:{port}", None, now))
        first, _ = await loop.sock_recvfrom(peer, 65535)  # ignored, as if lost
        second, addr = await asyncio.wait_for(loop.sock_recvfrom(peer, 65535), 3.0)
        assert first == second
        req = parse_message(second)
        assert isinstance(req, Request)
        peer.sendto(build_response(req.headers, 486, "Busy Here", to_tag="x").to_bytes(), addr)
        ack, _ = await asyncio.wait_for(loop.sock_recvfrom(peer, 65535), 3.0)
        assert ack.startswith(b"ACK ")
        await wait_for(events, ev.CallFailed)
        a.close()
        peer.close()
        return events

    events = asyncio.run(main())
    assert events == [ev.CallFailed(events[0].call_id, 486, "Busy Here")]  # type: ignore[union-attr]
