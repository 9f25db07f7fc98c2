"""Small shared vocabulary: legs, key sources, evidence. Imported by every layer."""

from __future__ import annotations

import enum
from typing import TypeAlias

# JSON-compatible values for evidence and records (kept simple so records serialize byte-identically).
JsonScalar: TypeAlias = str | int | float | bool | None
JsonValue: TypeAlias = JsonScalar | list["JsonValue"] | dict[str, "JsonValue"]
Evidence: TypeAlias = dict[str, JsonValue]


class Leg(enum.StrEnum):
    """Which side of the call: the facility phone (caller) or the called party."""

    FACILITY = "facility"
    CALLED = "called"


class KeySource(enum.StrEnum):
    """How a key reached us (ACC-5): RFC 4733 telephone-event, SIP INFO, or in-band tones."""

    RFC4733 = "rfc4733"
    INFO = "info"
    INBAND = "inband"


DTMF_KEYS = "0123456789*#ABCD"
