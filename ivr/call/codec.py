"""Events and commands to and from JSON-ready dicts (events.jsonl, flows, call records).

One generic codec over the frozen dataclasses: ``{"in": "KeyPressed", "key": "1", ...}`` for
inputs and ``{"out": "PlayPrompt", ...}`` for outputs. Enums become their values; tuples lists.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

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


_SCALARS = (str, int, float, bool, type(None))
_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> JsonValue:
    if isinstance(value, str):
        return value  # str and StrEnum (Leg, KeySource): a StrEnum member is its value as JSON
    if isinstance(value, enum.Enum):
        return _plain(value.value)
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    raise TypeError(f"not JSON-ready: {value!r}")


def to_dict(obj: Any, tag: str) -> dict[str, JsonValue]:
    """A dataclass instance as ``{tag: ClassName, field: value, ...}`` (the replay's hot path)."""
    cls = type(obj)
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(obj))
    out: dict[str, JsonValue] = {tag: cls.__name__}
    for name in names:
        value = getattr(obj, name)
        out[name] = value if isinstance(value, str) or type(value) in _SCALARS else _plain(value)
    return out


def event_to_dict(event: Event) -> dict[str, JsonValue]:
    return to_dict(event, "in")


def command_to_dict(command: cmd.Command) -> dict[str, JsonValue]:
    return to_dict(command, "out")


def _convert(key: str, annotation: str, value: Any) -> Any:
    """Check and convert one field from JSON by its annotation (kept as text: ``from __future__``)."""
    if annotation == "Leg":
        return Leg(value)
    if annotation == "KeySource":
        return KeySource(value)
    if annotation == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(f"{key} must be an integer, got {value!r}")
    if annotation == "bool" and not isinstance(value, bool):
        raise TypeError(f"{key} must be true or false, got {value!r}")
    if annotation == "str" and not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {value!r}")
    if annotation == "Evidence" and not isinstance(value, dict):
        raise TypeError(f"{key} must be an object, got {value!r}")
    return value


def event_from_dict(data: dict[str, Any], where: str = "event") -> Event:
    """Decode ``{"in": name, ...}``; bad names or fields are InputError naming ``where``."""
    name = data.get("in")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise InputError(f"unknown event {name!r} (known: {', '.join(sorted(EVENT_TYPES))})", where=where)
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key in ("in", "t_ms"):
            continue
        if key not in fields:
            raise InputError(f"{name} has no field {key!r} (fields: {', '.join(sorted(fields))})", where=where)
        try:
            value = _convert(key, str(fields[key].type), value)
        except (ValueError, TypeError) as exc:
            raise InputError(f"{name}.{key}: {exc}", where=where) from None
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise InputError(f"{name}: {exc}", where=where) from None
