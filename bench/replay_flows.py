"""Replay 10,000 flows through fresh CallMachines on one core; prints flows per second.

    python3 bench/replay_flows.py [--flows N] [--folder tests/data/flows]

Flows are parsed once (file parsing is not the machine's cost), then replayed round-robin.
Goal (issue 2): >= 5,000 flows per second on one core.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.log import configure
from ivr.replay import find_flows, load_flow, run_flow


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--folder", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "flows"))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    args = parser.parse_args()
    configure(level="ERROR")  # the protocol-error flow logs a warning on every run
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    flows = [load_flow(p) for p in find_flows(Path(args.folder))]
    events = sum(len(f.inputs) for f in flows) / len(flows)
    rates = []
    for _ in range(args.repeat):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        bad = 0
        for i in range(args.flows):
            if not run_flow(flows[i % len(flows)]).ok:
                bad += 1
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - wall0
        rates.append(args.flows / cpu)
    print(f"{'flows':>8} {'distinct':>8} {'events/flow':>11} {'cpu s (last)':>12} {'wall s (last)':>13} "
          f"{'flows/cpu-s (median)':>21} {'mismatches':>10}")
    print(f"{args.flows:>8} {len(flows):>8} {events:>11.1f} {cpu:>12.2f} {wall:>13.2f} "
          f"{statistics.median(rates):>21.0f} {bad:>10}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
