"""Detector thresholds: frozen dataclasses with defaults, and the dialplan ``[detectors]`` mapping.

Every field name carries its unit. Levels are in dBm0 with the G.711 convention used throughout
``ivr.detect``: a sine of 0 dBm0 has an RMS of 3.14 dB below a full-scale 16-bit sine (ITU-T G.711
overload point +3.14 dBm0), see :func:`ivr.detect.levels.dbm0_to_rms`.

A dialplan may write::

    [detectors]
    enabled = ["dtmf", "silence", "tones", "hookflash"]   # optional; default: all but noise
    [detectors.dtmf]
    min_level_dbm0 = -32.0
    [detectors.hookflash]
    enabled = false

Keys of the sub-tables are the field names below, 1:1; ``enabled`` may also be set per sub-table.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ivr.errors import InputError

DETECTOR_NAMES: tuple[str, ...] = ("dtmf", "silence", "tones", "hookflash", "noise")


@dataclass(frozen=True, slots=True)
class DtmfConfig:
    """In-band DTMF receiver (ITU-T Q.24, North American column; DESIGN.md section 4)."""

    # Q.24: operate from 0 to -25 dBm0 per tone, reject -55 dBm0; the threshold sits between.
    min_level_dbm0: float = -36.0
    # Q.24 North America: normal twist (low group louder, the line loses highs) up to 8 dB,
    # reverse twist (high group louder) up to 4 dB. A margin covers measurement error.
    max_normal_twist_db: float = 9.5
    max_reverse_twist_db: float = 5.5
    # Q.24: accept +-1.5 %, reject beyond +-3.5 %: the frequency is measured, the limit sits between.
    max_frequency_deviation_pct: float = 2.0
    # Power in the two tones over the power of everything else in the window (talk-off guard).
    min_tone_to_rest_db: float = 8.0
    # Second harmonic of each tone must stay this far below it (speech is rich in harmonics).
    min_harmonic_rejection_db: float = 8.0
    # Q.24: accept tones of 40 ms or more, reject 23 ms or less; the measured duration must reach this.
    min_duration_ms: int = 32
    # Q.24: bridge interruptions of 10 ms; a lost 20 ms packet is bridged too; pauses of 40 ms split.
    max_interruption_ms: int = 20
    # Ignore dial tone (350 + 440 Hz) when weighing the tones against the rest.
    filter_dial_tone: bool = True


@dataclass(frozen=True, slots=True)
class SilenceConfig:
    """Voice activity with an adaptive noise floor (DIS-SILENCE)."""

    # Below this a frame is silence whatever the floor (digital silence, deep hiss).
    absolute_silence_dbm0: float = -60.0
    # A frame is voice when it is this much above the tracked noise floor ...
    voice_margin_db: float = 9.0
    # ... and above this absolute level (quiet speech on a quiet line still counts).
    min_voice_dbm0: float = -50.0
    # The floor never adapts above this: loud sustained sound is not "line hiss".
    max_floor_dbm0: float = -35.0
    # The floor rises this slowly (dB per second) and falls at once.
    floor_rise_db_per_s: float = 4.0
    # A silence run must last this long before it is reported as started.
    min_silence_ms: int = 400
    # Voice must last this long to end a silence run (clicks do not end it).
    min_voice_ms: int = 60


@dataclass(frozen=True, slots=True)
class ToneConfig:
    """Call-progress tones (North American precise tone plan) and the call-waiting tone."""

    min_level_dbm0: float = -42.0
    min_tone_to_rest_db: float = 8.0
    max_frequency_deviation_pct: float = 2.0
    # Dial (350+440) and ringback (440+480) must last this long in one piece.
    min_dial_ms: int = 600
    min_ringback_ms: int = 800
    # Busy is 0.5 s on / 0.5 s off, reorder 0.25 s on / 0.25 s off (both 480+620).
    busy_on_min_ms: int = 380
    busy_on_max_ms: int = 650
    reorder_on_min_ms: int = 180
    reorder_on_max_ms: int = 370
    # Call waiting: 440 Hz alone for 200-300 ms (DIS-3WAY); a margin for edge measurement.
    call_waiting_min_ms: int = 170
    call_waiting_max_ms: int = 340
    # SIT: three segments (913.8/985.2, 1370.6/1428.5, 1776.7 Hz) of 276 or 380 ms.
    sit_segment_min_ms: int = 200
    sit_segment_max_ms: int = 450


@dataclass(frozen=True, slots=True)
class HookflashConfig:
    """Hookflash / three-way (DIS-3WAY): a click between silences, with corroboration."""

    # The click: a burst shorter than this ...
    max_click_ms: int = 40
    # ... at least this far above the noise floor ...
    min_click_over_floor_db: float = 15.0
    # ... with quiet before it and after it.
    min_silence_before_ms: int = 200
    min_silence_after_ms: int = 250
    # The on-hook gap of a flash lasts 300-1100 ms; what follows must come within this window.
    followup_window_ms: int = 4000
    # A drop of the line's noise floor across the click of at least this much corroborates ...
    min_floor_step_db: float = 6.0
    # ... if the floor after it is that of an idle line: with the phone on-hook only the line's
    # idle-channel noise is left, typically well below -65 dBm0, whereas a room getting quieter
    # (a TV switched off after a door click) stays above it.
    max_floor_after_dbm0: float = -65.0
    # Report only with corroboration (floor step, dial tone, ringback or DTMF after the click).
    require_corroboration: bool = True


@dataclass(frozen=True, slots=True)
class NoiseConfig:
    """Sustained static (DIS-NOISE): loud, broadband, steady."""

    min_level_dbm0: float = -40.0
    # Spectral flatness (geometric / arithmetic mean of the power spectrum): white noise ~0.56.
    min_flatness: float = 0.35
    # Short-term level spread: static is steady, speech is modulated at syllable rate.
    max_level_spread_db: float = 6.0
    min_duration_ms: int = 3000


@dataclass(frozen=True, slots=True)
class DetectorConfigs:
    """All detectors' settings for one facility, with on/off switches (noise is off by default)."""

    dtmf: DtmfConfig = field(default_factory=DtmfConfig)
    silence: SilenceConfig = field(default_factory=SilenceConfig)
    tones: ToneConfig = field(default_factory=ToneConfig)
    hookflash: HookflashConfig = field(default_factory=HookflashConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    dtmf_enabled: bool = True
    silence_enabled: bool = True
    tones_enabled: bool = True
    hookflash_enabled: bool = True
    noise_enabled: bool = False

    def enabled(self) -> tuple[str, ...]:
        """Names of the enabled detectors, in DETECTOR_NAMES order."""
        return tuple(name for name in DETECTOR_NAMES if getattr(self, f"{name}_enabled"))

    def with_only(self, names: tuple[str, ...]) -> DetectorConfigs:
        """A copy where exactly ``names`` are enabled."""
        flags: dict[str, Any] = {f"{name}_enabled": name in names for name in DETECTOR_NAMES}
        return dataclasses.replace(self, **flags)


_CLASSES: dict[str, type[Any]] = {
    "dtmf": DtmfConfig,
    "silence": SilenceConfig,
    "tones": ToneConfig,
    "hookflash": HookflashConfig,
    "noise": NoiseConfig,
}

# Valid ranges per field (inclusive). A value outside is an InputError naming the key.
_RANGES: dict[str, tuple[float, float]] = {
    "min_level_dbm0": (-70.0, 3.0),
    "absolute_silence_dbm0": (-90.0, -20.0),
    "min_voice_dbm0": (-80.0, -10.0),
    "max_floor_dbm0": (-80.0, -10.0),
    "max_normal_twist_db": (0.0, 20.0),
    "max_reverse_twist_db": (0.0, 20.0),
    "max_frequency_deviation_pct": (0.5, 5.0),
    "min_tone_to_rest_db": (-10.0, 40.0),
    "min_harmonic_rejection_db": (0.0, 40.0),
    "voice_margin_db": (1.0, 40.0),
    "floor_rise_db_per_s": (0.1, 60.0),
    "min_click_over_floor_db": (3.0, 60.0),
    "min_floor_step_db": (1.0, 60.0),
    "max_floor_after_dbm0": (-100.0, -20.0),
    "min_flatness": (0.0, 1.0),
    "max_level_spread_db": (0.5, 40.0),
}
_MS_RANGE = (0, 600_000)


def _check_field(name: str, key: str, value: object, current: object, where: str) -> object:
    at = f"{where}: detectors.{name}.{key}"
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise InputError(f"expected true or false, got {value!r}", where=at)
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"expected an integer (milliseconds), got {value!r}", where=at)
        low, high = _MS_RANGE
        if not low <= value <= high:
            raise InputError(f"{value} out of range {low}..{high}", where=at)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"expected a number, got {value!r}", where=at)
    number = float(value)
    low_f, high_f = _RANGES.get(key, (-1e9, 1e9))
    if not math.isfinite(number) or not low_f <= number <= high_f:
        raise InputError(f"{number} out of range {low_f}..{high_f}", where=at)
    return number


