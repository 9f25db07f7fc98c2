"""SIP transactions over UDP (RFC 3261 section 17, with the RFC 6026 "Accepted" state).

Four machines: INVITE client (17.1.1), non-INVITE client (17.1.2), INVITE server (17.2.1) and
non-INVITE server (17.2.2). Timers are *deadlines*: each transaction exposes
:meth:`next_deadline` and acts in :meth:`handle_timer`; nothing here reads a clock. Datagrams to
send are appended to the ``outbox`` list shared with the user agent.

RFC 6026 replaces the INVITE server transaction's immediate termination on a 2xx by an
*Accepted* state (Timer L) that absorbs retransmitted INVITEs, and the INVITE client's by an
Accepted state (Timer M) in which retransmitted 2xx still reach the TU so that it re-sends the ACK.
The ACK to a 2xx and the 2xx retransmissions (section 13.3.1.4) are the user agent core's job.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ivr.sip.message import MAGIC_COOKIE, Headers, Request, Response

Addr = tuple[str, int]
Outbox = list[tuple[bytes, Addr]]


@dataclass(frozen=True, slots=True)
class TimerValues:
    """Section 17.1.1.1 / table 4. T1 is the RTT estimate, T2 the cap on non-INVITE retransmits,
    T4 the time a message may stay in the network."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def timeout(self) -> float:
        """64*T1: Timer B, F, H, J (UDP), L and M."""
        return 64 * self.t1


DEFAULT_TIMERS = TimerValues()


