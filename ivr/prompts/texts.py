"""Prompt texts and templates: ``prompts/<language>/texts.toml``, and expanding a prompt to segments.

The file format (one file per language, written for a translator)
------------------------------------------------------------------
``[build]``      ``voice`` (an espeak-ng voice) and ``speed_wpm`` used by ``ivr prompts build``.

``[segments]``   segment id -> the words recorded in ``<id>.wav``. Sub-tables make dotted ids:
                 ``[segments.num]`` ``5 = "five"`` is the segment ``num.5``. Each segment is one
                 recording; prompts are sequences of them, so a text can be re-recorded (by espeak-ng
                 or a voice artist) without touching code. Reserved groups the code relies on:
                 ``num.*`` (numbers, see ivr.prompts.numbers), ``money.*``, ``time.*``, ``key.*``,
                 ``facility.<facility id>`` (a facility's spoken name) and ``any_facility`` (the
                 fallback for a facility without a recorded name).

``[prompts]``    prompt id -> a template: an ordered list of items, each one of
                 - ``"segment_id"``: play that recording;
                 - ``"blocked.{reason}"``: a segment id completed by a choice variable (every
                   allowed value must have its segment; checked at load);
                 - ``"{var:kind}"``: speak a variable; kinds: ``money`` (minor units: "nine cents"),
                   ``seconds`` / ``minutes`` (a duration: "fifteen minutes"), ``number``, ``key``
                   ("press *nine*"), ``facility`` (a facility id -> its name segment);
                   ``{var}`` alone is ``key`` for a key variable and ``number`` for a count;
                 - ``"clip:name"``: the caller's recorded name (ACC-1); ``"tone:beep"``: a 1 kHz beep;
                 - a table ``{ if = "var", equals = "value", say = [...], else = [...], lang = "es" }``:
                   ``say`` when the variable is present and true (not 0) -- or equal to ``equals`` when
                   given -- otherwise ``else``; ``unless`` instead of ``if`` negates the test; ``lang``
                   plays the block from another language's file (the "Para español, oprima nueve"
                   offer inside the English announcement).
                 The pause after an item follows the punctuation that ends its text (sentence: . ? !,
                 clause: , ; :, otherwise a word gap). A value or built-in has no text: append the mark
                 to the item (``"{max_minutes:minutes}."``, ``"clip:name,"``) to set its pause.

Which variables each prompt has is declared in ivr.prompts.catalogue; a template using anything
else is refused at load with the file and the key.
"""

from __future__ import annotations

import enum
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeAlias

from ivr.errors import InputError
from ivr.prompts import numbers
from ivr.prompts.catalogue import (
    LANGUAGES,
    PROMPT_IDS,
    PROMPTS,
    Kind,
    PromptSpec,
    Value,
    check_language,
    check_variables,
    spec_for,
)

TEXTS_FILE = "texts.toml"
SEGMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*(?<!\.)$")
CLIP_NAME = "clip:name"
TONE_BEEP = "tone:beep"
BUILTINS = frozenset({CLIP_NAME, TONE_BEEP})
FALLBACK_FACILITY = "any_facility"
FACILITY_PREFIX = "facility."
_VALUE = re.compile(r"^\{([a-z_][a-z0-9_]*)(?::([a-z]+))?\}$")
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
VALUE_KINDS = ("money", "seconds", "minutes", "number", "key", "facility")


class Pause(enum.Enum):
    """Silence after a segment, by the punctuation that ends it (values in ms)."""

    WORD = 40
    CLAUSE = 200
    SENTENCE = 400

    @classmethod
    def after_text(cls, text: str) -> Pause:
        end = text.rstrip()[-1:]
        if end in ".?!":
            return cls.SENTENCE
        if end in ",;:":
            return cls.CLAUSE
        return cls.WORD


_PAUSE_MARKS = {
    ".": Pause.SENTENCE,
    "?": Pause.SENTENCE,
    "!": Pause.SENTENCE,
    ",": Pause.CLAUSE,
    ";": Pause.CLAUSE,
    ":": Pause.CLAUSE,
}


