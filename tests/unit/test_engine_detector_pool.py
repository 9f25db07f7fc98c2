"""The engine's detector pool: every leg's frame, decoded in one batch, reaches its recording, the
caller's name recording and its detector row exactly as decoding each packet on arrival did."""

from __future__ import annotations

import io as _io
import random
import wave
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from ivr.detect.bank import BatchedDetectorBank
from ivr.detect.config import DetectorConfigs
from ivr.detect.synth import dtmf, silence, to_frames
from ivr.engine import DetectorPool
from ivr.net.runner import LegIO
from ivr.rtp.g711 import Codec
from ivr.rtp.leg import MediaLeg, RemoteMedia
from ivr.rtp.packet import RtpPacket
from ivr.types import Leg


@dataclass
class FakeEngine:
    bank_ms: int = 0
    events: list[tuple[str, Any]] = field(default_factory=list)

    def detector_event(self, session: FakeSession, io: LegIO, event: Any) -> None:
        self.events.append((session.name, event.to_json()))


@dataclass
class Plan:
    detectors: DetectorConfigs = field(default_factory=DetectorConfigs)


@dataclass
class FakeSession:
    """What the pool needs of a CallSession: the plan, the engine, name_frames and on_name_frame
    (while the caller's name is recorded), record_audio, log_detection."""

    name: str
    engine: FakeEngine
    plan: Plan = field(default_factory=Plan)
    name_frames: list[np.ndarray] | None = None
    record_audio: bool = True  # False: REG-3, or a dialplan that does not record the conversation

    def on_name_frame(self, samples: np.ndarray, now: float) -> None:
        assert self.name_frames is not None
        self.name_frames.append(samples.copy())

    def log_detection(self, io: LegIO, event: Any, bank_ms: int) -> None:
        pass


def _leg(codec: Codec, leg: Leg = Leg.CALLED) -> MediaLeg:
    return MediaLeg(leg, random.Random(1), 0.0, RemoteMedia(("127.0.0.1", 4000), codec, 101))


def _recorder(io: LegIO) -> _io.BytesIO:
    """Record the leg into an in-memory WAV, as CallSession does into its folder."""
    out = _io.BytesIO()
    wav = wave.open(out, "wb")  # noqa: SIM115 - closed by _recorded
    wav.setnchannels(1)
    wav.setsampwidth(2)
    wav.setframerate(8000)
    io.wav = wav
    return out


