"""A simulated SIP trunk and registrar on loopback (DESIGN.md section 2, issue 6).

The engine's trunk points here. Each called number is routed either to an in-process simulated
phone (:meth:`TrunkCore.route`) or to a softphone that REGISTERed under that number (baresip,
linphone, pyVoIP: ``sip:+15125550101@127.0.0.1:5070``).

Why a proxy and not a B2BUA: a *transaction-stateless proxy that Record-Routes* (RFC 3261 sections
16.11 and 16.6 step 4) is the simplest correct choice. It keeps no call state at all: it pushes its
Via on each request with a branch derived from the incoming one (so retransmissions, the CANCEL and
the ACK of a non-2xx map to the same downstream branch, section 16.11), pops it from each response,
and adds ``Record-Route: <sip:trunk;lr>`` to dialog-creating INVITEs, so every later request of the
dialog (ACK, BYE, re-INVITE, INFO, REFER) also passes through it (loose routing, section 16.4/16.12).
Retransmission and timeouts stay end to end between the engine and the phone, which is what a
real carrier looks like to the engine. A B2BUA would have to re-implement all of that twice.

Registrar (section 10.3): a REGISTER from loopback binds the To number to the Contact; requests are
sent to the address the REGISTER came from (as a carrier does behind NAT), with the Request-URI
rewritten to the registered Contact. Optional digest authentication (``credentials``) challenges
REGISTER with 401 and initial INVITEs with 407 (stateless nonces, :class:`ivr.sip.auth.DigestVerifier`),
so the engine's digest client can be exercised.

Loopback only: the trunk never sends a datagram to an address that is not a loopback address.

The core :class:`TrunkCore` is sans-I/O (``receive(data, source, now) -> [(bytes, addr)]``);
:class:`SimTrunk` is its asyncio UDP adapter.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ivr.log import get_logger
from ivr.sip.auth import DigestVerifier
from ivr.sip.dialog import uri_address
from ivr.sip.message import (
    MAGIC_COOKIE,
    Headers,
    MalformedMessageError,
    NameAddr,
    Request,
    Response,
    SipUri,
    Via,
    build_response,
    param,
    parse_message,
    reason_phrase,
    with_param,
)

log = get_logger("sim.trunk")

Addr = tuple[str, int]
Tap = Callable[[bytes, Addr, Addr], None]  # (datagram, source, destination): see sim.pcap

MAX_EXPIRES_S = 3600
MIN_EXPIRES_S = 10


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_number(user: str) -> str:
    """``15125550101``, ``+15125550101`` and ``+1-512-555-0101`` are one number (E.164 digits)."""
    digits = "".join(c for c in user if c.isdigit())
    if digits and all(c.isdigit() or c in "+-. ()" for c in user):
        return "+" + digits
    return user


@dataclass(frozen=True, slots=True)
class Binding:
    """A registered contact for a number (section 10.3)."""

    number: str
    contact: str  # the Contact URI as registered
    addr: Addr  # where requests go: the REGISTER's source address
    expires_at: float


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One datagram the trunk handled: what tests and ``ivr sim`` look at."""

    at: float
    direction: str  # "in" | "out"
    peer: Addr
    first_line: str
    call_id: str
    method: str  # CSeq method


