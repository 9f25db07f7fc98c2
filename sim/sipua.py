"""The simulated phones' user agent: ivr's sans-I/O UserAgent plus in-dialog requests.

The engine's :class:`~ivr.sip.useragent.UserAgent` never *sends* a re-INVITE, INFO or REFER (the
engine has no need to), but a simulated called party must: hold is a re-INVITE with ``sendonly``,
``inactive`` or ``c=0.0.0.0`` (RFC 3264 section 8.4), a transfer is a REFER (RFC 3515), and keys
may go by SIP INFO (``application/dtmf-relay``). :class:`SimUserAgent` adds exactly that, built on
the UA's own dialog (:meth:`ivr.sip.dialog.Dialog.create_request`, RFC 3261 section 12.2.1.1) and
client transactions (section 17.1), and acknowledges a 2xx to its re-INVITE itself (section
13.2.2.4: the ACK of a 2xx is the UA core's job, not the transaction's).

It reaches into the base class's private call table: the base class offers no public hook for a
client request inside an existing dialog. That is the one coupling; it is kept in this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ivr.errors import LocalProtocolError
from ivr.sip.events import UAEvent
from ivr.sip.message import Response
from ivr.sip.sdp import SdpError, parse_sdp
from ivr.sip.useragent import Phase, UAConfig, UserAgent, _Kind

Addr = tuple[str, int]
Tap = Callable[[bytes, Addr, Addr], None]


@dataclass(frozen=True, slots=True)
class InDialogResponse:
    """The final response (or a timeout, status 408) to a request we sent in a dialog."""

    call_id: str
    method: str
    status: int
    reason: str


SimEvent = UAEvent | InDialogResponse


@dataclass(slots=True)
class _Pending:
    call_id: str
    method: str
    ack: bytes | None = None  # the ACK we sent for a 2xx to our re-INVITE (re-sent on retransmits)


class SimUserAgent(UserAgent):
    """A :class:`UserAgent` that can also send re-INVITE, INFO and REFER inside a dialog."""

    def __init__(self, config: UAConfig | None = None, *, tap: Tap | None = None) -> None:
        super().__init__(config)
        self._tap = tap  # sees every datagram in and out (``ivr sim run --pcap``)
        self._pending: dict[tuple[str, str], _Pending] = {}
        self.in_dialog_events: list[InDialogResponse] = []

    def receive(self, data: bytes, addr: Addr, now: float) -> list[UAEvent]:
        if self._tap is not None:
            self._tap(data, addr, self.local_addr)
        return super().receive(data, addr, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out = super().datagrams_to_send()
        if self._tap is not None:
            for data, addr in out:
                self._tap(data, self.local_addr, addr)
        return out

    def established(self, call_id: str) -> bool:
        return self.call_phase(call_id) is Phase.ESTABLISHED

    def request(
        self,
        call_id: str,
        method: str,
        now: float,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send ``method`` (INVITE for a re-INVITE, INFO, REFER, OPTIONS) in the dialog of ``call_id``.

        Its final response is reported as :class:`InDialogResponse` in :attr:`in_dialog_events`.
        """
        call = self._calls.get(call_id)
        if call is None or call.dialog is None or call.phase is not Phase.ESTABLISHED:
            raise LocalProtocolError(f"no established call {call_id!r}")
        req = call.dialog.create_request(method, via=self._via(), contact=self._contact())
        req.headers.add("User-Agent", self.config.user_agent)
        for name, value in headers:
            req.headers.add(name, value)
        if body:
            req.headers.add("Content-Type", content_type or "application/sdp")
            req.body = body
        if method == "INVITE" and body:
            try:
                call.local_sdp = parse_sdp(body)  # our new offer: answers to it are relative to it
            except SdpError as exc:
                raise LocalProtocolError(f"bad SDP in our re-INVITE: {exc}") from exc
        ctx = self._start_client(req, call.dialog.destination(), now, _Kind.OTHER, call_id=call_id)
        self._pending[(ctx.tx.branch, method)] = _Pending(call_id, method)

    def _on_response(self, resp: Response, now: float, events: list[UAEvent]) -> None:
        try:
            key = (resp.top_via.branch or "", resp.cseq.method)
        except ValueError:
            return
        pending = self._pending.get(key)
        if pending is None:
            super()._on_response(resp, now, events)
            return
        ctx = self._client_tx.get(key)
        if ctx is None:
            return
        passed = ctx.tx.receive_response(resp, now)
        if passed is None or resp.status < 200:
            return
        call = self._calls.get(pending.call_id)
        if pending.method == "INVITE" and resp.status < 300 and call is not None and call.dialog is not None:
            if pending.ack is None:
                ack = call.dialog.create_request("ACK", via=self._via(), contact=None, seq=resp.cseq.seq)
                pending.ack = ack.to_bytes()
                call.dialog.refresh_target(resp)  # section 12.2.1.2: the 2xx refreshes the target
                if resp.body and resp.content_type == "application/sdp":
                    with contextlib.suppress(SdpError):
                        call.remote_sdp = parse_sdp(resp.body)
                self.in_dialog_events.append(
                    InDialogResponse(pending.call_id, pending.method, resp.status, resp.reason)
                )
            self._send(pending.ack, call.dialog.destination())  # re-ACK every 2xx retransmission
            return
        if pending.method == "INVITE" and resp.status < 300:
            return
        self.in_dialog_events.append(InDialogResponse(pending.call_id, pending.method, resp.status, resp.reason))

    def handle_timer(self, now: float) -> list[UAEvent]:
        watched = {k: ctx for k, ctx in self._client_tx.items() if k in self._pending}
        events = super().handle_timer(now)
        for key, ctx in watched.items():
            if not ctx.tx.terminated:
                continue
            pending = self._pending.pop(key)
            last = ctx.tx.last_response
            if last is None or last.status < 200:  # Timer B/F: counts as 408 (section 8.1.3.1)
                self.in_dialog_events.append(InDialogResponse(pending.call_id, pending.method, 408, "Timeout"))
        return events