def _recorded(io: LegIO, out: _io.BytesIO) -> list[np.ndarray]:
    assert io.wav is not None
    io.flush_recording()
    io.wav.close()
    out.seek(0)
    with wave.open(out, "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    return list(pcm.reshape(-1, 160))


@pytest.mark.parametrize("filler", [0, DetectorPool.SHORT_BANKS * DetectorPool.PRODUCT_ROWS])
def test_batched_decode_feeds_recordings_and_detectors_like_per_packet_decoding(filler: int) -> None:
    """Three legs (mu-law, A-law, one whose packets stop): the recorded frames (WAV) equal a twin
    MediaLeg's pull_frame, and the in-band keys found equal a DetectorBank's on those frames. The
    A-law leg is a facility leg whose caller is saying their name: those frames reach the call too.
    With ``filler`` legs (no media yet) taking the short banks, the three land in a tall bank
    (DetectorPool.ROWS rows): its events are still those of a bank of PRODUCT_ROWS."""
    rng = np.random.default_rng(5)

    def keys(first: str, second: str) -> np.ndarray:
        signal = np.concatenate([silence(200), dtmf(first, 120), silence(300), dtmf(second, 100), silence(400)])
        return to_frames(signal + rng.normal(0, 30, len(signal)))

    engine = FakeEngine()
    plan = Plan(DetectorConfigs().with_only(("dtmf",)))
    pool = DetectorPool()
    signals = {"ulaw": keys("5", "9"), "alaw": keys("3", "7"), "stops": keys("1", "2")}
    frames = signals["ulaw"]
    setups = [("ulaw", Codec.PCMU, len(frames)), ("alaw", Codec.PCMA, len(frames)), ("stops", Codec.PCMU, 8)]
    for _ in range(filler):
        idle = LegIO(Leg.CALLED, endpoint=None)  # type: ignore[arg-type]
        pool.attach(FakeSession("idle", engine, plan), idle)  # type: ignore[arg-type]
    live, twins, sessions, wavs = [], [], [], []
    for name, codec, packets in setups:
        leg = Leg.FACILITY if name == "alaw" else Leg.CALLED
        session = FakeSession(name, engine, plan, name_frames=[] if name == "alaw" else None)
        io = LegIO(leg, endpoint=None)  # type: ignore[arg-type]  # the pool never touches it
        io.media = _leg(codec, leg)
        wavs.append(_recorder(io))
        pool.attach(session, io)  # type: ignore[arg-type]
        live.append((io, codec, packets))
        twins.append(_leg(codec, leg))
        sessions.append(session)
    reference: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in setups}
    for k in range(len(frames)):
        now = 0.02 * k
        for (io, codec, packets), twin, (name, _, _) in zip(live, twins, setups, strict=True):
            frame = signals[name][k]
            if k < packets:
                packet = RtpPacket(codec.payload_type, k, 160 * k, 9, codec.encode(frame))
                assert io.media is not None
                io.media.receive(packet, ("127.0.0.1", 4000), now)
                twin.receive(packet, ("127.0.0.1", 4000), now)
            reference[name].append(twin.pull_frame(now).samples.copy())
        pool.tick(now, engine.bank_ms)
        engine.bank_ms += 20
    for session, (io, _, _), out in zip(sessions, live, wavs, strict=True):
        recorded = _recorded(io, out)
        assert len(recorded) == len(frames)
        assert all(np.array_equal(a, b) for a, b in zip(recorded, reference[session.name], strict=True))
    assert sessions[1].name_frames is not None and len(sessions[1].name_frames) == len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(sessions[1].name_frames, reference["alaw"], strict=True))
    assert sessions[0].name_frames is None  # a called leg's frames are not the caller's name
    assert all(io.detector is not None and io.detector[0].channels == (DetectorPool.ROWS if filler else
               DetectorPool.PRODUCT_ROWS) for io, _, _ in live)
    expected: list[tuple[str, Any]] = []
    for name, _, _ in setups:
        bank = BatchedDetectorBank(DetectorPool.PRODUCT_ROWS, plan.detectors)
        block = np.zeros((DetectorPool.PRODUCT_ROWS, 160), dtype=np.int16)
        for k, samples in enumerate(reference[name]):
            block[0] = samples
            expected.extend((name, e.to_json()) for e in bank.feed(block, 20 * k)[0])
    assert sorted(map(str, engine.events)) == sorted(map(str, expected))
    found = [(name, e["digit"]) for name, e in engine.events]
    assert sorted(found) == [("alaw", "3"), ("alaw", "7"), ("ulaw", "5"), ("ulaw", "9")]


def test_a_leg_that_stopped_recording_records_nothing_but_is_still_detected() -> None:
    """REG-3 and a dialplan that does not record the conversation: ``record_audio`` off, no frame is
    written, and the leg's row is still fed (stray keys are watched during every call)."""
    engine = FakeEngine()
    plan = Plan(DetectorConfigs().with_only(("dtmf",)))
    pool = DetectorPool()
    session = FakeSession("quiet", engine, plan)
    io = LegIO(Leg.CALLED, endpoint=None)  # type: ignore[arg-type]
    io.media = _leg(Codec.PCMU)
    out = _recorder(io)
    session.record_audio = False
    pool.attach(session, io)  # type: ignore[arg-type]
    frames = to_frames(np.concatenate([silence(200), dtmf("4", 120), silence(400)]))
    for k, frame in enumerate(frames):
        assert io.media is not None
        io.media.receive(RtpPacket(0, k, 160 * k, 9, Codec.PCMU.encode(frame)), ("127.0.0.1", 4000), 0.02 * k)
        pool.tick(0.02 * k, engine.bank_ms)
        engine.bank_ms += 20
    assert _recorded(io, out) == []
    assert [e["digit"] for _, e in engine.events] == ["4"]