class TxState(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    ACCEPTED = "accepted"  # RFC 6026
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


def transaction_key(branch: str | None, sent_by: tuple[str, int], method: str, fallback: str) -> tuple[str, ...]:
    """Section 17.2.3: branch + sent-by + method (ACK matches INVITE; CANCEL is its own).

    For RFC 2543 peers (branch without the magic cookie) ``fallback`` (Call-ID, From tag, CSeq
    number) stands in for the branch, as section 17.2.3 allows.
    """
    m = "INVITE" if method == "ACK" else method
    if branch and branch.startswith(MAGIC_COOKIE):
        return (branch, sent_by[0], str(sent_by[1]), m)
    return ("2543", fallback, sent_by[0], str(sent_by[1]), m)


class ClientTransaction:
    """INVITE (17.1.1) or non-INVITE (17.1.2) client transaction.

    :meth:`receive_response` returns the response when the TU must see it (None when absorbed);
    :meth:`handle_timer` returns True when the transaction timed out (Timer B or F): the TU then
    acts as if a 408 had been received (section 8.1.3.1).
    """

    def __init__(self, request: Request, dest: Addr, now: float, outbox: Outbox, timers: TimerValues = DEFAULT_TIMERS):
        self.request = request
        self.dest = dest
        self.timers = timers
        self._outbox = outbox
        self._data = request.to_bytes()
        self.is_invite = request.method == "INVITE"
        self.branch = request.top_via.branch or ""
        self.state = TxState.CALLING if self.is_invite else TxState.TRYING
        self.last_response: Response | None = None
        self._interval = timers.t1
        # Timer A / E: retransmit; Timer B / F: give up
        self._retransmit_at: float | None = now + timers.t1
        self._timeout_at: float | None = now + timers.timeout
        self._end_at: float | None = None  # Timer D / K / M
        outbox.append((self._data, dest))

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    def next_deadline(self) -> float | None:
        times = [t for t in (self._retransmit_at, self._timeout_at, self._end_at) if t is not None]
        return min(times) if times else None

    def receive_response(self, resp: Response, now: float) -> Response | None:
        status = resp.status
        if self.is_invite:
            if self.state in (TxState.CALLING, TxState.PROCEEDING):
                if status < 200:
                    self.state = TxState.PROCEEDING
                    self._retransmit_at = None  # 17.1.1.2: provisional stops Timer A
                    # Timer B keeps running only in Calling; in Proceeding the TU (CANCEL) decides.
                    self._timeout_at = None
                    self.last_response = resp
                    return resp
                self._retransmit_at = None
                self._timeout_at = None
                self.last_response = resp
                if status < 300:
                    self.state = TxState.ACCEPTED  # RFC 6026 section 8.4, Timer M
                    self._end_at = now + self.timers.timeout
                    return resp
                self.state = TxState.COMPLETED
                self._send_ack(resp)
                self._end_at = now + 32.0  # Timer D: >= 32 s on UDP (17.1.1.2)
                return resp
            if self.state is TxState.ACCEPTED:
                return resp if 200 <= status < 300 else None  # 2xx retransmissions go to the TU
            if self.state is TxState.COMPLETED:
                if status >= 300:
                    self._send_ack(resp)  # 17.1.1.2: re-ACK retransmitted finals, absorb them
                return None
            return None
        # non-INVITE
        if self.state in (TxState.TRYING, TxState.PROCEEDING):
            self.last_response = resp
            if status < 200:
                self.state = TxState.PROCEEDING
                return resp
            self.state = TxState.COMPLETED
            self._retransmit_at = None
            self._timeout_at = None
            self._end_at = now + self.timers.t4  # Timer K
            return resp
        return None  # retransmitted final in Completed: absorbed

    def _send_ack(self, resp: Response) -> None:
        """17.1.1.3: the ACK for a non-2xx final response, built by the transaction."""
        h = Headers()
        vias = self.request.headers.get_all("Via")
        h.add("Via", vias[0])
        h.add("Max-Forwards", "70")
        h.add("From", self.request.headers.get("From") or "")
        h.add("To", resp.headers.get("To") or "")
        h.add("Call-ID", self.request.call_id)
        h.add("CSeq", f"{self.request.cseq.seq} ACK")
        for route in self.request.headers.get_all("Route"):
            h.add("Route", route)
        ack = Request(headers=h, method="ACK", uri=self.request.uri)
        self._outbox.append((ack.to_bytes(), self.dest))

    def handle_timer(self, now: float) -> bool:
        """Fire due timers; True when the transaction timed out (B or F)."""
        if self._timeout_at is not None and now >= self._timeout_at:
            self.state = TxState.TERMINATED
            self._retransmit_at = self._timeout_at = self._end_at = None
            return True
        if self._end_at is not None and now >= self._end_at:
            self.state = TxState.TERMINATED
            self._retransmit_at = self._timeout_at = self._end_at = None
            return False
        if self._retransmit_at is not None and now >= self._retransmit_at:
            self._outbox.append((self._data, self.dest))
            if self.is_invite:
                self._interval *= 2  # Timer A doubles without cap
            elif self.state is TxState.PROCEEDING:
                self._interval = self.timers.t2  # 17.1.2.2: T2 in Proceeding
            else:
                self._interval = min(self._interval * 2, self.timers.t2)  # Timer E
            self._retransmit_at = now + self._interval
        return False

    def terminate(self) -> None:
        self.state = TxState.TERMINATED
        self._retransmit_at = self._timeout_at = self._end_at = None


class ServerTransaction:
    """INVITE (17.2.1, RFC 6026) or non-INVITE (17.2.2) server transaction.

    The TU answers through :meth:`respond`. :meth:`receive_request` absorbs retransmissions (the
    last response is sent again) and returns True only for an ACK that confirms a non-2xx final
    (the TU never sees those ACKs). :meth:`handle_timer` returns True when Timer H fired: our
    non-2xx final was never acknowledged.
    """

    def __init__(
        self,
        request: Request,
        source: Addr,
        now: float,
        outbox: Outbox,
        timers: TimerValues = DEFAULT_TIMERS,
        *,
        key: tuple[str, ...] = (),
    ):
        self.key = key  # the user agent's index key (section 17.2.3), for removal on termination
        self.request = request
        self.source = source
        self.timers = timers
        self._outbox = outbox
        self.is_invite = request.method == "INVITE"
        self.state = TxState.PROCEEDING if self.is_invite else TxState.TRYING
        self.last_response: Response | None = None
        self._last_bytes: bytes | None = None
        self._retransmit_at: float | None = None  # Timer G
        self._interval = timers.t1
        self._timeout_at: float | None = None  # Timer H / L / J
        self._end_at: float | None = None  # Timer I
        self.created_at = now

    @property
    def terminated(self) -> bool:
        return self.state is TxState.TERMINATED

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def next_deadline(self) -> float | None:
        times = [t for t in (self._retransmit_at, self._timeout_at, self._end_at) if t is not None]
        return min(times) if times else None

    def respond(self, resp: Response, now: float) -> None:
        """Send ``resp`` through the transaction (ignored once a final response was sent,
        except 2xx retransmissions in Accepted, which RFC 6026 section 8.5 lets through)."""
        data = resp.to_bytes()
        if self.state is TxState.ACCEPTED and 200 <= resp.status < 300:
            self._outbox.append((data, self.source))
            return
        if self.state not in (TxState.PROCEEDING, TxState.TRYING):
            return
        self.last_response = resp
        self._last_bytes = data
        self._outbox.append((data, self.source))
        if resp.status < 200:
            if not self.is_invite:
                self.state = TxState.PROCEEDING
            return
        if self.is_invite:
            if resp.status < 300:
                self.state = TxState.ACCEPTED
                self._timeout_at = now + self.timers.timeout  # Timer L
            else:
                self.state = TxState.COMPLETED
                self._interval = self.timers.t1
                self._retransmit_at = now + self._interval  # Timer G
                self._timeout_at = now + self.timers.timeout  # Timer H
        else:
            self.state = TxState.COMPLETED
            self._timeout_at = now + self.timers.timeout  # Timer J (64*T1 on UDP)

    def receive_request(self, req: Request, now: float) -> bool:
        """A request matching this transaction: a retransmission, or the ACK of our final."""
        if req.method == "ACK":
            if self.state is TxState.COMPLETED:
                self.state = TxState.CONFIRMED
                self._retransmit_at = None
                self._timeout_at = None
                self._end_at = now + self.timers.t4  # Timer I
                return True
            return False
        # retransmission: 17.2.1 / 17.2.2 resend the last response (provisional or final)
        if self.state in (TxState.PROCEEDING, TxState.COMPLETED) and self._last_bytes is not None:
            self._outbox.append((self._last_bytes, self.source))
        return False

    def handle_timer(self, now: float) -> bool:
        if self._end_at is not None and now >= self._end_at:
            self.terminate()
            return False
        if self._timeout_at is not None and now >= self._timeout_at:
            timed_out = self.state is TxState.COMPLETED and self.is_invite
            self.terminate()
            return timed_out
        if self._retransmit_at is not None and now >= self._retransmit_at and self._last_bytes is not None:
            self._outbox.append((self._last_bytes, self.source))
            self._interval = min(self._interval * 2, self.timers.t2)  # Timer G: doubles up to T2
            self._retransmit_at = now + self._interval
        return False

    def terminate(self) -> None:
        self.state = TxState.TERMINATED
        self._retransmit_at = self._timeout_at = self._end_at = None
