"""Scenario files (sim/scenarios.py): the format, its defaults, and errors that name file, call and key."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from ivr.errors import InputError
from sim.phones import Action, Answer, HoldMode, KeyMethod
from sim.scenarios import BEHAVIOURS, load_scenario

ROOT = Path(__file__).resolve().parents[2]
DAY = ROOT / "scenarios" / "day-at-the-county-jail.toml"

HEAD = """
[scenario]
name = "t"
time_scale = 0.5

[[callers]]
id = "A1"
name = "Ann"
pin = "1234"
name_clip = "name-maria"
"""


def write(tmp_path: Path, body: str, head: str = HEAD) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(head + body, encoding="utf-8")
    return path


def test_day_at_the_county_jail_has_a_realistic_mix_of_at_least_100_calls() -> None:
    """The shipped day: >= 100 calls, mostly accepted talks, with every kind of ending represented."""
    scenario = load_scenario(DAY)
    assert len(scenario.calls) >= 100
    counts = Counter(c.behaviour for c in scenario.calls)
    assert counts["talk"] > len(scenario.calls) / 2
    for behaviour in (
        "refuse",
        "block",
        "busy",
        "no_answer",
        "hold",
        "three_way",
        "stray_keys",
        "go_silent",
        "long_talk",
        "transfer",
        "call_waiting",
    ):
        assert counts[behaviour] >= 1, behaviour
    outcomes = Counter(c.expect.outcome for c in scenario.calls)
    assert set(outcomes) >= {
        "completed",
        "refused",
        "blocked",
        "busy",
        "no_answer",
        "no_input",
        "disconnected",
        "limited",
        "restricted",
        "abandoned",
        "dropped",
    }
    assert scenario.dialplan is not None and scenario.dialplan.name == "sim-county-jail.toml"
    talks = [c.called.hangup_after_s for c in scenario.calls if c.behaviour == "talk" and c.called]
    assert all(t is not None and 1.0 <= t <= 30.0 for t in talks)  # 1-10 minutes at time scale 0.05


def test_defaults_and_time_scale(tmp_path: Path) -> None:
    """expect defaults to the behaviour's; talk_s and at_s are scaled, key timing is not."""
    scenario = load_scenario(
        write(
            tmp_path,
            """
[[calls]]
caller = "A1"
number = "+15125550101"
behaviour = "hold"
hold_mode = "inactive"
at_s = 10
talk_s = 100
key_after_s = 2
""",
        )
    )
    call = scenario.calls[0]
    assert (call.expect.outcome, call.expect.reason) == ("disconnected", "DIS-HOLD")
    assert call.called is not None
    assert call.called.key == "1" and call.called.key_after_s == 2
    assert call.called.steps[0].action is Action.HOLD and call.called.steps[0].arg == HoldMode.INACTIVE.value
    assert call.called.steps[0].at_s == 5.0
    assert call.called.hangup_after_s == 50.0
    assert call.facility.inmate_id == "A1" and call.facility.name_clip == "name-maria"


def test_pin_identification_repeat_and_explicit_expectation(tmp_path: Path) -> None:
    """identify = "pin" sends the roster PIN; repeat expands a call; expect may be a string."""
    scenario = load_scenario(
        write(
            tmp_path,
            """
[[calls]]
caller = "A1"
number = "+15125550101"
behaviour = "busy"
identify = "pin"
repeat = 3
expect = "busy ACC-4"
""",
        )
    )
    assert [c.index for c in scenario.calls] == [1, 2, 3]
    call = scenario.calls[0]
    assert call.facility.inmate_id is None and call.facility.pin == "1234"
    assert call.called is not None and call.called.answer is Answer.BUSY