@dataclass(frozen=True, slots=True)
class Say:
    """A recorded segment; ``pattern`` may hold ``{choice}`` placeholders."""

    pattern: str
    pause: Pause | None


@dataclass(frozen=True, slots=True)
class Speak:
    """A variable spoken as money, a duration, a number, a key or a facility name."""

    var: str
    kind: str
    pause: Pause | None


@dataclass(frozen=True, slots=True)
class Builtin:
    """The caller's name clip or the beep."""

    builtin_id: str
    pause: Pause | None


@dataclass(frozen=True, slots=True)
class Block:
    """A conditional and/or other-language group of items."""

    var: str
    negate: bool
    equals: str | None
    say: tuple[Item, ...]
    otherwise: tuple[Item, ...]
    language: str | None


Item: TypeAlias = Say | Speak | Builtin | Block


@dataclass(frozen=True, slots=True)
class Texts:
    """One language's file, parsed and checked."""

    language: str
    path: Path
    voice: str
    speed_wpm: int
    segments: Mapping[str, str]
    templates: Mapping[str, tuple[Item, ...]]


@dataclass(frozen=True, slots=True)
class Piece:
    """One thing to play: a recorded segment of ``language`` or a built-in; ``pause`` follows it."""

    language: str
    segment_id: str
    pause: Pause


def required_segments(language: str) -> frozenset[str]:
    """Every segment id the number, money, duration and key speech of ``language`` can produce."""
    ids = {
        "money.cent",
        "money.cents",
        "money.dollar",
        "money.dollars",
        "money.and",
        "time.second",
        "time.seconds",
        "time.minute",
        "time.minutes",
        "time.and",
        "key.star",
        "key.pound",
        FALLBACK_FACILITY,
    }
    if language == "en":
        ids |= {f"num.{n}" for n in range(20)} | {f"num.{n}" for n in range(20, 100, 10)}
        ids |= {"num.hundred", "num.thousand"}
    else:
        ids |= {f"num.{n}" for n in range(30)} | {f"num.{n}" for n in range(30, 101, 10)}
        ids |= {"num.1.m", "num.1.f", "num.21.m", "num.21.f", "num.y", "num.ciento", "num.mil"}
        ids |= {f"num.{h}" for h in range(200, 1000, 100)} | {f"num.{h}.f" for h in range(200, 1000, 100)}
    return frozenset(ids)


# ---------------------------------------------------------------------------------------------- loading


def _flatten(table: Mapping[str, object], prefix: str, where: str, out: dict[str, str]) -> None:
    for key, value in table.items():
        seg_id = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten(value, f"{seg_id}.", where, out)
            continue
        if not SEGMENT_ID.match(seg_id):
            raise InputError("segment ids are letters, digits, _ . - (not ending in '.')", where=f"{where}: {seg_id}")
        if not isinstance(value, str) or not value.strip():
            raise InputError("a segment's text must be a non-empty string", where=f"{where}: segments.{seg_id}")
        out[seg_id] = value


def _strip_pause(raw: str) -> tuple[str, Pause | None]:
    if raw[-1:] in _PAUSE_MARKS:
        return raw[:-1], _PAUSE_MARKS[raw[-1]]
    return raw, None


