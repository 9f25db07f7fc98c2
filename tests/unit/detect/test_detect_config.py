"""The dialplan [detectors] table maps 1:1 onto the detector configs, with clear errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.detect.config import DetectorConfigs, DtmfConfig, detector_configs_from_table
from ivr.errors import InputError


def test_empty_table_gives_defaults_with_noise_off() -> None:
    """No [detectors] settings: every default, noise detection off (DIS-NOISE is off by default)."""
    cfg = detector_configs_from_table({}, "jail.toml")
    assert cfg == DetectorConfigs()
    assert cfg.enabled() == ("dtmf", "silence", "tones", "hookflash")


def test_sub_table_keys_set_fields_and_flags() -> None:
    """Keys of [detectors.<name>] are the field names; enabled switches a detector."""
    table = {
        "dtmf": {"min_level_dbm0": -30, "min_duration_ms": 35},
        "hookflash": {"enabled": False, "min_floor_step_db": 8.5},
        "noise": {"enabled": True},
    }
    cfg = detector_configs_from_table(table, "jail.toml")
    assert cfg.dtmf == DtmfConfig(min_level_dbm0=-30.0, min_duration_ms=35)
    assert cfg.hookflash.min_floor_step_db == 8.5
    assert not cfg.hookflash_enabled and cfg.noise_enabled


def test_enabled_list_selects_detectors() -> None:
    """detectors.enabled = [...] lists exactly the detectors to run."""
    cfg = detector_configs_from_table({"enabled": ["dtmf", "noise"]}, "jail.toml")
    assert cfg.enabled() == ("dtmf", "noise")


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"dtmf": {"min_levl_dbm0": -30}}, "jail.toml: detectors.dtmf.min_levl_dbm0"),
        ({"dtmf": {"min_level_dbm0": "loud"}}, "jail.toml: detectors.dtmf.min_level_dbm0"),
        ({"dtmf": {"min_level_dbm0": -200}}, "jail.toml: detectors.dtmf.min_level_dbm0"),
        ({"dtmf": {"min_duration_ms": 32.5}}, "jail.toml: detectors.dtmf.min_duration_ms"),
        ({"dtmf": {"min_duration_ms": -1}}, "jail.toml: detectors.dtmf.min_duration_ms"),
        ({"dtmf": {"filter_dial_tone": 1}}, "jail.toml: detectors.dtmf.filter_dial_tone"),
        ({"silence": {"min_silence_ms": True}}, "jail.toml: detectors.silence.min_silence_ms"),
        ({"tones": {"call_waiting_min_ms": 500}}, "jail.toml: detectors.tones.call_waiting_min_ms"),
        ({"noise": {"min_flatness": 1.5}}, "jail.toml: detectors.noise.min_flatness"),
        ({"hookflash": {"enabled": "yes"}}, "jail.toml: detectors.hookflash.enabled"),
        ({"radar": {}}, "jail.toml: detectors.radar"),
        ({"dtmf": 3}, "jail.toml: detectors.dtmf"),
        ({"enabled": ["dtmf", "sonar"]}, "jail.toml: detectors.enabled"),
    ],
)
def test_bad_key_type_or_range_is_an_input_error_naming_the_key(table: dict[str, object], where: str) -> None:
    """Unknown keys, wrong types and out-of-range values raise InputError with file and key."""
    with pytest.raises(InputError) as info:
        detector_configs_from_table(table, "jail.toml")
    assert info.value.where == where


def test_with_only_enables_exactly_the_named_detectors() -> None:
    """with_only turns on the named detectors (noise included) and off the rest."""
    cfg = DetectorConfigs().with_only(("noise", "tones"))
    assert cfg.enabled() == ("tones", "noise")


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**7), max_value=10**7),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)
_KEYS = st.sampled_from(
    ["min_level_dbm0", "min_duration_ms", "enabled", "max_click_ms", "min_flatness", "bogus", "filter_dial_tone"]
)


@settings(max_examples=300, deadline=None)
@given(
    table=st.dictionaries(
        st.sampled_from(["dtmf", "silence", "tones", "hookflash", "noise", "radar"]),
        st.dictionaries(_KEYS, _VALUES, max_size=3),
        max_size=3,
    )
)
def test_any_table_gives_configs_or_an_input_error(table: dict[str, dict[str, object]]) -> None:
    """Whatever a dialplan holds, the mapping returns configs or raises InputError, nothing else."""
    try:
        cfg = detector_configs_from_table(table, "x.toml")
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith("x.toml: detectors")
    else:
        assert isinstance(cfg, DetectorConfigs)
        for name, sub in table.items():
            for key, value in sub.items():
                if key != "enabled":
                    assert getattr(getattr(cfg, name), key) == value
