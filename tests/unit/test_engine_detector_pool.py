"""The engine's detector pool: every leg's frame, decoded in one batch, reaches its recording and
its detector row exactly as decoding each packet on arrival did."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    """What the pool needs of a CallSession: the plan, the engine, on_frame, log_detection."""

    name: str
    engine: FakeEngine
    plan: Plan = field(default_factory=Plan)
    recorded: list[np.ndarray] = field(default_factory=list)

    def on_frame(self, io: LegIO, samples: np.ndarray, now: float) -> None:
        self.recorded.append(samples.copy())

    def log_detection(self, io: LegIO, event: Any, bank_ms: int) -> None:
        pass


def _leg(codec: Codec) -> MediaLeg:
    return MediaLeg(Leg.CALLED, random.Random(1), 0.0, RemoteMedia(("127.0.0.1", 4000), codec, 101))


def test_batched_decode_feeds_recordings_and_detectors_like_per_packet_decoding() -> None:
    """Three legs (mu-law, A-law, one whose packets stop): the recorded frames equal a twin
    MediaLeg's pull_frame, and the in-band keys found equal a DetectorBank's on those frames."""
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
    live, twins, sessions = [], [], []
    for name, codec, packets in setups:
        session = FakeSession(name, engine, plan)
        io = LegIO(Leg.CALLED, endpoint=None)  # type: ignore[arg-type]  # the pool never touches it
        io.media = _leg(codec)
        pool.attach(session, io)  # type: ignore[arg-type]
        live.append((io, codec, packets))
        twins.append(_leg(codec))
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
    for session in sessions:
        assert len(session.recorded) == len(frames)
        assert all(np.array_equal(a, b) for a, b in zip(session.recorded, reference[session.name], strict=True))
    expected: list[tuple[str, Any]] = []
    for name, _, _ in setups:
        bank = BatchedDetectorBank(DetectorPool.ROWS, plan.detectors)
        block = np.zeros((DetectorPool.ROWS, 160), dtype=np.int16)
        for k, samples in enumerate(reference[name]):
            block[0] = samples
            expected.extend((name, e.to_json()) for e in bank.feed(block, 20 * k)[0])
    assert sorted(map(str, engine.events)) == sorted(map(str, expected))
    found = [(name, e["digit"]) for name, e in engine.events]
    assert sorted(found) == [("alaw", "3"), ("alaw", "7"), ("ulaw", "5"), ("ulaw", "9")]
