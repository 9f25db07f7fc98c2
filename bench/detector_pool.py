"""The engine's media tick without sockets: N legs' jitter buffers, recordings and detector banks.

    python3 -m bench.detector_pool [--legs 200,1000] [--seconds 5] [--audio noise|speech]

Builds N legs as the engine holds them (a real MediaLeg per leg receiving G.711 packets through
its fast path ``receive_wire``, every leg recording, rows in ivr.net.detector_pool.DetectorPool's
banks, the default dialplan's detectors) and times ``DetectorPool.tick`` once per 20 ms of audio.
``--audio noise``: every leg hears line hiss at about -60 dBm0 (what bench/engine_capacity.py's
SIPp sends); ``speech``: each leg a different stretch of the espeak-ng corpus over hiss, one in ten
with keys and a ringback tone (bench/detect_capacity.py's audio). Printed per N:

- banks: the pool's bank heights
- tick ms: the whole tick (mean); feed ms: of which the banks' ``feed``
- per-leg us: the rest (pull, decode, record, hand-over) per leg and tick
- % core: the tick's share of one core (50 ticks a second)

Only the tick is timed (not the packets' arrival). Bounded: N legs x seconds x 50 ticks.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ivr.detect import bank as detector_bank  # noqa: E402
from ivr.detect.config import DetectorConfigs  # noqa: E402
from ivr.net.detector_pool import DetectorPool  # noqa: E402
from ivr.net.runner import LegIO  # noqa: E402
from ivr.rtp.g711 import Codec  # noqa: E402
from ivr.rtp.leg import MediaLeg, RemoteMedia  # noqa: E402
from ivr.rtp.packet import FIXED_HEADER  # noqa: E402
from ivr.types import Leg  # noqa: E402


@dataclass
class _Engine:
    bank_ms: int = 0
    events: int = 0

    def detector_event(self, session: Any, io: LegIO, event: Any) -> None:
        self.events += 1


@dataclass
class _Plan:
    detectors: DetectorConfigs = field(default_factory=DetectorConfigs)


@dataclass
class _Session:
    """What the pool asks of a call (ivr.net.runner.CallSession): nobody is saying their name."""

    engine: _Engine
    plan: _Plan
    name_frames: list[npt.NDArray[np.int16]] | None = None
    record_audio: bool = True

    def on_name_frame(self, samples: npt.NDArray[np.int16], now: float) -> None:
        pass

    def log_detection(self, io: LegIO, event: Any, bank_ms: int) -> None:
        pass


def _audio(legs: int, frames: int, kind: str) -> npt.NDArray[np.int16]:
    """(legs, frames, 160) int16."""
    if kind == "speech":
        from bench.detect_capacity import build_audio

        return np.ascontiguousarray(build_audio(legs, frames * 0.02).transpose(1, 0, 2))
    rng = np.random.default_rng(5)
    return rng.normal(0, 30, (legs, frames, 160)).astype(np.int16)


def measure(legs: int, seconds: float, kind: str) -> tuple[list[int], float, float, float]:
    frames = int(seconds * 50)
    audio = _audio(legs, frames, kind)
    engine, plan, pool = _Engine(), _Plan(), DetectorPool()
    ios: list[LegIO] = []
    for i in range(legs):
        leg = LegIO(Leg.CALLED if i % 2 else Leg.FACILITY, endpoint=None)  # type: ignore[arg-type]
        leg.media = MediaLeg(leg.leg, random.Random(i), 0.0, RemoteMedia(("127.0.0.1", 4000 + 2 * i), Codec.PCMU))
        wav = wave.open(io.BytesIO(), "wb")  # noqa: SIM115 - dropped with the bench
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        leg.wav = wav
        pool.attach(_Session(engine, plan), leg)  # type: ignore[arg-type]
        ios.append(leg)
    payloads = [[Codec.PCMU.encode(audio[i, k]) for k in range(frames)] for i in range(legs)]
    feed_s = 0.0
    original = detector_bank.BatchedDetectorBank.feed

    def timed_feed(self: Any, block: Any, now_ms: int) -> Any:
        nonlocal feed_s
        started = time.perf_counter()
        try:
            return original(self, block, now_ms)
        finally:
            feed_s += time.perf_counter() - started

    detector_bank.BatchedDetectorBank.feed = timed_feed  # type: ignore[method-assign]
    tick_s = 0.0
    try:
        for k in range(frames):
            now = 0.02 * k
            for i, leg in enumerate(ios):
                media = leg.media
                assert media is not None
                datagram = FIXED_HEADER.pack(0x80, 0, k, 160 * k, 1000 + i) + payloads[i][k]
                media.receive_wire(datagram, ("127.0.0.1", 4000 + 2 * i), now)
            started = time.perf_counter()
            pool.tick(now, engine.bank_ms)
            tick_s += time.perf_counter() - started
            engine.bank_ms += 20
    finally:
        detector_bank.BatchedDetectorBank.feed = original  # type: ignore[method-assign]
    banks = sorted({id(io.detector[0]): io.detector[0].channels for io in ios if io.detector}.values())
    return banks, tick_s / frames * 1e3, feed_s / frames * 1e3, (tick_s - feed_s) / frames / legs * 1e6


def _leg_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of leg counts: {text!r}") from None
    if any(n < 1 for n in counts):
        raise argparse.ArgumentTypeError(f"leg counts must be at least 1: {text!r}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--legs", type=_leg_counts, default="200,1000", help="comma-separated leg counts (2 per call)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of audio per leg")
    parser.add_argument("--audio", choices=("noise", "speech"), default="noise")
    args = parser.parse_args()
    from ivr import native

    print(f"media tick, {args.seconds:g} s of {args.audio} per leg; media path: {native.status()['path']}")
    print(f"{'legs':>6} {'banks':>22} {'tick ms':>8} {'feed ms':>8} {'per-leg us':>10} {'% core':>7}")
    for legs in args.legs:
        banks, tick_ms, feed_ms, per_leg_us = measure(legs, args.seconds, args.audio)
        shown = "+".join(str(b) for b in banks)
        print(f"{legs:6d} {shown:>22} {tick_ms:8.2f} {feed_ms:8.2f} {per_leg_us:10.2f} {tick_ms / 20 * 100:6.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
