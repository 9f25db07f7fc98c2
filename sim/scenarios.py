"""Scenario files for ``ivr sim run`` (issue 6): a documented, validated TOML format.

A scenario is a day of calls against the engine: who calls whom, what the called party does, and
the outcome and reason (DOMAIN.md ids) the engine must decide. Example (the full format; every key
but ``[[calls]].caller``, ``number`` and ``behaviour`` is optional)::

    [scenario]
    name = "A day at the county jail"
    dialplan = "dialplans/sim-county-jail.toml"  # relative to this file; the engine's dialplan
    time_scale = 0.05          # multiplies talk_s, at_s and caller_hangup_s of every call
    parallel = 12              # default for --parallel
    start_gap_s = 0.3          # between two call starts
    timeout_s = 600            # a call still running after this is a failure of the run

    [[callers]]                # the roster (ivr roster add): id, name, PIN, name clip
    id = "A1001"
    name = "Marcus Johnson"
    pin = "481516"
    name_clip = "name-marcus"  # a shipped clip (sim/audio) or a WAV path
    status = "active"          # active | released | suspended

    [[accounts]]               # prepaid accounts to open and fund (ACT-1)
    holder = "Denise Johnson"
    numbers = ["+15125550101", "+15125550102"]
    deposit_minor = 2000

    [[calls]]
    caller = "A1001"
    number = "+15125550101"
    behaviour = "talk"         # see BEHAVIOURS
    identify = "header"        # header (X-Inmate-Id) | pin (RFC 4733 keys)
    key_method = "rfc4733"     # rfc4733 | info | inband | rfc4733+info | rfc4733+inband
    talk_s = 240               # conversation length (scaled)
    expect = { outcome = "completed", reason = "DIS-HANGUP" }   # default: the behaviour's

Behaviours and their parameters are in :data:`BEHAVIOURS`; :func:`load_scenario` checks every
key and value and raises :class:`~ivr.errors.InputError` (exit 2) naming the file, the call index
and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.call.outcomes import Outcome
from ivr.errors import InputError
from sim.phones import (
    Action,
    Answer,
    CalledBehaviour,
    CallerBehaviour,
    HoldMode,
    KeyMethod,
    Step,
)


@dataclass(frozen=True, slots=True)
class Behaviour:
    """A named called-party behaviour: its default expectation and the parameters it takes."""

    name: str
    description: str
    expect: tuple[str, str]  # (outcome, reason)
    params: frozenset[str] = frozenset()


_COMMON = frozenset({"rings", "key_method", "key_after_s", "codec", "telephone_event", "static"})
_TALK = frozenset({"talk_s"})
BEHAVIOURS: dict[str, Behaviour] = {
    b.name: b
    for b in (
        Behaviour("talk", "accepts with key 1 and talks talk_s, then hangs up", ("completed", "DIS-HANGUP"), _TALK),
        Behaviour("refuse", "refuses with key 2", ("refused", "ACC-2")),
        Behaviour("block", "blocks future calls with key 6", ("blocked", "ACC-6")),
        Behaviour("busy", "the line is busy (486)", ("busy", "ACC-4")),
        Behaviour("no_answer", "rings until the engine gives up (CANCEL)", ("no_answer", "ACC-4")),
        Behaviour("say_nothing", "answers and presses nothing", ("no_input", "ACC-3"), frozenset({"talk_s"})),
        Behaviour("invalid_key", "presses 4 (not a choice) twice", ("no_input", "ACC-3")),
        Behaviour(
            "hangup_in_announcement",
            "hangs up during the announcement",
            ("abandoned", "DIS-HANGUP"),
            frozenset({"at_s"}),
        ),
        Behaviour(
            "hold",
            "accepts, then puts the call on hold (re-INVITE)",
            ("disconnected", "DIS-HOLD"),
            frozenset({"at_s", "hold_mode", "talk_s"}),
        ),
        Behaviour(
            "transfer",
            "accepts, then transfers it (REFER)",
            ("disconnected", "DIS-HOLD"),
            frozenset({"at_s", "refer_to", "talk_s"}),
        ),
        Behaviour(
            "three_way",
            "accepts, then flashes and dials a third party",
            ("disconnected", "DIS-3WAY"),
            frozenset({"at_s", "digits", "talk_s"}),
        ),
        Behaviour(
            "call_waiting",
            "accepts, then a call-waiting tone is heard",
            ("disconnected", "DIS-3WAY"),
            frozenset({"at_s", "talk_s"}),
        ),
        Behaviour(
            "stray_keys",
            "accepts, then presses keys during the call",
            ("disconnected", "DIS-DIGIT"),
            frozenset({"at_s", "keys", "interval_s", "talk_s"}),
        ),
        Behaviour(
            "go_silent",
            "accepts, then both sides go silent",
            ("disconnected", "DIS-SILENCE"),
            frozenset({"at_s", "talk_s"}),
        ),
        Behaviour(
            "static_line", "accepts on a static-filled line", ("completed", "DIS-HANGUP"), frozenset({"at_s", "talk_s"})
        ),
        Behaviour(
            "rtp_stops",
            "accepts, then its RTP stops (network failure)",
            ("dropped", "DIS-MEDIA"),
            frozenset({"at_s", "talk_s"}),
        ),
        Behaviour(
            "caller_hangs_up", "accepts and talks until the caller hangs up", ("completed", "DIS-HANGUP"), frozenset()
        ),
        Behaviour("long_talk", "accepts and talks past the time limit", ("limited", "DIS-LIMIT"), _TALK),
        Behaviour(
            "not_called", "the engine must not place the call (block, roster, funds)", ("restricted", "BLK-FACILITY")
        ),
    )
}
CALLER_KEYS = frozenset({"identify", "caller_hangup_s", "name_clip", "caller_talks", "pin"})
CALL_KEYS = frozenset({"caller", "number", "behaviour", "expect", "note", "repeat"}) | CALLER_KEYS
ALL_PARAMS = _COMMON | frozenset().union(*(b.params for b in BEHAVIOURS.values()))
IDENTIFY = ("header", "pin")
CALLER_STATUSES = ("active", "released", "suspended")


@dataclass(frozen=True, slots=True)
class Expectation:
    outcome: str
    reason: str


@dataclass(frozen=True, slots=True)
class CallerSpec:
    id: str
    name: str
    pin: str
    name_clip: str | None = None
    status: str = "active"


@dataclass(frozen=True, slots=True)
class AccountSpec:
    holder: str
    numbers: tuple[str, ...]
    deposit_minor: int
    state: str | None = None


@dataclass(frozen=True, slots=True)
class CallSpec:
    """One call of a scenario, with its phone scripts built and scaled."""

    index: int  # 1-based, in file order (after repeat expansion)
    caller: str
    number: str
    behaviour: str
    expect: Expectation
    called: CalledBehaviour | None  # None: the engine must not reach the called party
    facility: CallerBehaviour
    note: str = ""


@dataclass(frozen=True, slots=True)
class Scenario:
    path: Path
    name: str
    dialplan: Path | None
    time_scale: float
    parallel: int
    start_gap_s: float
    timeout_s: float
    callers: tuple[CallerSpec, ...]
    accounts: tuple[AccountSpec, ...]
    calls: tuple[CallSpec, ...]
    blocked_numbers: tuple[str, ...] = field(default=())


class _Where:
    """Error messages that name the file, the call and the key."""

    def __init__(self, path: Path, section: str) -> None:
        self.path = path
        self.section = section

    def fail(self, key: str | None, message: str) -> InputError:
        at = f"{self.section}.{key}" if key else self.section
        return InputError(f"{self.path}: {at}: {message}")


def _table(value: object, where: _Where) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise where.fail(None, "must be a table")
    return value


def _check_keys(data: Mapping[str, Any], allowed: frozenset[str], where: _Where) -> None:
    for key in data:
        if key not in allowed:
            raise where.fail(key, f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _str(data: Mapping[str, Any], key: str, where: _Where, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise where.fail(key, "is required")
    if not isinstance(value, str) or not value.strip():
        raise where.fail(key, f"must be a non-empty string, not {value!r}")
    return value.strip()


def _num(data: Mapping[str, Any], key: str, where: _Where, default: float, lo: float = 0.0, hi: float = 1e6) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise where.fail(key, f"must be a number, not {value!r}")
    if not lo <= float(value) <= hi:
        raise where.fail(key, f"must be between {lo:g} and {hi:g}, not {value!r}")
    return float(value)


def _int(data: Mapping[str, Any], key: str, where: _Where, default: int, lo: int = 0, hi: int = 10**9) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.fail(key, f"must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise where.fail(key, f"must be between {lo} and {hi}, not {value!r}")
    return value


def _bool(data: Mapping[str, Any], key: str, where: _Where, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise where.fail(key, f"must be true or false, not {value!r}")
    return value


def _e164(value: str, key: str, where: _Where) -> str:
    if not (value.startswith("+") and value[1:].isdigit() and 8 <= len(value) <= 16):
        raise where.fail(key, f"must be an E.164 number like +15125550101, not {value!r}")
    return value


def _choice(data: Mapping[str, Any], key: str, where: _Where, choices: tuple[str, ...], default: str) -> str:
    value = data.get(key, default)
    if value not in choices:
        raise where.fail(key, f"must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _expectation(value: object, behaviour: Behaviour, where: _Where) -> Expectation:
    if value is None:
        return Expectation(*behaviour.expect)
    if isinstance(value, str):  # "completed DIS-HANGUP"
        parts = value.split()
        if len(parts) != 2:
            raise where.fail("expect", f'must be "OUTCOME REASON" or a table, not {value!r}')
        table: Mapping[str, Any] = {"outcome": parts[0], "reason": parts[1]}
    else:
        table = _table(value, _Where(where.path, f"{where.section}.expect"))
    sub = _Where(where.path, f"{where.section}.expect")
    _check_keys(table, frozenset({"outcome", "reason"}), sub)
    outcome = _str(table, "outcome", sub)
    outcomes = tuple(o.value for o in Outcome)
    if outcome not in outcomes:
        raise sub.fail("outcome", f"must be one of {', '.join(outcomes)}, not {outcome!r}")
    return Expectation(outcome, _str(table, "reason", sub))


def _called(behaviour: Behaviour, data: Mapping[str, Any], where: _Where, scale: float) -> CalledBehaviour | None:
    name = behaviour.name
    if name == "not_called":
        return None
    key_method_text = _choice(data, "key_method", where, tuple(m.value for m in KeyMethod), "rfc4733")
    key_method = KeyMethod(key_method_text)
    telephone_event = _bool(data, "telephone_event", where, True)
    if not telephone_event and "rfc4733" in key_method.parts:
        raise where.fail("key_method", "rfc4733 keys need telephone_event = true")
    common: dict[str, Any] = {
        "rings": _int(data, "rings", where, 1, 0, 30),
        "key_method": key_method,
        "key_after_s": _num(data, "key_after_s", where, 3.0, 0.0, 120.0),
        "codec": _choice(data, "codec", where, ("PCMU", "PCMA"), "PCMU"),
        "telephone_event": telephone_event,
        "static": _bool(data, "static", where, False),
    }
    talk_s = _num(data, "talk_s", where, 120.0, 0.0, 36_000.0) * scale
    at_s = _num(data, "at_s", where, 60.0, 0.0, 36_000.0) * scale
    after_event_s = 30.0  # hang up this long after an event the engine should have acted on
    if name == "talk":
        return CalledBehaviour(key="1", hangup_after_s=talk_s, **common)
    if name == "long_talk":
        return CalledBehaviour(key="1", hangup_after_s=max(talk_s, 3600.0 * scale), **common)
    if name in ("refuse", "block"):
        return CalledBehaviour(key="2" if name == "refuse" else "6", hangup_after_s=after_event_s, **common)
    if name == "busy":
        return CalledBehaviour(answer=Answer.BUSY, key=None, **common)
    if name == "no_answer":
        return CalledBehaviour(answer=Answer.NO_ANSWER, key=None, **common)
    if name == "say_nothing":
        return CalledBehaviour(key=None, hangup_after_s=None, **common)
    if name == "invalid_key":
        return CalledBehaviour(key="4", steps=(Step(8.0, Action.KEYS, "4"),), hangup_after_s=None, **common)
    if name == "hangup_in_announcement":
        at = _num(data, "at_s", where, 2.0, 0.0, 60.0)  # not scaled: it is inside the announcement
        return CalledBehaviour(key=None, steps=(Step(at, Action.HANGUP),), hangup_after_s=None, **common)
    if name == "caller_hangs_up":
        return CalledBehaviour(key="1", hangup_after_s=None, **common)
    steps: tuple[Step, ...]
    if name == "hold":
        mode = _choice(data, "hold_mode", where, tuple(m.value for m in HoldMode), "sendonly")
        steps = (Step(at_s, Action.HOLD, mode),)
    elif name == "transfer":
        target = _e164(_str(data, "refer_to", where, "+15125550177"), "refer_to", where)
        steps = (Step(at_s, Action.REFER, target),)
    elif name == "three_way":
        digits = _str(data, "digits", where, "5125550188")
        if not all(c in "0123456789*#" for c in digits):
            raise where.fail("digits", f"must be DTMF digits, not {digits!r}")
        steps = (Step(at_s, Action.FLASH, digits),)
    elif name == "call_waiting":
        steps = (Step(at_s, Action.CALL_WAITING),)
    elif name == "stray_keys":
        keys = _str(data, "keys", where, "55")
        if not all(c in "0123456789*#ABCD" for c in keys):
            raise where.fail("keys", f"must be DTMF keys, not {keys!r}")
        interval = _num(data, "interval_s", where, 5.0, 0.5, 600.0)
        steps = tuple(Step(at_s + i * interval, Action.KEYS, k) for i, k in enumerate(keys))
    elif name == "go_silent":
        steps = (Step(at_s, Action.SILENCE),)
    elif name == "static_line":
        steps = (Step(0.0, Action.STATIC),)
    elif name == "rtp_stops":
        steps = (Step(at_s, Action.STOP_RTP),)
    else:  # pragma: no cover - BEHAVIOURS and this function are kept in step
        raise where.fail("behaviour", f"no script for {name!r}")
    last = max(s.at_s for s in steps)
    hangup = max(talk_s, last + after_event_s)
    return CalledBehaviour(key="1", steps=steps, hangup_after_s=hangup, **common)


def _call(
    data: Mapping[str, Any], index: int, where: _Where, scale: float, callers: Mapping[str, CallerSpec]
) -> CallSpec:
    behaviour_name = _str(data, "behaviour", where)
    behaviour = BEHAVIOURS.get(behaviour_name)
    if behaviour is None:
        raise where.fail("behaviour", f"unknown behaviour {behaviour_name!r} (one of {', '.join(BEHAVIOURS)})")
    allowed = CALL_KEYS | _COMMON | behaviour.params
    for key in data:
        if key not in allowed:
            hint = " (not a parameter of this behaviour)" if key in ALL_PARAMS else ""
            raise where.fail(key, f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}")
    caller_id = _str(data, "caller", where)
    caller = callers.get(caller_id)
    identify = _choice(data, "identify", where, IDENTIFY, "header")
    pin = data.get("pin")
    if pin is not None and not (isinstance(pin, str) and pin.isdigit() and 4 <= len(pin) <= 12):
        raise where.fail("pin", f"must be 4 to 12 digits as a string, not {pin!r}")
    if caller is None and identify == "pin" and pin is None:
        raise where.fail("caller", f"{caller_id!r} is not in [[callers]] and the call gives no pin")
    number = _e164(_str(data, "number", where), "number", where)
    hangup = data.get("caller_hangup_s")
    caller_hangup_s = None if hangup is None else _num(data, "caller_hangup_s", where, 0.0, 0.0, 36_000.0) * scale
    if behaviour_name == "caller_hangs_up" and caller_hangup_s is None:
        raise where.fail("caller_hangup_s", "is required for behaviour caller_hangs_up")
    clip = data.get("name_clip", caller.name_clip if caller else None)
    if clip is not None and (not isinstance(clip, str) or not clip):
        raise where.fail("name_clip", f"must be a clip name, not {clip!r}")
    talks = _bool(data, "caller_talks", where, True)
    facility = CallerBehaviour(
        inmate_id=caller_id if identify == "header" else None,
        pin=(pin or (caller.pin if caller else None)) if identify == "pin" else None,
        name_clip=clip,
        talk=talks,
        hangup_after_s=caller_hangup_s,
    )
    note = data.get("note", "")
    if not isinstance(note, str):
        raise where.fail("note", "must be a string")
    return CallSpec(
        index=index,
        caller=caller_id,
        number=number,
        behaviour=behaviour_name,
        expect=_expectation(data.get("expect"), behaviour, where),
        called=_called(behaviour, data, where, scale),
        facility=facility,
        note=note,
    )


def parse_scenario(data: Mapping[str, Any], path: Path) -> Scenario:
    """Validate a parsed TOML document (see the module docstring)."""
    top = _Where(path, "(top)")
    _check_keys(data, frozenset({"scenario", "callers", "accounts", "calls", "blocked"}), top)
    head_where = _Where(path, "scenario")
    head = _table(data.get("scenario", {}), head_where)
    _check_keys(
        head,
        frozenset({"name", "description", "dialplan", "time_scale", "parallel", "start_gap_s", "timeout_s"}),
        head_where,
    )
    name = _str(head, "name", head_where, path.stem)
    dialplan: Path | None = None
    if "dialplan" in head:
        dialplan = (path.parent / _str(head, "dialplan", head_where)).resolve()
        if not dialplan.is_file():
            raise head_where.fail("dialplan", f"no such file {dialplan}")
    scale = _num(head, "time_scale", head_where, 1.0, 0.001, 100.0)
    parallel = _int(head, "parallel", head_where, 4, 1, 500)
    gap = _num(head, "start_gap_s", head_where, 0.2, 0.0, 60.0)
    timeout = _num(head, "timeout_s", head_where, 900.0, 1.0, 86_400.0)

    callers: dict[str, CallerSpec] = {}
    raw_callers = data.get("callers", [])
    if not isinstance(raw_callers, list):
        raise top.fail("callers", "must be an array of tables [[callers]]")
    for i, raw in enumerate(raw_callers, 1):
        w = _Where(path, f"callers[{i}]")
        t = _table(raw, w)
        _check_keys(t, frozenset({"id", "name", "pin", "name_clip", "status"}), w)
        cid = _str(t, "id", w)
        if cid in callers:
            raise w.fail("id", f"caller {cid!r} is listed twice")
        pin = _str(t, "pin", w)
        if not (pin.isdigit() and 4 <= len(pin) <= 12):
            raise w.fail("pin", "must be 4 to 12 digits (as a string)")
        if any(c.pin == pin for c in callers.values()):
            raise w.fail("pin", "two callers share a PIN")
        clip = t.get("name_clip")
        if clip is not None and not isinstance(clip, str):
            raise w.fail("name_clip", "must be a string")
        callers[cid] = CallerSpec(
            cid, _str(t, "name", w), pin, clip, _choice(t, "status", w, CALLER_STATUSES, "active")
        )

    accounts: list[AccountSpec] = []
    raw_accounts = data.get("accounts", [])
    if not isinstance(raw_accounts, list):
        raise top.fail("accounts", "must be an array of tables [[accounts]]")
    seen_numbers: set[str] = set()
    for i, raw in enumerate(raw_accounts, 1):
        w = _Where(path, f"accounts[{i}]")
        t = _table(raw, w)
        _check_keys(t, frozenset({"holder", "numbers", "deposit_minor", "state"}), w)
        numbers = t.get("numbers")
        if not isinstance(numbers, list) or not numbers or not all(isinstance(n, str) for n in numbers):
            raise w.fail("numbers", "must be a non-empty list of E.164 strings")
        for n in numbers:
            _e164(n, "numbers", w)
            if n in seen_numbers:
                raise w.fail("numbers", f"{n} is on two accounts")
            seen_numbers.add(n)
        state = t.get("state")
        if state is not None and not (isinstance(state, str) and len(state) == 2 and state.isalpha()):
            raise w.fail("state", "must be a two-letter state code")
        accounts.append(
            AccountSpec(_str(t, "holder", w), tuple(numbers), _int(t, "deposit_minor", w, 0, 0, 10**9), state)
        )

    blocked = data.get("blocked", [])
    if not isinstance(blocked, list) or not all(isinstance(n, str) for n in blocked):
        raise top.fail("blocked", "must be a list of E.164 numbers (blocked by the called party, BLK-PARTY)")
    for n in blocked:
        _e164(n, "blocked", top)

    raw_calls = data.get("calls")
    if not isinstance(raw_calls, list) or not raw_calls:
        raise top.fail("calls", "a scenario needs at least one [[calls]] table")
    calls: list[CallSpec] = []
    for i, raw in enumerate(raw_calls, 1):
        w = _Where(path, f"calls[{i}]")
        t = _table(raw, w)
        repeat = _int(t, "repeat", w, 1, 1, 1000)
        for _ in range(repeat):
            calls.append(_call(t, len(calls) + 1, w, scale, callers))
    return Scenario(
        path=path,
        name=name,
        dialplan=dialplan,
        time_scale=scale,
        parallel=parallel,
        start_gap_s=gap,
        timeout_s=timeout,
        callers=tuple(callers.values()),
        accounts=tuple(accounts),
        calls=tuple(calls),
        blocked_numbers=tuple(blocked),
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; :class:`InputError` (exit 2) on any problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{p}: not valid TOML: {exc}") from None
    return parse_scenario(data, p)