class TrunkCore:
    """The sans-I/O trunk: a record-routing stateless proxy plus a registrar."""

    def __init__(
        self,
        addr: Addr,
        *,
        credentials: dict[str, str] | None = None,
        realm: str = "sim-trunk",
        secret: bytes | None = None,
        log_size: int = 20_000,
    ) -> None:
        self.addr = addr
        self.routes: dict[str, Addr] = {}
        self.bindings: dict[str, Binding] = {}
        self.verifier = (
            DigestVerifier(realm, secret or secrets.token_bytes(16), dict(credentials), algorithm="MD5")
            if credentials
            else None
        )
        self.log: collections.deque[LogEntry] = collections.deque(maxlen=log_size)
        self.registrations_changed = 0  # bumped on every binding change (the adapter wakes waiters)

    # -------------------------------------------------------------- routing table

    def route(self, number: str, addr: Addr) -> None:
        """Send calls for ``number`` to a simulated phone listening at ``addr``."""
        if not is_loopback(addr[0]):
            raise ValueError(f"the simulated trunk routes to loopback only, not {addr[0]}")
        self.routes[normalize_number(number)] = addr

    def unroute(self, number: str) -> None:
        self.routes.pop(normalize_number(number), None)

    def lookup(self, number: str, now: float) -> tuple[Addr, SipUri | None] | None:
        """Where a call for ``number`` goes: (address, new Request-URI or None)."""
        key = normalize_number(number)
        binding = self.bindings.get(key)
        if binding is not None and binding.expires_at > now:
            try:
                return binding.addr, SipUri.parse(binding.contact)
            except ValueError:
                return binding.addr, None
        if key in self.routes:
            return self.routes[key], None
        return None

    # -------------------------------------------------------------- input

    def receive(self, data: bytes, source: Addr, now: float) -> list[tuple[bytes, Addr]]:
        """Handle one datagram; returns the datagrams to send (never to a non-loopback address)."""
        if not data.strip(b"\r\n\t "):
            return []  # keep-alive
        try:
            msg = parse_message(data)
        except MalformedMessageError:
            return []  # a proxy that cannot parse a message cannot route it either: drop
        self._log(now, "in", source, data, msg)
        try:
            out = self._on_response(msg) if isinstance(msg, Response) else self._on_request(msg, source, now)
        except ValueError as exc:  # a header we could not use
            log.debug("trunk.dropped", error=str(exc))
            return []
        sent: list[tuple[bytes, Addr]] = []
        for datagram, dest in out:
            if not is_loopback(dest[0]):
                log.warning("trunk.refused_destination", dest=dest[0])
                continue
            sent.append((datagram, dest))
            with contextlib.suppress(MalformedMessageError):
                self._log(now, "out", dest, datagram, parse_message(datagram))
        return sent

    def _log(self, now: float, direction: str, peer: Addr, data: bytes, msg: Request | Response) -> None:
        first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
        try:
            method = msg.cseq.method
        except ValueError:
            method = ""
        self.log.append(LogEntry(now, direction, peer, first, msg.call_id, method))

    def _is_us(self, uri: SipUri) -> bool:
        """The URI names this trunk: our host, with our port or none (the engine's trunk URI is
        ``sip:<number>@<trunk host>``, often without the port it sends to)."""
        host, port = self.addr
        return uri.host in (host, "localhost") and uri.port in (None, port)

    def _reply(
        self, req: Request, source: Addr, status: int, headers: tuple[tuple[str, str], ...] = ()
    ) -> list[tuple[bytes, Addr]]:
        if req.method == "ACK":
            return []  # section 17: ACK is never answered
        resp = build_response(req.headers, status, reason_phrase(status), to_tag=secrets.token_hex(4))
        for name, value in headers:
            resp.headers.add(name, value)
        resp.headers.add("Server", "ivr-sim-trunk")
        return [(resp.to_bytes(), _response_address(req.top_via, source))]

    def _on_request(self, req: Request, source: Addr, now: float) -> list[tuple[bytes, Addr]]:
        if not is_loopback(source[0]):
            return self._reply(req, source, 403)
        routes = req.headers.get_all("Route")
        if routes and self._route_is_us(routes[0]):
            routes = routes[1:]  # section 16.4: remove our own loose route
        if req.method == "REGISTER" and not routes:
            return self._register(req, source, now)
        mf = req.headers.get("Max-Forwards")
        if mf is not None and mf.strip().isdigit() and int(mf) <= 0:
            return self._reply(req, source, 483)  # section 16.3 step 3
        if req.method == "OPTIONS" and not routes and self._is_us(req.uri) and req.uri.user is None:
            return self._reply(req, source, 200)
        uri = req.uri
        initial = req.to.tag is None
        if routes:
            dest = uri_address(NameAddr.parse(routes[0]).uri)
        elif self._is_us(uri):
            if (
                initial
                and req.method == "INVITE"
                and self.verifier is not None
                and not self._authorized(req, "Proxy-Authorization", now)
            ):
                challenge = self.verifier.challenge(now)
                return self._reply(req, source, 407, (("Proxy-Authenticate", challenge),))
            found = self.lookup(uri.user or "", now)
            if found is None:
                return self._reply(req, source, 404)  # no such number (section 16.5)
            dest, new_uri = found
            if new_uri is not None:
                uri = new_uri
        else:
            dest = uri_address(uri)
        if dest is None:
            return self._reply(req, source, 404)
        headers = self._forward_headers(req, source, routes, record_route=initial and req.method == "INVITE")
        forwarded = Request(headers=headers, method=req.method, uri=uri, body=req.body)
        return [(forwarded.to_bytes(), dest)]

    def _route_is_us(self, route: str) -> bool:
        try:
            return self._is_us(NameAddr.parse(route).uri)
        except ValueError:
            return False

    def _branch(self, req: Request) -> str:
        """Section 16.11: a stateless proxy's branch is a function of the incoming request, the
        same for its retransmissions, its CANCEL and the ACK of a non-2xx (so without the method)."""
        top = req.top_via
        seed = f"{top.branch}|{top.host}|{top.port}|{req.call_id}|{req.cseq.seq}"
        if req.method == "ACK" and req.to.tag is not None and not (top.branch or "").startswith(MAGIC_COOKIE):
            seed += "|ack"
        return MAGIC_COOKIE + "sim" + hashlib.sha256(seed.encode()).hexdigest()[:20]

    def _forward_headers(self, req: Request, source: Addr, routes: list[str], *, record_route: bool) -> Headers:
        host, port = self.addr
        vias = req.headers.get_all("Via")
        top = Via.parse(vias[0])
        params = top.params
        if top.host != source[0]:
            params = with_param(params, "received", source[0])
        if param(params, "rport") == "" or (top.port or 5060) != source[1]:
            params = with_param(params, "rport", str(source[1]))  # RFC 3581: answer where it came from
        stamped = [str(Via(top.transport, top.host, top.port, params)), *vias[1:]]
        out = Headers()
        out.add("Via", str(Via("UDP", host, port, (("branch", self._branch(req)),))))
        for v in stamped:
            out.add("Via", v)
        if record_route:
            out.add("Record-Route", f"<sip:{host}:{port};lr>")
        for r in routes:
            out.add("Route", r)
        mf_done = False
        for name, value in req.headers:
            if name in ("Via", "Route", "Content-Length"):
                continue
            if name == "Max-Forwards":
                value = str(max(0, int(value) - 1)) if value.strip().isdigit() else "69"
                mf_done = True
            out.add(name, value)
        if not mf_done:
            out.add("Max-Forwards", "69")
        return out

    def _on_response(self, resp: Response) -> list[tuple[bytes, Addr]]:
        vias = resp.headers.get_all("Via")
        if len(vias) < 2:
            return []
        top = Via.parse(vias[0])
        if (top.host, top.port or 5060) != self.addr:
            return []  # section 16.7 step 1: not ours
        nxt = Via.parse(vias[1])
        headers = Headers()
        placed = False
        for name, value in resp.headers:
            if name == "Via":
                if not placed:
                    for v in vias[1:]:
                        headers.add("Via", v)
                    placed = True
                continue
            headers.add(name, value)
        out = Response(headers=headers, status=resp.status, reason=resp.reason, body=resp.body)
        return [(out.to_bytes(), _response_address(nxt, None))]

    # -------------------------------------------------------------- registrar (section 10.3)

    def _authorized(self, req: Request, header: str, now: float) -> bool:
        assert self.verifier is not None
        value = req.headers.get(header)
        if value is None:
            return False
        ok, _stale = self.verifier.verify(value, method=req.method, now=now, body=req.body)
        return ok

    def _register(self, req: Request, source: Addr, now: float) -> list[tuple[bytes, Addr]]:
        if self.verifier is not None and not self._authorized(req, "Authorization", now):
            return self._reply(req, source, 401, (("WWW-Authenticate", self.verifier.challenge(now)),))
        number = normalize_number(req.to.uri.user or "")
        if not number:
            return self._reply(req, source, 404)
        header_expires = (req.headers.get("Expires") or "").strip()
        default_expires = int(header_expires) if header_expires.isdigit() else MAX_EXPIRES_S
        contacts = req.headers.get_all("Contact")
        if any(c.strip() == "*" for c in contacts):
            if default_expires != 0:
                return self._reply(req, source, 400)  # section 10.3 step 6
            self._unbind(number)
            return self._reply(req, source, 200)
        granted: list[tuple[str, int]] = []
        for value in contacts:
            contact = NameAddr.parse(value)
            exp_param = param(contact.params, "expires")
            expires = int(exp_param) if exp_param and exp_param.isdigit() else default_expires
            if 0 < expires < MIN_EXPIRES_S:
                return self._reply(req, source, 423, (("Min-Expires", str(MIN_EXPIRES_S)),))
            expires = min(expires, MAX_EXPIRES_S)
            if expires == 0:
                self._unbind(number)
                continue
            self.bindings[number] = Binding(number, str(contact.uri), source, now + expires)
            self.registrations_changed += 1
            granted.append((str(contact.uri), expires))
            log.info("trunk.registered", number=number, contact=str(contact.uri), source=f"{source[0]}:{source[1]}")
        extra = tuple(("Contact", f"<{uri}>;expires={exp}") for uri, exp in granted)
        return self._reply(req, source, 200, extra)

    def _unbind(self, number: str) -> None:
        if self.bindings.pop(number, None) is not None:
            self.registrations_changed += 1


