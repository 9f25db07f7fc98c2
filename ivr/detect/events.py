"""Detector events: facts the detectors report, with their evidence (DOMAIN.md DIS-*, ACC-5).

Times are integer ms relative to the start of the channel's stream (the ``now_ms`` origin given to
the detector). Every event has ``evidence()`` (JSON-ready: what was measured and the thresholds
used, for the call record) and ``to_json()`` (the ``ivr detect`` output contract: the contract keys
first, then the evidence keys).

Streaming choice for silence and noise: the detectors emit TWO kinds of events:

* ``SilenceStarted(start_ms)`` as soon as a silence run has lasted ``min_silence_ms`` (its
  ``start_ms`` is when the silence really began), then ``SilenceEnded(start_ms, end_ms)`` when voice
  resumes (or at ``flush``). The call machine times "both parties silent" itself from these
  (engine mapping: SilenceStarted -> SilenceDetected, SilenceEnded -> SpeechDetected).
* ``NoiseStarted(start_ms)`` once static has lasted ``min_duration_ms``, ``NoiseEnded`` when it stops.

``SilenceStarted`` and ``NoiseStarted`` are *markers* (``is_marker`` True): ``ivr detect`` prints only
the complete events (``SilenceEnded`` as ``{"type": "silence", ...}``, ``NoiseEnded`` as
``{"type": "noise", ...}``), as the CLI contract asks.

DTMF and tone events are reported when the tone ends (their ``end_ms`` is known then); a hookflash is
reported when its corroborating evidence arrives (``at_ms`` is the click).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TypeAlias

from ivr.detect.config import DtmfConfig, HookflashConfig, NoiseConfig, SilenceConfig, ToneConfig
from ivr.types import Evidence, JsonValue

TONE_NAMES: tuple[str, ...] = ("dial", "ringback", "busy", "reorder", "sit", "call_waiting")


def _thresholds(config: object) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {}
    for f in dataclasses.fields(config):  # type: ignore[arg-type]
        value = getattr(config, f.name)
        out[f.name] = value
    return out


def _r(value: float, digits: int = 1) -> float:
    return round(float(value), digits)


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """An in-band DTMF key (ITU-T Q.24 receiver). Engine: KeyPressed(source=inband)."""

    digit: str
    start_ms: int
    end_ms: int
    low_hz: float  # measured frequency of the low-group tone
    high_hz: float
    low_dbm0: float
    high_dbm0: float
    twist_db: float  # low minus high (positive: normal twist)
    tone_to_rest_db: float
    config: DtmfConfig = dataclasses.field(default_factory=DtmfConfig, compare=False, repr=False)

    is_marker = False
    kind = "dtmf"

    def evidence(self) -> Evidence:
        return {
            "detector": "dtmf",
            "digit": self.digit,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "duration_ms": self.end_ms - self.start_ms,
            "low_hz": _r(self.low_hz),
            "high_hz": _r(self.high_hz),
            "low_dbm0": _r(self.low_dbm0),
            "high_dbm0": _r(self.high_dbm0),
            "twist_db": _r(self.twist_db),
            "tone_to_rest_db": _r(self.tone_to_rest_db),
            "thresholds": _thresholds(self.config),
        }

    def to_json(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {
            "type": "dtmf",
            "digit": self.digit,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }
        out.update({k: v for k, v in self.evidence().items() if k not in out})
        return out


@dataclass(frozen=True, slots=True)
class SilenceStarted:
    """A silence run has lasted ``min_silence_ms``; it began at ``start_ms``. Engine: SilenceDetected."""

    start_ms: int
    at_ms: int  # when it was confirmed
    floor_dbm0: float
    threshold_dbm0: float
    config: SilenceConfig = dataclasses.field(default_factory=SilenceConfig, compare=False, repr=False)

    is_marker = True
    kind = "silence_started"

    def evidence(self) -> Evidence:
        return {
            "detector": "silence",
            "start_ms": self.start_ms,
            "at_ms": self.at_ms,
            "floor_dbm0": _r(self.floor_dbm0),
            "threshold_dbm0": _r(self.threshold_dbm0),
            "thresholds": _thresholds(self.config),
        }

    def to_json(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {"type": "silence_started", "start_ms": self.start_ms}
        out.update({k: v for k, v in self.evidence().items() if k not in out})
        return out


@dataclass(frozen=True, slots=True)
class SilenceEnded:
    """A silence run from ``start_ms`` to ``end_ms`` (voice resumed or the stream ended)."""

    start_ms: int
    end_ms: int
    floor_dbm0: float
    threshold_dbm0: float
    config: SilenceConfig = dataclasses.field(default_factory=SilenceConfig, compare=False, repr=False)

    is_marker = False
    kind = "silence"

    def evidence(self) -> Evidence:
        return {
            "detector": "silence",
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "duration_ms": self.end_ms - self.start_ms,
            "floor_dbm0": _r(self.floor_dbm0),
            "threshold_dbm0": _r(self.threshold_dbm0),
            "thresholds": _thresholds(self.config),
        }

    def to_json(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {"type": "silence", "start_ms": self.start_ms, "end_ms": self.end_ms}
        out.update({k: v for k, v in self.evidence().items() if k not in out})
        return out


@dataclass(frozen=True, slots=True)
class ToneEvent:
    """A call-progress tone or the call-waiting tone. Engine: call_waiting -> CallWaitingTone."""

    name: str  # one of TONE_NAMES
    start_ms: int
    end_ms: int
    freqs_hz: tuple[float, ...]
    level_dbm0: float
    cadence_ms: tuple[int, ...] = ()  # on-times seen (busy/reorder/sit segments)
    config: ToneConfig = dataclasses.field(default_factory=ToneConfig, compare=False, repr=False)

    is_marker = False
    kind = "tone"

    def evidence(self) -> Evidence:
        return {
            "detector": "tones",
            "name": self.name,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "duration_ms": self.end_ms - self.start_ms,
            "freqs_hz": [_r(f) for f in self.freqs_hz],
            "level_dbm0": _r(self.level_dbm0),
            "cadence_ms": list(self.cadence_ms),
            "thresholds": _thresholds(self.config),
        }

    def to_json(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {
            "type": "tone",
            "name": self.name,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
        }
        out.update({k: v for k, v in self.evidence().items() if k not in out})
        return out


@dataclass(frozen=True, slots=True)
class HookflashEvent:
    """A hookflash (three-way / call-waiting flash, DIS-3WAY). Engine: HookflashDetected."""

    at_ms: int  # start of the click
    click_ms: int
    click_dbm0: float
    floor_before_dbm0: float
    floor_after_dbm0: float
    silence_before_ms: int
    silence_after_ms: int
    followed_by: tuple[str, ...]  # corroboration: "floor_step", "dial", "ringback", "dtmf"
    reported_ms: int
    config: HookflashConfig = dataclasses.field(default_factory=HookflashConfig, compare=False, repr=False)

    is_marker = False
    kind = "hookflash"

    def evidence(self) -> Evidence:
        return {
            "detector": "hookflash",
            "at_ms": self.at_ms,
            "click_ms": self.click_ms,
            "click_dbm0": _r(self.click_dbm0),
            "floor_before_dbm0": _r(self.floor_before_dbm0),
            "floor_after_dbm0": _r(self.floor_after_dbm0),
            "floor_step_db": _r(self.floor_before_dbm0 - self.floor_after_dbm0),
            "silence_before_ms": self.silence_before_ms,
            "silence_after_ms": self.silence_after_ms,
            "followed_by": list(self.followed_by),
            "reported_ms": self.reported_ms,
            "thresholds": _thresholds(self.config),
        }

    def to_json(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {"type": "hookflash", "at_ms": self.at_ms}
        out.update({k: v for k, v in self.evidence().items() if k not in out})
        return out


@dataclass(frozen=True, slots=True)
class NoiseStarted:
    """Sustained static has lasted ``min_duration_ms`` (began at ``start_ms``). Engine: NoiseDetected."""

    start_ms: int
    at_ms: int
    level_dbm0: float
    flatness: float
    config: NoiseConfig = dataclasses.field(default_factory=NoiseConfig, compare=False, repr=False)

    is_marker = True
    kind = "noise_started"

    def evidence(self) -> Evidence:
        return {
            "detector": "noise",
            "start_ms": self.start_ms,
            "at_ms": self.at_ms,
            "level_dbm0": _r(self.level_dbm0),
            "flatness": _r(self.flatness, 2),
            "thresholds": _thresholds(self.config),
        }

    def to_json(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {"type": "noise_started", "start_ms": self.start_ms}
        out.update({k: v for k, v in self.evidence().items() if k not in out})
        return out


@dataclass(frozen=True, slots=True)
class NoiseEnded:
    """A stretch of sustained static from ``start_ms`` to ``end_ms``."""

    start_ms: int
    end_ms: int
    level_dbm0: float
    flatness: float
    config: NoiseConfig = dataclasses.field(default_factory=NoiseConfig, compare=False, repr=False)

    is_marker = False
    kind = "noise"

    def evidence(self) -> Evidence:
        return {
            "detector": "noise",
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "duration_ms": self.end_ms - self.start_ms,
            "level_dbm0": _r(self.level_dbm0),
            "flatness": _r(self.flatness, 2),
            "thresholds": _thresholds(self.config),
        }

    def to_json(self) -> dict[str, JsonValue]:
        out: dict[str, JsonValue] = {"type": "noise", "start_ms": self.start_ms, "end_ms": self.end_ms}
        out.update({k: v for k, v in self.evidence().items() if k not in out})
        return out


DetectorEvent: TypeAlias = (
    DtmfEvent | SilenceStarted | SilenceEnded | ToneEvent | HookflashEvent | NoiseStarted | NoiseEnded
)