def _check_cross(name: str, cfg: object, where: str) -> None:
    """Rules between fields of one sub-table."""
    pairs = {
        "tones": [
            ("busy_on_min_ms", "busy_on_max_ms"),
            ("reorder_on_min_ms", "reorder_on_max_ms"),
            ("call_waiting_min_ms", "call_waiting_max_ms"),
            ("sit_segment_min_ms", "sit_segment_max_ms"),
        ]
    }
    for low, high in pairs.get(name, []):
        if getattr(cfg, low) > getattr(cfg, high):
            raise InputError(f"{low} must not exceed {high}", where=f"{where}: detectors.{name}.{low}")


def detector_configs_from_table(table: Mapping[str, object], where: str) -> DetectorConfigs:
    """Map a dialplan ``[detectors]`` table onto :class:`DetectorConfigs`.

    Raises :class:`InputError` (``where`` = ``"<where>: detectors.<name>.<key>"``) for an unknown
    key, a wrong type or an out-of-range value.
    """
    if not isinstance(table, Mapping):
        raise InputError("expected a table", where=f"{where}: detectors")
    result = DetectorConfigs()
    flags: dict[str, Any] = {}
    if "enabled" in table:
        names = table["enabled"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise InputError("expected a list of detector names", where=f"{where}: detectors.enabled")
        for n in names:
            if n not in DETECTOR_NAMES:
                raise InputError(
                    f"unknown detector {n!r} (known: {', '.join(DETECTOR_NAMES)})",
                    where=f"{where}: detectors.enabled",
                )
        flags = {f"{n}_enabled": n in names for n in DETECTOR_NAMES}
    for name, sub in table.items():
        if name == "enabled":
            continue
        if name not in _CLASSES:
            raise InputError(
                f"unknown detector (known: {', '.join(DETECTOR_NAMES)})", where=f"{where}: detectors.{name}"
            )
        if not isinstance(sub, Mapping):
            raise InputError("expected a table", where=f"{where}: detectors.{name}")
        cls = _CLASSES[name]
        defaults = cls()
        known = {f.name for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in sub.items():
            if key == "enabled":
                if not isinstance(value, bool):
                    raise InputError(
                        f"expected true or false, got {value!r}", where=f"{where}: detectors.{name}.enabled"
                    )
                flags[f"{name}_enabled"] = value
                continue
            if key not in known:
                raise InputError(
                    f"unknown key (known: {', '.join(sorted(known))})",
                    where=f"{where}: detectors.{name}.{key}",
                )
            changes[key] = _check_field(name, key, value, getattr(defaults, key), where)
        cfg = dataclasses.replace(defaults, **changes)
        _check_cross(name, cfg, where)
        replacement: dict[str, Any] = {name: cfg}
        result = dataclasses.replace(result, **replacement)
    return dataclasses.replace(result, **flags)
