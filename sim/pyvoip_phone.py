"""pyVoIP 1.6.8 as a real called party behind the simulated trunk (DESIGN.md section 5, issue 4 point 4).

:class:`PyVoIPCalledParty` is a softphone built on pyVoIP's ``VoIPPhone``: it REGISTERs a number at
:class:`sim.trunk.SimTrunk` (the trunk then routes the engine's INVITEs for that number to it),
answers, and accepts the collect call the way a person on an old handset does: by pressing '1'
*in-band*, two sine tones (697 + 1209 Hz, ITU-T Q.23) written into its own audio after a short
delay. Then it talks (quiet line noise, never digital silence) and hangs up (BYE) after a while.

pyVoIP is GPL-3.0 and only an optional extra (``pip install .[pyvoip]``); nothing outside ``sim/``
and its tests imports this module.

What pyVoIP 1.6.8 does, and what this wrapper does about it (all in this file, nothing in pyVoIP):

* **Audio is 8-bit unsigned linear** (``call.write_audio(bytes)``: 128 is zero, pyVoIP biases by
  -128 and runs ``audioop.lin2ulaw(.., 1)``). The key and the noise are made at 16-bit scale by
  :mod:`ivr.detect.synth` and divided by 256: a -10 dBm0 tone is a peak of about 28 steps, far
  above the 8-bit quantisation noise (about 37 dB below it), so the detector sees a clean key.
* **PCMA is mis-encoded** (``encode_packet`` uses the mu-law encoder for PCMA) and the first
  codec of the offer is the one pyVoIP sends: the offer is cut to PCMU and telephone-event before
  pyVoIP builds its call, so the answer says ``0 101`` and the phone sends real mu-law.
* **No retransmissions** (RFC 3261 sections 13.3.1.4 and 17.1.2): pyVoIP sends its 200 OK and
  its BYE once. The wrapper keeps the last 200 OK and BYE of the call and resends them on the
  Timer A/E schedule (T1 = 500 ms doubling to T2 = 4 s) until the ACK / the BYE's final response
  comes, so one lost datagram does not leave the engine waiting.
* **It always REGISTERs** (and does not start otherwise): the simulated trunk is its registrar.
* **It answers a hold re-INVITE with sendrecv**, ignores CANCEL/REFER: not exercised here.
* **Loopback only**: SIP and RTP sockets are bound to 127.0.0.1 (pyVoIP's default is 0.0.0.0,
  port 5060); RTP ports come from the kernel, not pyVoIP's random pick in a range.
* **Its own threads** (SIP receive, two RTP threads per call, the call callback on a Timer): the
  wrapper's :meth:`PyVoIPCalledParty.wait` blocks on an event with a timeout and
  :meth:`PyVoIPCalledParty.stop` ends every pyVoIP thread (they are not daemons).

Usage::

    with PyVoIPCalledParty("+15125550123", trunk.address, accept_delay_s=1.0, talk_s=3.0) as phone:
        ...  # the trunk now has a binding for the number; place the call
        result = phone.wait(timeout_s=30)   # PyVoIPCallResult
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# pyVoIP ships py.typed; where the extra is not installed mypy sees Any (hence the ignores).
# pyVoIP.VoIP first: importing pyVoIP.SIP on its own fails on pyVoIP 1.6.8's circular import.
import pyVoIP.VoIP  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
from pyVoIP import SIP  # type: ignore[import-not-found,unused-ignore]
from pyVoIP.VoIP import CallState, VoIPCall, VoIPPhone  # type: ignore[import-not-found,unused-ignore]

from ivr.detect import synth

Addr = tuple[str, int]

SAMPLE_RATE_HZ = 8000
SAMPLES_PER_20MS = 160
T1_S = 0.5  # RFC 3261 section 17.1.1.1
T2_S = 4.0
TIMER_B_S = 64 * T1_S  # give up on a retransmitted request / unacknowledged 2xx
LEAD_S = 0.1  # how far ahead of pyVoIP's 20 ms transmitter the audio is written
LOOPBACK = "127.0.0.1"


def to_u8(samples: npt.NDArray[np.float64]) -> bytes:
    """16-bit-scale samples as pyVoIP 1.6.8's 8-bit unsigned linear audio (128 is zero)."""
    return bytes(np.clip(np.round(samples / 256.0) + 128, 0, 255).astype(np.uint8).tobytes())


