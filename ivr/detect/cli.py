"""``ivr detect FILE.wav [--dialplan F] [--only dtmf,silence,tones,hookflash,noise]`` (DESIGN.md section 7).

Runs the detectors over a WAV file (resampled to 8 kHz if needed) and prints one JSON object per
event per line, in order of the event's start. Marker events (silence/noise *started*) are not
printed: each silence and noise stretch is printed once, complete. Exit 0, or 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from typing import Any

from ivr.detect.audio import load_8k
from ivr.detect.config import DETECTOR_NAMES, DetectorConfigs, detector_configs_from_table
from ivr.detect.offline import detect_signal
from ivr.errors import InputError


def _configs(dialplan: str | None, only: str | None) -> DetectorConfigs:
    configs = DetectorConfigs()
    if dialplan is not None:
        try:
            with open(dialplan, "rb") as fh:
                table = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise InputError("no such file", where=dialplan) from exc
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"not valid TOML ({exc})", where=dialplan) from exc
        detectors = table.get("detectors", {})
        configs = detector_configs_from_table(detectors, dialplan)
    if only is not None:
        names = tuple(n.strip() for n in only.split(",") if n.strip())
        for n in names:
            if n not in DETECTOR_NAMES:
                raise InputError(f"unknown detector {n!r} (known: {', '.join(DETECTOR_NAMES)})", where="--only")
        configs = configs.with_only(names)
    elif dialplan is None:
        # The command runs every detector unless told otherwise (noise is off only in dialplans).
        configs = configs.with_only(DETECTOR_NAMES)
    return configs


def _start(event: dict[str, Any]) -> int:
    value = event.get("start_ms", event.get("at_ms", 0))
    return int(value) if isinstance(value, int) else 0


def run(args: argparse.Namespace) -> int:
    configs = _configs(args.dialplan, args.only)
    samples = load_8k(args.file)
    # The whole-recording path: DetectorBank's events over the whole file (detect_samples), faster.
    events = [e.to_json() for e in detect_signal(samples, configs) if not e.is_marker]
    for event in sorted(events, key=_start):
        print(json.dumps(event))
    return 0


def register(subparsers: Any) -> None:
    """Add ``ivr detect`` to the ``ivr`` command."""
    p = subparsers.add_parser("detect", help="run the audio detectors over a WAV file, one JSON event per line")
    p.add_argument("file", metavar="FILE.wav")
    p.add_argument("--dialplan", metavar="F", help="take the thresholds from this dialplan's [detectors]")
    p.add_argument("--only", metavar="LIST", help=f"comma-separated subset of {','.join(DETECTOR_NAMES)}")
    p.set_defaults(handler=run)