def _response_address(via: Via, source: Addr | None) -> Addr:
    """Section 18.2.2 with RFC 3581: received/rport when present, else sent-by."""
    host = param(via.params, "received") or via.host
    rport = param(via.params, "rport")
    if rport and rport.isdigit():
        return host, int(rport)
    if source is not None and rport == "":
        return source
    return host, via.port or 5060


class SimTrunk(asyncio.DatagramProtocol):
    """The asyncio UDP adapter of :class:`TrunkCore`.

    ``trunk = await SimTrunk.start(("127.0.0.1", 5070))``; ``trunk.route(number, addr)``;
    ``await trunk.wait_registered(number)``; ``trunk.close()``.
    """

    def __init__(self, core: TrunkCore, loop: asyncio.AbstractEventLoop, tap: Tap | None) -> None:
        self.core = core
        self._loop = loop
        self._tap = tap
        self._transport: asyncio.DatagramTransport | None = None
        self._changed = asyncio.Condition()

    @classmethod
    async def start(
        cls,
        addr: Addr = ("127.0.0.1", 0),
        *,
        credentials: dict[str, str] | None = None,
        tap: Tap | None = None,
    ) -> SimTrunk:
        if not is_loopback(addr[0]):
            raise ValueError("the simulated trunk listens on loopback only")
        loop = asyncio.get_running_loop()
        core = TrunkCore(addr, credentials=credentials)
        _, proto = await loop.create_datagram_endpoint(lambda: cls(core, loop, tap), local_addr=addr)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("sockname")[:2]
        self.core.addr = (str(host), int(port))

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        source = (str(addr[0]), int(str(addr[1])))
        now = self._loop.time()
        if self._tap is not None:
            self._tap(data, source, self.core.addr)
        before = self.core.registrations_changed
        for datagram, dest in self.core.receive(data, source, now):
            if self._transport is not None and not self._transport.is_closing():
                self._transport.sendto(datagram, dest)
                if self._tap is not None:
                    self._tap(datagram, self.core.addr, dest)
        if self.core.registrations_changed != before:
            self._loop.create_task(self._notify())

    def error_received(self, exc: Exception) -> None:
        log.debug("trunk.udp_error", error=str(exc))

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @property
    def address(self) -> Addr:
        return self.core.addr

    @property
    def host_port(self) -> str:
        return f"{self.core.addr[0]}:{self.core.addr[1]}"

    def route(self, number: str, addr: Addr) -> None:
        self.core.route(number, addr)

    def unroute(self, number: str) -> None:
        self.core.unroute(number)

    async def wait_registered(self, number: str, timeout_s: float = 10.0) -> Binding:
        """Wait until ``number`` has a live binding (a softphone registered)."""
        key = normalize_number(number)

        async def wait() -> Binding:
            async with self._changed:
                while True:
                    binding = self.core.bindings.get(key)
                    if binding is not None and binding.expires_at > self._loop.time():
                        return binding
                    await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout_s)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
