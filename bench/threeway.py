"""Three-way calling / call waiting (DIS-3WAY): detection rate and false detections per 100 hours.

    python -m bench.threeway [--trials 300] [--clean-hours 100] [--channels 100]

Conversations are built by ``bench/corpus/conversation.py`` from the espeak-ng corpus (two voices
taking turns, the caller's as echo, natural pauses, line hiss -70..-50 dBm0, G.711 mu-law). Trials
end in a flash (click, 300-1100 ms on-hook, then dial tone + DTMF + ringback, dial tone + voice, or
DTMF + ringback, then a third voice) or a call-waiting tone. The clean conversations have none.
Every leg runs through the batched detector bank with the default dialplan settings.

A flash counts as detected when a hookflash event's ``at_ms`` is within 100 ms of the click; a call
waiting when a ``call_waiting`` tone starts within 100 ms of the burst. In clean conversation every
hookflash or call-waiting event is a false detection (each would be a false disconnect).
"""

from __future__ import annotations

import os

# Small matrix products: OpenBLAS worker threads only spin.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import sys
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from bench.corpus.conversation import ConversationMaker, FlashTruth
from bench.corpus.speech import load_speech
from ivr.detect.bank import BatchedDetectorBank
from ivr.detect.config import DetectorConfigs
from ivr.detect.events import DetectorEvent, HookflashEvent, ToneEvent

TOLERANCE_MS = 100


def run_rows(rows: list[npt.NDArray[np.int16]], configs: DetectorConfigs) -> list[list[DetectorEvent]]:
    length = max(len(r) for r in rows)
    length += (-length) % 160
    pcm = np.zeros((len(rows), length), dtype=np.int16)
    for i, r in enumerate(rows):
        pcm[i, : len(r)] = r
    bank = BatchedDetectorBank(len(rows), configs)
    out: list[list[DetectorEvent]] = [[] for _ in rows]
    for f in range(length // 160):
        for i, evs in enumerate(bank.feed(pcm[:, f * 160 : (f + 1) * 160], f * 20)):
            out[i].extend(evs)
    for i, evs in enumerate(bank.flush(length // 8)):
        out[i].extend(evs)
    return out


def is_alarm(e: DetectorEvent) -> bool:
    """Events that would disconnect a call for DIS-3WAY."""
    return isinstance(e, HookflashEvent) or (isinstance(e, ToneEvent) and e.name == "call_waiting")


def hit(truth: FlashTruth, events: list[DetectorEvent]) -> bool:
    for e in events:
        if truth.kind == "flash" and isinstance(e, HookflashEvent) and abs(e.at_ms - truth.at_ms) <= TOLERANCE_MS:
            return True
        if (
            truth.kind == "call_waiting"
            and isinstance(e, ToneEvent)
            and e.name == "call_waiting"
            and abs(e.start_ms - truth.at_ms) <= TOLERANCE_MS
        ):
            return True
    return False


def false_alarms_in(
    make: Callable[[float], npt.NDArray[np.int16]], hours: float, channels: int, configs: DetectorConfigs
) -> tuple[float, Counter[str]]:
    """Run ``hours`` of clean conversation (``channels`` legs, 60 s chunks) and count alarms."""
    chunk_s = 60.0
    rounds = max(1, round(hours * 3600 / (channels * chunk_s)))
    alarms: Counter[str] = Counter()
    bank = BatchedDetectorBank(channels, configs)
    evidence: list[str] = []
    frame = 0
    for _ in range(rounds):
        rows = np.stack([make(chunk_s) for _ in range(channels)])
        for f in range(rows.shape[1] // 160):
            for evs in bank.feed(rows[:, f * 160 : (f + 1) * 160], frame * 20):
                for e in evs:
                    if is_alarm(e):
                        alarms["hookflash" if isinstance(e, HookflashEvent) else "call_waiting"] += 1
                        ev = e.evidence()
                        ev.pop("thresholds", None)
                        evidence.append(str(ev))
            frame += 1
    for evs in bank.flush(frame * 20):
        alarms.update("hookflash" if isinstance(e, HookflashEvent) else "call_waiting" for e in evs if is_alarm(e))
    for line in evidence:
        print(f"false alarm: {line}", file=sys.stderr)
    return rounds * channels * chunk_s / 3600, alarms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--clean-hours", type=float, default=100.0)
    parser.add_argument("--household-hours", type=float, default=100.0)
    parser.add_argument("--channels", type=int, default=100)
    args = parser.parse_args()
    configs = DetectorConfigs()
    maker = ConversationMaker(load_speech(32.0), np.random.default_rng(3))
    t0 = time.process_time()

    totals: Counter[str] = Counter()
    found: Counter[str] = Counter()
    false_in_trials = 0
    for start in range(0, args.trials, args.channels):
        batch = [
            maker.with_event(float(maker.rng.uniform(15, 30)), 8.0)
            for _ in range(min(args.channels, args.trials - start))
        ]
        results = run_rows([pcm for pcm, _ in batch], configs)
        for (_, truth), events in zip(batch, results, strict=True):
            totals[truth.variant] += 1
            found[truth.variant] += hit(truth, events)
            # Alarms before the event are false detections inside the trial's conversation.
            false_in_trials += sum(
                1
                for e in events
                if is_alarm(e) and getattr(e, "at_ms", getattr(e, "start_ms", 0)) < truth.at_ms - TOLERANCE_MS
            )

    clean = [
        ("two voices, echo, pauses, hiss -70..-50 dBm0, G.711", args.clean_hours, maker.clean),
        ("same + household clicks and room-noise steps", args.household_hours, maker.household),
    ]
    clean_rows: list[tuple[str, float, Counter[str]]] = []
    for label, hours, make in clean:
        done_hours, alarms = false_alarms_in(make, hours, args.channels, configs)
        clean_rows.append((label, done_hours, alarms))
    cpu = time.process_time() - t0

    print("| case | trials | detected | rate |")
    print("|---|---:|---:|---:|")
    for variant in sorted(totals):
        print(f"| {variant} | {totals[variant]} | {found[variant]} | {found[variant] / totals[variant]:.1%} |")
    flashes = sum(v for k, v in totals.items() if k != "call_waiting")
    flashes_found = sum(v for k, v in found.items() if k != "call_waiting")
    print(f"| all flashes | {flashes} | {flashes_found} | {flashes_found / max(flashes, 1):.1%} |")
    all_found = sum(found.values())
    n_all = sum(totals.values())
    print(f"| all (flashes + call waiting) | {n_all} | {all_found} | {all_found / max(n_all, 1):.1%} |")
    print()
    print("| clean conversation | hours | false hookflash | false call waiting | per 100 hours |")
    print("|---|---:|---:|---:|---:|")
    for label, hours, alarms in clean_rows:
        n_false = sum(alarms.values())
        print(
            f"| {label} | {hours:.1f} | {alarms['hookflash']} | {alarms['call_waiting']} | "
            f"{n_false / hours * 100:.2f} |"
        )
    print(f"(false alarms inside the trials' conversations before the event: {false_in_trials}; CPU {cpu:.0f} s)")


if __name__ == "__main__":
    main()