def _parse_item(raw: object, spec: PromptSpec, where: str) -> Item:
    if isinstance(raw, str):
        body, pause = _strip_pause(raw.strip())
        if not body:
            raise InputError("empty template item", where=where)
        if body in BUILTINS:
            return Builtin(body, pause)
        match = _VALUE.match(body)
        if match:
            name, kind = match.group(1), match.group(2)
            var = spec.variable(name)
            if var is None:
                raise InputError(f"prompt {spec.prompt_id!r} has no variable {name!r}", where=where)
            if kind is None:
                kind = {Kind.KEY: "key", Kind.COUNT: "number"}.get(var.kind)
                if kind is None:
                    raise InputError(
                        f"say how to speak {{{name}}}: {{{name}:kind}} (kinds: {', '.join(VALUE_KINDS)})",
                        where=where,
                    )
            if kind not in VALUE_KINDS:
                raise InputError(f"unknown kind {kind!r}; kinds: {', '.join(VALUE_KINDS)}", where=where)
            wanted = {"key": Kind.KEY, "facility": Kind.TEXT}.get(kind, Kind.COUNT)
            if var.kind is not wanted:
                raise InputError(
                    f"{{{name}:{kind}}} needs a {wanted.value} variable, {name!r} is a {var.kind.value}",
                    where=where,
                )
            return Speak(name, kind, pause)
        for name in _PLACEHOLDER.findall(body):
            var = spec.variable(name)
            if var is None or var.kind is not Kind.CHOICE:
                raise InputError(
                    f"{{{name}}} inside a segment id must be a choice variable of prompt {spec.prompt_id!r}",
                    where=where,
                )
        if not SEGMENT_ID.match(_PLACEHOLDER.sub("x", body)):
            raise InputError(f"not a segment id, value or built-in: {raw!r}", where=where)
        return Say(body, pause)
    if isinstance(raw, dict):
        keys = set(raw)
        unknown = keys - {"if", "unless", "equals", "say", "else", "lang"}
        if unknown:
            raise InputError(f"unknown keys in a block: {', '.join(sorted(unknown))}", where=where)
        has_if, has_unless = "if" in keys, "unless" in keys
        if has_if and has_unless:
            raise InputError("a block has 'if' or 'unless', not both", where=where)
        if not (has_if or has_unless) and ("lang" not in keys or keys & {"equals", "else"}):
            raise InputError("a block needs 'if' or 'unless' (only a 'lang' block may have neither)", where=where)
        name = raw.get("if", raw.get("unless"))
        if name is not None and (not isinstance(name, str) or spec.variable(name) is None):
            raise InputError(f"prompt {spec.prompt_id!r} has no variable {name!r}", where=where)
        equals = raw.get("equals")
        if equals is not None:
            var = spec.variable(name) if isinstance(name, str) else None
            if not isinstance(equals, str) or var is None or (var.choices and equals not in var.choices):
                raise InputError(f"'equals' must be one of the variable's values, got {equals!r}", where=where)
        lang = raw.get("lang")
        if lang is not None and lang not in LANGUAGES:
            raise InputError(f"unknown lang {lang!r}; known: {', '.join(LANGUAGES)}", where=where)
        say, otherwise = raw.get("say"), raw.get("else", [])
        if not isinstance(say, list) or not say or not isinstance(otherwise, list):
            raise InputError("a block needs 'say' (a non-empty list) and optionally 'else' (a list)", where=where)
        return Block(
            var=name if isinstance(name, str) else "",
            negate="unless" in keys,
            equals=equals,
            say=tuple(_parse_item(x, spec, f"{where}.say[{i}]") for i, x in enumerate(say)),
            otherwise=tuple(_parse_item(x, spec, f"{where}.else[{i}]") for i, x in enumerate(otherwise)),
            language=lang,
        )
    raise InputError(f"a template item is a string or a table, got {raw!r}", where=where)


def _parse_file(path: Path, language: str) -> Texts:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("prompt texts not found", where=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"not valid TOML: {exc}", where=str(path)) from None
    unknown = set(data) - {"build", "segments", "prompts"}
    if unknown:
        raise InputError(f"unknown tables: {', '.join(sorted(unknown))}", where=str(path))
    build = data.get("build", {})
    voice, speed = build.get("voice"), build.get("speed_wpm", 150)
    if not isinstance(voice, str) or not voice:
        raise InputError("needs a voice (an espeak-ng voice name)", where=f"{path}: build.voice")
    if not isinstance(speed, int) or not 80 <= speed <= 450:
        raise InputError("must be an integer 80..450 (words per minute)", where=f"{path}: build.speed_wpm")
    segments: dict[str, str] = {}
    _flatten(data.get("segments", {}), "", str(path), segments)
    missing = sorted(required_segments(language) - set(segments))
    if missing:
        raise InputError(
            f"missing segments needed for numbers/money/keys: {', '.join(missing)}", where=f"{path}: segments"
        )
    raw_prompts = data.get("prompts", {})
    if set(raw_prompts) != PROMPT_IDS:
        lacking, extra = sorted(PROMPT_IDS - set(raw_prompts)), sorted(set(raw_prompts) - PROMPT_IDS)
        raise InputError(
            f"prompts must be exactly the catalogue; missing: {lacking or '-'}; unknown: {extra or '-'}",
            where=f"{path}: prompts",
        )
    templates: dict[str, tuple[Item, ...]] = {}
    for prompt_id, raw in raw_prompts.items():
        where = f"{path}: prompts.{prompt_id}"
        if not isinstance(raw, list) or not raw:
            raise InputError("a template is a non-empty list", where=where)
        templates[prompt_id] = tuple(_parse_item(x, PROMPTS[prompt_id], f"{where}[{i}]") for i, x in enumerate(raw))
    return Texts(language, path, voice, speed, segments, templates)


