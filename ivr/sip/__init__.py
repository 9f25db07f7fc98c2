"""Sans-I/O SIP (RFC 3261) and SDP (RFC 4566 / RFC 3264) for the collect-call engine.

No sockets, no clock: every entry point takes ``now`` (monotonic seconds). The asyncio adapter is
:mod:`ivr.net.sip_udp`.

Modules
-------
``message``      parser/serializer with limits (:class:`~ivr.sip.message.Limits`: 65,535 bytes,
                 128 headers, 8 KiB lines), compact forms, folding, typed Via/NameAddr/SipUri/CSeq.
                 ``parse_message(data) -> Request | Response`` raises only ``MalformedMessageError``.
``sdp``          ``parse_sdp``, ``build_offer``, ``build_answer`` (raises ``NoCommonCodecError``,
                 status 488), ``negotiate(local, remote) -> MediaParams``, ``is_hold(sdp)``.
``transaction``  RFC 3261 section 17 client/server transactions (+ RFC 6026), timers as deadlines.
``dialog``       RFC 3261 section 12 dialogs (tags, CSeq, route set, remote target).
``auth``         digest (RFC 2617/7616/8760): ``authorization(...)`` for the client,
                 ``DigestVerifier`` for gateways that must authenticate to us.
``events``       what the user agent reports (frozen dataclasses, past tense).
``useragent``    :class:`~ivr.sip.useragent.UserAgent`, the object the engine drives.

The user agent
--------------
::

    ua = UserAgent(UAConfig(local_addr=("127.0.0.1", 5060),
                            outbound_proxy=("127.0.0.1", 5070),          # the trunk
                            credentials=Credentials("user", "secret"),   # digest towards the trunk
                            invite_sources=frozenset({"127.0.0.1"})))    # gateways; others: stateless 403

    events = ua.receive(data, addr, now)      # one datagram in -> list[UAEvent]
    events = ua.handle_timer(now)             # at ua.next_deadline() (None: no timer pending)
    for data, addr in ua.datagrams_to_send(): # after *every* call above and every command
        sock.sendto(data, addr)

Events (``ivr.sip.events``; ``call_id`` is the SIP Call-ID of the leg and the handle for commands):

* UAS (facility leg): ``InviteReceived(call_id, request_uri, from_uri, from_display, to_uri, source,
  headers, sdp, authorization)`` with ``.inmate_id`` (X-Inmate-Id) and ``.header(name)``;
  ``CallConfirmed(call_id, sdp)`` (ACK of our 200; ``sdp`` = answer of a late offer);
  ``CallCancelled(call_id)`` (we sent 200 + 487).
* UAC (called leg): ``CallRinging(call_id, status, reason, sdp)`` (180/183, early SDP);
  ``CallAnswered(call_id, sdp)`` (we ACKed); ``CallFailed(call_id, status, reason)`` for every
  final >= 300 (486, 480, 487, 503, 603 ...), 408 on timeout, 487 after our CANCEL, 488 on an
  unusable SDP answer (ACK+BYE sent); on the UAS side ``CallFailed(408)`` if our 200 is never ACKed.
* Either leg: ``ByeReceived(call_id)``; ``CallEnded(call_id, status)`` (our BYE done);
  ``KeyReceived(call_id, key, duration_ms)`` (INFO application/dtmf-relay or application/dtmf);
  ``MediaUpdated(call_id, remote_sdp, local_sdp)`` then ``HoldDetected(call_id, sdp)`` /
  ``HoldResumed(call_id, sdp)`` on re-INVITEs (RFC 3264 section 8.4; answered automatically:
  sendonly -> recvonly, inactive -> inactive, 488 without a common codec);
  ``TransferRequested(call_id, refer_to)`` (REFER answered 603 Decline, never followed).
* ``RegistrationSucceeded(aor, expires_s)``, ``RegistrationFailed(aor, status, reason, retry_at)``.
* ``RequestRejected(source, method, status, reason)``: the UA answered an error by itself
  (400 malformed, 403 non-gateway, 481, 488, 501, 503 overload ...): for logs and counters.

Commands (all take ``now``; UAS ones return False when the call is already gone):

* ``ua.ringing(call_id, now, sdp=None)`` -> 180, or 183 with early-media SDP
* ``ua.answer(call_id, sdp, now)`` -> 200 with our SDP, retransmitted until ACK (section 13.3.1.4)
* ``ua.reject(call_id, status, now, reason=None, headers=())`` -> 403/486/480/603 ...; a 401
  with ``("WWW-Authenticate", verifier.challenge(now))`` challenges a gateway; check the retried
  INVITE's ``InviteReceived.authorization`` with ``verifier.verify(value, method="INVITE", now=now)``
* ``ua.invite(uri, sdp, now, headers=(), from_uri=None, from_display=None, to_uri=None, dest=None)
  -> call_id``; digest retry on 401/407 is automatic
* ``ua.cancel(call_id, now)`` (held until a provisional arrives, section 9.1)
* ``ua.bye(call_id, now)``; ``ua.hangup(call_id, now)`` (CANCEL, 480 or BYE, whatever fits)
* ``ua.send_request(call_id, method, now, body=b"", content_type=None, headers=()) -> bool``:
  re-INVITE (e.g. our hold offer), INFO, OPTIONS, UPDATE, REFER inside an established dialog;
  the outcome arrives as ``RequestCompleted(call_id, method, status, reason)`` (408 on timeout)
* ``ua.register(registrar_uri, aor, now, expires_s=3600, dest=None)``; ``ua.unregister(aor, now)``
* queries: ``ua.call_ids``, ``ua.call_phase(call_id)``, ``ua.local_sdp(call_id)``,
  ``ua.remote_sdp(call_id)``

SDP for ``answer``: ``build_answer(inv.sdp, rtp_host, rtp_port, session_id=...)`` (raises
``NoCommonCodecError``, but the UA has already answered 488 to such an INVITE); the RTP layer gets
``negotiate(local_sdp, remote_sdp) -> MediaParams(remote_address, remote_port, codec,
dtmf_payload_type, direction, on_hold)``.
"""

from ivr.sip.events import UAEvent
from ivr.sip.message import MalformedMessageError, Request, Response, parse_message
from ivr.sip.sdp import (
    MediaParams,
    NoCommonCodecError,
    SessionDescription,
    build_answer,
    build_offer,
    is_hold,
    negotiate,
    parse_sdp,
)
from ivr.sip.useragent import Credentials, Phase, UAConfig, UserAgent

__all__ = [
    "Credentials",
    "MalformedMessageError",
    "MediaParams",
    "NoCommonCodecError",
    "Phase",
    "Request",
    "Response",
    "SessionDescription",
    "UAConfig",
    "UAEvent",
    "UserAgent",
    "build_answer",
    "build_offer",
    "is_hold",
    "negotiate",
    "parse_message",
    "parse_sdp",
]
