"""Key normalization: one key press per physical press, whatever transport carried it (ACC-5).

A key can reach us three ways at once: RFC 4733 telephone-events, SIP INFO and in-band tones (a
gateway that both signals the digit and leaves the tone in the audio). DESIGN.md section 3 asks for
one ``KeyPressed`` per press. :class:`KeyNormalizer` decides, for each report, whether it is a *new*
press or another source's report of a press already counted.

The rule
    A report of key K from source S at time t is a duplicate iff an earlier press of K, counted
    within the last ``window_s`` seconds, has not yet been reported by S. Otherwise it is a new press.

Why this shape
    * Reports from the *same* source are never merged: each source already delivers one report per
      press (our RFC 4733 receiver gives one ``KeyStarted`` per event timestamp; SIP INFO is one
      request per press; the in-band detector one detection per tone). So a fast double press seen by
      one source always counts twice, however short the window.
    * A press is matched at most once per source, so a double press reported by two sources gives two
      presses, not one (the second report of each source pairs with the second press).

Why 200 ms
    Feed every source at the *start* of the press: RFC 4733 at ``KeyStarted`` (the first packet of
    the event), in-band when the detector confirms the tone, SIP INFO when it arrives. In-band
    detection confirms a tone 40-60 ms after its start (ITU-T Q.24 lets a valid digit be as short as
    40 ms, and a detector needs a couple of 20 ms frames), and SIP and RTP take different paths
    through the gateway (tens of ms of skew). 200 ms covers that with margin. It is shorter than any
    press cycle that could be a *different* press reported only by the other source: a human needs
    at least ~100 ms per press (>= 40 ms tone + >= 40 ms pause, Q.24) and in practice 150-300 ms;
    and because same-source repeats are never merged, a too-long window can only cost a press when
    two sources each miss a different press of the same key within 200 ms.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ivr.types import DTMF_KEYS, KeySource, Leg

DEFAULT_DEDUP_WINDOW_S = 0.200

# Names some SIP INFO bodies use (application/dtmf-relay "Signal=", application/dtmf), beyond the
# single characters, and RFC 4733 event numbers written as text.
_ALIASES = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D", "STAR": "*", "HASH": "#", "POUND": "#"}


def normalize_key(raw: str | int) -> str | None:
    """A key as reported (``"1"``, ``"*"``, ``"a"``, ``10``, ``"11"``, ``" 5 "``) -> one of
    ``0123456789*#ABCD``, or None when it is not a DTMF key."""
    if isinstance(raw, int):
        return DTMF_KEYS[raw] if 0 <= raw < len(DTMF_KEYS) else None
    text = raw.strip().upper()
    if len(text) == 1 and text in DTMF_KEYS:
        return text
    return _ALIASES.get(text)


@dataclass(frozen=True, slots=True)
class KeyPress:
    """One physical key press, as the CallMachine should see it (``KeyPressed``)."""

    key: str
    leg: Leg | None
    source: KeySource  # the source that reported it first
    at: float


@dataclass(slots=True)
class _Press:
    key: str
    at: float
    sources: set[KeySource] = field(default_factory=set)


class KeyNormalizer:
    """De-duplicates key reports across sources for one leg. Sans-I/O: time is an argument."""

    def __init__(self, leg: Leg | None = None, *, window_s: float = DEFAULT_DEDUP_WINDOW_S) -> None:
        if window_s < 0:
            raise ValueError("the window cannot be negative")
        self.leg = leg
        self.window_s = window_s
        self._recent: collections.deque[_Press] = collections.deque()
        self.duplicates = 0
        self.invalid = 0

    def feed(self, key: str, source: KeySource, now: float) -> bool:
        """Report ``key`` from ``source`` at ``now``; True when it is a new press."""
        return self.press(key, source, now) is not None

    def press(self, key: str | int, source: KeySource, now: float) -> KeyPress | None:
        """Like :meth:`feed`, returning the :class:`KeyPress` to hand to the machine (or None)."""
        normalized = normalize_key(key)
        if normalized is None:
            self.invalid += 1
            return None
        while self._recent and now - self._recent[0].at > self.window_s:
            self._recent.popleft()
        for earlier in self._recent:
            if earlier.key == normalized and source not in earlier.sources:
                earlier.sources.add(source)
                self.duplicates += 1
                return None
        self._recent.append(_Press(normalized, now, {source}))
        return KeyPress(normalized, self.leg, source, now)