def _fill(pattern: str, values: Mapping[str, Value]) -> str:
    """``blocked.{reason}`` -> ``blocked.BLK-PARTY``."""

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            raise ValueError(f"segment {pattern!r} needs variable {match.group(1)!r}")
        return str(values[match.group(1)])

    return _PLACEHOLDER.sub(value, pattern)


def _check_refs(
    items: tuple[Item, ...], spec: PromptSpec, language: str, all_texts: Mapping[str, Texts], where: str
) -> None:
    """Every segment an item can name exists in the file of the language it plays in."""
    segments = all_texts[language].segments
    for i, item in enumerate(items):
        here = f"{where}[{i}]"
        if isinstance(item, Say):
            names = _PLACEHOLDER.findall(item.pattern)
            choices: list[dict[str, str]] = [{}]
            for name in names:
                var = spec.variable(name)
                assert var is not None  # checked by _parse_item
                choices = [{**c, name: v} for c in choices for v in var.choices]
            for values in choices:
                seg_id = _fill(item.pattern, values)
                if seg_id not in segments:
                    raise InputError(f"no segment {seg_id!r} in the {language!r} texts", where=here)
        elif isinstance(item, Block):
            lang = item.language or language
            _check_refs(item.say, spec, lang, all_texts, f"{here}.say")
            _check_refs(item.otherwise, spec, lang, all_texts, f"{here}.else")


@lru_cache(maxsize=16)
def _load_cached(prompts_dir: str, stamps: tuple[tuple[int, int], ...]) -> Mapping[str, Texts]:
    del stamps  # part of the cache key only: an edited file is read again
    base = Path(prompts_dir)
    all_texts = {lang: _parse_file(base / lang / TEXTS_FILE, lang) for lang in LANGUAGES}
    for lang, texts in all_texts.items():
        for prompt_id, items in texts.templates.items():
            _check_refs(items, PROMPTS[prompt_id], lang, all_texts, f"{texts.path}: prompts.{prompt_id}")
    return all_texts