def test_every_behaviour_builds_with_its_defaults(tmp_path: Path) -> None:
    """Each documented behaviour builds a phone script from defaults alone."""
    body = ""
    for name in BEHAVIOURS:
        extra = "caller_hangup_s = 60\n" if name == "caller_hangs_up" else ""
        body += f'[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "{name}"\n{extra}\n'
    scenario = load_scenario(write(tmp_path, body))
    assert [c.behaviour for c in scenario.calls] == list(BEHAVIOURS)
    assert [c.called is None for c in scenario.calls].count(True) == 1  # not_called


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "dance"\n',
            "calls[1].behaviour: unknown behaviour",
        ),
        ('[[calls]]\ncaller = "A1"\nnumber = "5550101"\nbehaviour = "talk"\n', "calls[1].number: must be an E.164"),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\ntalk_s = "long"\n',
            "calls[1].talk_s: must be a number",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\nhold_mode = "inactive"\n',
            "calls[1].hold_mode: unknown key (not a parameter of this behaviour)",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\ncolour = 3\n',
            "calls[1].colour: unknown key",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "hold"\nhold_mode = "paused"\n',
            "calls[1].hold_mode: must be one of sendonly, inactive, 0.0.0.0",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\nkey_method = "smoke"\n',
            "calls[1].key_method: must be one of",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\ntelephone_event = false\n',
            "calls[1].key_method: rfc4733 keys need telephone_event = true",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\nexpect = { outcome = "won" }\n',
            "calls[1].expect.outcome: must be one of",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\n'
            'expect = { outcome = "completed" }\n',
            "calls[1].expect.reason: is required",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "caller_hangs_up"\n',
            "calls[1].caller_hangup_s: is required",
        ),
        (
            '[[calls]]\ncaller = "B9"\nnumber = "+15125550101"\nbehaviour = "talk"\nidentify = "pin"\n',
            "calls[1].caller: 'B9' is not in [[callers]]",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "stray_keys"\nkeys = "5x"\n',
            "calls[1].keys: must be DTMF keys",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\nrings = -1\n',
            "calls[1].rings: must be between 0 and 30",
        ),
        (
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\n\n'
            '[[calls]]\ncaller = "A1"\nnumber = "+15125550101"\nbehaviour = "talk"\nrepeat = 0\n',
            "calls[2].repeat: must be between 1 and 1000",
        ),
        ("", "(top).calls: a scenario needs at least one [[calls]] table"),
        ('[[accounts]]\nholder = "X"\nnumbers = ["+15125550101", "+15125550101"]\n', "accounts[1].numbers:"),
        ("unknown = 1\n", "(top).unknown: unknown key"),
    ],
)
def test_errors_name_the_file_the_call_and_the_key(tmp_path: Path, body: str, message: str) -> None:
    """A bad scenario is an InputError (exit 2) naming file, section/call index and key."""
    path = write(tmp_path, body) if not body.startswith("unknown") else write(tmp_path, "", head=body + HEAD)
    with pytest.raises(InputError) as info:
        load_scenario(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ")
    assert message in text


def test_callers_are_validated(tmp_path: Path) -> None:
    """Roster entries: PINs are 4-12 digit strings and unique; ids are unique."""
    bad_pin = HEAD.replace('pin = "1234"', "pin = 1234")
    with pytest.raises(InputError, match=r"callers\[1\]\.pin"):
        load_scenario(write(tmp_path, '[[calls]]\ncaller="A1"\nnumber="+15125550101"\nbehaviour="talk"\n', bad_pin))
    twice = HEAD + '\n[[callers]]\nid = "A1"\nname = "Bo"\npin = "5678"\n'
    with pytest.raises(InputError, match=r"callers\[2\]\.id: caller 'A1' is listed twice"):
        load_scenario(write(tmp_path, '[[calls]]\ncaller="A1"\nnumber="+15125550101"\nbehaviour="talk"\n', twice))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    """A file that is not TOML, or is not there, is a clear InputError."""
    path = tmp_path / "bad.toml"
    path.write_text("[scenario\n", encoding="utf-8")
    with pytest.raises(InputError, match="not valid TOML"):
        load_scenario(path)
    with pytest.raises(InputError, match="cannot read"):
        load_scenario(tmp_path / "missing.toml")


def test_missing_dialplan_is_an_error(tmp_path: Path) -> None:
    """[scenario].dialplan is relative to the scenario and must exist."""
    head = HEAD.replace("time_scale = 0.5", 'dialplan = "nope.toml"')
    with pytest.raises(InputError, match=r"scenario\.dialplan: no such file"):
        load_scenario(write(tmp_path, '[[calls]]\ncaller="A1"\nnumber="+15125550101"\nbehaviour="talk"\n', head))


def test_key_methods_in_the_day_cover_every_transport() -> None:
    """The day exercises RFC 4733, INFO, in-band (some without telephone-event) and two at once."""
    methods = Counter(c.called.key_method for c in load_scenario(DAY).calls if c.called and c.behaviour == "talk")
    assert {KeyMethod.RFC4733, KeyMethod.INFO, KeyMethod.INBAND, KeyMethod.RFC4733_INFO} <= set(methods)
