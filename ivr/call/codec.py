"""Events and commands to and from JSON-ready dicts (events.jsonl, flows, call records).

One generic codec over the frozen dataclasses: ``{"in": "KeyPressed", "key": "1", ...}`` for
inputs and ``{"out": "PlayPrompt", ...}`` for outputs. Enums become their values; tuples lists.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, get_type_hints

from ivr.call import commands as cmd
from ivr.call.events import EVENT_TYPES, Event
from ivr.errors import InputError
from ivr.types import JsonValue, KeySource, Leg

COMMAND_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        cmd.AnswerCall,
        cmd.IdentifyCaller,
        cmd.PlayPrompt,
        cmd.StopPrompt,
        cmd.StartRecording,
        cmd.CheckCall,
        cmd.PlaceCall,
        cmd.Bridge,
        cmd.Unbridge,
        cmd.ReserveFunds,
        cmd.PostCharge,
        cmd.VoidReservation,
        cmd.BlockNumber,
        cmd.Hangup,
        cmd.WriteRecord,
    )
}


def _plain(value: Any) -> JsonValue:
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"not JSON-ready: {value!r}")


def to_dict(obj: Any, tag: str) -> dict[str, JsonValue]:
    """A dataclass instance as ``{tag: ClassName, field: value, ...}``."""
    out: dict[str, JsonValue] = {tag: type(obj).__name__}
    for f in dataclasses.fields(obj):
        out[f.name] = _plain(getattr(obj, f.name))
    return out


def event_to_dict(event: Event) -> dict[str, JsonValue]:
    return to_dict(event, "in")


def command_to_dict(command: cmd.Command) -> dict[str, JsonValue]:
    return to_dict(command, "out")


_CONVERTERS: dict[Any, Any] = {Leg: Leg, KeySource: KeySource}


def event_from_dict(data: dict[str, Any], where: str = "event") -> Event:
    """Decode ``{"in": name, ...}``; bad names or fields are InputError naming ``where``."""
    name = data.get("in")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InputError(f"unknown event {name!r} (known: {', '.join(sorted(EVENT_TYPES))})", where=where)
    hints = get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key in ("in", "t_ms", "t"):
            continue
        if key not in known:
            raise InputError(f"{name} has no field {key!r} (fields: {', '.join(sorted(known))})", where=where)
        hint = hints[key]
        try:
            if hint in (Leg, KeySource):
                value = hint(value)
            elif hint is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f"{key} must be an integer")
        except ValueError as exc:
            raise InputError(f"{name}.{key}: {exc}", where=where) from None
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"{name}: {exc}", where=where) from None