def default_prompts_dir() -> Path:
    """``$IVR_PROMPTS_DIR`` if set, else ``prompts/`` at the top of the source tree (editable install)."""
    override = os.environ.get("IVR_PROMPTS_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "prompts"


def load_texts(prompts_dir: Path | None = None) -> Mapping[str, Texts]:
    """Both languages' texts, parsed and cross-checked; cached until a file changes."""
    base = (prompts_dir or default_prompts_dir()).resolve()
    stamps = []
    for lang in LANGUAGES:
        try:
            st = (base / lang / TEXTS_FILE).stat()
            stamps.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            stamps.append((0, 0))
    return _load_cached(str(base), tuple(stamps))


# -------------------------------------------------------------------------------------------- expansion


def _truthy(value: Value | None) -> bool:
    return value is not None and value != 0 and value != ""


def _name_key(name: str) -> str:
    """Names compared without case, punctuation or extra spaces: "Example  State Prison." ~ "example state prison"."""
    return " ".join(re.sub(r"[^\w\s]", " ", name.casefold()).split())


def _facility_segment(texts: Texts, all_texts: Mapping[str, Texts], values: Mapping[str, Value]) -> str:
    facility_id = values.get("facility")
    if f"{FACILITY_PREFIX}{facility_id}" in texts.segments:
        return f"{FACILITY_PREFIX}{facility_id}"
    name = values.get("facility_name")
    if isinstance(name, str):
        # An unknown id but a known name (a dialplan renamed its file): find it in any language.
        wanted = _name_key(name)
        for other in all_texts.values():
            for seg_id, text in other.segments.items():
                if seg_id.startswith(FACILITY_PREFIX) and _name_key(text) == wanted and seg_id in texts.segments:
                    return seg_id
    return FALLBACK_FACILITY


def _speak(item: Speak, language: str, value: Value | None, prompt_id: str) -> tuple[str, ...]:
    if value is None:
        raise ValueError(f"prompt {prompt_id!r} needs variable {item.var!r} here")
    if item.kind == "key":
        return numbers.say_key(str(value), language)
    assert isinstance(value, int)
    if item.kind == "money":
        return numbers.say_money(value, language)
    if item.kind == "seconds":
        return numbers.say_duration(value, language)
    if item.kind == "minutes":
        return numbers.say_duration(60 * value, language)
    return numbers.say_number(value, language)


def _expand(
    items: tuple[Item, ...],
    language: str,
    values: Mapping[str, Value],
    prompt_id: str,
    all_texts: Mapping[str, Texts],
    out: list[Piece],
) -> None:
    texts = all_texts[language]
    for item in items:
        if isinstance(item, Say):
            seg_id = _fill(item.pattern, values)
            out.append(Piece(language, seg_id, item.pause or Pause.after_text(texts.segments[seg_id])))
        elif isinstance(item, Builtin):
            out.append(Piece(language, item.builtin_id, item.pause or Pause.WORD))
        elif isinstance(item, Speak):
            if item.kind == "facility":
                seg_id = _facility_segment(texts, all_texts, values)
                out.append(Piece(language, seg_id, item.pause or Pause.after_text(texts.segments[seg_id])))
                continue
            ids = _speak(item, language, values.get(item.var), prompt_id)
            out += [Piece(language, s, Pause.WORD) for s in ids[:-1]]
            out.append(Piece(language, ids[-1], item.pause or Pause.WORD))
        else:
            if item.var:
                value = values.get(item.var)
                hit = (
                    str(value) == item.equals
                    if item.equals is not None and value is not None
                    else (item.equals is None and _truthy(value))
                )
                chosen = item.otherwise if hit == item.negate else item.say
            else:
                chosen = item.say
            _expand(chosen, item.language or language, values, prompt_id, all_texts, out)


def expand(
    prompt_id: str, language: str, variables: Mapping[str, object], prompts_dir: Path | None = None
) -> list[Piece]:
    """The pieces ``prompt_id`` plays in ``language`` with ``variables`` (validated; ValueError if bad)."""
    spec_for(prompt_id)
    check_language(language)
    values = check_variables(prompt_id, variables)
    all_texts = load_texts(prompts_dir)
    out: list[Piece] = []
    _expand(all_texts[language].templates[prompt_id], language, values, prompt_id, all_texts, out)
    return out


def piece_label(piece: Piece, language: str) -> str:
    """A piece's id as tests and records quote it: plain in the prompt's language, else ``es/<id>``."""
    return piece.segment_id if piece.language == language else f"{piece.language}/{piece.segment_id}"


def segments_for(
    prompt_id: str, language: str, variables: Mapping[str, object], *, prompts_dir: Path | None = None
) -> tuple[str, ...]:
    """What ``prompt_id`` would play, as segment ids (no audio is read)."""
    return tuple(piece_label(p, language) for p in expand(prompt_id, language, variables, prompts_dir))


def text_for(prompt_id: str, language: str, variables: Mapping[str, object], *, prompts_dir: Path | None = None) -> str:
    """The words ``prompt_id`` would say (for logs and the replay timeline); built-ins in brackets."""
    all_texts = load_texts(prompts_dir)
    words = []
    for piece in expand(prompt_id, language, variables, prompts_dir):
        if piece.segment_id in BUILTINS:
            word = f"[{piece.segment_id}]"
        else:
            word = all_texts[piece.language].segments[piece.segment_id]
        if Pause.after_text(word) is not piece.pause:  # a pause set by the template: show its mark
            word += {Pause.SENTENCE: ".", Pause.CLAUSE: ",", Pause.WORD: ""}[piece.pause]
        words.append(word)
    return " ".join(words)
