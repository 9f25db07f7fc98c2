"""One leg's per-datagram fast path: :meth:`MediaLeg.receive_wire`, then the relayed bytes out of
the other leg's socket. Compiled with the rest of the media path (:mod:`ivr.native`).

It is the endpoint's datagram handler for the whole life of the leg. ``media`` is set when the
leg's SDP is known (the facility's INVITE, the called party's answer), ``peer`` when the call has
both legs; unbridged, ``receive_wire`` relays nothing and the path only receives.
"""

from __future__ import annotations

from ivr.net.rtp_udp import RtpEndpoint
from ivr.rtp.leg import NOT_SIMPLE, MediaLeg
from ivr.rtp.session import Address


class LegPath:
    def __init__(self, endpoint: RtpEndpoint | None) -> None:
        self.endpoint = endpoint
        self.media: MediaLeg | None = None
        self.peer: LegPath | None = None

    def __call__(self, data: bytes, source: Address, now: float) -> bool:
        """True when the datagram was handled here; False leaves it to the general path
        (telephone-events, RTCP, anything unusual: ``CallSession.on_rtp``)."""
        media = self.media
        if media is None:
            return False
        out = media.receive_wire(data, source, now)
        if out is NOT_SIMPLE:
            return False
        if isinstance(out, bytes):
            peer = self.peer
            if peer is not None and peer.media is not None and peer.endpoint is not None:
                destination = peer.media.destination
                if destination is not None:
                    peer.endpoint.send_bytes(out, destination)
        return True


def pair(a: LegPath, b: LegPath) -> None:
    """The two legs of one call relay to each other (when their media are bridged)."""
    a.peer = b
    b.peer = a