def key_u8(key: str, duration_ms: float = 150.0, level_dbm0: float = -10.0) -> bytes:
    """An in-band DTMF key (ITU-T Q.23 pair, each tone at ``level_dbm0``) as 8-bit unsigned audio."""
    return to_u8(synth.dtmf(key, duration_ms, level_dbm0))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True, slots=True)
class PyVoIPCallResult:
    """What the pyVoIP phone did on its call. Times are seconds since it answered."""

    call_id: str
    offered_payload_types: tuple[str, ...]  # the engine's offer, before PCMA was removed
    key: str
    key_at_s: float | None  # when the key's first sample was due on the wire
    ended_by: str  # "phone" (we sent BYE) | "remote" (the engine's BYE) | "stopped"
    ended_at_s: float
    ack_received: bool  # the engine ACKed our 200 OK
    bye_answered: bool  # our BYE got a final response (False when the engine hung up)
    retransmissions: int  # 200 OK and BYE resends (0 on a clean loopback)
    received_audio_bytes: int  # 8-bit samples pyVoIP buffered from the engine's RTP
    error: str | None = None


class _SipClient(SIP.SIPClient):  # type: ignore[misc,unused-ignore]
    """pyVoIP's SIP client, remembering the 2xx and the BYE it sends so they can be retransmitted,
    and noticing the ACK and the BYE's response (pyVoIP drops both)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wrapper_lock = threading.Lock()
        self.answers: dict[str, str] = {}
        self.byes: dict[str, str] = {}
        self.acked: set[str] = set()
        self.bye_done: set[str] = set()

    def gen_answer(self, request: Any, sess_id: str, ms: Any, sendtype: Any) -> str:
        text = str(super().gen_answer(request, sess_id, ms, sendtype))
        with self.wrapper_lock:
            self.answers[str(request.headers["Call-ID"])] = text
        return text

    def gen_bye(self, request: Any) -> str:
        text = str(super().gen_bye(request))
        with self.wrapper_lock:
            self.byes[str(request.headers["Call-ID"])] = text
        return text

    def parse_message(self, message: Any) -> None:
        call_id = str(message.headers.get("Call-ID", ""))
        if message.type == SIP.SIPMessageType.MESSAGE and message.method == "ACK":
            with self.wrapper_lock:
                self.acked.add(call_id)
        elif message.type == SIP.SIPMessageType.RESPONSE:
            cseq = message.headers.get("CSeq")
            if isinstance(cseq, dict) and cseq.get("method") == "BYE" and int(message.status) >= 200:
                with self.wrapper_lock:
                    self.bye_done.add(call_id)
                return  # pyVoIP would take a 200 to BYE for a 200 to an INVITE of its own
        super().parse_message(message)

    def resend(self, text: str) -> None:
        self.out.sendto(text.encode("utf8"), (self.server, self.port))


class _Phone(VoIPPhone):  # type: ignore[misc,unused-ignore]
    """VoIPPhone on loopback with a PCMU-only answer and kernel-chosen RTP ports."""

    def __init__(self, number: str, trunk: Addr, sip_port: int, on_call: Any) -> None:
        super().__init__(trunk[0], trunk[1], number, "", myIP=LOOPBACK, callCallback=on_call, sipPort=sip_port)
        # Replace pyVoIP's SIP client (nothing is bound until start) by the retransmitting one.
        self.sip = _SipClient(
            trunk[0],
            trunk[1],
            number,
            "",
            phone=self,
            myIP=LOOPBACK,
            myPort=sip_port,
            callCallback=self.callback,
            fatalCallback=self.fatal,
        )
        # A loopback registrar answers in milliseconds; pyVoIP's 30 s wait would only stall stop().
        self.sip.register_timeout = 5
        self.offers: dict[str, tuple[str, ...]] = {}

    def _create_Call(self, request: Any, sess_id: int) -> None:  # noqa: N802 - pyVoIP's hook name
        call_id = str(request.headers["Call-ID"])
        offered: list[str] = []
        for media in request.body.get("m", []):
            if media.get("type") != "audio":
                continue
            offered.extend(str(m) for m in media["methods"])
            # pyVoIP sends with the first codec it keeps and encodes PCMA with the mu-law encoder:
            # keep only PCMU (0) and telephone-event, so offer/answer settles on PCMU.
            keep = []
            for pt in media["methods"]:
                name = str(media["attributes"].get(pt, {}).get("rtpmap", {}).get("name", "")).lower()
                if pt == "0" or name == "telephone-event":
                    keep.append(pt)
            media["methods"] = keep
        self.offers[call_id] = tuple(offered)
        super()._create_Call(request, sess_id)

    def request_port(self, blocking: bool = True) -> int:
        # pyVoIP picks a random port in a range without checking it is free; ask the kernel.
        with self.portsLock:
            port = _free_port()
            self.assignedPorts.append(port)
            return port


class PyVoIPCalledParty:
    """A pyVoIP phone registered under ``number`` at ``trunk`` that takes one call.

    After answering it writes quiet noise (``talk_level_dbm0``), then at ``accept_delay_s`` the
    in-band ``key`` (``key_ms`` long, each tone at ``key_level_dbm0``), then noise again, and sends
    BYE ``talk_s`` after the key (unless the engine hangs up first).
    """

    def __init__(
        self,
        number: str,
        trunk: Addr,
        *,
        key: str = "1",
        accept_delay_s: float = 1.0,
        key_ms: float = 150.0,
        key_level_dbm0: float = -10.0,
        talk_s: float = 3.0,
        talk_level_dbm0: float = -35.0,
        sip_port: int | None = None,
        seed: int = 1,
    ) -> None:
        if trunk[0] != LOOPBACK:
            raise ValueError(f"the pyVoIP phone talks to a loopback trunk only, not {trunk[0]}")
        self.number = number
        self.trunk = trunk
        self.key = key
        self.accept_delay_s = accept_delay_s
        self.key_ms = key_ms
        self.key_level_dbm0 = key_level_dbm0
        self.talk_s = talk_s
        self.talk_level_dbm0 = talk_level_dbm0
        self.sip_port = sip_port or _free_port()
        self._rng = np.random.default_rng(seed)
        self._done = threading.Event()
        self._stopping = threading.Event()
        self._result: PyVoIPCallResult | None = None
        self._phone = _Phone(number, trunk, self.sip_port, self._on_call)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PyVoIPCalledParty:
        """REGISTER (pyVoIP does it synchronously in ``start``; it raises if the registrar says no)."""
        self._phone.start()
        return self

    def stop(self) -> None:
        """Hang up a call still up, de-register, and end pyVoIP's threads."""
        self._stopping.set()
        self._phone.stop()

    def __enter__(self) -> PyVoIPCalledParty:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def status(self) -> str:
        return str(self._phone.get_status().value)

    def wait(self, timeout_s: float) -> PyVoIPCallResult:
        """Block until the phone's call has ended; TimeoutError if it has not within ``timeout_s``."""
        if not self._done.wait(timeout_s):
            raise TimeoutError(f"the pyVoIP phone {self.number} had no finished call within {timeout_s} s")
        assert self._result is not None
        return self._result

    # ------------------------------------------------------------------ the call (pyVoIP's Timer thread)

    def _noise(self, samples: int) -> npt.NDArray[np.float64]:
        return synth.white_noise(samples * 1000.0 / SAMPLE_RATE_HZ, self.talk_level_dbm0, self._rng)

    def _on_call(self, call: VoIPCall) -> None:
        """pyVoIP's call callback: runs on its own thread, once per incoming INVITE."""
        call_id = str(call.call_id)
        sip = self._phone.sip
        assert isinstance(sip, _SipClient)
        answered_at = time.monotonic()
        key_at: float | None = None
        ended_by = "stopped"
        error: str | None = None
        resends = 0
        try:
            if self._done.is_set() or self._stopping.is_set():
                call.deny()  # one call per phone: a second INVITE (or one while stopping) is busy
                return
            call.answer()
            answered_at = time.monotonic()
            key = synth.dtmf(self.key, self.key_ms, self.key_level_dbm0)
            key_start = round(self.accept_delay_s * SAMPLE_RATE_HZ)
            hangup_at_s = self.accept_delay_s + self.key_ms / 1000.0 + self.talk_s
            written = 0
            next_ok_at, ok_interval = answered_at + T1_S, T1_S
            while not self._stopping.is_set():
                now = time.monotonic()
                elapsed = now - answered_at
                if call.state == CallState.ENDED:
                    ended_by = "remote"
                    break
                if elapsed >= hangup_at_s:
                    call.hangup()
                    ended_by = "phone"
                    break
                # 13.3.1.4: resend the 2xx until the ACK comes (pyVoIP sends it once).
                if call_id not in sip.acked and now >= next_ok_at and elapsed < TIMER_B_S:
                    with sip.wrapper_lock:
                        text = sip.answers.get(call_id)
                    if text is not None:
                        sip.resend(text)
                        resends += 1
                    ok_interval = min(2 * ok_interval, T2_S)
                    next_ok_at = now + ok_interval
                # Keep pyVoIP's transmit buffer LEAD_S ahead of its 20 ms reader: noise, the key.
                target = round((elapsed + LEAD_S) * SAMPLE_RATE_HZ)
                if target > written:
                    chunk = self._noise(target - written)
                    lo, hi = max(written, key_start), min(target, key_start + len(key))
                    if lo < hi:
                        chunk[lo - written : hi - written] = key[lo - key_start : hi - key_start]
                        if key_at is None:
                            key_at = key_start / SAMPLE_RATE_HZ
                    call.write_audio(to_u8(chunk))
                    written = target
                time.sleep(0.02)
            if ended_by == "phone":
                resends += self._retransmit_bye(sip, call_id)
        except Exception as exc:  # pyVoIP raises plain exceptions from its thread: report, never hide
            error = f"{type(exc).__name__}: {exc}"
        finally:
            received = 0
            for client in getattr(call, "RTPClients", []):
                received += len(client.pmin.buffer.getvalue())
            with sip.wrapper_lock:
                acked, bye_done = call_id in sip.acked, call_id in sip.bye_done
            self._result = PyVoIPCallResult(
                call_id=call_id,
                offered_payload_types=self._phone.offers.get(call_id, ()),
                key=self.key,
                key_at_s=key_at,
                ended_by=ended_by,
                ended_at_s=time.monotonic() - answered_at,
                ack_received=acked,
                bye_answered=bye_done,
                retransmissions=resends,
                received_audio_bytes=received,
                error=error,
            )
            self._done.set()

    def _retransmit_bye(self, sip: _SipClient, call_id: str) -> int:
        """17.1.2.2 Timer E: resend our BYE until a final response (pyVoIP sends it once)."""
        resends, interval = 0, T1_S
        deadline = time.monotonic() + TIMER_B_S
        next_at = time.monotonic() + interval
        while not self._stopping.is_set() and time.monotonic() < deadline:
            with sip.wrapper_lock:
                if call_id in sip.bye_done:
                    break
                text = sip.byes.get(call_id)
            if text is not None and time.monotonic() >= next_at:
                sip.resend(text)
                resends += 1
                interval = min(2 * interval, T2_S)
                next_at = time.monotonic() + interval
            time.sleep(0.01)
        return resends


__all__ = ["PyVoIPCallResult", "PyVoIPCalledParty", "key_u8", "to_u8"]
