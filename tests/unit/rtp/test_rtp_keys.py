"""Key normalization across RFC 4733, SIP INFO and in-band (ACC-5, DESIGN.md section 3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.rtp.keys import KeyNormalizer, normalize_key
from ivr.types import KeySource, Leg

R, INF, B = KeySource.RFC4733, KeySource.INFO, KeySource.INBAND


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("1", "1"),
        (" 5 ", "5"),
        ("*", "*"),
        ("#", "#"),
        ("a", "A"),
        ("D", "D"),
        (10, "*"),
        (11, "#"),
        ("10", "*"),
        ("11", "#"),
        (15, "D"),
        (0, "0"),
        ("E", None),
        ("", None),
        (16, None),
        ("12x", None),
        (-1, None),
    ],
)
def test_keys_are_normalized(raw: str | int, key: str | None) -> None:
    """Reported spellings map to one of 0-9 * # A-D, or are rejected."""
    assert normalize_key(raw) == key


def test_same_key_inband_and_rfc4733_counts_once() -> None:
    """ACC-5: RFC 4733 at t, in-band detection 60 ms later: one press."""
    n = KeyNormalizer(Leg.CALLED)
    assert n.feed("1", R, 10.000) is True
    assert n.feed("1", B, 10.060) is False
    assert n.duplicates == 1


def test_three_sources_at_once_count_once() -> None:
    """RFC 4733, INFO and in-band for one press: one press."""
    n = KeyNormalizer()
    assert [n.feed("7", s, t) for s, t in ((INF, 0.0), (R, 0.03), (B, 0.05))] == [True, False, False]


def test_same_source_repeats_always_count() -> None:
    """Two RFC 4733 events 90 ms apart are two presses, even inside the window."""
    n = KeyNormalizer()
    assert n.feed("1", R, 0.0) is True
    assert n.feed("1", R, 0.09) is True


def test_double_press_seen_by_two_sources_counts_twice() -> None:
    """Each source's second report pairs with the second press."""
    n = KeyNormalizer()
    reports = [(R, 0.0), (B, 0.05), (R, 0.15), (B, 0.19)]
    assert [n.feed("3", s, t) for s, t in reports] == [True, False, True, False]


def test_outside_the_window_is_a_new_press() -> None:
    """A report 250 ms after another source's press is a new press."""
    n = KeyNormalizer(window_s=0.2)
    assert n.feed("9", R, 1.0) is True
    assert n.feed("9", B, 1.25) is True


def test_different_keys_never_merge() -> None:
    """Different keys from different sources at the same instant are two presses."""
    n = KeyNormalizer()
    assert n.feed("1", R, 0.0) is True
    assert n.feed("2", B, 0.0) is True


def test_invalid_keys_are_not_presses() -> None:
    """A report that is not a DTMF key is counted and ignored."""
    n = KeyNormalizer()
    assert n.feed("x", INF, 0.0) is False
    assert n.invalid == 1


def test_press_carries_leg_source_and_time() -> None:
    """press() gives what KeyPressed needs: key, leg, first source, time."""
    n = KeyNormalizer(Leg.FACILITY)
    p = n.press("a", INF, 2.5)
    assert p is not None and (p.key, p.leg, p.source, p.at) == ("A", Leg.FACILITY, INF, 2.5)


@given(
    st.lists(st.floats(0.27, 2.0), min_size=1, max_size=20),
    st.lists(st.sets(st.sampled_from([R, INF, B]), min_size=1), min_size=20, max_size=20),
    st.lists(st.floats(0.0, 0.06), min_size=60, max_size=60),
)
def test_presses_spaced_beyond_the_window_count_exactly_once(
    gaps: list[float], seen_by: list[set[KeySource]], skews: list[float]
) -> None:
    """Property: presses of one key >= 270 ms apart (window + skew), seen by any non-empty subset of sources
    with up to 60 ms skew, count exactly once each."""
    n = KeyNormalizer()
    t = 0.0
    reports: list[tuple[float, KeySource]] = []
    for i, gap in enumerate(gaps):
        t += gap
        for j, source in enumerate(sorted(seen_by[i])):
            reports.append((t + skews[3 * i + j], source))
    reports.sort()
    new = [n.feed("5", s, at) for at, s in reports]
    assert sum(new) == len(gaps)


def test_inband_reported_at_tone_end_matches_by_onset() -> None:
    """A held key: RFC 4733 at its onset, in-band reported 900 ms later with the onset: one press."""
    n = KeyNormalizer()
    assert n.feed("1", R, 5.0, started_at=4.99) is True
    assert n.feed("1", B, 5.9, started_at=5.01) is False


def test_end_time_without_onset_would_double_count() -> None:
    """Why onsets are required: the same held key reported by its end time looks like a new press."""
    n = KeyNormalizer()
    assert n.feed("1", R, 5.0) is True
    assert n.feed("1", B, 5.9) is True


def test_presses_are_forgotten_after_retention() -> None:
    """A report whose onset is old but arrives after retention_s is a new press (memory is bounded)."""
    n = KeyNormalizer(retention_s=1.0)
    assert n.feed("1", R, 0.0) is True
    assert n.feed("2", R, 2.0) is True
    assert n.feed("1", B, 2.0, started_at=0.0) is True
