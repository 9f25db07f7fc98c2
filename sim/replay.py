"""``ivr replay capture.pcap``: a capture of SIP and RTP -> a fresh CallMachine -> the engine's decisions.

For each call in a capture (:func:`sim.pcap.read_calls`), the CallMachine's inputs are rebuilt from
what the wire shows, a fresh machine runs them on a fake clock (times are milliseconds since the
facility's INVITE as captured), and its decisions are compared with what the engine visibly did:
which legs it hung up (BYE, or CANCEL towards the trunk) and when, and the outcome the signalling
implies. The rebuilt inputs form an ordinary flow (:class:`ivr.replay.Flow`), run by
:func:`ivr.replay.run_flow`, so a capture's call is replayed exactly like a recorded call.

Inputs from the wire
    ``CallStarted``  the gateway's INVITE (Request-URI user, ``X-Inmate-Id``, capture time).
    ``CalledRinging`` / ``CalledAnswered`` / ``CalledBusy`` (486, 600) / ``CalledFailed``  the
    trunk's responses to the engine's INVITE.
    ``KeyPressed``  RFC 4733 events and SIP INFO from either party, and in-band DTMF found by the
    detectors, de-duplicated per leg by :class:`ivr.rtp.keys.KeyNormalizer` as the engine does (ACC-5).
    ``HoldDetected`` / ``TransferRequested``  a party's hold re-INVITE / REFER.
    ``HangupReceived``  a BYE or CANCEL sent by the gateway or the called party. The engine's own
    BYEs and CANCELs are not inputs: they are the decisions compared.
    Detector events  :class:`ivr.detect.bank.BatchedDetectorBank` over the audio each party sent,
    from the moment the engine started that leg's media (its answer / the trunk's 200 OK), mapped
    exactly as ``Engine.detector_event`` maps them; each is handed to the machine one frame after
    the detector reported it plus the engine's jitter-buffer delay (40 ms), and on no leg already
    hung up.
    ``MediaTimeout``  a party's RTP stopped for longer than the dialplan's ``media_timeout_s``
    (at the last packet + the timeout; the engine looks every 0.5 s).

Inputs the wire does not carry (assumptions, listed in every result)
    ``CallerIdentified``  the roster is not on the wire: the caller is ``active``. The name phase
    (ACC-1) is visible: it is a prompt, then ``name_max_ms`` in which the engine sends the caller
    nothing audible and dials nobody. If the engine's INVITE to the trunk comes at least
    0.8 x ``name_max_ms`` after it answered the gateway (or, without a trunk INVITE, the first
    prompt to the facility is followed by that much quiet), the caller had no enrolled clip
    (``has_name_clip=False``) and ``NameRecorded`` follows ``name_max_ms`` after the prompt (or
    comes just before the INVITE to the trunk, which the check then follows at once); its
    ``voiced`` flag and clip come from the facility's audio by the engine's own rule
    (``ivr.net.runner``). Otherwise ``has_name_clip=True``.
    ``CallChecked``  allowed, just before the engine's INVITE to the trunk. With no INVITE to the
    trunk but a prompt to the facility and the engine's BYE, it was refused: the BLK reason is the
    ledger's and is not on the wire (the replay then says BLK-PARTY, the machine's default; the wire
    verdict leaves the reason open). ``account_kind`` is ``prepaid``.
    ``LedgerAnswer``  authorized for the whole limit (``allowed_seconds`` = the dialplan's limit,
    ``hold_minor`` = its maximum cost), when the engine's "connected" prompt starts towards the
    facility (else 1 ms after ``ReserveFunds``). A capture cannot show a BLK-FUNDS refusal at
    acceptance: such a call would replay as accepted.
    ``PromptFinished``  a prompt starts when the machine queues it (or when the prompt before it on
    that leg ends) and finishes one 20 ms pacing tick after the earlier of two ends: its rendered
    length (``ivr.prompts.render`` over ``$IVR_PROMPTS_DIR`` or the shipped prompts, the set the
    engine plays) and the end of the engine's audio to that leg on the wire. That audio is the RTP
    the engine sent the party with audible samples, minus the packets it relayed from the other
    party while bridged (their payloads are the other party's); its pauses under 600 ms are bridged
    (the longest pause inside a shipped prompt is 440 ms). A run longer than the rendered prompt is
    the next prompt queued right behind it (invalid_choice then the announcement); a run shorter
    means another prompt set (a note says so and the wire's end is used), unless a party hung up
    right after it (the audio was cut). Without a rendering (an enrolled name clip is not on the
    wire) the wire's end is used. A prompt queued on a leg without media (the called leg before its
    answer) finishes at once, as in the engine.

Not known from a capture
    The ledger's and the roster's answers (above); an enrolled name clip's audio; the engine's
    clock (the machine's time origin is the INVITE as captured: a few ms before the engine's); the
    engine's jitter-buffer state (a fixed 40 ms is assumed); RFC 4733 flash events (event 16) are
    not turned into ``HookflashDetected``; a call the capture cut short cannot be compared past its
    end (a mismatch says so). Detector decisions (DIS-SILENCE, DIS-3WAY, DIS-NOISE) have
    no signalling of their own: for them the comparison is the hang-up times; the wire verdict
    leaves the reason open.

Comparison
    The replayed ``Hangup`` commands against the engine's BYE / CANCEL on the wire, per leg: the
    same legs, each within ``tolerance_s`` (default 1.5 s; see ``DEFAULT_TOLERANCE_S``), and the
    outcome and reason the signalling implies (:func:`wire_verdict`) against the replayed record.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ivr.call import events as ev
from ivr.call.machine import CallMachine
from ivr.dialplan import Action, Dialplan
from ivr.net.runner import FRAME, NAME_MIN_VOICED_FRAMES, NAME_VOICE_DBFS
from ivr.rating import max_cost_minor
from ivr.replay import Flow, ReplayResult, run_flow
from ivr.rtp.g711 import Codec, transcode
from ivr.rtp.jitter import JitterBuffer
from ivr.rtp.keys import KeyNormalizer
from ivr.sip.sdp import SessionDescription
from ivr.types import Evidence, JsonValue, KeySource, Leg
from sim.pcap import CapturedCall, Datagram, Fact, read_calls, read_datagrams

F = Leg.FACILITY
C = Leg.CALLED

# Tolerance between a replayed hang-up and the engine's BYE/CANCEL on the wire. The replay's inputs
# carry wire times, but the engine acted on them later by amounts the wire does not show: the media
# timeout is checked every 0.5 s (up to 500 ms late), detector events come after a 40-60 ms jitter
# buffer and a 20 ms tick, prompt ends after a 20 ms pacing tick each (a closing after a warning
# chains three prompts: ~60 ms), and ledger/roster answers take tens of ms on SQLite, hundreds under
# load. 0.5 + 0.1 + 0.1 + 0.3 ~ 1.0 s, with margin for a live trunk's network jitter: 1.5 s. A wrong
# decision is off by far more: a missed digit timeout by digit_timeout_s (several seconds), a missed
# or extra warning by a whole prompt, a wrong key by a different closing prompt or none.
# Measured over 20 engine-vs-SIPp calls (every outcome the SIPp harness can make): all hang-ups within
# 34 ms of the wire, except DIS-MEDIA at 426 ms (the 0.5 s media check).
DEFAULT_TOLERANCE_S = 1.5

NAME_PHASE_FRACTION = 0.8  # of name_max_ms: quiet this long towards the caller = a name recording
PROMPT_GAP_MS = 600  # quiet inside a shipped prompt: at most 440 ms (Pause.SENTENCE 400 ms + speech edges)
AUDIBLE = 16  # |sample| above this is prompt audio; the engine's idle frames are digital silence
TICK_MS = 20
UNTIMED_HOLD_S = 24 * 3600  # what the machine assumes for an untimed call (ivr.rating.seconds_covered)
_NO_ANSWER = frozenset({408, 480, 487})

ASSUMPTIONS: tuple[str, ...] = (
    "roster: caller active (not on the wire)",
    "ledger: number allowed when the engine dialled it; account prepaid; hold authorized for the whole limit",
    "prompt ends: the earlier of the rendered prompt ($IVR_PROMPTS_DIR or shipped) and the wire's audio",
)


# ------------------------------------------------------------------------------ wire facts per call


@dataclass(frozen=True, slots=True)
class Run:
    """A stretch of audible audio the engine sent to a leg (ms since the facility's INVITE)."""

    start_ms: int
    end_ms: int


@dataclass(slots=True)
class Wire:
    """What the capture shows of one call, on the call's time line (ms since the facility's INVITE)."""

    call: CapturedCall
    facts: list[Fact]
    answered_ms: int | None  # the engine's 200 OK to the gateway
    trunk_invite_ms: int | None  # the engine's INVITE towards the trunk
    called_answered_ms: int | None
    engine_ends: dict[Leg, int]  # the engine's first BYE / CANCEL per leg
    party_ends: dict[Leg, int]  # the party's first BYE / CANCEL per leg (or a failed INVITE)
    runs: dict[Leg, list[Run]]  # audible audio the engine sent to each leg
    arrivals: dict[Leg, list[int]]  # arrival times of the party's RTP at the engine
    last_ms: int  # the last SIP message of the call

    def leg_end(self, leg: Leg) -> int | None:
        ends = [t for t in (self.engine_ends.get(leg), self.party_ends.get(leg)) if t is not None]
        return min(ends) if ends else None

    def first_run(self, leg: Leg, after_ms: int, within_ms: int) -> Run | None:
        for run in self.runs.get(leg, []):
            if run.end_ms > after_ms and run.start_ms >= after_ms - TICK_MS:
                return run if run.start_ms <= after_ms + within_ms else None
        return None

    def cut_short(self, run: Run) -> bool:
        """Did a party's BYE/CANCEL come right after this run (a pause inside a prompt can be 400 ms)?"""
        return any(run.end_ms - TICK_MS <= t <= run.end_ms + PROMPT_GAP_MS for t in self.party_ends.values())

    def run_at(self, leg: Leg, at_ms: int) -> Run | None:
        """The run the engine's audio to ``leg`` was in at ``at_ms`` (or the next, if it starts within a tick)."""
        for run in self.runs.get(leg, []):
            if run.start_ms - 2 * TICK_MS <= at_ms < run.end_ms:
                return run
        return None


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _prompt_runs(call: CapturedCall, datagrams: list[Datagram]) -> dict[Leg, list[Run]]:
    """Audible audio the engine itself sent to each party (its prompts), by arrival time.

    While the legs are bridged the engine also relays each party's audio to the other; a relayed
    packet carries the other party's payload untouched (or transcoded between the G.711 laws,
    ``ivr.rtp.relay``), so packets whose payload the other party sent are not prompt audio.
    """
    t0 = call.t0
    sides: dict[Leg, tuple[set[tuple[str, int]], set[tuple[str, int]]]] = {
        F: (_media_endpoints(call.facility.caller_sdps), _media_endpoints(call.facility.callee_sdps))}
    if call.called is not None:
        sides[C] = (_media_endpoints(call.called.callee_sdps), _media_endpoints(call.called.caller_sdps))
    sent: dict[Leg, list[tuple[float, bytes]]] = {F: [], C: []}  # (arrival, payload) engine -> party
    heard: dict[Leg, set[bytes]] = {F: set(), C: set()}  # payloads each party sent the engine
    for d in datagrams:
        if len(d.payload) < 12 or d.payload[0] >> 6 != 2:
            continue
        for leg, (party_eps, engine_eps) in sides.items():
            if d.dst in party_eps:
                sent[leg].append((d.ts, d.payload))
            elif d.dst in engine_eps:
                heard[leg].add(_rtp_audio(d.payload)[1])
    runs: dict[Leg, list[Run]] = {}
    for leg, packets in sent.items():
        other = heard[C if leg is F else F]
        relayed = other | {transcode(x, a, b) for x in other for a, b in ((Codec.PCMU, Codec.PCMA),
                                                                           (Codec.PCMA, Codec.PCMU)) if x}
        frames: set[int] = set()
        for ts, payload in packets:
            codec, audio = _rtp_audio(payload)
            if codec is None or not audio or audio in relayed:
                continue
            if int(np.abs(codec.decode(audio).astype(np.int32)).max()) > AUDIBLE:
                frames.add(_ms(ts - t0) // TICK_MS)
        runs[leg] = _runs_of(sorted(frames))
    return runs


def _rtp_audio(packet: bytes) -> tuple[Codec | None, bytes]:
    """The G.711 codec and payload of an RTP packet (RFC 3550 section 5.1: CSRCs, extension, padding)."""
    cc = packet[0] & 0x0F
    start = 12 + 4 * cc
    if packet[0] & 0x10 and len(packet) >= start + 4:
        start += 4 + 4 * int.from_bytes(packet[start + 2 : start + 4], "big")
    end = len(packet)
    if packet[0] & 0x20 and end > start:
        end -= packet[-1]
    return Codec.from_payload_type(packet[1] & 0x7F), packet[start:end]


def _runs_of(frames: list[int]) -> list[Run]:
    """Consecutive audible frames as runs, pauses under PROMPT_GAP_MS bridged."""
    runs: list[Run] = []
    if not frames:
        return runs
    start = prev = frames[0]
    for k in frames[1:]:
        if (k - prev - 1) * TICK_MS >= PROMPT_GAP_MS:
            runs.append(Run(start * TICK_MS, (prev + 1) * TICK_MS))
            start = k
        prev = k
    runs.append(Run(start * TICK_MS, (prev + 1) * TICK_MS))
    return runs


def _media_endpoints(sdps: list[SessionDescription]) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for sdp in sdps:
        m = sdp.audio()
        host = sdp.stream_address(m) if m is not None else None
        if m is not None and host and host not in ("0.0.0.0", "::"):
            out.add((host, m.port))
    return out


def _arrivals(call: CapturedCall, datagrams: list[Datagram]) -> dict[Leg, list[int]]:
    """When each party's RTP reached the engine (any RTP: audio or telephone-events, as the engine counts)."""
    t0 = call.t0
    legs: list[tuple[Leg, set[tuple[str, int]], float, float]] = [
        (F, _media_endpoints(call.facility.callee_sdps), call.facility.invite_at,
         (call.facility.ended_at or t0) + 1.0)]
    if call.called is not None:
        legs.append((C, _media_endpoints(call.called.caller_sdps), call.called.invite_at,
                     (call.called.ended_at or t0) + 1.0))
    out: dict[Leg, list[int]] = {F: [], C: []}
    for leg, engine_eps, begin, end in legs:
        if not engine_eps:
            continue
        out[leg] = [_ms(d.ts - t0) for d in datagrams
                    if d.dst in engine_eps and begin <= d.ts <= end and d.payload[:1] and d.payload[0] >> 6 == 2]
    return out


def _wire(call: CapturedCall, datagrams: list[Datagram]) -> Wire:
    facts = call.facts
    answered = next((f for f in facts if f.leg == "facility" and f.kind == "answered"), None)
    invite = next((f for f in facts if f.leg == "called" and f.kind == "invite"), None)
    called_answered = next((f for f in facts if f.leg == "called" and f.kind == "answered"), None)
    engine_ends: dict[Leg, int] = {}
    party_ends: dict[Leg, int] = {}
    for f in facts:
        leg = Leg(f.leg)
        if f.kind in ("bye", "cancel"):
            ends = engine_ends if f.detail.get("by") == "engine" else party_ends
            ends.setdefault(leg, _ms(f.at_s))
        elif f.kind == "failed" and leg is C:
            party_ends.setdefault(leg, _ms(f.at_s))
    last = max((f.at_s for f in facts), default=0.0)
    return Wire(
        call=call,
        facts=facts,
        answered_ms=_ms(answered.at_s) if answered else None,
        trunk_invite_ms=_ms(invite.at_s) if invite else None,
        called_answered_ms=_ms(called_answered.at_s) if called_answered else None,
        engine_ends=engine_ends,
        party_ends=party_ends,
        runs=_prompt_runs(call, datagrams),
        arrivals=_arrivals(call, datagrams),
        last_ms=_ms(last),
    )


# ------------------------------------------------------------------------------ what the wire implies


def wire_verdict(wire: Wire, plan: Dialplan, inband_keys: list[tuple[int, str]] | None = None
                 ) -> tuple[str | None, str | None]:
    """The outcome and reason the signalling implies (None where it cannot tell).

    Independent of the machine: who ended the call, the trunk's answer, the called party's first
    acceptance key (RFC 4733, SIP INFO, or ``inband_keys`` the detectors found in the called party's
    audio: (ms, key)), a hold or REFER before the engine's BYE, the limit.
    """
    facts = wire.facts
    keys = plan.keys
    answered = wire.called_answered_ms
    trunk_failed = next((f for f in facts if f.leg == "called" and f.kind == "failed"), None)
    first_end = min(((t, leg, "engine") for leg, t in wire.engine_ends.items()), default=None)
    party_end = min(((t, leg, "party") for leg, t in wire.party_ends.items()
                     if not (leg is C and trunk_failed is not None)), default=None)
    ender = min(x for x in (first_end, party_end) if x is not None) if (first_end or party_end) else None
    if wire.trunk_invite_ms is None:
        if ender is None:
            return None, None
        if ender[2] == "party":
            return "abandoned", "DIS-HANGUP"
        return "restricted", None  # BLK-* or the roster: the reason is not on the wire
    if answered is None:
        if trunk_failed is not None and (party_end is None or _ms(trunk_failed.at_s) <= party_end[0]):
            status = int(trunk_failed.detail.get("status") or 0)  # type: ignore[arg-type]
            if status in (486, 600):
                return "busy", "ACC-4"
            if status in _NO_ANSWER:
                return "no_answer", "ACC-4"
            return "failed", "SYS-TRUNK"
        if party_end is not None and (first_end is None or party_end[0] <= first_end[0]):
            return "abandoned", "DIS-HANGUP"
        if C in wire.engine_ends:
            return "no_answer", "ACC-4"  # our CANCEL: the ring timeout
        return None, None
    if ender is None:
        return None, None
    pressed = [(_ms(f.at_s), str(f.detail.get("key"))) for f in facts
               if f.leg == "called" and f.kind == "key" and f.detail.get("by") == "called"]
    pressed += list(inband_keys or [])
    decisive = sorted((t, k) for t, k in pressed
                      if answered <= t <= ender[0] and k in (keys.accept, keys.refuse, keys.block))
    first = decisive[0][1] if decisive else None
    accepted_ms = decisive[0][0] if first == keys.accept else None
    if accepted_ms is None:
        if ender[2] == "party":
            return "abandoned", "DIS-HANGUP"
        if first == keys.refuse:
            return "refused", "ACC-2"
        if first == keys.block:
            return "blocked", "ACC-6"
        return "no_input", "ACC-3"
    if ender[2] == "party":
        return "completed", "DIS-HANGUP"
    watched = [f for f in facts if f.leg == "called" and f.kind in ("hold", "refer") and f.detail.get("by") == "called"
               and accepted_ms <= _ms(f.at_s) <= ender[0]]
    if watched and plan.policies.hold.action is Action.DISCONNECT:
        return "disconnected", "DIS-HOLD"
    digit = plan.policies.digit
    if digit.action is not Action.OFF and Leg.CALLED in plan.policies.digit_legs:
        stray: list[int] = []
        for t, _key in sorted(pressed):
            if accepted_ms < t <= ender[0] and (not stray or t - stray[-1] > plan.acceptance.key_dedupe_ms):
                stray.append(t)  # one press reported by two transports counts once (ACC-5)
        allowed = digit.warnings if digit.action is Action.WARN else 0
        if len(stray) > allowed:
            return "disconnected", "DIS-DIGIT"
    timeout_s = plan.policies.media_timeout_s
    for leg, start in ((F, wire.answered_ms), (C, answered)):
        gap = media_timeout(wire.arrivals.get(leg, []), start, ender[0], timeout_s, leg) if start is not None else None
        if gap is not None and gap[0] <= ender[0] + 600:  # the engine looks every 0.5 s
            return "dropped", "DIS-MEDIA"
    limit = plan.limit_seconds(plan.call_type_for(wire.call.facility.number), False)
    if limit is not None and ender[0] - accepted_ms >= limit * 1000:
        return "limited", None  # DIS-LIMIT or DIS-FUNDS: the balance is not on the wire
    return None, None  # a detector's decision: visible only in the audio (the replay says which)


# ------------------------------------------------------------------------------ the driver


@dataclass(order=True, slots=True)
class _Item:
    t_ms: int
    seq: int
    kind: str = field(compare=False)  # event | key | leg_event | prompt
    leg: Leg | None = field(compare=False, default=None)
    event: Any = field(compare=False, default=None)
    token: int = field(compare=False, default=0)


def _started_at(ts: float) -> str:
    """The INVITE's capture time as the engine writes ``started_at`` (local time with its offset)."""
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


class _Driver:
    """Feeds one call's wire facts to a CallMachine and answers its commands as the engine would."""

    def __init__(self, plan: Dialplan, wire: Wire, call_id: str) -> None:
        self.plan = plan
        self.wire = wire
        self.call_id = call_id
        self.machine = CallMachine(plan)
        self.inputs: list[tuple[int, ev.Event]] = []
        self.notes: list[str] = []
        self.inband_keys: list[tuple[int, str]] = []  # the called party's in-band keys, for the wire verdict
        self._queue: list[_Item] = []
        self._seq = 0
        self._seen = 0  # timeline entries already looked at
        self._now = 0
        self._down: dict[Leg, int] = {}  # when the machine hung up a leg
        self._busy_until: dict[Leg, int] = {F: 0, C: 0}
        self._pending: dict[Leg, set[int]] = {F: set(), C: set()}
        self._normalizers = {leg: KeyNormalizer(leg, window_s=0.2) for leg in (F, C)}
        self._renders: dict[str, int | None] = {}
        self._name_clip: npt.NDArray[np.int16] | None = None
        self.name_phase = self._name_phase()

    # -------------------------------------------------------------- queue

    def push(self, t_ms: int, kind: str, event: Any = None, leg: Leg | None = None, token: int = 0) -> None:
        self._seq += 1
        heapq.heappush(self._queue, _Item(max(t_ms, self._now), self._seq, kind, leg, event, token))

    def _feed(self, event: ev.Event, t_ms: int) -> None:
        self._now = max(self._now, t_ms)
        self.inputs.append((self._now, event))
        self.machine.handle(event, self._now / 1000)
        self._after()

    def run(self) -> None:
        guard = 0
        while not self.machine.ended and guard < 100_000:
            guard += 1
            deadline = self.machine.next_deadline()
            due = _due_ms(deadline) if deadline is not None else None
            if self._queue and (due is None or self._queue[0].t_ms < due):
                item = heapq.heappop(self._queue)
                self._pop(item)
            elif due is not None:
                self._feed(ev.TimerFired(), max(due, self._now))
            else:
                break

    def _pop(self, item: _Item) -> None:
        t = max(item.t_ms, self._now)
        if item.kind == "event":
            self._feed(item.event, t)
        elif item.kind == "leg_event":
            assert item.leg is not None
            if self._leg_live(item.leg, t):
                self._feed(item.event, t)
        elif item.kind == "key":
            assert item.leg is not None
            key, source, onset_ms = item.event
            if not self._leg_live(item.leg, t):
                return
            press = self._normalizers[item.leg].press(key, source, t / 1000, started_at=onset_ms / 1000)
            if press is not None:
                self._feed(ev.KeyPressed(press.key, item.leg, press.source), t)
        elif item.kind == "prompt":
            assert item.leg is not None
            if item.token in self._pending[item.leg] and self._leg_live(item.leg, t):
                self._pending[item.leg].discard(item.token)
                finished, note = item.event
                if note is not None:  # only for a prompt played out (a stopped one ends early by design)
                    self.notes.append(note)
                self._feed(finished, t)

    def _leg_live(self, leg: Leg, t_ms: int) -> bool:
        down = self._down.get(leg)
        party = self.wire.party_ends.get(leg)
        return (down is None or t_ms < down) and (party is None or t_ms <= party)

    # -------------------------------------------------------------- the machine's orders

    def _after(self) -> None:
        timeline = self.machine._timeline
        while self._seen < len(timeline):
            entry = timeline[self._seen]
            self._seen += 1
            if "out" in entry:
                self._order(entry)

    def _order(self, out: dict[str, JsonValue]) -> None:
        t = int(out["t_ms"])  # type: ignore[arg-type]
        name = out["out"]
        if name == "IdentifyCaller":
            self._identify(t, out)
        elif name == "CheckCall":
            self._check(t)
        elif name == "ReserveFunds":
            self._reserve(t)
        elif name == "PlayPrompt":
            for leg in out["legs"]:  # type: ignore[union-attr]
                self._play(t, Leg(str(leg)), out)
        elif name == "StopPrompt":
            leg = Leg(str(out["leg"]))
            self._pending[leg].clear()
            self._busy_until[leg] = t
        elif name == "StartRecording":
            self._record_name(t, int(out["max_ms"]))  # type: ignore[arg-type]
        elif name == "Hangup":
            self._down.setdefault(Leg(str(out["leg"])), t)

    def _identify(self, t: int, out: dict[str, JsonValue]) -> None:
        caller = out.get("caller_id") or f"pin:{out.get('pin')}"
        at = t + 1
        if self.name_phase:
            # The "say your name" prompt starts when the roster answered.
            run = self.wire.first_run(F, t, round(self.plan.acceptance.ledger_timeout_s * 1000))
            if run is not None:
                at = max(at, run.start_ms - TICK_MS)
        self.push(at, "event", ev.CallerIdentified(str(caller), "(from capture)", "active",
                                                   has_name_clip=not self.name_phase))

    def _check(self, t: int) -> None:
        w = self.wire
        if w.trunk_invite_ms is not None:
            self.push(max(t + 1, w.trunk_invite_ms - 1), "event", ev.CallChecked(True, account_kind="prepaid"))
            return
        party = w.party_ends.get(F)
        run = w.first_run(F, t, round(self.plan.acceptance.ledger_timeout_s * 1000))
        refused = F in w.engine_ends or (run is not None and (party is None or run.start_ms < party))
        if refused:
            at = max(t + 1, run.start_ms - TICK_MS) if run is not None else t + 1
            self.push(at, "event", ev.CallChecked(False, detail="refused before dialling: the reason is the "
                                                               "ledger's, not on the wire"))
            self.notes.append("no INVITE to the trunk after the check: refused (BLK reason unknown)")

    def _reserve(self, t: int) -> None:
        limit_s = self.machine.limit_s
        seconds = limit_s if limit_s is not None else UNTIMED_HOLD_S
        hold = max_cost_minor(seconds, self.plan.tariff)
        at = t + 1
        # The "connected" prompt towards the facility starts when the hold was granted.
        run = self.wire.first_run(F, t, round(self.plan.acceptance.ledger_timeout_s * 1000))
        if run is not None:
            at = max(at, run.start_ms - TICK_MS)
        self.push(at, "event", ev.LedgerAnswer(True, f"{self.call_id}/hold", seconds, hold))

    def _record_name(self, t: int, max_ms: int) -> None:
        # The engine collects the caller's frames until max_ms have passed (whole ticks), then judges them.
        at = t + math.ceil(max_ms / TICK_MS) * TICK_MS
        invite = self.wire.trunk_invite_ms
        if invite is not None and t < invite - 2 < at + round(DEFAULT_TOLERANCE_S * 1000):
            at = invite - 2  # the check and the INVITE to the trunk followed the recording at once
        pcm = self.wire.call.facility_pcm[t * 8 : at * 8]
        voiced, duration_ms, clip = _judge_name(pcm)
        self._name_clip = clip
        self.push(at, "event", ev.NameRecorded(duration_ms, voiced))

    def _play(self, t: int, leg: Leg, out: dict[str, JsonValue]) -> None:
        prompt_id = str(out["prompt_id"])
        has_media = leg is F or (self.wire.called_answered_ms is not None and t >= self.wire.called_answered_ms)
        if not has_media or leg in self._down:
            self.push(t, "prompt", (ev.PromptFinished(leg, prompt_id), None), leg, self._token(leg))
            return
        start = max(t, self._busy_until[leg])
        length = self._rendered_ms(out)
        run = self.wire.run_at(leg, start)
        if run is not None and length is not None and self.wire.cut_short(run):
            run = None  # the audio stopped because a party hung up, not because the prompt ended
        # The earlier of the rendered end and the end of the engine's audio on the wire: a run longer
        # than the prompt is the next prompt queued right behind it (invalid_choice, announcement).
        ends = [x for x in (None if length is None else start + length, run.end_ms if run else None) if x is not None]
        end = min(ends) if ends else start
        self._busy_until[leg] = end
        note = None
        if run is not None and length is not None and run.end_ms < start + length - 3 * TICK_MS:
            note = (f"{prompt_id} to the {leg.value} leg: the wire's audio ends at {run.end_ms} ms, before the "
                    f"rendered prompt ({length} ms from {start} ms): a different prompt set? The wire's end is used")
        self.push(end + TICK_MS, "prompt", (ev.PromptFinished(leg, prompt_id), note), leg, self._token(leg))

    def _token(self, leg: Leg) -> int:
        self._seq += 1
        self._pending[leg].add(self._seq)
        return self._seq

    def _rendered_ms(self, out: dict[str, JsonValue]) -> int | None:
        from ivr.prompts import render

        variables = out.get("variables") or {}
        assert isinstance(variables, dict)
        clip = self._name_clip if variables.get("name") == "clip" else None
        key = json.dumps([out["prompt_id"], out["language"], variables, None if clip is None else len(clip)],
                         sort_keys=True)
        if key not in self._renders:
            try:
                rendered = render(str(out["prompt_id"]), str(out["language"]), variables, name_clip=clip)
                self._renders[key] = len(rendered.pcm) // 8
            except (ValueError, OSError) as exc:
                self._renders[key] = None
                self.notes.append(f"{out['prompt_id']}: not rendered ({exc}); its end taken from the wire's audio")
        return self._renders[key]

    # -------------------------------------------------------------- inputs from the wire

    def _name_phase(self) -> bool:
        w = self.wire
        need = NAME_PHASE_FRACTION * self.plan.identify.name_max_ms
        if w.answered_ms is None:
            return False
        if w.trunk_invite_ms is not None:
            return w.trunk_invite_ms - w.answered_ms >= need
        runs = w.runs.get(F, [])
        if not runs:
            return False
        after = runs[1].start_ms if len(runs) > 1 else (w.leg_end(F) or w.last_ms)
        return after - runs[0].end_ms >= need

    def load(self) -> None:
        """Queue every input the wire gives by itself (answers to the machine's orders come later)."""
        w = self.wire
        call = w.call
        facility = call.facility
        self.push(0, "event", ev.CallStarted(self.call_id, facility.number, _started_at(facility.invite_at),
                                             facility.inmate_id, facility.call_id))
        for f in w.facts:
            self._fact(f)
        starts = {F: w.answered_ms, C: w.called_answered_ms}
        heard = [LegAudio(leg, pcm, start, w.leg_end(leg))
                 for leg, pcm in ((F, call.facility_pcm), (C, call.called_pcm))
                 if (start := starts[leg]) is not None]
        for leg, t, item in detector_inputs(heard, self.plan):
            if isinstance(item, tuple):
                self.push(t, "key", item, leg)
                if leg is C:
                    self.inband_keys.append((t, item[0]))
            else:
                self.push(t, "leg_event", item, leg)
        for leg, start in starts.items():
            if start is not None:
                timeout = media_timeout(w.arrivals.get(leg, []), start, w.leg_end(leg) or w.last_ms,
                                        self.plan.policies.media_timeout_s, leg)
                if timeout is not None:
                    self.push(timeout[0], "leg_event", timeout[1], leg)

    def _fact(self, f: Fact) -> None:
        t = _ms(f.at_s)
        leg = Leg(f.leg)
        by = f.detail.get("by")
        party = by == f.leg
        if f.kind in ("bye", "cancel") and party:
            self.push(t, "event", ev.HangupReceived(leg))
        elif leg is C and f.kind == "ringing":
            self.push(t, "event", ev.CalledRinging())
        elif leg is C and f.kind == "answered":
            self.push(t, "event", ev.CalledAnswered())
        elif leg is C and f.kind == "failed":
            status = int(f.detail.get("status") or 0)  # type: ignore[arg-type]
            if status in (486, 600):
                self.push(t, "event", ev.CalledBusy(status))
            else:
                self.push(t, "event", ev.CalledFailed(status, str(f.detail.get("reason") or "")))
        elif f.kind == "key" and party:
            source = KeySource(str(f.detail.get("source")))
            self.push(t, "key", (str(f.detail["key"]), source, t), leg)
        elif f.kind == "hold" and party:
            self.push(t, "leg_event", ev.HoldDetected(leg, {
                "signal": "re-INVITE", "direction": str(f.detail.get("mode")), "rule": "RFC 3264 section 8.4",
                "source": "capture"}), leg)
        elif f.kind == "refer" and party:
            self.push(t, "leg_event", ev.TransferRequested(leg, {"signal": "REFER",
                                                                  "refer_to": f.detail.get("refer_to")}), leg)


def _due_ms(deadline_s: float) -> int:
    """The first whole millisecond at which a deadline (float seconds) is due, as the machine compares."""
    due = math.ceil(deadline_s * 1000 - 1e-6)
    while due / 1000 < deadline_s:  # 3.774 + 5.0 is 8.774000000000001 in binary floating point
        due += 1
    return due


def _judge_name(pcm: npt.NDArray[np.int16]) -> tuple[bool, int, npt.NDArray[np.int16] | None]:
    """The engine's ACC-1 rule (ivr.net.runner.CallSession._finish_name) over the recorded window."""
    n = len(pcm) // FRAME
    if n == 0:
        return False, 0, None
    blocks = pcm[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    rms = np.sqrt(np.mean(blocks**2, axis=1)) / 32768.0
    voiced = 20 * np.log10(np.maximum(rms, 1e-9)) > NAME_VOICE_DBFS
    if int(voiced.sum()) < NAME_MIN_VOICED_FRAMES:
        return False, n * FRAME // 8, None
    first, last = int(np.argmax(voiced)), n - int(np.argmax(voiced[::-1]))
    clip = blocks[max(0, first - 5) : min(n, last + 5)].astype(np.int16).reshape(-1)
    return True, len(clip) // 8, clip


DetectorItem = ev.Event | tuple[str, KeySource, int]


@dataclass(frozen=True, slots=True)
class LegAudio:
    """What one party sent, and when the engine's detectors listened to it (ms since the INVITE)."""

    leg: Leg
    pcm: npt.NDArray[np.int16]
    start_ms: int
    end_ms: int | None


def detector_inputs(legs: list[LegAudio], plan: Dialplan) -> list[tuple[Leg, int, DetectorItem]]:
    """The detectors over what each party sent, from the engine's start of that leg's media, mapped
    to machine inputs like ``Engine.detector_event``; in-band keys come back as (key, source, onset_ms).

    All legs run in one batched bank (one row each) on one 20 ms clock, as in the engine.
    """
    from ivr.detect import events as det
    from ivr.detect.bank import BatchedDetectorBank
    from ivr.detect.config import DetectorConfigs

    if not legs:
        return []
    configs = plan.detectors if isinstance(plan.detectors, DetectorConfigs) else DetectorConfigs()
    delay_ms = round(JitterBuffer().delay_s * 1000)
    spans = []
    for la in legs:
        first = math.ceil(la.start_ms / TICK_MS)
        last = len(la.pcm) // FRAME if la.end_ms is None else min(len(la.pcm) // FRAME, la.end_ms // TICK_MS)
        spans.append((first, last))
    bank = BatchedDetectorBank(len(legs), configs)
    block = np.zeros((len(legs), FRAME), dtype=np.int16)
    out: list[tuple[Leg, int, DetectorItem]] = []
    begin = min(first for first, _ in spans)
    end = max(last for _, last in spans)
    for k in range(begin, end):
        for row, (la, (first, last)) in enumerate(zip(legs, spans, strict=True)):
            if k == first:
                bank.reset_row(row, k * TICK_MS)  # the engine attaches a leg's row when its media starts
            block[row] = la.pcm[k * FRAME : (k + 1) * FRAME] if first <= k < last else 0
        at = (k + 1) * TICK_MS + delay_ms
        for row, events in enumerate(bank.feed(block, k * TICK_MS)):
            la, (first, last) = legs[row], spans[row]
            if not first <= k < last:
                continue
            for e in events:
                mapped = _map_detection(e, la.leg, det)
                if mapped is not None:
                    out.append((la.leg, at, mapped))
    return out


def _map_detection(e: Any, leg: Leg, det: Any) -> ev.Event | tuple[str, KeySource, int] | None:
    if isinstance(e, det.DtmfEvent):
        return (e.digit, KeySource.INBAND, e.start_ms)
    if isinstance(e, det.SilenceStarted):
        return ev.SilenceDetected(leg, max(0, e.at_ms - e.start_ms), e.evidence())
    if isinstance(e, det.SilenceEnded):
        return ev.SpeechDetected(leg)
    if isinstance(e, det.ToneEvent) and e.name == "call_waiting":
        return ev.CallWaitingTone(leg, dict(e.evidence(), tone=e.name))
    if isinstance(e, det.HookflashEvent):
        return ev.HookflashDetected(leg, e.evidence())
    if isinstance(e, det.NoiseStarted):
        return ev.NoiseDetected(leg, e.evidence())
    return None


def media_timeout(arrivals: list[int], start_ms: int, end_ms: int, timeout_s: float,
                  leg: Leg) -> tuple[int, ev.MediaTimeout] | None:
    """DIS-MEDIA: the first silence of the party's RTP longer than ``timeout_s`` while the leg was up
    (counting from the start of the leg's media if no packet came, as ``RtpReceiver.timed_out``)."""
    timeout_ms = round(timeout_s * 1000)
    last = start_ms
    count = 0
    for a in sorted(arrivals):
        if a < start_ms:
            continue
        if a - last > timeout_ms:
            break
        last = a
        count += 1
    else:
        if end_ms - last <= timeout_ms:
            return None
    evidence: Evidence = {"silent_s": round(timeout_s, 3), "timeout_s": timeout_s,
                          "last_packet_ms": last if count else None, "packets": count, "source": "capture"}
    return last + timeout_ms + 1, ev.MediaTimeout(leg, evidence)


# ------------------------------------------------------------------------------ the public entry point


def _call_id(call: CapturedCall) -> str:
    stamp = dt.datetime.fromtimestamp(call.t0, dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-pcap-{hashlib.sha1(call.facility.call_id.encode()).hexdigest()[:8]}"


def _replayable(call: CapturedCall) -> bool:
    """A call the engine took: the gateway's INVITE is in the capture and the engine answered it."""
    kinds = {(f.leg, f.kind) for f in call.facts}
    return ("facility", "invite") in kinds and ("facility", "answered") in kinds


def replay_capture(path: Path, dialplan: Dialplan, *, tolerance_s: float = DEFAULT_TOLERANCE_S,
                   log: Callable[[str], None] | None = None, audio_dir: Path | None = None) -> list[ReplayResult]:
    """Every call the engine answered in the capture, rebuilt, replayed and compared with the wire.

    With ``audio_dir``, each call's audio as the engine heard it is written like a call folder's
    (``<audio_dir>/<n>/facility.wav`` from the engine's answer, ``called.wav`` from the family's), for
    ``ivr.timeline.plot_timeline``; the folder is named in the result's ``expect["wire"]["audio_dir"]``.
    """
    calls = read_calls(path)
    datagrams = read_datagrams(path)
    results: list[ReplayResult] = []
    for call in calls:
        if not _replayable(call):
            if log is not None:
                log(f"{path}: {call.facility.call_id}: not replayed (the engine did not answer this INVITE)")
            continue
        result = replay_call(call, datagrams, dialplan, source=str(path), tolerance_s=tolerance_s)
        if audio_dir is not None:
            folder = audio_dir / str(len(results) + 1)
            write_call_audio(call, folder)
            result.flow.expect["wire"]["audio_dir"] = str(folder)
        results.append(result)
    return results


def write_call_audio(call: CapturedCall, folder: Path) -> None:
    """``facility.wav`` from the engine's answer and ``called.wav`` from the family's (8 kHz, 16 bit)."""
    import wave

    folder.mkdir(parents=True, exist_ok=True)
    starts: dict[str, float | None] = {"facility": None, "called": None}
    for f in call.facts:
        if f.kind == "answered" and starts.get(f.leg, 0.0) is None:
            starts[f.leg] = f.at_s
    for leg, pcm in (("facility", call.facility_pcm), ("called", call.called_pcm)):
        start = starts[leg]
        if start is None:
            continue
        with wave.open(str(folder / f"{leg}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm[round(start * 8000) :].astype("<i2").tobytes())


def replay_call(call: CapturedCall, datagrams: list[Datagram], dialplan: Dialplan, *, source: str = "capture",
                tolerance_s: float = DEFAULT_TOLERANCE_S) -> ReplayResult:
    wire = _wire(call, datagrams)
    driver = _Driver(dialplan, wire, _call_id(call))
    driver.load()
    driver.run()
    outcome, reason = wire_verdict(wire, dialplan, driver.inband_keys)
    expect: dict[str, Any] = {}
    if outcome is not None:
        expect["outcome"] = outcome
    if reason is not None:
        expect["reason"] = reason
    assumptions = list(ASSUMPTIONS)
    assumptions.append("name phase seen: the caller had no enrolled name clip" if driver.name_phase
                       else "no name phase: the caller had an enrolled name clip")
    expect["wire"] = {
        "outcome": outcome,
        "reason": reason,
        "hangups_ms": {leg.value: t for leg, t in sorted(wire.engine_ends.items())},
        "party_hangups_ms": {leg.value: t for leg, t in sorted(wire.party_ends.items())},
        "tolerance_s": tolerance_s,
        "assumptions": assumptions,
        "notes": driver.notes,
        "sip_call_id": call.facility.call_id,
    }
    flow = Flow(path=f"{source}#{call.facility.call_id}", name=call.facility.call_id,
                description=f"captured call {call.facility.call_id} to {call.facility.number}", dialplan=dialplan,
                expect=expect, inputs=tuple(driver.inputs), recorded_outputs=())
    result = run_flow(flow)
    if driver.machine.record is not None and result.record != driver.machine.record:
        result.mismatches.append("internal: the flow replay differs from the driven machine")
    if not wire.engine_ends and not wire.party_ends:
        result.mismatches.append(f"the capture ends before this call does (last message at {wire.last_ms} ms): "
                                 "its end cannot be compared")
    result.mismatches += compare_hangups(result.outputs, wire, tolerance_s)
    return result


def replay_hangups(outputs: list[dict[str, Any]]) -> dict[Leg, int]:
    """The first ``Hangup`` the replayed machine ordered on each leg (ms)."""
    out: dict[Leg, int] = {}
    for o in outputs:
        if o.get("out") == "Hangup":
            out.setdefault(Leg(o["leg"]), int(o["t_ms"]))
    return out


def compare_hangups(outputs: list[dict[str, Any]], wire: Wire, tolerance_s: float) -> list[str]:
    """The replayed hang-ups against the engine's BYE / CANCEL on the wire: same legs, same times."""
    replayed = replay_hangups(outputs)
    tol_ms = round(tolerance_s * 1000)
    problems: list[str] = []
    for leg in (F, C):
        a, b = replayed.get(leg), wire.engine_ends.get(leg)
        if a is None and b is None:
            continue
        if b is None:
            problems.append(f"replay hangs up the {leg.value} leg at {a} ms; the engine did not on the wire")
        elif a is None:
            problems.append(f"the engine hung up the {leg.value} leg at {b} ms on the wire; the replay did not")
        elif abs(a - b) > tol_ms:
            problems.append(f"{leg.value} leg hung up at {a} ms in the replay, at {b} ms on the wire "
                            f"(more than {tolerance_s} s apart)")
    return problems


def capture_summary(result: ReplayResult) -> dict[str, Any]:
    """One JSON-ready line per call for ``ivr replay capture.pcap``."""
    wire = dict(result.flow.expect.get("wire", {}))
    record = result.record
    return {
        "sip_call_id": wire.pop("sip_call_id", result.flow.name),
        "call_id": record.get("call_id"),
        "called_number": record.get("called_number"),
        "outcome": record.get("outcome"),
        "reason": record.get("reason"),
        "billed_seconds": record.get("billed_seconds"),
        "decision": record.get("decision"),
        "replay_hangups_ms": {leg.value: t for leg, t in sorted(replay_hangups(result.outputs).items())},
        "wire": wire,
        "inputs": len(result.flow.inputs),
        "ok": result.ok,
        "mismatches": result.mismatches,
    }
