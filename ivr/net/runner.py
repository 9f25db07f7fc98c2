"""One call in the live engine: the CallMachine's commands carried out, its inputs gathered.

This is an adapter: it owns no call logic. SIP and RTP facts become machine events; machine
commands become SIP requests (through the engine's user agent), RTP audio (prompts queued on the
leg's paced sender), ledger and roster calls (on the engine's worker thread, in order) and, at the
end, the call's folder: ``record.json``, ``events.jsonl``, ``facility.wav``, ``called.wav``
(never for privileged numbers, REG-3) and ``name.wav``.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ivr.call import commands as cmd
from ivr.call import events as ev
from ivr.call.journal import journal_lines
from ivr.call.machine import CallMachine
from ivr.call.record import dumps_pretty
from ivr.dialplan import Dialplan
from ivr.log import get_logger
from ivr.net.media_path import LegPath
from ivr.rtp.g711 import Codec
from ivr.rtp.keys import KeyPress
from ivr.rtp.leg import MediaLeg, RemoteMedia
from ivr.rtp.rfc4733 import FlashEvent
from ivr.sip.sdp import SessionDescription, negotiate
from ivr.types import JsonValue, KeySource, Leg

if TYPE_CHECKING:
    from ivr.engine import Engine
    from ivr.net.rtp_udp import RtpEndpoint

log = get_logger("ivr.call")

FRAME = 160  # 20 ms at 8 kHz
RECORD_BLOCK = 50  # frames (1 s) buffered per leg before a write to its WAV
NAME_VOICE_DBFS = -42.0  # a 20 ms frame louder than this is speech in the name recording (ACC-1)
NAME_MIN_VOICED_FRAMES = 8  # 160 ms of voice makes a name


def remote_media(local: SessionDescription, remote: SessionDescription) -> RemoteMedia:
    """The RTP parameters offer/answer settled (RFC 3264) for a leg."""
    params = negotiate(local, remote)
    codec = Codec.PCMA if params.codec.name.upper() == "PCMA" else Codec.PCMU
    ours = local.audio()
    local_te = next((c.payload_type for c in (ours.codecs if ours else [])
                     if c.name.lower() == "telephone-event"), None)
    return RemoteMedia((params.remote_address, params.remote_port), codec, params.dtmf_payload_type, local_te)


@dataclass(slots=True)
class LegIO:
    """The live parts of one leg: SIP dialog id, RTP socket, media state, detector row, recorder."""

    leg: Leg
    endpoint: RtpEndpoint
    sip_call_id: str | None = None
    local_sdp: SessionDescription | None = None  # our answer (facility) or offer (called)
    detector: tuple[Any, int] | None = None  # (bank, row) in the engine's detector pool
    origin_ms: int = 0  # the detector row's time origin (engine clock, ms)
    wav: wave.Wave_write | None = None
    prompts: list[str] = field(default_factory=list)  # tags queued, in order
    paced: bool = False
    _pending_audio: list[bytes] = field(default_factory=list)  # frames not yet written to ``wav``
    # The endpoint's datagram handler; it owns the leg's MediaLeg (``media`` below).
    path: LegPath = field(init=False)

    def __post_init__(self) -> None:
        self.path = LegPath(self.endpoint)

    @property
    def media(self) -> MediaLeg | None:
        """The leg's RTP state, once its SDP is known."""
        return self.path.media

    @media.setter
    def media(self, value: MediaLeg | None) -> None:
        self.path.media = value

    def record_pcm(self, frame: bytes) -> None:
        """Append one 20 ms frame (16-bit little-endian PCM) to the leg's recording; written in blocks
        of ``RECORD_BLOCK`` frames (one write a second instead of fifty; ``flush_recording`` at the end)."""
        self._pending_audio.append(frame)
        if len(self._pending_audio) >= RECORD_BLOCK:
            self.flush_recording()

    def flush_recording(self) -> None:
        if self.wav is not None and self._pending_audio:
            # writeframes() seeks back and rewrites the RIFF header on every call; close() patches it once.
            self.wav.writeframesraw(b"".join(self._pending_audio))
        self._pending_audio.clear()


