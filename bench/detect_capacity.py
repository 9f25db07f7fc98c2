"""Capacity: every detector, batched over 500 calls of 20 ms frames.

    python -m bench.detect_capacity [--calls 500] [--seconds 30]

Each call's leg plays a different stretch of the espeak-ng corpus (speech, pauses, hiss); one in
ten also carries keys and call-progress tones. Prints channel-seconds processed per CPU-second for
the whole bank and for each detector alone. Goal (issue 3): >= 2,000, i.e. 500 calls cost at most a
quarter of a core.
"""

from __future__ import annotations

import os

# Small matrix products: OpenBLAS worker threads only spin (see the README note).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time

import numpy as np
import numpy.typing as npt

from bench.corpus.speech import load_speech
from ivr.detect import synth
from ivr.detect.bank import BatchedDetectorBank
from ivr.detect.config import DETECTOR_NAMES, DetectorConfigs


def build_audio(calls: int, seconds: float) -> npt.NDArray[np.int16]:
    """(frames, calls, 160) int16."""
    rng = np.random.default_rng(7)
    speech = np.concatenate(
        [np.concatenate([u, np.zeros(int(rng.uniform(1600, 9600)), dtype=np.int16)]) for u in load_speech(32.0)]
    )
    n = int(seconds * 8000)
    n -= n % 160
    rows = np.empty((calls, n), dtype=np.int16)
    extra = np.concatenate(
        [
            synth.silence(500),
            synth.dtmf("5", 80),
            synth.silence(80),
            synth.dtmf("9", 80),
            synth.silence(1000),
            synth.tone([440, 480], 2000, -19),
            synth.silence(4000),
        ]
    )
    for c in range(calls):
        start = int(rng.integers(0, len(speech) - n))
        row = speech[start : start + n].astype(np.float64)
        row += synth.white_noise(n / 8, float(rng.uniform(-70, -50)), rng)
        if c % 10 == 0:
            row[: len(extra)] += extra[:n]
        rows[c] = synth.to_pcm16(row)
    return np.ascontiguousarray(rows.reshape(calls, -1, 160).transpose(1, 0, 2))


def measure(audio: npt.NDArray[np.int16], configs: DetectorConfigs) -> float:
    frames, calls, _ = audio.shape
    bank = BatchedDetectorBank(calls, configs)
    t0 = time.process_time()
    for i in range(frames):
        bank.feed(audio[i], i * 20)
    bank.flush(frames * 20)
    cpu = time.process_time() - t0
    return calls * frames * 0.02 / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    audio = build_audio(args.calls, args.seconds)
    print(
        f"{args.calls} calls x {args.seconds:.0f} s of 20 ms frames "
        f"(OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']})"
    )
    print("| detectors | channel-seconds per CPU-second | CPU share of one core for 500 calls |")
    print("|---|---:|---:|")
    rows: list[tuple[str, DetectorConfigs]] = [
        ("all (dtmf, silence, tones, hookflash, noise)", DetectorConfigs().with_only(DETECTOR_NAMES))
    ]
    rows.append(("default dialplan (all but noise)", DetectorConfigs()))
    rows += [(name, DetectorConfigs().with_only((name,))) for name in DETECTOR_NAMES if name != "hookflash"]
    rows.append(("hookflash (with the silence, tones, dtmf it needs)", DetectorConfigs().with_only(("hookflash",))))
    for label, cfg in rows:
        rate = measure(audio, cfg)
        print(f"| {label} | {rate:,.0f} | {500 / rate:.1%} |")


if __name__ == "__main__":
    main()
