"""The B2BUA service (DESIGN.md sections 1, 5): facility leg in, trunk leg out, one CallMachine per call.

Runs on asyncio: one SIP socket (ivr.net.sip_udp) for both sides, two RTP sockets per call
(ivr.net.rtp_udp), one shared 20 ms pacer for every stream we send, one 20 ms media tick that
pulls every leg's received audio and runs the detectors batched over all legs at once
(ivr.detect.bank.BatchedDetectorBank), and one worker thread for the ledger and the roster (SQL),
which keeps each call's money operations in the order the machine ordered them.

Security: INVITEs are accepted only from configured facility gateways (source address); anything
else gets 403. ``X-Inmate-Id`` is trusted because only gateways get this far.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import gc
import random
import secrets
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr import native
from ivr.call import events as ev
from ivr.dialplan import E164, Dialplan, load_dialplan, load_dialplans
from ivr.log import bind_call, get_logger
from ivr.net.detector_pool import DetectorPool
from ivr.net.media_path import pair
from ivr.net.rtp_udp import RtpEndpoint, RtpPacer
from ivr.net.runner import CallSession, LegIO, remote_media
from ivr.net.sip_udp import SipUdpEndpoint, open_sip_endpoint
from ivr.rtp.leg import MediaLeg
from ivr.sip import events as sip
from ivr.sip.sdp import NoCommonCodecError, build_answer, build_offer, is_hold
from ivr.sip.useragent import UAConfig, UserAgent
from ivr.types import Leg

log = get_logger("ivr.engine")

Addr = tuple[str, int]
TICK_S = 0.02
SWEEP_EVERY_TICKS = 3000  # once a minute: void holds whose timeout passed (a crashed engine's, ACT-3)
# Every 10 minutes: the full garbage collection (see start()). An ended call leaves no reference
# cycle (its endpoints drop their handlers on close, its legs' paths each other): measured with
# bench/engine_capacity, 33 objects collected after 200 calls had ended, against 64,373 after 400
# before. So the collection is only a safety net, and each one stops the loop (12.9 ms with 200
# calls up, 37.3 ms with 400: logged as gc_full).
FULL_GC_EVERY_TICKS = 30_000


@dataclass(frozen=True, slots=True)
class Gateway:
    """A facility gateway allowed to send us INVITEs, and the facility (dialplan) its calls belong to."""

    host: str
    facility_id: str


@dataclass(frozen=True, slots=True)
class EngineConfig:
    listen: Addr = ("127.0.0.1", 5060)
    gateways: tuple[Gateway, ...] = ()
    trunk: Addr = ("127.0.0.1", 5070)
    trunk_host: str | None = None  # the host part of the Request-URI (default: the trunk's address)
    trunk_username: str | None = None
    trunk_password: str | None = None
    register: bool = False
    dialplans: tuple[Path, ...] = ()  # dialplan files; or every *.toml of dialplans_dir
    dialplans_dir: Path | None = None
    db_url: str = "sqlite:///ivr.db"
    recordings_dir: Path = Path("recordings")
    rtp_host: str = "127.0.0.1"
    rtp_port_range: tuple[int, int] | None = None
    prompts_dir: Path | None = None
    check_rate_caps: bool = True
    # The engine owns its process (``ivr serve``): tune the garbage collector for the media path
    # (see Engine.start). Off when the engine shares a process (tests, ``ivr demo``).
    manage_gc: bool = False


@dataclass(slots=True)
class EngineStats:
    calls_started: int = 0
    calls_ended: int = 0
    rejected_403: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Engine:
    """The live engine. ``await start()``; ``await stop()`` ends every call cleanly."""

    def __init__(self, config: EngineConfig, *, ledger: Any = None, roster: Any = None) -> None:
        self.config = config
        self.loop = asyncio.get_event_loop()
        self.plans = self._load_plans()
        self._ledger = ledger
        self._roster = roster
        self.prompts_dir = config.prompts_dir
        self.sessions: dict[str, CallSession] = {}
        self._sip_legs: dict[str, tuple[CallSession, Leg]] = {}
        self._active: dict[str, CallSession] = {}  # sessions with tick work (see note_active)
        self.detectors = DetectorPool()
        self.pacer: RtpPacer
        self.sip: SipUdpEndpoint
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="ivr-ledger")
        self._tick_handle: asyncio.TimerHandle | None = None
        self._tick_origin = 0.0
        self._tick_n = 0
        self._bank_frame = 0
        self.stats = EngineStats()
        self.on_record: list[Callable[[dict[str, Any], Path], None]] = []
        self._stopping = False
        self._tasks: set[asyncio.Future[Any]] = set()

    # ------------------------------------------------------------------ setup

    def _load_plans(self) -> dict[str, Dialplan]:
        as_of = dt.date.today() if self.config.check_rate_caps else None
        plans: dict[str, Dialplan] = {}
        if self.config.dialplans_dir is not None:
            plans.update(load_dialplans(self.config.dialplans_dir, as_of=as_of))
        for path in self.config.dialplans:
            plan = load_dialplan(path, as_of=as_of)
            plans[plan.facility.id] = plan
        return plans

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            from ledger.service import LedgerService

            self._ledger = LedgerService(self.config.db_url)
        return self._ledger

    @property
    def roster(self) -> Any:
        if self._roster is None:
            from ivr.roster import Roster

            self._roster = Roster(self.config.db_url)
        return self._roster

    def now(self) -> float:
        return self.loop.time()

    @property
    def bank_ms(self) -> int:
        """The detectors' clock: exactly 20 ms per media tick (never skips, unlike the tick grid)."""
        return self._bank_frame * 20

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        credentials = None
        if self.config.trunk_username:
            from ivr.sip.useragent import Credentials

            credentials = Credentials(self.config.trunk_username, self.config.trunk_password or "")
        # Only gateways may INVITE us: everyone else gets a stateless 403 (RFC 3261 section 8.2.7), so
        # a flood costs no transaction state and no retransmissions (DESIGN.md section 5, security).
        ua = UserAgent(UAConfig(local_addr=self.config.listen, credentials=credentials,
                                outbound_proxy=self.config.trunk,
                                invite_sources=frozenset(g.host for g in self.config.gateways)))
        self.sip = await open_sip_endpoint(ua, self.config.listen, self._on_sip, loop=self.loop)
        self.pacer = RtpPacer(self.loop)
        # Touch the ledger and roster now: a bad database URL fails at start, not on the first call.
        await self.loop.run_in_executor(self._worker, lambda: (self.ledger, self.roster))
        if self.config.register and self.config.trunk_username:
            host = self.config.trunk_host or self.config.trunk[0]
            aor = f"sip:{self.config.trunk_username}@{host}"
            registrar = f"sip:{host}"
            self.sip.command(lambda ua, now: ua.register(registrar, aor, now, dest=self.config.trunk))
        # Everything loaded so far (modules, dialplans, the ledger's ORM, prompts) lives as long as
        # the engine: move it out of the collector's reach. A full collection scans every tracked
        # object, and with the start-up heap in it each one stalled the loop 100-150 ms (measured
        # at 150 calls with gc.callbacks) every few seconds, delaying every relayed packet as much.
        # The call objects still make a full collection cost tens of ms, so the collector's own
        # trigger for it is set out of reach and the tick runs it on a fixed cadence instead
        # (FULL_GC_EVERY_TICKS); the young generations are collected as usual.
        if self.config.manage_gc:
            gc.collect()
            gc.freeze()
            young, middle, _ = gc.get_threshold()
            gc.set_threshold(young, middle, 1_000_000)
        self._tick_origin = self.loop.time()
        self._schedule_tick()
        media = native.status()
        log.info("engine_started", listen=f"{self.sip.local_addr[0]}:{self.sip.local_addr[1]}",
                 facilities=sorted(self.plans), trunk=f"{self.config.trunk[0]}:{self.config.trunk[1]}",
                 media_path=media["path"], media_path_why=media["why"])

    @property
    def sip_address(self) -> Addr:
        return self.sip.local_addr

    async def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM: every call ends now (settled; free if not yet accepted), then the sockets close."""
        self._stopping = True
        for session in list(self.sessions.values()):
            with bind_call(session.call_id):
                session.feed(ev.ShutdownRequested("engine stopping"))
        deadline = self.loop.time() + timeout_s
        while self.sessions and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        # Let the BYEs and the ledger's last writes go out.
        await self.loop.run_in_executor(self._worker, lambda: None)
        await asyncio.sleep(0.1)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self.sip.close()
        self._worker.shutdown(wait=True)
        log.info("engine_stopped", calls=self.stats.calls_started)

    def install_signal_handlers(self, done: asyncio.Event) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, done.set)

    # ------------------------------------------------------------------ work off the loop

    def background(self, session: CallSession, work: Callable[[], Any], deliver: bool | None = True) -> None:
        """Run ledger/roster work on the worker thread (in order); feed its event back to the call."""
        future = self.loop.run_in_executor(self._worker, work)

        def done(f: asyncio.Future[Any]) -> None:
            try:
                result = f.result()
            except Exception:
                log.exception("background_failed", call_id=session.call_id)
                return  # the machine's own deadline (ledger_timeout_s) decides what happens next
            if deliver and isinstance(result, _EVENT_CLASSES):
                with bind_call(session.call_id):
                    session.feed(result)

        future.add_done_callback(done)

    # ------------------------------------------------------------------ SIP

    def _gateway(self, source: Addr) -> Gateway | None:
        return next((g for g in self.config.gateways if g.host == source[0]), None)

    def _on_sip(self, events: list[sip.UAEvent]) -> None:
        for event in events:
            try:
                self._sip_event(event)
            except Exception:
                log.exception("sip_event_failed", event=type(event).__name__)

    def _sip_event(self, event: sip.UAEvent) -> None:
        if isinstance(event, sip.InviteReceived):
            self._invite(event)
            return
        call_id = getattr(event, "call_id", None)
        if call_id is None or call_id not in self._sip_legs:
            return
        session, leg = self._sip_legs[call_id]
        with bind_call(session.call_id, leg.value):
            self._leg_event(session, leg, event)

    def _leg_event(self, session: CallSession, leg: Leg, event: sip.UAEvent) -> None:
        io = session.legs[leg]
        if isinstance(event, sip.CallRinging):
            session.feed(ev.CalledRinging())
        elif isinstance(event, sip.CallAnswered):
            if event.sdp is not None and io.local_sdp is not None:
                try:
                    io.media = MediaLeg(leg, random.Random(), self.now(), remote_media(io.local_sdp, event.sdp))
                except NoCommonCodecError:
                    log.warning("no_common_codec", call_id=session.call_id)
            session._start_media(io)
            session.feed(ev.CalledAnswered())
        elif isinstance(event, sip.CallFailed):
            if leg is Leg.CALLED:
                if event.status in (486, 600):
                    session.feed(ev.CalledBusy(event.status))
                else:
                    session.feed(ev.CalledFailed(event.status, event.reason))
            else:
                session.feed(ev.HangupReceived(leg))
        elif isinstance(event, sip.CallCancelled | sip.ByeReceived):
            session.feed(ev.HangupReceived(leg))
        elif isinstance(event, sip.KeyReceived):
            if io.media is not None:
                press = io.media.info_key(event.key, self.now())
                if press is not None:
                    session.feed(ev.KeyPressed(press.key, leg, press.source))
        elif isinstance(event, sip.HoldDetected):
            m = event.sdp.audio()
            session.feed(ev.HoldDetected(leg, {
                "signal": "re-INVITE", "direction": str(event.sdp.stream_direction(m).value) if m else "none",
                "connection": (event.sdp.stream_address(m) if m else None) or "", "rule": "RFC 3264 section 8.4"}))
        elif isinstance(event, sip.TransferRequested):
            session.feed(ev.TransferRequested(leg, {"signal": "REFER", "refer_to": event.refer_to}))
        elif isinstance(event, sip.MediaUpdated) and io.media is not None and not is_hold(event.remote_sdp):
            with contextlib.suppress(NoCommonCodecError):  # the UA already answered 488
                io.media.update_remote(remote_media(event.local_sdp, event.remote_sdp))

    def _invite(self, event: sip.InviteReceived) -> None:
        gateway = self._gateway(event.source)
        if gateway is None or self._stopping:
            status = 403 if gateway is None else 503
            self.stats.rejected_403 += gateway is None
            self.sip.command(lambda ua, now: ua.reject(event.call_id, status, now))
            return
        plan = self.plans.get(gateway.facility_id)
        number = _user_part(event.request_uri)
        if plan is None or not E164.match(number) or event.sdp is None:
            status = 404 if plan is None or not E164.match(number) else 488
            self.sip.command(lambda ua, now: ua.reject(event.call_id, status, now))
            return
        call_id = _new_call_id()
        folder = self.config.recordings_dir / call_id
        self._spawn(self._open_facility_leg(event, plan, call_id, folder, number))

    async def _open_facility_leg(self, event: sip.InviteReceived, plan: Dialplan, call_id: str, folder: Path,
                                 number: str) -> None:
        holder: dict[str, Any] = {}
        endpoint = await RtpEndpoint.open(
            lambda p, s, t: holder["s"].on_rtp(holder["io"], p, s, t) if "s" in holder else None,
            host=self.config.rtp_host, port_range=self.config.rtp_port_range)
        io = LegIO(Leg.FACILITY, endpoint, sip_call_id=event.call_id)
        host, port = endpoint.local_address
        assert event.sdp is not None
        try:
            answer = build_answer(event.sdp, host, port, session_id=secrets.randbelow(2**31))
            io.local_sdp = answer
            io.media = MediaLeg(Leg.FACILITY, random.Random(), self.now(), remote_media(answer, event.sdp))
        except NoCommonCodecError:
            endpoint.close()
            self.sip.command(lambda ua, now: ua.reject(event.call_id, 488, now))
            return
        session = CallSession(self, plan, call_id, io, folder)
        holder["s"], holder["io"] = session, io
        endpoint.set_datagram_handler(io.path)
        self.sessions[call_id] = session
        self._sip_legs[event.call_id] = (session, Leg.FACILITY)
        self.stats.calls_started += 1
        started_at = facility_time(plan).isoformat(timespec="milliseconds")
        with bind_call(call_id, "facility"):
            log.info("call_started", number=number, gateway=event.source[0], facility=plan.facility.id)
            session.feed(ev.CallStarted(call_id, number, started_at, event.inmate_id, event.call_id))

    def _spawn(self, coro: Any) -> None:
        """Run a coroutine; keep a reference until it is done (asyncio only keeps weak ones)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def place_call(self, session: CallSession, number: str) -> None:
        self._spawn(self._place_call(session, number))

    async def _place_call(self, session: CallSession, number: str) -> None:
        holder: dict[str, Any] = {}
        endpoint = await RtpEndpoint.open(
            lambda p, s, t: session.on_rtp(holder["io"], p, s, t) if "io" in holder else None,
            host=self.config.rtp_host, port_range=self.config.rtp_port_range)
        io = LegIO(Leg.CALLED, endpoint)
        holder["io"] = io
        endpoint.set_datagram_handler(io.path)
        session.legs[Leg.CALLED] = io
        pair(io.path, session.legs[Leg.FACILITY].path)
        host, port = endpoint.local_address
        offer = build_offer(host, port, session_id=secrets.randbelow(2**31))
        io.local_sdp = offer
        trunk_host = self.config.trunk_host or self.config.trunk[0]
        uri = f"sip:{number}@{trunk_host}"
        if session.machine.ended:
            endpoint.close()
            return
        sip_id = self.sip.command(lambda ua, now: ua.invite(uri, offer, now, dest=self.config.trunk))
        io.sip_call_id = sip_id
        self._sip_legs[sip_id] = (session, Leg.CALLED)

    # ------------------------------------------------------------------ media tick

    def _schedule_tick(self) -> None:
        self._tick_n += 1
        at = self._tick_origin + self._tick_n * TICK_S
        now = self.loop.time()
        if at < now - 0.2:  # we fell far behind: resynchronise instead of bursting
            self._tick_n = int((now - self._tick_origin) / TICK_S) + 1
            at = self._tick_origin + self._tick_n * TICK_S
        self._tick_handle = self.loop.call_at(at, self._tick)

    def note_active(self, session: CallSession) -> None:
        """``session`` may have tick work: a prompt queued, a bridge to complete, an RFC 4733 timer.

        The tick visits only these sessions (a bridged call with none of them has nothing to do),
        so its per-call Python grows with the work, not with the calls held.
        """
        self._active[session.call_id] = session

    def _tick(self) -> None:
        now = self.loop.time()
        try:
            self.detectors.tick(now, self.bank_ms)
            for session in list(self._active.values()):
                busy = [io for io in session.legs.values() if io.media is not None
                        and (io.prompts or session._pending_bridge or _due(io.media.next_deadline(), now))]
                if busy:
                    with bind_call(session.call_id):
                        for io in busy:
                            session.prompts_finished(io)
                            for item in io.media.handle_timer(now) if _due(io.media.next_deadline(), now) else []:  # type: ignore[union-attr]
                                session._leg_event(io, item)
                if not session._pending_bridge and not any(
                        io.prompts or (io.media is not None and io.media.next_deadline() is not None)
                        for io in session.legs.values()):
                    self._active.pop(session.call_id, None)  # idle until note_active again
            if self._tick_n % 25 == 0:
                for session in list(self.sessions.values()):
                    self._check_media(session, now)
            if self._tick_n % SWEEP_EVERY_TICKS == 0:
                self._sweep_holds()
            if self.config.manage_gc and self._tick_n % FULL_GC_EVERY_TICKS == 0:
                # Ended calls' reference cycles (sockets' handlers refer to their call). Logged with
                # its duration: the loop (every call's media) stands still for that long.
                started = self.loop.time()
                found = gc.collect()
                log.info("gc_full", ms=round((self.loop.time() - started) * 1000, 1), collected=found,
                         calls=len(self.sessions))
        except Exception:
            log.exception("tick_failed")
        self._bank_frame += 1
        self._schedule_tick()

    def _sweep_holds(self) -> None:
        ledger = self._ledger
        sweep = getattr(ledger, "sweep", None)
        if sweep is None:
            return
        at = dt.datetime.now(dt.UTC)

        def run() -> None:
            voided = sweep(at)
            if voided:
                log.warning("holds_swept", holds=list(voided))

        self._worker.submit(run)

    def _check_media(self, session: CallSession, now: float) -> None:
        timeout = session.plan.policies.media_timeout_s
        for io in list(session.legs.values()):
            if io.media is None or session.ended:
                continue
            timed_out = io.media.media_timeout(now, timeout)
            if timed_out is not None:
                with bind_call(session.call_id):  # bound only when there is something to log
                    session.feed(ev.MediaTimeout(io.leg, timed_out.evidence))

    def detector_event(self, session: CallSession, io: LegIO, event: Any) -> None:
        from ivr.detect import events as det

        with bind_call(session.call_id, io.leg.value):
            if isinstance(event, det.DtmfEvent):
                if io.media is not None:
                    # The detector reports at the tone's end; de-duplication compares press onsets (ACC-5).
                    onset = self.now() - (self.bank_ms - event.start_ms) / 1000
                    press = io.media.inband_key(event.digit, self.now(), started_at=onset)
                    if press is not None:
                        session.feed(ev.KeyPressed(press.key, io.leg, press.source))
            elif isinstance(event, det.SilenceStarted):
                # Both times are the detectors' clock: how long the leg has been silent when detected.
                session.feed(ev.SilenceDetected(io.leg, max(0, event.at_ms - event.start_ms), event.evidence()))
            elif isinstance(event, det.SilenceEnded):
                session.feed(ev.SpeechDetected(io.leg))
            elif isinstance(event, det.ToneEvent) and event.name == "call_waiting":
                session.feed(ev.CallWaitingTone(io.leg, dict(event.evidence(), tone=event.name)))
            elif isinstance(event, det.HookflashEvent):
                session.feed(ev.HookflashDetected(io.leg, event.evidence()))
            elif isinstance(event, det.NoiseStarted):
                session.feed(ev.NoiseDetected(io.leg, event.evidence()))

    # ------------------------------------------------------------------ the end of a call

    def call_ended(self, session: CallSession, record: dict[str, Any]) -> None:
        self.stats.calls_ended += 1
        outcome = str(record.get("outcome"))
        self.stats.outcomes[outcome] = self.stats.outcomes.get(outcome, 0) + 1
        log.info("call_ended", call_id=session.call_id, outcome=outcome, reason=record.get("reason"),
                 billed_seconds=record.get("billed_seconds"))
        for hook in self.on_record:
            hook(record, session.folder)
        self.loop.call_later(1.0, self._forget, session)

    def _forget(self, session: CallSession) -> None:
        """Close the call's sockets a moment after its end (late retransmissions still find a home)."""
        for io in session.legs.values():
            self.detectors.detach(io)
            io.endpoint.close()
            io.path.peer = None  # the two legs' paths refer to each other (see RtpEndpoint.close)
            if io.sip_call_id is not None:
                self._sip_legs.pop(io.sip_call_id, None)
        self.sessions.pop(session.call_id, None)
        self._active.pop(session.call_id, None)


_EVENT_CLASSES = tuple(ev.EVENT_TYPES.values())


def facility_time(plan: Dialplan, utc_now: dt.datetime | None = None) -> dt.datetime:
    """Now at the facility (its ``timezone``; else the engine host's): decides weekday/weekend (LIM-1)."""
    now = utc_now or dt.datetime.now(dt.UTC)
    if plan.facility.timezone:
        from zoneinfo import ZoneInfo

        return now.astimezone(ZoneInfo(plan.facility.timezone))
    return now.astimezone()


def _due(deadline: float | None, now: float) -> bool:
    return deadline is not None and deadline <= now


def _user_part(uri: str) -> str:
    """``sip:+15551234567@host;params`` -> ``+15551234567``."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    return rest.split("@", 1)[0].split(";", 1)[0]


def _new_call_id() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{secrets.token_hex(4)}"

