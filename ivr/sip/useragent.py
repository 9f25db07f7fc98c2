"""The sans-I/O SIP user agent the engine drives (UAS towards gateways, UAC towards the trunk).

Feed it datagrams and time; it returns events and queues datagrams::

    events = ua.receive(data, addr, now)       # -> list[UAEvent]
    for data, addr in ua.datagrams_to_send():  # drain after every call
        sock.sendto(data, addr)
    deadline = ua.next_deadline()              # re-arm one timer
    events = ua.handle_timer(now)              # when it fires

Commands are methods: :meth:`ringing`, :meth:`answer`, :meth:`reject` (UAS), :meth:`invite`,
:meth:`cancel` (UAC), :meth:`bye`, :meth:`hangup` (either), :meth:`register`, :meth:`unregister`.

Nothing raises out of :meth:`receive` or :meth:`handle_timer`: a malformed request is answered
400 (RFC 3261 section 21.4.1) when it can be answered at all, a malformed response is dropped
(section 18.1.2), and an internal failure on a request is answered 500 and reported as a
:class:`~ivr.sip.events.RequestRejected` with status 500 (the fuzz tests assert there is none).
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import itertools
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ivr.errors import LocalProtocolError, RemoteProtocolError
from ivr.log import get_logger
from ivr.sip import auth
from ivr.sip.dialog import Addr, Dialog, uri_address
from ivr.sip.events import (
    ByeReceived,
    CallAnswered,
    CallCancelled,
    CallConfirmed,
    CallEnded,
    CallFailed,
    CallRinging,
    HoldDetected,
    HoldResumed,
    InviteReceived,
    KeyReceived,
    MediaUpdated,
    RegistrationFailed,
    RegistrationSucceeded,
    RequestCompleted,
    RequestRejected,
    TransferRequested,
    UAEvent,
)
from ivr.sip.message import (
    DEFAULT_LIMITS,
    MAGIC_COOKIE,
    Headers,
    Limits,
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
    reply_method,
    with_param,
)
from ivr.sip.sdp import (
    DEFAULT_CODECS,
    Codec,
    SdpError,
    SessionDescription,
    build_answer,
    is_hold,
    negotiate,
    parse_sdp,
    with_version,
)
from ivr.sip.transaction import (
    DEFAULT_TIMERS,
    ClientTransaction,
    Outbox,
    ServerTransaction,
    TimerValues,
    TxState,
    transaction_key,
)

log = get_logger("ivr.sip")

ALLOWED_METHODS = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "REFER")
# Methods we recognise but do not serve: 405 with Allow (section 8.2.1); anything else is 501.
KNOWN_METHODS = frozenset(
    (*ALLOWED_METHODS, "REGISTER", "PRACK", "UPDATE", "SUBSCRIBE", "NOTIFY", "MESSAGE", "PUBLISH")
)
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset()  # no option tags: Require of anything -> 420
DTMF_SIGNALS = "0123456789*#ABCD"


@dataclass(frozen=True, slots=True)
class Credentials:
    """Digest credentials towards the trunk / registrar (RFC 3261 section 22)."""

    username: str
    password: str
    realm: str | None = None  # None: answer any realm


@dataclass(frozen=True, slots=True)
class UAConfig:
    """Static settings of a user agent.

    ``local_addr`` is the address written in Via and Contact (the adapter sets it to the bound
    socket address with :meth:`UserAgent.set_local_addr`); ``outbound_proxy`` is where out-of-
    dialog requests go when not given explicitly (the trunk).
    """

    local_addr: Addr = ("127.0.0.1", 5060)
    contact_user: str = "ivr"
    user_agent: str = "ivr-collect/1"
    credentials: Credentials | None = None
    outbound_proxy: Addr | None = None
    codecs: tuple[Codec, ...] = DEFAULT_CODECS
    timers: TimerValues = DEFAULT_TIMERS
    limits: Limits = DEFAULT_LIMITS
    max_server_transactions: int = 20_000  # beyond this, new requests get 503 (flood guard)
    register_retry_s: float = 30.0  # first retry after a failed registration; doubles up to 600 s
    # Sources allowed to INVITE (the facility gateways). INVITEs from anyone else get a stateless
    # 403 (section 8.2.7): no transaction, no retransmissions, no event but RequestRejected, so a
    # flood costs neither memory nor amplified traffic. None: every source reaches the engine.
    invite_sources: frozenset[str] | None = None


class Phase(enum.Enum):
    INCOMING = "incoming"  # UAS: INVITE received, no final response yet
    OUTGOING = "outgoing"  # UAC: INVITE sent, no final response yet
    ANSWERED = "answered"  # UAS: 2xx sent, waiting for ACK
    ESTABLISHED = "established"
    TERMINATING = "terminating"  # our BYE is out
    ENDED = "ended"


@dataclass(slots=True)
class _Retransmit:
    """A 2xx the UAS core retransmits until ACK (section 13.3.1.4): T1 doubling to T2, 64*T1 cap."""

    data: bytes
    addr: Addr
    cseq: int
    next_at: float
    interval: float
    give_up_at: float


@dataclass(slots=True)
class _Call:
    call_id: str
    is_uas: bool
    phase: Phase
    invite: Request
    peer: Addr
    local_tag: str
    invite_stx: ServerTransaction | None = None
    invite_ctx: _ClientCtx | None = None
    dialog: Dialog | None = None
    local_sdp: SessionDescription | None = None
    remote_sdp: SessionDescription | None = None
    retransmit: _Retransmit | None = None
    late_offer: bool = False  # the ACK will carry the answer (section 13.2.1 / 14.1)
    on_hold: bool = False
    cancel_requested: bool = False
    cancel_sent: bool = False
    cancel_deadline: float | None = None
    bye_after_ack: bool = False
    auth_attempts: int = 0
    reinvite_ctx: _ClientCtx | None = None  # our own re-INVITE, while it has no final response


class _Kind(enum.Enum):
    INVITE = "invite"
    CANCEL = "cancel"
    BYE = "bye"
    REGISTER = "register"
    IN_DIALOG = "in_dialog"  # send_request: re-INVITE, INFO, REFER, OPTIONS, UPDATE in a dialog
    OTHER = "other"


@dataclass(slots=True)
class _ClientCtx:
    """What a client transaction was for, so its responses reach the right handler."""

    tx: ClientTransaction
    kind: _Kind
    call_id: str | None = None
    aor: str | None = None
    ack: tuple[bytes, Addr] | None = None  # ACK for 2xx, re-sent on 2xx retransmission
    remote_tag: str | None = None


@dataclass(slots=True)
class _Registration:
    aor: str
    registrar: SipUri
    dest: Addr
    call_id: str
    from_tag: str
    expires_s: int
    cseq: int = 0
    refresh_at: float | None = None
    retry_s: float = 0.0
    auth_attempts: int = 0
    active: bool = True
    pending: bool = False
    registered: bool = False
    extra: tuple[tuple[str, str], ...] = field(default_factory=tuple)


_Timed = ServerTransaction | _ClientCtx | _Call | _Registration


class UserAgent:
    """A sans-I/O SIP user agent over UDP. See the module docstring."""

    def __init__(self, config: UAConfig | None = None, *, rand: Callable[[int], bytes] = secrets.token_bytes):
        self.config = config or UAConfig()
        self._rand = rand
        self.local_addr: Addr = self.config.local_addr
        self._outbox: Outbox = []
        self._server_tx: dict[tuple[str, ...], ServerTransaction] = {}
        self._client_tx: dict[tuple[str, str], _ClientCtx] = {}
        self._calls: dict[str, _Call] = {}
        self._registrations: dict[str, _Registration] = {}
        # Timers: a heap of (deadline, seq, object), lazily corrected. Objects whose deadline may
        # have moved are "touched" and (re)scheduled before the heap is read; an entry whose time no
        # longer matches its object's deadline is dropped or re-pushed when it reaches the top.
        # This keeps next_deadline() O(log n) under floods of thousands of transactions.
        self._timers: list[tuple[float, int, _Timed]] = []
        self._timer_seq = itertools.count()
        self._armed: dict[int, float] = {}
        self._dirty: list[_Timed] = []
        self._stateless_secret = rand(8).hex()
        self.internal_errors = 0  # bugs caught at the receive() boundary (the fuzz tests expect 0)

    # ------------------------------------------------------------------ plumbing

    def set_local_addr(self, addr: Addr) -> None:
        """The address written in Via/Contact (the adapter calls it with the bound address)."""
        self.local_addr = addr

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        """Take the queued datagrams (each to send once, in order)."""
        out = list(self._outbox)
        self._outbox.clear()  # in place: the transactions hold a reference to this list
        return out

    def next_deadline(self) -> float | None:
        """The earliest time :meth:`handle_timer` must be called, None when nothing is pending."""
        self._flush_timers()
        heap = self._timers
        while heap:
            d, _, obj = heap[0]
            current = self._deadline_of(obj)
            if current == d:
                return d
            heapq.heappop(heap)
            if self._armed.get(id(obj)) == d:
                del self._armed[id(obj)]
            if current is not None:
                self._schedule(obj)
        return None

    # -- timer bookkeeping

    def _touch(self, obj: _Timed) -> None:
        self._dirty.append(obj)

    def _flush_timers(self) -> None:
        dirty, self._dirty = self._dirty, []
        for obj in dirty:
            self._schedule(obj)

    def _schedule(self, obj: _Timed) -> None:
        d = self._deadline_of(obj)
        if d is None:
            return
        armed = self._armed.get(id(obj))
        if armed is not None and armed <= d:
            return  # an earlier entry exists; it re-schedules the object when it pops
        self._armed[id(obj)] = d
        heapq.heappush(self._timers, (d, next(self._timer_seq), obj))

    def _deadline_of(self, obj: _Timed) -> float | None:
        if isinstance(obj, ServerTransaction):
            return obj.next_deadline()
        if isinstance(obj, _ClientCtx):
            return obj.tx.next_deadline()
        if isinstance(obj, _Call):
            if self._calls.get(obj.call_id) is not obj:
                return None
            times = [t for t in (obj.cancel_deadline,) if t is not None]
            if obj.retransmit is not None:
                times.append(min(obj.retransmit.next_at, obj.retransmit.give_up_at))
            return min(times) if times else None
        if self._registrations.get(obj.aor) is not obj or obj.pending:
            return None
        return obj.refresh_at

    @property
    def transaction_count(self) -> int:
        """Live client and server transactions (for metrics, and leak checks in tests)."""
        return len(self._server_tx) + len(self._client_tx)

    @property
    def call_ids(self) -> list[str]:
        return list(self._calls)

    def call_phase(self, call_id: str) -> Phase | None:
        call = self._calls.get(call_id)
        return call.phase if call else None

    def local_sdp(self, call_id: str) -> SessionDescription | None:
        call = self._calls.get(call_id)
        return call.local_sdp if call else None

    def remote_sdp(self, call_id: str) -> SessionDescription | None:
        call = self._calls.get(call_id)
        return call.remote_sdp if call else None

    def _token(self, nbytes: int = 8) -> str:
        return self._rand(nbytes).hex()

    def _via(self) -> Via:
        host, port = self.local_addr
        return Via("UDP", host, port, (("branch", MAGIC_COOKIE + self._token(8)), ("rport", None)))

    def _contact(self) -> str:
        host, port = self.local_addr
        return f"<sip:{self.config.contact_user}@{host}:{port}>"

    def _send(self, data: bytes, addr: Addr) -> None:
        self._outbox.append((data, addr))

    # ------------------------------------------------------------------ input

    def receive(self, data: bytes, addr: Addr, now: float) -> list[UAEvent]:
        """Handle one datagram from ``addr``; returns the events it caused."""
        events: list[UAEvent] = []
        if not data.strip(b"\r\n\t "):
            return events  # RFC 5626 section 4.4.1 CRLF keep-alive
        try:
            msg = parse_message(data, self.config.limits)
        except MalformedMessageError as exc:
            self._reply_malformed(exc, addr, events)
            return events
        if isinstance(msg, Response):
            try:
                self._on_response(msg, now, events)
            except (ValueError, RemoteProtocolError):
                pass  # section 18.1.2: a response we cannot use is dropped
            except Exception:  # the boundary: a bug must not kill the socket's reader; count and log it
                self.internal_errors += 1
                log.exception("sip.response_handler_failed", call_id=msg.call_id)
            return events
        try:
            self._on_request(msg, addr, now, events)
        except RemoteProtocolError as exc:
            self._reply_error(msg, addr, now, exc.status, exc.reason, events)
        except ValueError as exc:
            self._reply_error(msg, addr, now, 400, "Bad Request", events, detail=str(exc))
        except Exception:  # the boundary: answer 500, count and log the bug, keep serving
            self.internal_errors += 1
            log.exception("sip.request_handler_failed", call_id=msg.call_id, method=msg.method)
            self._reply_error(msg, addr, now, 500, "Server Internal Error", events)
        return events

    def _reply_malformed(self, exc: MalformedMessageError, addr: Addr, events: list[UAEvent]) -> None:
        method = reply_method(exc.headers) if exc.is_request else None
        if method is None or exc.headers is None:
            return  # a response, an ACK, or nothing to build a reply from: dropped (section 18.1.2)
        resp = build_response(exc.headers, exc.status, exc.reason, to_tag=self._token(4))
        resp.headers.add("Warning", f'399 {self.local_addr[0]} "{_warning_text(str(exc))}"')
        try:
            data = resp.to_bytes()
        except LocalProtocolError:
            return  # a copied value we will not put on the wire
        self._send(data, addr)
        events.append(RequestRejected(addr, method, exc.status, exc.reason))

    def _reply_error(
        self,
        req: Request,
        addr: Addr,
        now: float,
        status: int,
        reason: str,
        events: list[UAEvent],
        detail: str | None = None,
    ) -> None:
        if req.method == "ACK":
            return
        try:
            key = self._stx_key(req)
            stx = self._server_tx.get(key)
            resp = build_response(req.headers, status, reason, to_tag=self._token(4))
            if detail:
                resp.headers.add("Warning", f'399 {self.local_addr[0]} "{_warning_text(detail)}"')
            if stx is not None and not stx.final_sent:
                stx.respond(resp, now)
                self._touch(stx)
            elif stx is None:
                self._send(resp.to_bytes(), addr)
            call = self._calls.get(req.call_id)
            if req.method == "INVITE" and call is not None and call.phase is Phase.INCOMING and call.invite is req:
                del self._calls[req.call_id]
        except (ValueError, RemoteProtocolError):
            return
        events.append(RequestRejected(addr, req.method, status, reason))

    def _stx_key(self, req: Request) -> tuple[str, ...]:
        via = req.top_via
        fallback = _rfc2543_key(req)
        return transaction_key(via.branch, via.sent_by, req.method, fallback)

    def _respond(
        self,
        stx: ServerTransaction,
        status: int,
        now: float,
        *,
        reason: str | None = None,
        to_tag: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        contact: bool = False,
    ) -> Response:
        resp = build_response(stx.request.headers, status, reason or reason_phrase(status), to_tag=to_tag)
        if contact:
            resp.headers.add("Contact", self._contact())
            # section 12.1.1: a dialog-creating response copies Record-Route
            for rr in stx.request.headers.get_all("Record-Route"):
                resp.headers.add("Record-Route", rr)
        if (status in (200, 405) and stx.request.method in ("INVITE", "OPTIONS")) or status == 405:
            resp.headers.add("Allow", ", ".join(ALLOWED_METHODS))
        resp.headers.add("Server", self.config.user_agent)
        for name, value in headers:
            resp.headers.add(name, value)
        if body:
            resp.headers.add("Content-Type", content_type or "application/sdp")
            resp.body = body
        stx.respond(resp, now)
        self._touch(stx)
        return resp

    # ------------------------------------------------------------------ requests (UAS)

    def _on_request(self, req: Request, addr: Addr, now: float, events: list[UAEvent]) -> None:
        allowed = self.config.invite_sources
        if req.method == "INVITE" and allowed is not None and addr[0] not in allowed and req.to.tag is None:
            self._reject_stateless(req, addr, 403, "Forbidden", events)  # first: a flood costs little
            return
        self._stamp_received(req, addr)
        key = self._stx_key(req)
        if req.method == "ACK":
            stx = self._server_tx.get(key)
            if stx is not None and stx.receive_request(req, now):
                self._touch(stx)  # Timer I
                return  # ACK of our non-2xx final, absorbed by the transaction (17.2.1)
            self._on_ack(req, now, events)
            return
        stx = self._server_tx.get(key)
        if stx is not None:
            stx.receive_request(req, now)  # retransmission: 17.2.1 / 17.2.2 resend, else absorb
            return
        if len(self._server_tx) >= self.config.max_server_transactions:
            resp = build_response(req.headers, 503, "Service Unavailable", to_tag=self._token(4))
            resp.headers.add("Retry-After", "5")
            self._send(resp.to_bytes(), addr)
            events.append(RequestRejected(addr, req.method, 503, "Service Unavailable"))
            return
        stx = ServerTransaction(req, addr, now, self._outbox, self.config.timers, key=key)
        self._server_tx[key] = stx

        mf = req.headers.get("Max-Forwards")
        if mf is not None and int(mf) == 0 and req.method != "OPTIONS":
            self._reject(stx, 483, now, events)  # section 8.2.2? 16.3: Max-Forwards exhausted
            return
        if req.method == "CANCEL":
            self._on_cancel(req, stx, now, events)
            return
        if req.method not in KNOWN_METHODS:
            self._reject(stx, 501, now, events)  # section 8.2.1
            return
        if req.uri.scheme not in ("sip", "sips"):
            # Section 8.2.2.1: a Request-URI scheme we do not serve (RFC 4475 unkscm, novelsc).
            self._reject(stx, 416, now, events)
            return
        required = [r for r in req.headers.get_all("Require") if r.lower() not in SUPPORTED_EXTENSIONS]
        if required:
            # section 8.2.2.3: unsupported extension required -> 420 listing them
            self._reject(stx, 420, now, events, headers=(("Unsupported", ", ".join(required)),))
            return
        to_tag = req.to.tag
        if to_tag is not None:
            self._on_in_dialog(req, stx, to_tag, now, events)
            return
        if req.method == "INVITE":
            self._on_invite(req, stx, addr, now, events)
        elif req.method == "OPTIONS":
            # section 11.2: capabilities, also a load-balancer liveness probe
            self._respond(stx, 200, now, to_tag=self._token(4), headers=(("Accept", "application/sdp"),))
        elif req.method in ("BYE", "INFO", "REFER"):
            self._reject(stx, 481, now, events)  # outside a dialog: no such call (section 15.1.2)
        else:
            self._reject(stx, 405, now, events)

    def _reject_stateless(self, req: Request, addr: Addr, status: int, reason: str, events: list[UAEvent]) -> None:
        """Section 8.2.7: a stateless final response; the To tag is derived from the request so a
        retransmission gets the very same response."""
        seed = f"{req.call_id}|{req.from_.tag}|{req.top_via.branch}|{self._stateless_secret}".encode()
        tag = hashlib.sha256(seed).hexdigest()[:12]
        resp = build_response(req.headers, status, reason, to_tag=tag)
        resp.headers.add("Server", self.config.user_agent)
        self._send(resp.to_bytes(), addr)
        events.append(RequestRejected(addr, req.method, status, reason))

    def _stamp_received(self, req: Request, addr: Addr) -> None:
        """Section 18.2.1 / RFC 3581: note the source address in the top Via; replies go to ``addr``."""
        values = req.headers.get_all("Via")
        top = Via.parse(values[0])
        params = top.params
        if top.host != addr[0]:
            params = with_param(params, "received", addr[0])
        if param(params, "rport") == "":
            params = with_param(params, "rport", str(addr[1]))
        if params != top.params:
            new = Headers()
            placed = False
            for name, value in req.headers:
                if name == "Via" and not placed:
                    new.add("Via", ", ".join([str(Via(top.transport, top.host, top.port, params)), *values[1:]]))
                    placed = True
                elif name == "Via":
                    continue
                else:
                    new.add(name, value)
            req.headers = new

    def _reject(
        self,
        stx: ServerTransaction,
        status: int,
        now: float,
        events: list[UAEvent],
        *,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        tag = stx.request.to.tag or self._token(4)
        self._respond(stx, status, now, reason=reason, to_tag=tag, headers=headers)
        events.append(RequestRejected(stx.source, stx.request.method, status, reason or reason_phrase(status)))

    def _on_invite(self, req: Request, stx: ServerTransaction, addr: Addr, now: float, events: list[UAEvent]) -> None:
        existing = self._calls.get(req.call_id)
        if existing is not None:
            # same Call-ID, no To tag, new branch: a merged or looped request (section 8.2.2.2)
            self._reject(stx, 482, now, events)
            return
        offer = self._offer_of(req)
        if offer is not None:
            negotiate(build_answer(offer, "0.0.0.0", 9, session_id=0, codecs=self.config.codecs), offer)
        # section 17.2.1: answer 100 at once so the caller stops retransmitting
        stamp = req.headers.get("Timestamp")  # section 8.2.6.1: a 100 copies the Timestamp
        self._respond(stx, 100, now, headers=(("Timestamp", stamp),) if stamp else ())
        local_tag = self._token(6)
        call = _Call(
            call_id=req.call_id,
            is_uas=True,
            phase=Phase.INCOMING,
            invite=req,
            peer=addr,
            local_tag=local_tag,
            invite_stx=stx,
            remote_sdp=offer,
            late_offer=offer is None,
        )
        self._calls[req.call_id] = call
        frm = req.from_
        events.append(
            InviteReceived(
                call_id=req.call_id,
                request_uri=str(req.uri),
                from_uri=str(frm.uri),
                from_display=frm.display,
                to_uri=str(req.to.uri),
                source=addr,
                headers=tuple(req.headers),
                sdp=offer,
                authorization=req.headers.get("Authorization"),
            )
        )

    def _offer_of(self, req: Request) -> SessionDescription | None:
        """The SDP of a request, None without body; 415 for another body type (section 21.4.13)."""
        if not req.body:
            return None
        if req.content_type != "application/sdp":
            raise RemoteProtocolError("body is not SDP", status=415, reason="Unsupported Media Type")
        return parse_sdp(req.body)

    def _on_cancel(self, req: Request, stx: ServerTransaction, now: float, events: list[UAEvent]) -> None:
        """Section 9.2: match the INVITE transaction; 200 to CANCEL, then 487 to the INVITE."""
        via = req.top_via
        fallback = _rfc2543_key(req)
        invite_key = transaction_key(via.branch, via.sent_by, "INVITE", fallback)
        itx = self._server_tx.get(invite_key)
        if itx is None:
            self._reject(stx, 481, now, events)
            return
        call = self._calls.get(req.call_id)
        to_tag = call.local_tag if call is not None else self._token(4)
        self._respond(stx, 200, now, to_tag=to_tag)
        if itx.final_sent or call is None or call.phase is not Phase.INCOMING:
            return  # too late: the INVITE has its final response; CANCEL has no effect
        self._respond(itx, 487, now, to_tag=call.local_tag)
        del self._calls[call.call_id]
        events.append(CallCancelled(call.call_id))

    def _find_dialog_call(self, req: Request, to_tag: str) -> _Call | None:
        call = self._calls.get(req.call_id)
        if call is None or call.dialog is None:
            return None
        d = call.dialog
        if d.local_tag != to_tag or d.remote_tag != (req.from_.tag or ""):
            return None
        return call

    def _on_in_dialog(
        self, req: Request, stx: ServerTransaction, to_tag: str, now: float, events: list[UAEvent]
    ) -> None:
        call = self._find_dialog_call(req, to_tag)
        if call is None or call.dialog is None or call.phase is Phase.ENDED:
            self._reject(stx, 481, now, events)  # section 12.2.2
            return
        dialog = call.dialog
        if not dialog.accept_remote_seq(req.cseq.seq, req.method):
            self._reject(stx, 500, now, events, reason="CSeq Out Of Order")  # section 12.2.2
            return
        tag = dialog.local_tag
        if req.method == "BYE":
            self._respond(stx, 200, now, to_tag=tag)  # section 15.1.2
            self._end(call)
            events.append(ByeReceived(call.call_id))
        elif req.method == "INVITE":
            self._on_reinvite(call, req, stx, now, events)
        elif req.method == "INFO":
            self._on_info(call, req, stx, now, events)
        elif req.method == "REFER":
            self._on_refer(call, req, stx, now, events)
        elif req.method == "OPTIONS":
            self._respond(stx, 200, now, to_tag=tag, headers=(("Accept", "application/sdp"),))
        else:
            self._reject(stx, 405, now, events)

    def _on_ack(self, req: Request, now: float, events: list[UAEvent]) -> None:
        """The ACK for a 2xx (its own transaction, section 13.3.1.4 / 17.1.1.3): stop retransmitting."""
        to_tag = req.to.tag
        if to_tag is None:
            return
        call = self._find_dialog_call(req, to_tag)
        if call is None or call.retransmit is None or call.retransmit.cseq != req.cseq.seq:
            return  # a stray or duplicate ACK: ACKs are never answered
        call.retransmit = None
        sdp: SessionDescription | None = None
        if call.late_offer and req.body:
            try:
                sdp = parse_sdp(req.body) if req.content_type == "application/sdp" else None
            except SdpError:
                sdp = None
            if sdp is not None:
                call.remote_sdp = sdp
                call.late_offer = False
        if call.phase is Phase.ANSWERED:
            call.phase = Phase.ESTABLISHED
            events.append(CallConfirmed(call.call_id, sdp))
            if call.bye_after_ack:
                self._send_bye(call, now)
        elif sdp is not None and call.local_sdp is not None:
            self._media_changed(call, sdp, call.local_sdp, events)

    def _on_reinvite(
        self, call: _Call, req: Request, stx: ServerTransaction, now: float, events: list[UAEvent]
    ) -> None:
        """Section 14.2: a re-INVITE; answered per RFC 3264 (hold -> recvonly/inactive)."""
        if call.phase not in (Phase.ESTABLISHED, Phase.ANSWERED) or call.local_sdp is None or call.dialog is None:
            self._reject(stx, 491, now, events)  # section 14.2: our own exchange is pending
            return
        if call.reinvite_ctx is not None:
            self._reject(stx, 491, now, events)  # section 14.2: glare with our own re-INVITE
            return
        if call.retransmit is not None:
            # section 14.2: a new INVITE before the previous one's ACK -> 500 with Retry-After
            self._reject(stx, 500, now, events, headers=(("Retry-After", "1"),))
            return
        offer = self._offer_of(req)
        local = call.local_sdp
        version = local.origin.session_version + 1
        if offer is None:
            answer = with_version(local, version)  # our 200 carries an offer; the ACK the answer
            call.late_offer = True
        else:
            audio = local.audio()
            address = local.stream_address(audio) if audio else None
            answer = build_answer(
                offer,
                address or self.local_addr[0],
                audio.port if audio else 9,
                session_id=local.origin.session_id,
                session_version=version,
                codecs=self.config.codecs,
            )
        call.dialog.refresh_target(req)
        resp = self._respond(stx, 200, now, to_tag=call.dialog.local_tag, body=answer.to_bytes(), contact=True)
        call.local_sdp = answer
        self._start_retransmit(call, resp, stx.source, req.cseq.seq, now)
        if offer is not None:
            self._media_changed(call, offer, answer, events)

    def _media_changed(
        self, call: _Call, remote: SessionDescription, local: SessionDescription, events: list[UAEvent]
    ) -> None:
        call.remote_sdp = remote
        events.append(MediaUpdated(call.call_id, remote, local))
        hold = is_hold(remote)
        if hold and not call.on_hold:
            events.append(HoldDetected(call.call_id, remote))
        elif call.on_hold and not hold:
            events.append(HoldResumed(call.call_id, remote))
        call.on_hold = hold

    def _on_info(self, call: _Call, req: Request, stx: ServerTransaction, now: float, events: list[UAEvent]) -> None:
        """SIP INFO DTMF: application/dtmf-relay (``Signal=5``/``Duration=160``) or application/dtmf."""
        tag = call.dialog.local_tag if call.dialog else None
        ctype = req.content_type
        if not req.body.strip():
            self._respond(stx, 200, now, to_tag=tag)  # an empty INFO is a keep-alive probe
            return
        if ctype not in ("application/dtmf-relay", "application/dtmf"):
            self._reject(stx, 415, now, events, headers=(("Accept", "application/dtmf-relay, application/dtmf"),))
            return
        key, duration_ms = parse_dtmf_info(req.body, ctype)
        self._respond(stx, 200, now, to_tag=tag)
        events.append(KeyReceived(call.call_id, key, duration_ms))

    def _on_refer(self, call: _Call, req: Request, stx: ServerTransaction, now: float, events: list[UAEvent]) -> None:
        """REFER (RFC 3515) is answered 603 Decline and reported; we never follow it.

        Why 603 and not 202: a 2xx obliges us to report the transfer's progress with NOTIFYs
        (RFC 3515 section 2.4.4) about an INVITE we will never send; and following a transfer would
        let the called party re-route a collect call to a third party without consent, which the
        engine must prevent. So we decline truthfully; the engine decides (with the call's
        disconnect rules) whether the REFER ends the call.
        """
        refer_to = req.headers.get_all("Refer-To")
        if len(refer_to) != 1:
            self._reject(stx, 400, now, events, reason="Exactly One Refer-To Required")  # RFC 3515 2.4.1
            return
        self._respond(stx, 603, now, to_tag=call.dialog.local_tag if call.dialog else None)
        events.append(TransferRequested(call.call_id, refer_to[0]))

    # ------------------------------------------------------------------ UAS commands

    def _incoming(self, call_id: str) -> _Call | None:
        """The incoming call still awaiting its final response, None when it is gone (cancelled,
        timed out): commands on a gone call are ignored, because such races are normal in SIP."""
        call = self._calls.get(call_id)
        if call is None or not call.is_uas or call.phase is not Phase.INCOMING or call.invite_stx is None:
            return None
        return call

    def ringing(self, call_id: str, now: float, sdp: SessionDescription | None = None) -> bool:
        """Send 180 Ringing, or 183 Session Progress with early-media ``sdp``.

        Returns False (and sends nothing) when the call no longer awaits an answer."""
        call = self._incoming(call_id)
        if call is None or call.invite_stx is None:
            return False
        body = sdp.to_bytes() if sdp is not None else b""
        if sdp is not None:
            call.local_sdp = sdp
        self._respond(call.invite_stx, 183 if sdp else 180, now, to_tag=call.local_tag, body=body, contact=True)
        return True

    def answer(self, call_id: str, sdp: SessionDescription, now: float) -> bool:
        """Send 200 OK with ``sdp`` (our answer, or our offer when the INVITE had none) and start
        the 2xx retransmissions (section 13.3.1.4) until the ACK arrives.

        Returns False (and sends nothing) when the call no longer awaits an answer."""
        call = self._incoming(call_id)
        if call is None or call.invite_stx is None:
            return False
        stx = call.invite_stx
        resp = self._respond(stx, 200, now, to_tag=call.local_tag, body=sdp.to_bytes(), contact=True)
        call.local_sdp = sdp
        call.dialog = Dialog.as_uas(call.invite, call.local_tag, call.peer, local_seq=self._initial_cseq())
        call.phase = Phase.ANSWERED
        self._start_retransmit(call, resp, stx.source, call.invite.cseq.seq, now)
        return True

    def reject(
        self,
        call_id: str,
        status: int,
        now: float,
        reason: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> bool:
        """Answer an incoming INVITE with a final error (403 for non-gateways, 486, 480, 603 ...;
        401 with a ``WWW-Authenticate`` from :class:`~ivr.sip.auth.DigestVerifier` to challenge).

        Returns False (and sends nothing) when the call no longer awaits an answer."""
        if not 300 <= status <= 699:
            raise LocalProtocolError("reject needs a status 300-699")
        call = self._incoming(call_id)
        if call is None or call.invite_stx is None:
            return False
        self._respond(call.invite_stx, status, now, reason=reason, to_tag=call.local_tag, headers=headers)
        call.phase = Phase.ENDED
        del self._calls[call_id]
        return True

    def _initial_cseq(self) -> int:
        # section 8.1.1.5: any value < 2**31; a random start makes CSeq guessing harder
        return int.from_bytes(self._rand(2), "big") + 1

    def _start_retransmit(self, call: _Call, resp: Response, addr: Addr, cseq: int, now: float) -> None:
        t = self.config.timers
        call.retransmit = _Retransmit(resp.to_bytes(), addr, cseq, now + t.t1, t.t1, now + t.timeout)
        self._touch(call)

    # ------------------------------------------------------------------ UAC commands

    def invite(
        self,
        uri: str | SipUri,
        sdp: SessionDescription | None,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = (),
        from_uri: str | None = None,
        from_display: str | None = None,
        to_uri: str | None = None,
        dest: Addr | None = None,
    ) -> str:
        """Send an INVITE (with ``sdp`` as the offer) and return the call id.

        ``dest`` defaults to the outbound proxy, then to the URI's host when it is an IP literal.
        """
        target = SipUri.parse(uri) if isinstance(uri, str) else uri
        dest = dest or self.config.outbound_proxy or uri_address(target)
        if dest is None:
            raise LocalProtocolError(f"no destination for {target} (no outbound proxy, host not an IP)")
        call_id = f"{self._token(12)}@{self.local_addr[0]}"
        from_tag = self._token(6)
        host = self.local_addr[0]
        frm = NameAddr(SipUri.parse(from_uri or f"sip:{self.config.contact_user}@{host}"), from_display)
        to = NameAddr(SipUri.parse(to_uri) if to_uri else target)
        h = Headers()
        h.add("Via", str(self._via()))
        h.add("Max-Forwards", "70")
        h.add("From", str(frm.with_tag(from_tag)))
        h.add("To", str(to))
        h.add("Call-ID", call_id)
        h.add("CSeq", f"{self._initial_cseq()} INVITE")
        h.add("Contact", self._contact())
        h.add("Allow", ", ".join(ALLOWED_METHODS))
        h.add("User-Agent", self.config.user_agent)
        for name, value in headers:
            h.add(name, value)
        req = Request(headers=h, method="INVITE", uri=target)
        if sdp is not None:
            req.headers.add("Content-Type", "application/sdp")
            req.body = sdp.to_bytes()
        call = _Call(
            call_id=call_id,
            is_uas=False,
            phase=Phase.OUTGOING,
            invite=req,
            peer=dest,
            local_tag=from_tag,
            local_sdp=sdp,
        )
        self._calls[call_id] = call
        call.invite_ctx = self._start_client(req, dest, now, _Kind.INVITE, call_id=call_id)
        return call_id

    def _start_client(
        self,
        req: Request,
        dest: Addr,
        now: float,
        kind: _Kind,
        *,
        call_id: str | None = None,
        aor: str | None = None,
    ) -> _ClientCtx:
        tx = ClientTransaction(req, dest, now, self._outbox, self.config.timers)
        ctx = _ClientCtx(tx, kind, call_id=call_id, aor=aor)
        self._client_tx[(tx.branch, req.method)] = ctx
        self._touch(ctx)
        return ctx

    def cancel(self, call_id: str, now: float) -> None:
        """Cancel our INVITE (section 9.1). Sent once a provisional response has arrived."""
        call = self._calls.get(call_id)
        if call is None or call.is_uas or call.phase is not Phase.OUTGOING or call.cancel_requested:
            return
        call.cancel_requested = True
        ctx = call.invite_ctx
        if ctx is not None and ctx.tx.state is TxState.PROCEEDING:
            self._send_cancel(call, now)

    def _send_cancel(self, call: _Call, now: float) -> None:
        ctx = call.invite_ctx
        if ctx is None or call.cancel_sent:
            return
        inv = ctx.tx.request
        h = Headers()
        h.add("Via", inv.headers.get_all("Via")[0])  # section 9.1: same branch as the INVITE
        h.add("Max-Forwards", "70")
        h.add("From", inv.headers.get("From") or "")
        h.add("To", inv.headers.get("To") or "")
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{inv.cseq.seq} CANCEL")
        for r in inv.headers.get_all("Route"):
            h.add("Route", r)
        h.add("User-Agent", self.config.user_agent)
        req = Request(headers=h, method="CANCEL", uri=inv.uri)
        self._start_client(req, ctx.tx.dest, now, _Kind.CANCEL, call_id=call.call_id)
        call.cancel_sent = True
        # section 9.1: no final response 64*T1 after the CANCEL -> consider the INVITE cancelled
        call.cancel_deadline = now + self.config.timers.timeout
        self._touch(call)

    def bye(self, call_id: str, now: float) -> None:
        """End an established call with BYE (section 15.1.1). A UAS that has not yet received the
        ACK for its 2xx sends it when the ACK arrives (section 15)."""
        call = self._calls.get(call_id)
        if call is None or call.dialog is None:
            return
        if call.phase is Phase.ANSWERED:
            call.bye_after_ack = True
            return
        if call.phase is Phase.ESTABLISHED:
            self._send_bye(call, now)

    def send_request(
        self,
        call_id: str,
        method: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> bool:
        """Send ``method`` inside the established dialog of ``call_id`` (section 12.2.1.1): a
        re-INVITE (``body`` = our new SDP offer, e.g. ``a=sendonly`` to hold), INFO, OPTIONS,
        UPDATE or REFER. Its final response (408 on timeout) comes back as
        :class:`~ivr.sip.events.RequestCompleted`; a 2xx to a re-INVITE is ACKed here (13.2.2.4)
        and its SDP answer becomes the call's remote SDP. Returns False when the call is not
        established or a re-INVITE is already pending (section 14.1)."""
        call = self._calls.get(call_id)
        if method in ("ACK", "CANCEL", "BYE") or method not in KNOWN_METHODS:
            raise LocalProtocolError(f"send_request cannot send {method}")
        if call is None or call.dialog is None or call.phase is not Phase.ESTABLISHED:
            return False
        if method == "INVITE" and (call.reinvite_ctx is not None or call.retransmit is not None):
            return False
        req = call.dialog.create_request(method, via=self._via(), contact=self._contact())
        req.headers.add("User-Agent", self.config.user_agent)
        for name, value in headers:
            req.headers.add(name, value)
        if body:
            req.headers.add("Content-Type", content_type or "application/sdp")
            req.body = body
        ctx = self._start_client(req, call.dialog.destination(), now, _Kind.IN_DIALOG, call_id=call_id)
        if method == "INVITE":
            call.reinvite_ctx = ctx
        return True

    def _on_in_dialog_response(self, ctx: _ClientCtx, resp: Response, now: float, events: list[UAEvent]) -> None:
        if resp.status < 200:
            return
        req = ctx.tx.request
        call = self._calls.get(ctx.call_id or "")
        if req.method == "INVITE" and 200 <= resp.status < 300:
            if ctx.ack is not None:
                self._send(*ctx.ack)  # a retransmitted 2xx: re-ACK, no new event
                return
            if call is None or call.dialog is None:
                return
            ack = call.dialog.create_request("ACK", via=self._via(), contact=None, seq=req.cseq.seq)
            ctx.ack = (ack.to_bytes(), call.dialog.destination())
            self._send(*ctx.ack)
            call.dialog.refresh_target(resp)  # section 12.2.1.2: the 2xx refreshes the target
            offer = self._sdp_or_none(req)
            answer = self._sdp_or_none(resp)
            if offer is not None and answer is not None:
                call.local_sdp = offer
                call.remote_sdp = answer
        if call is not None and call.reinvite_ctx is ctx:
            call.reinvite_ctx = None
        events.append(RequestCompleted(ctx.call_id or "", req.method, resp.status, resp.reason))

    def hangup(self, call_id: str, now: float) -> None:
        """End a call in whatever state it is: CANCEL, reject (480) or BYE as appropriate."""
        call = self._calls.get(call_id)
        if call is None:
            return
        if call.phase is Phase.OUTGOING:
            self.cancel(call_id, now)
        elif call.phase is Phase.INCOMING:
            self.reject(call_id, 480, now)
        else:
            self.bye(call_id, now)

    def _send_bye(self, call: _Call, now: float) -> None:
        assert call.dialog is not None
        req = call.dialog.create_request("BYE", via=self._via(), contact=None)
        req.headers.add("User-Agent", self.config.user_agent)
        call.retransmit = None
        call.phase = Phase.TERMINATING
        self._start_client(req, call.dialog.destination(), now, _Kind.BYE, call_id=call.call_id)

    def _bye_and_forget(self, call: _Call, now: float) -> None:
        """BYE a dialog the engine has already been told is over (CallFailed): the BYE's outcome
        is not reported again, so the engine sees exactly one terminal event per call."""
        assert call.dialog is not None
        req = call.dialog.create_request("BYE", via=self._via(), contact=None)
        req.headers.add("User-Agent", self.config.user_agent)
        self._start_client(req, call.dialog.destination(), now, _Kind.OTHER, call_id=call.call_id)
        self._end(call)

    def _end(self, call: _Call) -> None:
        call.phase = Phase.ENDED
        call.retransmit = None
        call.cancel_deadline = None
        self._calls.pop(call.call_id, None)

    # ------------------------------------------------------------------ responses (UAC)

    def _on_response(self, resp: Response, now: float, events: list[UAEvent]) -> None:
        # Section 18.1.2 checks sent-by against our address; we match on the branch alone (it is
        # random, 64 bits) because NAT and address aliases make the sent-by check reject good replies.
        via = resp.top_via
        method = resp.cseq.method
        ctx = self._client_tx.get((via.branch or "", method))
        if ctx is None:
            return  # no transaction: a stray response is dropped (section 18.1.2)
        passed = ctx.tx.receive_response(resp, now)
        self._touch(ctx)
        if passed is None:
            return
        if ctx.kind is _Kind.INVITE:
            self._on_invite_response(ctx, resp, now, events)
        elif ctx.kind is _Kind.BYE:
            self._on_bye_response(ctx, resp, now, events)
        elif ctx.kind is _Kind.REGISTER:
            self._on_register_response(ctx, resp, now, events)
        elif ctx.kind is _Kind.IN_DIALOG:
            self._on_in_dialog_response(ctx, resp, now, events)

    def _on_invite_response(self, ctx: _ClientCtx, resp: Response, now: float, events: list[UAEvent]) -> None:
        call = self._calls.get(ctx.call_id or "")
        status = resp.status
        if 200 <= status < 300:
            self._on_invite_2xx(ctx, call, resp, now, events)
            return
        if call is None or call.invite_ctx is not ctx:
            return
        if status < 200:
            if call.cancel_requested:
                self._send_cancel(call, now)  # section 9.1: CANCEL only after a provisional
            if status > 100:
                events.append(CallRinging(call.call_id, status, resp.reason, self._sdp_or_none(resp)))
            return
        if status in (401, 407) and self._retry_with_auth(call, ctx, resp, now):
            return
        call.cancel_deadline = None
        self._end(call)
        events.append(CallFailed(call.call_id, status, resp.reason))

    def _sdp_or_none(self, msg: Request | Response) -> SessionDescription | None:
        if not msg.body or msg.content_type != "application/sdp":
            return None
        try:
            return parse_sdp(msg.body)
        except SdpError:
            return None

    def _on_invite_2xx(
        self, ctx: _ClientCtx, call: _Call | None, resp: Response, now: float, events: list[UAEvent]
    ) -> None:
        """Section 13.2.2.4: ACK every 2xx (the UA core does it, with its own branch)."""
        tag = resp.to.tag or ""
        if ctx.ack is not None and ctx.remote_tag == tag:
            self._send(*ctx.ack)  # a retransmitted 2xx: the ACK was lost
            return
        req = ctx.tx.request
        dialog = Dialog.as_uac(req, resp, ctx.tx.dest)
        ack = dialog.create_request("ACK", via=self._via(), contact=None, seq=req.cseq.seq)
        ack_bytes = ack.to_bytes()
        dest = dialog.destination()
        self._send(ack_bytes, dest)
        if ctx.ack is not None or call is None or call.invite_ctx is not ctx or call.phase is not Phase.OUTGOING:
            # a second dialog from a forking proxy, or an answer we no longer want: ACK and BYE it
            bye = dialog.create_request("BYE", via=self._via(), contact=None)
            self._start_client(bye, dest, now, _Kind.OTHER)
            return
        ctx.ack = (ack_bytes, dest)
        ctx.remote_tag = tag
        call.dialog = dialog
        call.cancel_deadline = None
        if call.cancel_requested:
            # the answer crossed our CANCEL (section 9.1): hang up at once
            self._bye_and_forget(call, now)
            events.append(CallFailed(call.call_id, 487, "Request Terminated"))
            return
        sdp = self._sdp_or_none(resp)
        if call.local_sdp is not None:
            try:
                if sdp is None:
                    raise SdpError("2xx without an SDP answer", status=488, reason="Not Acceptable Here")
                negotiate(call.local_sdp, sdp)
            except SdpError:
                self._bye_and_forget(call, now)  # section 13.2.2.4: ACK, then BYE an unusable answer
                events.append(CallFailed(call.call_id, 488, "Not Acceptable Here"))
                return
        call.remote_sdp = sdp
        call.on_hold = sdp is not None and is_hold(sdp)
        call.phase = Phase.ESTABLISHED
        events.append(CallAnswered(call.call_id, sdp))

    def _on_bye_response(self, ctx: _ClientCtx, resp: Response, now: float, events: list[UAEvent]) -> None:
        if resp.status < 200:
            return
        call = self._calls.get(ctx.call_id or "")
        if call is None:
            return
        if resp.status in (401, 407) and call.auth_attempts < 2 and self.config.credentials is not None:
            challenge = self._challenge(resp)
            if challenge is not None and call.dialog is not None:
                call.auth_attempts += 1
                req = call.dialog.create_request("BYE", via=self._via(), contact=None)
                self._authorize(req, resp, challenge)
                self._start_client(req, ctx.tx.dest, now, _Kind.BYE, call_id=call.call_id)
                return
        self._end(call)
        events.append(CallEnded(call.call_id, resp.status))  # section 15.1.1: any final ends it

    # ------------------------------------------------------------------ digest

    def _challenge(self, resp: Response) -> auth.Challenge | None:
        name = "Proxy-Authenticate" if resp.status == 407 else "WWW-Authenticate"
        values = [v for n, v in resp.headers if n == name]
        challenge = auth.best_challenge(values)
        creds = self.config.credentials
        if challenge is None or creds is None:
            return None
        if creds.realm is not None and creds.realm != challenge.realm:
            return None
        return challenge

    def _authorize(self, req: Request, resp: Response, challenge: auth.Challenge) -> None:
        creds = self.config.credentials
        assert creds is not None
        value = auth.authorization(
            challenge,
            username=creds.username,
            password=creds.password,
            method=req.method,
            uri=str(req.uri),
            cnonce=self._token(8),
            body=req.body,
        )
        req.headers.add("Proxy-Authorization" if resp.status == 407 else "Authorization", value)

    def _retry_with_auth(self, call: _Call, ctx: _ClientCtx, resp: Response, now: float) -> bool:
        """Section 22.2: re-send the INVITE with credentials, new CSeq and branch (twice at most:
        a second challenge with stale=true is a fresh nonce, not a wrong password)."""
        if call.auth_attempts >= 2 or call.cancel_requested:
            return False
        challenge = self._challenge(resp)
        if challenge is None:
            return False
        if call.auth_attempts == 1 and not challenge.stale:
            return False  # wrong credentials: the same challenge again
        call.auth_attempts += 1
        old = ctx.tx.request
        h = Headers()
        for name, value in old.headers:
            if name in ("Authorization", "Proxy-Authorization"):
                continue
            if name == "Via":
                value = str(self._via())
            elif name == "CSeq":
                value = f"{old.cseq.seq + 1} INVITE"
            h.add(name, value)
        req = Request(headers=h, method="INVITE", uri=old.uri, body=old.body)
        self._authorize(req, resp, challenge)
        call.invite = req
        call.invite_ctx = self._start_client(req, ctx.tx.dest, now, _Kind.INVITE, call_id=call.call_id)
        return True

    # ------------------------------------------------------------------ registration

    def register(
        self,
        registrar: str | SipUri,
        aor: str,
        now: float,
        *,
        expires_s: int = 3600,
        dest: Addr | None = None,
    ) -> None:
        """Register ``aor`` (e.g. ``sip:engine@trunk``) at ``registrar`` (section 10.2) and keep it
        registered: refreshed before expiry, retried with back-off after a failure."""
        reg_uri = SipUri.parse(registrar) if isinstance(registrar, str) else registrar
        target = dest or self.config.outbound_proxy or uri_address(reg_uri)
        if target is None:
            raise LocalProtocolError(f"no destination for registrar {reg_uri}")
        reg = _Registration(
            aor=aor,
            registrar=reg_uri,
            dest=target,
            call_id=f"{self._token(12)}@{self.local_addr[0]}",  # section 10.2: same Call-ID for refreshes
            from_tag=self._token(6),
            expires_s=expires_s,
            cseq=self._initial_cseq(),
            retry_s=self.config.register_retry_s,
        )
        self._registrations[aor] = reg
        self._send_register(reg, now)

    def unregister(self, aor: str, now: float) -> None:
        """Remove our binding (Expires: 0, section 10.2.2) and stop refreshing."""
        reg = self._registrations.get(aor)
        if reg is None:
            return
        reg.active = False
        reg.expires_s = 0
        reg.refresh_at = None
        self._send_register(reg, now)

    def _send_register(
        self,
        reg: _Registration,
        now: float,
        prev: Response | None = None,
        challenge: auth.Challenge | None = None,
    ) -> None:
        reg.cseq += 1
        h = Headers()
        h.add("Via", str(self._via()))
        h.add("Max-Forwards", "70")
        h.add("From", str(NameAddr(SipUri.parse(reg.aor)).with_tag(reg.from_tag)))
        h.add("To", str(NameAddr(SipUri.parse(reg.aor))))
        h.add("Call-ID", reg.call_id)
        h.add("CSeq", f"{reg.cseq} REGISTER")
        h.add("Contact", self._contact())
        h.add("Expires", str(reg.expires_s))
        h.add("User-Agent", self.config.user_agent)
        req = Request(headers=h, method="REGISTER", uri=reg.registrar)
        if prev is not None and challenge is not None:
            self._authorize(req, prev, challenge)
        reg.pending = True
        reg.refresh_at = None
        self._start_client(req, reg.dest, now, _Kind.REGISTER, aor=reg.aor)

    def _on_register_response(self, ctx: _ClientCtx, resp: Response, now: float, events: list[UAEvent]) -> None:
        reg = self._registrations.get(ctx.aor or "")
        if reg is None or resp.status < 200:
            return
        reg.pending = False
        if not reg.active:
            self._registrations.pop(reg.aor, None)
            return
        if 200 <= resp.status < 300:
            reg.auth_attempts = 0
            reg.retry_s = self.config.register_retry_s
            granted = self._granted_expiry(resp, reg.expires_s)
            reg.registered = True
            # refresh before expiry: at half-time for short bindings, 30 s early for long ones
            reg.refresh_at = now + max(1.0, granted - min(granted / 2, 30.0))
            self._touch(reg)
            events.append(RegistrationSucceeded(reg.aor, granted))
            return
        if resp.status in (401, 407) and reg.auth_attempts < 2:
            challenge = self._challenge(resp)
            if challenge is not None and (reg.auth_attempts == 0 or challenge.stale):
                reg.auth_attempts += 1
                self._send_register(reg, now, resp, challenge)
                return
        if resp.status == 423:
            # section 10.2.8: Interval Too Brief -> retry with Min-Expires
            min_exp = (resp.headers.get("Min-Expires") or "").strip()
            if min_exp.isdigit() and int(min_exp) > reg.expires_s:
                reg.expires_s = int(min_exp)
                self._send_register(reg, now)
                return
        self._registration_failed(reg, resp.status, resp.reason, now, events, resp.headers.get("Retry-After"))

    def _granted_expiry(self, resp: Response, requested: int) -> int:
        host, port = self.local_addr
        for c in resp.contacts:
            if c.uri.host == host and (c.uri.port or 5060) == port:
                exp = param(c.params, "expires")
                if exp and exp.isdigit():
                    return int(exp)
        exp_header = (resp.headers.get("Expires") or "").strip()
        if exp_header.isdigit():
            return int(exp_header)
        return requested

    def _registration_failed(
        self,
        reg: _Registration,
        status: int,
        reason: str,
        now: float,
        events: list[UAEvent],
        retry_after: str | None = None,
    ) -> None:
        reg.registered = False
        reg.auth_attempts = 0
        delay = reg.retry_s
        if retry_after is not None and retry_after.split(";")[0].strip().isdigit():
            delay = float(retry_after.split(";")[0].strip())
        else:
            reg.retry_s = min(reg.retry_s * 2, 600.0)
        reg.refresh_at = now + delay
        self._touch(reg)
        events.append(RegistrationFailed(reg.aor, status, reason, reg.refresh_at))

    # ------------------------------------------------------------------ timers

    def handle_timer(self, now: float) -> list[UAEvent]:
        """Fire every timer due at ``now``; returns the events that caused."""
        events: list[UAEvent] = []
        self._flush_timers()
        heap = self._timers
        while heap and heap[0][0] <= now:
            d, _, obj = heapq.heappop(heap)
            if self._armed.get(id(obj)) == d:
                del self._armed[id(obj)]
            current = self._deadline_of(obj)
            if current is not None and current <= now:
                try:
                    self._fire(obj, now, events)
                except Exception:  # the boundary: one broken timer must not stop the others
                    self.internal_errors += 1
                    log.exception("sip.timer_failed")
                    self._drop_timed(obj)
            self._touch(obj)
            self._flush_timers()
        return events

    def _drop_timed(self, obj: _Timed) -> None:
        """Forget an object whose timer handler failed, so it cannot fail again and again."""
        if isinstance(obj, ServerTransaction | _ClientCtx):
            (obj.tx if isinstance(obj, _ClientCtx) else obj).terminate()
        elif isinstance(obj, _Call):
            self._calls.pop(obj.call_id, None)
        else:
            self._registrations.pop(obj.aor, None)

    def _fire(self, obj: _Timed, now: float, events: list[UAEvent]) -> None:
        if isinstance(obj, ServerTransaction):
            obj.handle_timer(now)  # Timer H expiry needs no action: the call is already gone
            if obj.terminated and self._server_tx.get(obj.key) is obj:
                del self._server_tx[obj.key]
        elif isinstance(obj, _ClientCtx):
            if obj.tx.handle_timer(now):
                self._on_client_timeout(obj, now, events)
            key = (obj.tx.branch, obj.tx.request.method)
            if obj.tx.terminated and self._client_tx.get(key) is obj:
                del self._client_tx[key]
        elif isinstance(obj, _Call):
            self._fire_call(obj, now, events)
        elif obj.refresh_at is not None and now >= obj.refresh_at and not obj.pending:
            self._send_register(obj, now)

    def _fire_call(self, call: _Call, now: float, events: list[UAEvent]) -> None:
        rt = call.retransmit
        if rt is not None:
            if now >= rt.give_up_at:
                # section 13.3.1.4: no ACK within 64*T1 -> confirm and immediately BYE
                call.retransmit = None
                if call.phase is Phase.ANSWERED:
                    self._bye_and_forget(call, now)
                    events.append(CallFailed(call.call_id, 408, "No ACK For 2xx"))
            elif now >= rt.next_at:
                self._send(rt.data, rt.addr)
                rt.interval = min(rt.interval * 2, self.config.timers.t2)
                rt.next_at = now + rt.interval
        if call.cancel_deadline is not None and now >= call.cancel_deadline:
            call.cancel_deadline = None
            if call.phase is Phase.OUTGOING:
                ctx = call.invite_ctx
                if ctx is not None:
                    ctx.tx.terminate()
                    self._client_tx.pop((ctx.tx.branch, ctx.tx.request.method), None)
                self._end(call)
                events.append(CallFailed(call.call_id, 487, "Request Terminated"))

    def _on_client_timeout(self, ctx: _ClientCtx, now: float, events: list[UAEvent]) -> None:
        """Section 8.1.3.1: a timeout counts as a 408 from the peer."""
        if ctx.kind is _Kind.INVITE:
            call = self._calls.get(ctx.call_id or "")
            if call is not None and call.invite_ctx is ctx and call.phase is Phase.OUTGOING:
                self._end(call)
                events.append(CallFailed(call.call_id, 408, "Request Timeout"))
        elif ctx.kind is _Kind.BYE:
            call = self._calls.get(ctx.call_id or "")
            if call is not None:
                self._end(call)
                events.append(CallEnded(call.call_id, 408))
        elif ctx.kind is _Kind.IN_DIALOG:
            call = self._calls.get(ctx.call_id or "")
            if call is not None and call.reinvite_ctx is ctx:
                call.reinvite_ctx = None
            method = ctx.tx.request.method
            events.append(RequestCompleted(ctx.call_id or "", method, 408, "Request Timeout"))
        elif ctx.kind is _Kind.REGISTER:
            reg = self._registrations.get(ctx.aor or "")
            if reg is not None:
                reg.pending = False
                if reg.active:
                    self._registration_failed(reg, 408, "Request Timeout", now, events)
                else:
                    self._registrations.pop(reg.aor, None)


def parse_dtmf_info(body: bytes, content_type: str) -> tuple[str, int]:
    """The key and duration of an INFO DTMF body; ValueError (-> 400) when there is none.

    ``application/dtmf-relay``: ``Signal=5\\r\\nDuration=160`` (Signal 10-15 are the RFC 4733
    event numbers of ``*#ABCD``); ``application/dtmf``: the key alone. Duration defaults to 250 ms.
    """
    text = body.decode("ascii", errors="strict").strip()
    duration_ms = 250
    if content_type == "application/dtmf":
        signal = text
    else:
        fields: dict[str, str] = {}
        for line in text.replace("\r\n", "\n").split("\n"):
            name, eq, value = line.partition("=")
            if eq:
                fields[name.strip().lower()] = value.strip()
        signal = fields.get("signal", "")
        dur = fields.get("duration", "")
        if dur.isdigit() and 0 < int(dur) <= 60_000:
            duration_ms = int(dur)
    if signal.isdigit() and 10 <= int(signal) <= 15:
        signal = DTMF_SIGNALS[int(signal)]
    signal = signal.upper()
    if len(signal) != 1 or signal not in DTMF_SIGNALS:
        raise ValueError(f"bad DTMF signal {signal[:10]!r}")
    return signal, duration_ms


def _rfc2543_key(req: Request) -> str:
    """Section 17.2.3, for peers without the magic cookie: Request-URI, From tag, Call-ID, CSeq
    number and the whole top Via identify the transaction (the To tag is left out so that the ACK
    of a non-2xx, which carries our tag, still matches its INVITE)."""
    top = req.headers.get_all("Via")[0]
    return f"{req.uri}|{req.from_.tag}|{req.call_id}|{req.cseq.seq}|{top}"


def _warning_text(text: str) -> str:
    return "".join(c for c in text if c.isprintable() and c not in '"\\')[:80]
