"""Key normalization: one key press per physical press, whatever transport carried it (ACC-5).

A key can reach us three ways at once: RFC 4733 telephone-events, SIP INFO and in-band tones (a
gateway that both signals the digit and leaves the tone in the audio). DESIGN.md section 3 asks for
one ``KeyPressed`` per press. :class:`KeyNormalizer` decides, for each report, whether it is a *new*
press or another source's report of a press already counted.

The rule
    Every report carries the time the press *started* (``started_at``; ``now`` when omitted). A
    report of key K from source S starting at t is a duplicate iff an earlier press of K, counted
    with a start within ``window_s`` of t, has not yet been reported by S. Otherwise it is a new
    press. Presses are remembered for ``retention_s`` (10 s), long enough for a source that
    reports at the *end* of a long tone.

Why start times
    Sources report at different moments of a press: RFC 4733 on its first packet (the start), SIP
    INFO usually at key-down, an in-band detector when the tone *ends* (ivr.detect.dtmf reports
    start_ms and end_ms after the tone). Arrival times can differ by the whole tone length (a key
    held for a second); start times differ only by detection accuracy and path skew. So callers
    pass the onset: ``KeyStarted.onset_at`` for RFC 4733 (arrival minus the duration already
    elapsed, which also corrects for a lost start packet), the detector's ``start_ms`` for in-band
    (``MediaLeg.inband_key`` also subtracts the jitter-buffer delay), the arrival time for INFO.

Why this shape
    * Reports from the *same* source are never merged: each source already delivers one report per
      press (our RFC 4733 receiver gives one ``KeyStarted`` per event timestamp; SIP INFO is one
      request per press; the in-band detector one detection per tone). So a fast double press seen by
      one source always counts twice, however short the window.
    * A press is matched at most once per source, so a double press reported by two sources gives two
      presses, not one (the second report of each source pairs with the second press).

Why 200 ms
    Onset estimates of one press differ by little: an in-band detector places the onset within a
    frame or two (20-40 ms; ITU-T Q.24 lets a valid digit be as short as 40 ms), the jitter buffer
    delay is subtracted but varies by a frame, and SIP and RTP take different paths through the
    gateway (tens of ms of skew); in-band confirmation typically lags RFC 4733 by up to ~60 ms.
    200 ms covers that with margin. It is shorter than any press cycle that could be a *different*
    press reported only by the other source: a human needs at least ~100 ms per press (>= 40 ms
    tone + >= 40 ms pause, Q.24) and in practice 150-300 ms; and because same-source repeats are
    never merged, a too-long window can only cost a press when two sources each miss a different
    press of the same key within 200 ms.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ivr.types import DTMF_KEYS, KeySource, Leg

DEFAULT_DEDUP_WINDOW_S = 0.200
DEFAULT_RETENTION_S = 10.0

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
    at: float  # when it was reported (``now``)
    started_at: float  # the press's onset as that source estimated it


@dataclass(slots=True)
class _Press:
    key: str
    at: float
    sources: set[KeySource] = field(default_factory=set)


class KeyNormalizer:
    """De-duplicates key reports across sources for one leg. Sans-I/O: time is an argument."""

    def __init__(
        self,
        leg: Leg | None = None,
        *,
        window_s: float = DEFAULT_DEDUP_WINDOW_S,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        if window_s < 0 or retention_s < window_s:
            raise ValueError("need 0 <= window <= retention")
        self.leg = leg
        self.window_s = window_s
        self.retention_s = retention_s
        self._recent: collections.deque[_Press] = collections.deque()
        self.duplicates = 0
        self.invalid = 0

    def feed(self, key: str, source: KeySource, now: float, *, started_at: float | None = None) -> bool:
        """Report ``key`` from ``source`` at ``now``; True when it is a new press."""
        return self.press(key, source, now, started_at=started_at) is not None

    def press(
        self, key: str | int, source: KeySource, now: float, *, started_at: float | None = None
    ) -> KeyPress | None:
        """Like :meth:`feed`, returning the :class:`KeyPress` to hand to the machine (or None).

        ``started_at``: the onset of the press as this source knows it (default ``now``).
        """
        normalized = normalize_key(key)
        if normalized is None:
            self.invalid += 1
            return None
        onset = now if started_at is None else started_at
        while self._recent and now - self._recent[0].at > self.retention_s:
            self._recent.popleft()
        for earlier in self._recent:
            if earlier.key == normalized and source not in earlier.sources and abs(earlier.at - onset) <= self.window_s:
                earlier.sources.add(source)
                self.duplicates += 1
                return None
        self._recent.append(_Press(normalized, onset, {source}))
        return KeyPress(normalized, self.leg, source, now, onset)
