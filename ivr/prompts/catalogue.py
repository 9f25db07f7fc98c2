"""The prompt catalogue: which prompts the call machine may ask for, and their variables.

The wording of each prompt lives in ``prompts/<language>/texts.toml`` (a translator's file); what a
prompt *needs* lives here, in code, so the machine, the texts and the tests agree on one list.
A template may only use the variables its prompt declares (checked when the texts are loaded), and
``check_variables`` refuses a request that lacks a required variable or carries a bad value.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

LANGUAGES: tuple[str, ...] = ("en", "es")

# Keys a prompt may name ("press nine"). DTMF A-D exist (ivr.types.DTMF_KEYS) but no phone shows them.
SPOKEN_KEYS = "0123456789*#"

BLOCK_REASONS = ("BLK-PARTY", "BLK-FACILITY", "BLK-CARRIER", "BLK-NEWNUM", "BLK-SPEND", "BLK-FUNDS")
WARNING_REASONS = ("DIS-DIGIT", "DIS-SILENCE", "DIS-NOISE", "DIS-HOLD", "DIS-3WAY")
DISCONNECT_REASONS = (
    "DIS-LIMIT",
    "DIS-FUNDS",
    "DIS-HOLD",
    "DIS-3WAY",
    "DIS-DIGIT",
    "DIS-SILENCE",
    "DIS-NOISE",
)


class Kind(enum.Enum):
    """What a variable holds; decides how it is validated and how a template may use it."""

    CHOICE = "choice"  # one of a fixed set of strings (may select a segment: "blocked.{reason}")
    KEY = "key"  # a phone key 0-9 * #
    COUNT = "count"  # a non-negative integer (money in minor units, seconds, minutes)
    FLAG = "flag"  # 0 or 1; absent means 0
    TEXT = "text"  # free text (a facility id)


@dataclass(frozen=True, slots=True)
class Variable:
    name: str
    kind: Kind
    required: bool = True
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PromptSpec:
    prompt_id: str
    legs: str  # "facility", "called" or "both": documentation for the machine's author
    variables: tuple[Variable, ...] = ()

    def variable(self, name: str) -> Variable | None:
        for var in self.variables:
            if var.name == name:
                return var
        return None


def _choice(name: str, choices: tuple[str, ...]) -> Variable:
    return Variable(name, Kind.CHOICE, choices=choices)


_SPECS: tuple[PromptSpec, ...] = (
    # Facility leg: before the call is placed, or the caller's side of its end.
    PromptSpec("enter_pin", "facility"),
    PromptSpec("pin_invalid", "facility"),
    PromptSpec("caller_not_allowed", "facility"),
    PromptSpec("say_name", "facility"),  # ACC-1; ends with a beep
    PromptSpec("please_wait", "facility"),
    PromptSpec("blocked", "facility", (_choice("reason", BLOCK_REASONS),)),  # BLK preamble: general terms
    PromptSpec("called_busy", "facility"),
    PromptSpec("called_no_answer", "facility"),
    PromptSpec("call_not_accepted", "facility"),  # refused or no input (ACC-3): the caller is not told which
    PromptSpec("call_failed", "facility"),
    # Called leg: the announcement (ACC-1, ACC-2) and its answers.
    PromptSpec(
        "announcement",
        "called",
        (
            _choice("call_type", ("prepaid", "collect")),
            _choice("name", ("clip", "none")),  # ACC-1: "none" announces by facility only
            Variable("facility", Kind.TEXT),  # the dialplan's facility id: its recorded name is played
            Variable("facility_name", Kind.TEXT, required=False),  # fallback lookup when the id is unknown
            Variable("rate_minor_per_min", Kind.COUNT),
            # The most the call can cost and for how long; both absent for an untimed call (REG-3, LIM-1).
            Variable("max_cost_minor", Kind.COUNT, required=False),
            Variable("max_minutes", Kind.COUNT, required=False),
            Variable("key_accept", Kind.KEY),
            Variable("key_refuse", Kind.KEY),
            Variable("key_block", Kind.KEY),
            Variable("key_language", Kind.KEY, required=False),  # omitted when the facility has one language
            Variable("privileged", Kind.FLAG, required=False),  # REG-3: no "monitored and recorded"
        ),
    ),
    PromptSpec("invalid_choice", "called"),  # ACC-3
    PromptSpec("call_blocked_confirm", "called"),  # ACC-6
    PromptSpec("call_refused_confirm", "called"),
    # Both legs, once connected.
    PromptSpec(
        "connected",
        "both",
        (
            Variable("allowed_seconds", Kind.COUNT, required=False),
            Variable("untimed", Kind.FLAG, required=False),
        ),
    ),  # LIM-1: the allowed time is announced; allowed_seconds is needed unless untimed=1
    PromptSpec("time_warning", "both", (Variable("seconds_left", Kind.COUNT),)),  # DIS-LIMIT warnings
    PromptSpec("funds_warning", "both", (Variable("seconds_left", Kind.COUNT),)),  # DIS-FUNDS warning
    PromptSpec("warning", "both", (_choice("reason", WARNING_REASONS),)),
    PromptSpec("disconnect", "both", (_choice("reason", DISCONNECT_REASONS),)),
    PromptSpec("goodbye", "both"),
)

PROMPTS: Mapping[str, PromptSpec] = {spec.prompt_id: spec for spec in _SPECS}
PROMPT_IDS: frozenset[str] = frozenset(PROMPTS)

Value = str | int


def check_language(language: str) -> None:
    if language not in LANGUAGES:
        raise ValueError(f"unknown prompt language {language!r}; known: {', '.join(LANGUAGES)}")


def spec_for(prompt_id: str) -> PromptSpec:
    try:
        return PROMPTS[prompt_id]
    except KeyError:
        raise ValueError(f"unknown prompt id {prompt_id!r}; known: {', '.join(sorted(PROMPT_IDS))}") from None


def _normalise(prompt_id: str, var: Variable, raw: object) -> Value:
    where = f"prompt {prompt_id!r} variable {var.name!r}"
    if var.kind is Kind.CHOICE:
        if not isinstance(raw, str) or raw not in var.choices:
            raise ValueError(f"{where} must be one of {', '.join(var.choices)}, got {raw!r}")
        return raw
    if var.kind is Kind.KEY:
        key = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
        if not isinstance(key, str) or len(key) != 1 or key not in SPOKEN_KEYS:
            raise ValueError(f"{where} must be a phone key 0-9, * or #, got {raw!r}")
        return key
    if var.kind is Kind.COUNT:
        if isinstance(raw, str) and raw.isdigit():
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
            raise ValueError(f"{where} must be a non-negative integer, got {raw!r}")
        return raw
    if var.kind is Kind.FLAG:
        if isinstance(raw, bool):
            return int(raw)
        if raw in (0, 1, "0", "1"):
            return int(str(raw))
        raise ValueError(f"{where} must be 0 or 1, got {raw!r}")
    if not isinstance(raw, str) or not raw:
        raise ValueError(f"{where} must be a non-empty string, got {raw!r}")
    return raw


def check_variables(prompt_id: str, variables: Mapping[str, object]) -> dict[str, Value]:
    """Validate ``variables`` for ``prompt_id``; return them normalised (keys as str, counts as int).

    Variables the prompt does not declare are ignored: the machine may pass more facts than a
    wording uses. A missing required variable or a bad value raises ``ValueError``.
    """
    spec = spec_for(prompt_id)
    out: dict[str, Value] = {}
    for var in spec.variables:
        if var.name not in variables or variables[var.name] is None:
            if var.required:
                raise ValueError(f"prompt {prompt_id!r} needs variable {var.name!r}")
            continue
        out[var.name] = _normalise(prompt_id, var, variables[var.name])
    return out
