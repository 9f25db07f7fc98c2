"""SIP dialogs (RFC 3261 section 12): the state two user agents share for the life of a call.

A dialog is identified by Call-ID, local tag and remote tag. It keeps the CSeq counters
(section 12.2.1.1 / 12.2.2), the route set (from Record-Route, section 12.1.1 / 12.1.2) and the
remote target (the peer's Contact, updated by target refresh requests such as re-INVITE,
section 12.2). :meth:`Dialog.create_request` builds in-dialog requests (BYE, re-INVITE, INFO,
REFER, the ACK for a 2xx) following section 12.2.1.1, with loose or strict routing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ivr.sip.message import Headers, NameAddr, Request, Response, SipUri, Via

Addr = tuple[str, int]


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def uri_address(uri: SipUri) -> Addr | None:
    """The transport address a URI names, when it is an IP literal (we resolve no names: sans-I/O)."""
    if uri.scheme not in ("sip", "sips") or not is_ip_literal(uri.host):
        return None
    maddr = uri.param("maddr")
    host = maddr if maddr and is_ip_literal(maddr) else uri.host
    return host.strip("[]"), uri.port or 5060


@dataclass(slots=True)
class Dialog:
    """Dialog state. ``peer_addr`` is where the dialog's first message came from / went to; it is
    the fall-back destination when the remote target is not an IP literal."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    local_seq: int
    remote_seq: int | None
    remote_target: SipUri
    peer_addr: Addr
    route_set: list[str] = field(default_factory=list)

    @classmethod
    def as_uas(cls, request: Request, local_tag: str, source: Addr, local_seq: int) -> Dialog:
        """Section 12.1.1: the dialog a 2xx (or 101-199 with tag) to ``request`` creates."""
        contacts = request.contacts
        target = contacts[0].uri if contacts else request.from_.uri
        to = request.to
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=NameAddr(to.uri, to.display),
            remote_uri=NameAddr(request.from_.uri, request.from_.display),
            local_seq=local_seq,
            remote_seq=request.cseq.seq,
            remote_target=target,
            peer_addr=source,
            route_set=list(request.headers.get_all("Record-Route")),
        )

    @classmethod
    def as_uac(cls, request: Request, response: Response, dest: Addr) -> Dialog:
        """Section 12.1.2: the dialog a 2xx (or 1xx with To tag) to our ``request`` creates."""
        contacts = response.contacts
        target = contacts[0].uri if contacts else request.uri
        frm = request.from_
        return cls(
            call_id=request.call_id,
            local_tag=frm.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=NameAddr(frm.uri, frm.display),
            remote_uri=NameAddr(request.to.uri, request.to.display),
            local_seq=request.cseq.seq,
            remote_seq=None,
            remote_target=target,
            peer_addr=dest,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
        )

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.call_id, self.local_tag, self.remote_tag)

    def accept_remote_seq(self, seq: int, method: str) -> bool:
        """Section 12.2.2: a request with a CSeq lower than the last one is out of order (500).

        ACK and CANCEL carry the CSeq of the request they refer to and are not checked.
        """
        if method in ("ACK", "CANCEL"):
            return True
        if self.remote_seq is not None and seq <= self.remote_seq:
            return False
        self.remote_seq = seq
        return True

    def refresh_target(self, message: Request | Response) -> None:
        """Section 12.2.1.2 / 12.2.2: a target refresh (re-INVITE and its 2xx) updates the target."""
        contacts = message.contacts
        if contacts:
            self.remote_target = contacts[0].uri

    def destination(self) -> Addr:
        """Where in-dialog requests go: the first route, else the remote target, else the peer."""
        if self.route_set:
            try:
                first = NameAddr.parse(self.route_set[0]).uri
            except ValueError:
                return self.peer_addr
            return uri_address(first) or self.peer_addr
        return uri_address(self.remote_target) or self.peer_addr

    def create_request(
        self, method: str, *, via: Via, contact: str | None, seq: int | None = None, max_forwards: int = 70
    ) -> Request:
        """Section 12.2.1.1. ``seq`` forces a CSeq number (ACK for 2xx reuses the INVITE's);
        otherwise the local sequence number is incremented."""
        if seq is None:
            self.local_seq += 1
            seq = self.local_seq
        h = Headers()
        h.add("Via", str(via))
        h.add("Max-Forwards", str(max_forwards))
        uri = self.remote_target
        routes = list(self.route_set)
        if routes:
            try:
                first = NameAddr.parse(routes[0]).uri
            except ValueError:
                first = None
            if first is not None and first.param("lr") is None:
                # strict routing (section 12.2.1.1): first route becomes the Request-URI
                uri = first
                routes = [*routes[1:], f"<{self.remote_target}>"]
        for r in routes:
            h.add("Route", r)
        h.add("From", str(self.local_uri.with_tag(self.local_tag)))
        to = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        h.add("To", str(to))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{seq} {method}")
        if contact is not None and method in ("INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"):
            h.add("Contact", contact)
        return Request(headers=h, method=method, uri=uri)
