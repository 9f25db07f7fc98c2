"""Numbers, money, durations and keys as sequences of recorded segment ids.

Every value 0..99,999 is built from a small set of recordings (the "num.*" segments of each
language's texts.toml), the way telephone IVRs have always done it, so a rate or a time limit never
needs a new recording. English follows US usage ("one hundred twenty", no "and"). Spanish needs
gender and apocope: "uno" when counting or naming a key, "un minuto", "veintiún dólares",
"una"/"doscientas" before a feminine noun; 100 is "cien", 101-199 start with "ciento".
"""

from __future__ import annotations

from typing import Literal

Gender = Literal["m", "f"] | None
"""None: the number stands alone ("press one", "uno"); "m"/"f": it counts a noun of that gender."""

MAX_NUMBER = 99_999


def _check(n: int, what: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_NUMBER:
        raise ValueError(f"{what} must be an integer in 0..{MAX_NUMBER}, got {n!r}")


def _en_below_1000(n: int) -> list[str]:
    out: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        out += [f"num.{hundreds}", "num.hundred"]
    if rest >= 20:
        tens, unit = divmod(rest, 10)
        out.append(f"num.{tens * 10}")
        if unit:
            out.append(f"num.{unit}")
    elif rest:
        out.append(f"num.{rest}")
    return out


def _en_number(n: int) -> list[str]:
    if n == 0:
        return ["num.0"]
    thousands, rest = divmod(n, 1000)
    out: list[str] = []
    if thousands:
        out += [*_en_below_1000(thousands), "num.thousand"]
    out += _en_below_1000(rest)
    return out


def _es_unit(n: int, gender: Gender) -> str:
    """1..29; only 1 and 21 change with gender ("uno/un/una", "veintiuno/veintiún/veintiuna")."""
    if n in (1, 21) and gender is not None:
        return f"num.{n}.{gender}"
    return f"num.{n}"


def _es_below_1000(n: int, gender: Gender) -> list[str]:
    out: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds == 1:
        out.append("num.100" if rest == 0 else "num.ciento")  # cien / ciento uno
    elif hundreds:
        # doscientos/doscientas: the hundreds agree with a feminine noun.
        out.append(f"num.{hundreds * 100}.f" if gender == "f" else f"num.{hundreds * 100}")
    if rest >= 30:
        tens, unit = divmod(rest, 10)
        out.append(f"num.{tens * 10}")
        if unit:
            out += ["num.y", _es_unit(unit, gender)]
    elif rest:
        out.append(_es_unit(rest, gender))
    return out


def _es_number(n: int, gender: Gender) -> list[str]:
    if n == 0:
        return ["num.0"]
    thousands, rest = divmod(n, 1000)
    out: list[str] = []
    if thousands == 1:
        out.append("num.mil")  # "mil", never "un mil"
    elif thousands:
        # Before "mil" the number is apocopated even when counting: "veintiún mil", "treinta y un mil".
        out += [*_es_below_1000(thousands, gender or "m"), "num.mil"]
    out += _es_below_1000(rest, gender)
    return out


def say_number(n: int, language: str, *, gender: Gender = None) -> tuple[str, ...]:
    """Segment ids that speak ``n`` (0..99,999) in ``language``; ``gender`` matters in Spanish only."""
    _check(n, "number")
    if language == "en":
        return tuple(_en_number(n))
    if language == "es":
        return tuple(_es_number(n, gender))
    raise ValueError(f"unknown prompt language {language!r}")


def _counted(n: int, language: str, one: str, many: str) -> list[str]:
    """A count before a (masculine, in Spanish) noun: "one minute", "un minuto", "veintiún minutos"."""
    return [*say_number(n, language, gender="m"), one if n == 1 else many]


def say_money(amount_minor: int, language: str) -> tuple[str, ...]:
    """US dollars and cents: "nine cents", "one dollar and twenty cents"; "un dólar con veinte centavos"."""
    if isinstance(amount_minor, bool) or not isinstance(amount_minor, int) or amount_minor < 0:
        raise ValueError(f"amount_minor must be a non-negative integer, got {amount_minor!r}")
    dollars, cents = divmod(amount_minor, 100)
    _check(dollars, "dollars")
    if language not in ("en", "es"):
        raise ValueError(f"unknown prompt language {language!r}")
    if dollars == 0:
        return tuple(_counted(cents, language, "money.cent", "money.cents"))
    out = _counted(dollars, language, "money.dollar", "money.dollars")
    if cents:
        out += ["money.and", *_counted(cents, language, "money.cent", "money.cents")]
    return tuple(out)


def say_duration(seconds: int, language: str) -> tuple[str, ...]:
    """Minutes and seconds: "fifteen minutes", "thirty seconds", "one minute and thirty seconds"."""
    if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
        raise ValueError(f"seconds must be a non-negative integer, got {seconds!r}")
    if language not in ("en", "es"):
        raise ValueError(f"unknown prompt language {language!r}")
    minutes, secs = divmod(seconds, 60)
    _check(minutes, "minutes")
    if minutes == 0:
        return tuple(_counted(secs, language, "time.second", "time.seconds"))
    out = _counted(minutes, language, "time.minute", "time.minutes")
    if secs:
        out += ["time.and", *_counted(secs, language, "time.second", "time.seconds")]
    return tuple(out)


def say_key(key: str, language: str) -> tuple[str, ...]:
    """A phone key: digits as standalone numbers ("nine", "nueve", "uno"), then "star" and "pound"."""
    if language not in ("en", "es"):
        raise ValueError(f"unknown prompt language {language!r}")
    if len(key) == 1 and key.isdigit():
        return say_number(int(key), language)
    if key == "*":
        return ("key.star",)
    if key == "#":
        return ("key.pound",)
    raise ValueError(f"not a spoken phone key: {key!r}")
