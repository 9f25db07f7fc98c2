"""Numbers, money and durations spoken from recorded segments (issue 2 point 5; LIM-1, ACC-2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.prompts import default_prompts_dir, load_texts, say_duration, say_key, say_money, say_number
from ivr.prompts.texts import required_segments

TEXTS = load_texts()


def words(ids: tuple[str, ...], language: str) -> str:
    """The texts of the segment ids, joined: what the listener hears."""
    return " ".join(TEXTS[language].segments[i] for i in ids)


# An independent reader of the words back to a number: the property tests compare against it.
_EN_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen"
)
_EN_TENS = "twenty thirty forty fifty sixty seventy eighty ninety"
_ES_WORDS = (
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince dieciséis "
    "diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés veinticuatro veinticinco "
    "veintiséis veintisiete veintiocho veintinueve"
)
_ES_TENS = "treinta cuarenta cincuenta sesenta setenta ochenta noventa"
_ES_HUNDREDS = "dos tres cuatro quinien seis setecien ochocien novecien"  # + "tos" / "tas"
_EN = {w: n for n, w in enumerate(_EN_WORDS.split())} | {w: 10 * i for i, w in enumerate(_EN_TENS.split(), 2)}
_ES = {w: n for n, w in enumerate(_ES_WORDS.split())} | {w: 10 * i for i, w in enumerate(_ES_TENS.split(), 3)}
_ES |= {"un": 1, "una": 1, "veintiún": 21, "veintiuna": 21, "cien": 100, "ciento": 100}
for _i, _stem in enumerate(_ES_HUNDREDS.split(), 2):
    _full = _stem if _stem.endswith("n") else _stem + "cien"
    _ES[_full + "tos"] = _ES[_full + "tas"] = 100 * _i


def read_back(text: str, language: str) -> int:
    total, current = 0, 0
    for word in text.split():
        if word in ("thousand", "mil"):
            total += (current or 1) * 1000
            current = 0
        elif word == "hundred":
            current *= 100
        elif word == "y":
            continue
        else:
            current += (_EN if language == "en" else _ES)[word]
    return total + current


@pytest.mark.parametrize(
    ("n", "language", "gender", "expected"),
    [
        (0, "en", None, "zero"),
        (7, "en", None, "seven"),
        (21, "en", None, "twenty one"),
        (100, "en", None, "one hundred"),
        (115, "en", None, "one hundred fifteen"),
        (1000, "en", None, "one thousand"),
        (1005, "en", None, "one thousand five"),
        (99_999, "en", None, "ninety nine thousand nine hundred ninety nine"),
        (1, "es", None, "uno"),
        (1, "es", "m", "un"),
        (1, "es", "f", "una"),
        (21, "es", None, "veintiuno"),
        (21, "es", "m", "veintiún"),
        (31, "es", "m", "treinta y un"),
        (100, "es", None, "cien"),
        (101, "es", None, "ciento uno"),
        (500, "es", None, "quinientos"),
        (201, "es", "f", "doscientas una"),
        (1000, "es", None, "mil"),
        (1001, "es", None, "mil uno"),
        (21_000, "es", None, "veintiún mil"),
        (21_000, "es", "f", "veintiuna mil"),
        (31_000, "es", "m", "treinta y un mil"),
        (99_999, "es", None, "noventa y nueve mil novecientos noventa y nueve"),
    ],
)
def test_number_wording(n: int, language: str, gender: str | None, expected: str) -> None:
    """Numbers read as people say them, with Spanish apocope and gender."""
    assert words(say_number(n, language, gender=gender), language) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("amount_minor", "language", "expected"),
    [
        (0, "en", "zero cents"),
        (1, "en", "one cent"),
        (9, "en", "nine cents"),
        (100, "en", "one dollar"),
        (120, "en", "one dollar and twenty cents"),
        (201, "en", "two dollars and one cent"),
        (2135, "en", "twenty one dollars and thirty five cents"),
        (150_000, "en", "one thousand five hundred dollars"),
        (1, "es", "un centavo"),
        (9, "es", "nueve centavos"),
        (21, "es", "veintiún centavos"),
        (100, "es", "un dólar"),
        (120, "es", "un dólar con veinte centavos"),
        (2101, "es", "veintiún dólares con un centavo"),
        (100_000, "es", "mil dólares"),
        (31_500, "es", "trescientos quince dólares"),
    ],
)
def test_money_wording(amount_minor: int, language: str, expected: str) -> None:
    """Rates and maximum costs are spoken in dollars and cents (ACC-2)."""
    assert words(say_money(amount_minor, language), language) == expected


@pytest.mark.parametrize(
    ("seconds", "language", "expected"),
    [
        (0, "en", "zero seconds"),
        (30, "en", "thirty seconds"),
        (60, "en", "one minute"),
        (90, "en", "one minute and thirty seconds"),
        (900, "en", "fifteen minutes"),
        (1800, "en", "thirty minutes"),
        (1, "es", "un segundo"),
        (30, "es", "treinta segundos"),
        (60, "es", "un minuto"),
        (90, "es", "un minuto y treinta segundos"),
        (1260, "es", "veintiún minutos"),
        (900, "es", "quince minutos"),
    ],
)
def test_duration_wording(seconds: int, language: str, expected: str) -> None:
    """Allowed talk time and warnings are spoken in minutes and seconds (LIM-1)."""
    assert words(say_duration(seconds, language), language) == expected


@pytest.mark.parametrize(
    ("key", "language", "expected"),
    [
        ("1", "en", "one"),
        ("9", "es", "nueve"),
        ("1", "es", "uno"),
        ("*", "en", "star"),
        ("#", "es", "numeral"),
    ],
)
def test_key_wording(key: str, language: str, expected: str) -> None:
    """Keys are named standalone ("oprima uno", not "un")."""
    assert words(say_key(key, language), language) == expected


def test_every_number_up_to_99999_uses_recorded_segments() -> None:
    """Any value 0..99,999 is spoken from segments that exist as WAVs, in both languages and genders."""
    base: Path = default_prompts_dir()
    for language, genders in (("en", (None,)), ("es", (None, "m", "f"))):
        used: set[str] = set()
        for gender in genders:
            for n in range(100_000):
                used.update(say_number(n, language, gender=gender))  # type: ignore[arg-type]
        assert used <= required_segments(language)
        missing = [i for i in sorted(used) if not (base / language / f"{i}.wav").is_file()]
        assert missing == []


@given(st.integers(0, 99_999), st.sampled_from(["en", "es"]), st.sampled_from([None, "m", "f"]))
def test_number_words_read_back_to_the_number(n: int, language: str, gender: str | None) -> None:
    """An independent reader of the spoken words recovers the number."""
    assert read_back(words(say_number(n, language, gender=gender), language), language) == n  # type: ignore[arg-type]


@given(st.integers(0, 9_999_999), st.sampled_from(["en", "es"]))
def test_money_words_read_back_to_the_amount(amount_minor: int, language: str) -> None:
    """Dollars and cents are both recoverable from the spoken words, each with singular for one."""
    text = words(say_money(amount_minor, language), language)
    dollars, cents = divmod(amount_minor, 100)
    units = {"en": ("dollar", "dollars", "cent", "cents"), "es": ("dólar", "dólares", "centavo", "centavos")}
    one_d, many_d, one_c, many_c = units[language]
    joiner = " and " if language == "en" else " con "

    def amount(phrase: str, one: str, many: str) -> int:
        number, _, unit = phrase.rpartition(" ")
        value = read_back(number, language)
        assert unit == (one if value == 1 else many)
        return value

    head, sep, tail = text.partition(joiner)
    if dollars:
        assert amount(head, one_d, many_d) == dollars
        assert (amount(tail, one_c, many_c) if sep else 0) == cents
    else:
        assert not sep and amount(text, one_c, many_c) == cents


@pytest.mark.parametrize("bad", [-1, 100_000, True])
def test_number_out_of_range_is_refused(bad: int) -> None:
    """Numbers outside 0..99,999 (and booleans) raise ValueError instead of being misread."""
    with pytest.raises(ValueError):
        say_number(bad, "en")


def test_unknown_language_is_refused() -> None:
    """A language without texts raises ValueError naming it."""
    with pytest.raises(ValueError, match="'fr'"):
        say_money(9, "fr")
