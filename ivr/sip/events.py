"""Events the user agent reports to the engine: facts, in the past tense (frozen dataclasses).

Every call-related event carries ``call_id``, the handle the engine passes back to the
user agent's commands (it is the SIP Call-ID of that leg).
"""

from __future__ import annotations

from dataclasses import dataclass

from ivr.sip.sdp import SessionDescription

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class InviteReceived:
    """A new INVITE (UAS). The engine answers it with ``answer``/``ringing``/``reject``.

    ``source`` is the datagram's source address: the engine accepts only configured gateways and
    rejects the rest (403). ``headers`` are all header fields as received (name, value); use
    :meth:`header` for one, e.g. ``X-Inmate-Id`` (trust it only from a gateway).
    """

    call_id: str
    request_uri: str
    from_uri: str
    from_display: str | None
    to_uri: str
    source: Addr
    headers: tuple[tuple[str, str], ...]
    sdp: SessionDescription | None
    authorization: str | None = None

    def header(self, name: str) -> str | None:
        low = name.lower()
        return next((v for n, v in self.headers if n.lower() == low), None)

    @property
    def inmate_id(self) -> str | None:
        value = self.header("X-Inmate-Id")
        return value.strip() if value else None


@dataclass(frozen=True, slots=True)
class CallConfirmed:
    """UAS: the ACK for our 2xx arrived (section 13.3.1.4); ``sdp`` is set for a late-offer answer."""

    call_id: str
    sdp: SessionDescription | None


@dataclass(frozen=True, slots=True)
class CallRinging:
    """UAC: a 180/181/182/183 arrived; ``sdp`` is early media (183 usually)."""

    call_id: str
    status: int
    reason: str
    sdp: SessionDescription | None


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """UAC: the called party's 2xx arrived (we sent the ACK)."""

    call_id: str
    sdp: SessionDescription | None


@dataclass(frozen=True, slots=True)
class CallFailed:
    """A call ended before it was established: a final response >= 300 to our INVITE
    (486, 480, 487, 503, 603, ...), a timeout (408), or our 2xx never acknowledged (UAS)."""

    call_id: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """UAS: the caller cancelled its INVITE (we answered 200 to CANCEL and 487 to the INVITE)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The peer hung up an established call (we answered 200)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class CallEnded:
    """Our BYE completed (``status`` of its response, 408 on timeout): the dialog is gone."""

    call_id: str
    status: int


@dataclass(frozen=True, slots=True)
class KeyReceived:
    """A DTMF key sent by SIP INFO (application/dtmf-relay or application/dtmf)."""

    call_id: str
    key: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class MediaUpdated:
    """A re-INVITE (or late offer) changed the peer's media description; we answered it."""

    call_id: str
    remote_sdp: SessionDescription
    local_sdp: SessionDescription


@dataclass(frozen=True, slots=True)
class HoldDetected:
    """RFC 3264 section 8.4: the peer re-offered sendonly, inactive or c=0.0.0.0."""

    call_id: str
    sdp: SessionDescription


@dataclass(frozen=True, slots=True)
class HoldResumed:
    """The peer re-offered an active stream after a hold."""

    call_id: str
    sdp: SessionDescription


@dataclass(frozen=True, slots=True)
class TransferRequested:
    """The peer sent REFER (RFC 3515). We never follow it (answered 603 Decline)."""

    call_id: str
    refer_to: str


@dataclass(frozen=True, slots=True)
class RequestCompleted:
    """The final response (408 on timeout) to a request we sent with ``send_request``."""

    call_id: str
    method: str
    status: int
    reason: str


@dataclass(frozen=True, slots=True)
class RegistrationSucceeded:
    aor: str
    expires_s: int


@dataclass(frozen=True, slots=True)
class RegistrationFailed:
    """REGISTER failed (``status``, 408 on timeout); the user agent retries at ``retry_at``."""

    aor: str
    status: int
    reason: str
    retry_at: float


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """We answered a request with an error by ourselves (malformed -> 400, unknown dialog -> 481,
    no common codec -> 488, ...). For logs and counters; no action needed."""

    source: Addr
    method: str
    status: int
    reason: str


UAEvent = (
    InviteReceived
    | CallConfirmed
    | CallRinging
    | CallAnswered
    | CallFailed
    | CallCancelled
    | ByeReceived
    | CallEnded
    | KeyReceived
    | MediaUpdated
    | HoldDetected
    | HoldResumed
    | TransferRequested
    | RequestCompleted
    | RegistrationSucceeded
    | RegistrationFailed
    | RequestRejected
)