class CallSession:
    """One call: a CallMachine, its two legs, and the files it leaves behind."""

    def __init__(self, engine: Engine, plan: Dialplan, call_id: str, facility: LegIO, folder: Path) -> None:
        self.engine = engine
        self.plan = plan
        self.call_id = call_id
        self.machine = CallMachine(plan)
        self.legs: dict[Leg, LegIO] = {Leg.FACILITY: facility}
        self.folder = folder
        self.name_clip: npt.NDArray[np.int16] | None = None
        self.name_frames: list[npt.NDArray[np.int16]] | None = None
        self._name_until = 0.0
        self._name_started = 0.0
        self.bridged = False
        self.record_audio = True
        self._timer: Any = None
        self._rng = random.Random()
        self.ended = False
        self._pending_bridge = False
        self.detections: list[dict[str, Any]] = []
        # The machine runs on call-relative, whole-millisecond time: the same numbers its journal
        # records, so a replay of events.jsonl computes every deadline bit for bit like the live call.
        self.clock0 = engine.now()

    # ------------------------------------------------------------------ machine pump

    def feed(self, event: ev.Event) -> None:
        """Hand one input to the machine at the engine's ``now``; carry out what it orders."""
        if self.machine.ended and self.ended:
            return
        now = self.call_time()
        try:
            commands = self.machine.handle(event, now)
        except Exception:  # a bug must not take the engine down with it
            log.exception("machine_error", call_id=self.call_id, event=type(event).__name__)
            commands = self.machine.handle(ev.ShutdownRequested("internal error"), now)
        self._run(commands)
        self._rearm()

    def call_time(self) -> float:
        """Seconds since the call started, rounded to the millisecond (see ``clock0``)."""
        return round((self.engine.now() - self.clock0) * 1000) / 1000

    def _on_timer(self) -> None:
        self._timer = None
        self.feed(ev.TimerFired())

    def _rearm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.machine.next_deadline()
        if deadline is not None and not self.machine.ended:
            self._timer = self.engine.loop.call_at(self.clock0 + deadline + 0.0005, self._on_timer)

    def _run(self, commands: list[cmd.Command]) -> None:
        for command in commands:
            handler: Callable[[Any], None] = getattr(self, f"_do_{type(command).__name__}")
            try:
                handler(command)
            except Exception:
                log.exception("command_failed", call_id=self.call_id, command=type(command).__name__)

    # ------------------------------------------------------------------ commands

    def _do_AnswerCall(self, c: cmd.AnswerCall) -> None:  # noqa: N802 - named after the command
        io = self.legs[Leg.FACILITY]
        assert io.sip_call_id is not None
        answer = io.local_sdp
        assert answer is not None
        self.engine.sip.command(lambda ua, now: ua.answer(io.sip_call_id or "", answer, now))
        self._start_media(io)

    def _do_IdentifyCaller(self, c: cmd.IdentifyCaller) -> None:  # noqa: N802
        facility_id = self.plan.facility.id

        def lookup() -> ev.Event:
            roster = self.engine.roster
            caller = roster.get(c.caller_id) if c.caller_id else roster.verify_pin(c.pin or "", facility_id)
            if caller is None or caller.facility_id != facility_id:
                return ev.CallerRejected("not on this facility's roster")
            clip = _read_clip(caller.name_clip_path)
            if clip is not None:
                self.name_clip = clip
            return ev.CallerIdentified(caller.id, caller.name, caller.status, clip is not None)

        self.engine.background(self, lookup)

    def _do_PlayPrompt(self, c: cmd.PlayPrompt) -> None:  # noqa: N802
        from ivr.prompts import render

        variables = dict(c.variables)
        clip = self.name_clip if variables.get("name") == "clip" else None
        rendered = render(c.prompt_id, c.language, variables, name_clip=clip, prompts_dir=self.engine.prompts_dir)
        for leg in c.legs:
            io = self.legs.get(leg)
            if io is None or io.media is None:
                # The leg has no media (yet): the prompt cannot be heard; report it done so the
                # machine does not wait for it.
                self.engine.loop.call_soon(self.feed, ev.PromptFinished(leg, c.prompt_id))
                continue
            if self.bridged:
                self._pause_bridge()
            io.media.sender.queue_audio(rendered.pcm, tag=c.prompt_id)
            io.prompts.append(c.prompt_id)
            self.engine.note_active(self)

    def _do_StopPrompt(self, c: cmd.StopPrompt) -> None:  # noqa: N802
        io = self.legs.get(c.leg)
        if io is not None and io.media is not None:
            io.media.sender.clear_audio()
            io.prompts.clear()

    def _do_StartRecording(self, c: cmd.StartRecording) -> None:  # noqa: N802
        now = self.engine.now()
        self.name_frames = []
        self._name_started = now
        self._name_until = now + c.max_ms / 1000

    def _do_CheckCall(self, c: cmd.CheckCall) -> None:  # noqa: N802
        from ledger.api import Allowed

        facts = self._facts(c.call_type)

        def check() -> ev.Event:
            answer = self.engine.ledger.check(facts)
            if isinstance(answer, Allowed):
                return ev.CallChecked(True, account_kind=answer.kind)
            return ev.CallChecked(False, reason=answer.reason, detail=answer.detail)

        self.engine.background(self, check)

    def _do_PlaceCall(self, c: cmd.PlaceCall) -> None:  # noqa: N802
        self.engine.place_call(self, c.called_number)

    def _do_Bridge(self, c: cmd.Bridge) -> None:  # noqa: N802
        self.record_audio = c.record and self.record_audio
        self.bridged = True
        if not any(io.prompts for io in self.legs.values()):
            self._bridge_media()
        else:
            self._pending_bridge = True
            self.engine.note_active(self)

    def _do_Unbridge(self, c: cmd.Unbridge) -> None:  # noqa: N802
        self.bridged = False
        self._pending_bridge = False
        self._pause_bridge()

    def _do_ReserveFunds(self, c: cmd.ReserveFunds) -> None:  # noqa: N802
        from ledger.api import Authorized

        facts = self._facts(c.call_type)

        def reserve() -> ev.Event:
            answer = self.engine.ledger.authorize(facts)
            if isinstance(answer, Authorized):
                return ev.LedgerAnswer(True, answer.hold_id, answer.allowed_seconds, answer.hold_minor)
            return ev.LedgerAnswer(False, reason=answer.reason, detail=answer.detail)

        self.engine.background(self, reserve)

    def _do_PostCharge(self, c: cmd.PostCharge) -> None:  # noqa: N802
        at = _utcnow()
        self.engine.background(
            self, lambda: self.engine.ledger.settle(c.call_id, c.billed_seconds, c.reason, c.system_drop, at), None
        )

    def _do_VoidReservation(self, c: cmd.VoidReservation) -> None:  # noqa: N802
        at = _utcnow()
        self.engine.background(self, lambda: self.engine.ledger.void(c.call_id, c.reason, at), None)

    def _do_BlockNumber(self, c: cmd.BlockNumber) -> None:  # noqa: N802
        at = _utcnow()
        self.engine.background(
            self,
            lambda: self.engine.ledger.block(c.called_number, c.facility_id, c.reason, "called party (ACC-6)", at),
            None,
        )

    def _do_Hangup(self, c: cmd.Hangup) -> None:  # noqa: N802
        io = self.legs.get(c.leg)
        if io is None or io.sip_call_id is None:
            return
        sip_id = io.sip_call_id
        self.engine.sip.command(lambda ua, now: ua.hangup(sip_id, now))
        self._stop_media(io)

    def _do_WriteRecord(self, c: cmd.WriteRecord) -> None:  # noqa: N802
        self.ended = True
        for io in self.legs.values():
            self._stop_media(io)
            if io.wav is not None:
                io.flush_recording()
                io.wav.close()
                io.wav = None
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "record.json").write_text(dumps_pretty(c.record) + "\n", encoding="utf-8")
        with open(self.folder / "events.jsonl", "w", encoding="utf-8") as journal:
            for line in journal_lines(self.machine):
                journal.write(line + "\n")
        with open(self.folder / "detections.jsonl", "w", encoding="utf-8") as out:
            for entry in self.detections:
                out.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        if self.machine.call_type == "privileged":  # REG-3: never recorded
            for name in ("facility.wav", "called.wav", "name.wav"):
                (self.folder / name).unlink(missing_ok=True)
        self.engine.call_ended(self, c.record)

    # ------------------------------------------------------------------ media

    def _start_media(self, io: LegIO) -> None:
        if io.media is None:
            return
        self.engine.pacer.add(io.endpoint, io.media.sender, lambda: io.media.destination if io.media else None)
        io.paced = True
        self.engine.note_active(self)
        self.engine.detectors.attach(self, io)
        if self.record_audio and self.plan.call_type_for(self.machine.called_number) != "privileged":
            self.folder.mkdir(parents=True, exist_ok=True)
            wav = wave.open(str(self.folder / f"{io.leg.value}.wav"), "wb")  # noqa: SIM115 - closed at the end
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(8000)
            io.wav = wav

    def _stop_media(self, io: LegIO) -> None:
        if io.media is not None and io.paced:
            self.engine.pacer.remove(io.media.sender)
            io.paced = False
        if io.media is not None:
            io.media.unbridge()
        self.engine.detectors.detach(io)

    def _bridge_media(self) -> None:
        f, c = self.legs.get(Leg.FACILITY), self.legs.get(Leg.CALLED)
        if f is None or c is None or f.media is None or c.media is None:
            return
        for io in (f, c):
            if io.paced:
                self.engine.pacer.remove(io.media.sender)  # type: ignore[union-attr]
                io.paced = False
        f.media.bridge_to(c.media)
        c.media.bridge_to(f.media)
        self._pending_bridge = False

    def _pause_bridge(self) -> None:
        """Stop relaying so prompts can be heard (warnings during the conversation); re-bridged after."""
        for io in self.legs.values():
            if io.media is None:
                continue
            io.media.unbridge()
            if not io.paced and not self.ended:
                self.engine.pacer.add(io.endpoint, io.media.sender, _dest(io.media))
                io.paced = True
        if self.bridged:
            self._pending_bridge = True
            self.engine.note_active(self)

    def on_rtp(self, io: LegIO, packet: Any, source: tuple[str, int], now: float) -> None:
        """A packet for this leg: keys to the machine, relayed audio to the other leg."""
        if io.media is None:
            return
        self.engine.note_active(self)
        received = io.media.receive(packet, source, now)
        if received.relay:
            other = self.legs.get(Leg.CALLED if io.leg is Leg.FACILITY else Leg.FACILITY)
            if other is not None and other.media is not None and other.media.destination is not None:
                for out in received.relay:
                    other.endpoint.send(out, other.media.destination)
        for item in received.events:
            self._leg_event(io, item)

    def _leg_event(self, io: LegIO, item: Any) -> None:
        if isinstance(item, KeyPress):
            self.feed(ev.KeyPressed(item.key, io.leg, item.source))
        elif isinstance(item, FlashEvent):
            self.feed(ev.HookflashDetected(io.leg, {"detector": "rfc4733_flash", "duration_ms": item.duration_ms}))

    def on_name_frame(self, samples: npt.NDArray[np.int16], now: float) -> None:
        """This tick's 20 ms from the facility leg while the caller's name is recorded (ACC-1);
        ``samples`` is the detector block's row, so it is copied."""
        if self.name_frames is not None:
            self.name_frames.append(samples.copy())
            if now >= self._name_until:
                self._finish_name()

    def _finish_name(self) -> None:
        frames = self.name_frames or []
        self.name_frames = None
        if not frames:
            self.feed(ev.NameRecorded(0, False))
            return
        audio = np.concatenate(frames)
        blocks = audio[: len(audio) // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
        rms = np.sqrt(np.mean(blocks**2, axis=1)) / 32768.0
        voiced = 20 * np.log10(np.maximum(rms, 1e-9)) > NAME_VOICE_DBFS
        if int(voiced.sum()) < NAME_MIN_VOICED_FRAMES:
            self.feed(ev.NameRecorded(len(audio) // 8, False))  # ACC-1: nothing said
            return
        first, last = int(np.argmax(voiced)), len(voiced) - int(np.argmax(voiced[::-1]))
        clip = blocks[max(0, first - 5) : min(len(blocks), last + 5)].astype(np.int16).reshape(-1)
        self.name_clip = clip
        if self.plan.call_type_for(self.machine.called_number) != "privileged":
            self.folder.mkdir(parents=True, exist_ok=True)
            with wave.open(str(self.folder / "name.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(clip.astype("<i2").tobytes())
        self.feed(ev.NameRecorded(len(clip) // 8, True))

    def log_detection(self, io: LegIO, event: Any, bank_ms: int) -> None:
        """Keep every raw detector event (DESIGN.md section 4: evidence) for detections.jsonl."""
        entry: dict[str, Any] = {"leg": io.leg.value, "origin_ms": io.origin_ms,
                                 "frame": (bank_ms - io.origin_ms) // 20, "kind": type(event).__name__}
        entry.update(event.to_json())
        self.detections.append(entry)

    def prompts_finished(self, io: LegIO) -> None:
        """Tags whose last frame went out: PromptFinished for the machine; re-bridge when all are done."""
        if io.media is None:
            return
        for tag in io.media.sender.pop_finished():
            if tag in io.prompts:
                io.prompts.remove(tag)
            self.feed(ev.PromptFinished(io.leg, tag))
        if self._pending_bridge and self.bridged and not any(x.prompts for x in self.legs.values()):
            self._bridge_media()

    # ------------------------------------------------------------------ helpers

    def _facts(self, call_type: str) -> Any:
        from ledger.api import CallFacts

        return CallFacts(
            call_id=self.call_id,
            facility_id=self.plan.facility.id,
            caller_id=self.machine.caller_id,
            called_number=self.machine.called_number,
            call_type=call_type,
            tariff=self.plan.tariff,
            max_seconds=self.machine.limit_s,
            at=_utcnow(),
        )

    def status(self) -> dict[str, JsonValue]:
        m = self.machine
        return {"call_id": self.call_id, "state": m.state.value, "number": m.called_number,
                "facility": self.plan.facility.id}


def _dest(media: MediaLeg) -> Callable[[], tuple[str, int] | None]:
    return lambda: media.destination


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _read_clip(path: str | None) -> npt.NDArray[np.int16] | None:
    """An enrolled name clip (8 kHz mono 16-bit WAV), or None when absent or unusable."""
    if not path:
        return None
    try:
        with wave.open(path, "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != 8000:
                return None
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    except (OSError, wave.Error, EOFError):
        return None


def key_source(value: str) -> KeySource:
    return KeySource(value)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
