"""The prompt catalogue, texts and assembled audio (issue 2 point 5; ACC-1, ACC-2, LIM-1, BLK, DIS)."""

from __future__ import annotations

import itertools
import shutil
import wave
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from ivr.errors import InputError
from ivr.prompts import (
    LANGUAGES,
    PROMPT_IDS,
    PROMPTS,
    Rendered,
    beep_pcm,
    default_prompts_dir,
    load_texts,
    render,
    segments_for,
    text_for,
)
from ivr.prompts.catalogue import Kind
from ivr.prompts.texts import Pause

ANNOUNCEMENT: dict[str, object] = {
    "call_type": "collect",
    "name": "clip",
    "facility": "example-county-jail",
    "rate_minor_per_min": 9,
    "max_cost_minor": 135,
    "max_minutes": 15,
    "key_accept": "1",
    "key_refuse": 2,
    "key_block": "6",
    "key_language": 9,
}

# Valid variables for every prompt; choice variables are expanded over all their values below.
VALID: dict[str, dict[str, object]] = {
    "announcement": ANNOUNCEMENT,
    "connected": {"allowed_seconds": 900},
    "time_warning": {"seconds_left": 60},
    "funds_warning": {"seconds_left": 30},
}

CLIP = (np.sin(np.arange(9_603) * 0.21) * 6000).astype(np.int16)  # 1200.4 ms: not whole ms on purpose


def _cases() -> list[tuple[str, str, dict[str, object]]]:
    cases = []
    for prompt_id in sorted(PROMPT_IDS):
        base = VALID.get(prompt_id, {})
        choice = next((v for v in PROMPTS[prompt_id].variables if v.kind is Kind.CHOICE and v.name == "reason"), None)
        values = [{**base, "reason": c} for c in choice.choices] if choice else [base]
        for language in LANGUAGES:
            cases += [(prompt_id, language, v) for v in values]
    return cases


def check_timeline(rendered: Rendered, language: str) -> None:
    """Segments follow each other with one known pause between them and add up to the audio."""
    texts = load_texts()
    segs = rendered.segments
    assert segs[0].start_ms == 0
    assert len(rendered.pcm) == segs[-1].end_ms * 8
    total = sum(s.duration_ms for s in segs)
    for before, after in itertools.pairwise(segs):
        gap = after.start_ms - before.end_ms
        assert gap in {p.value for p in Pause}
        total += gap
        lang, _, seg_id = before.segment_id.rpartition("/")
        text = texts[lang or language].segments.get(seg_id)
        if text is not None and Pause.after_text(text) is not Pause.WORD:
            assert gap == Pause.after_text(text).value  # a segment's own punctuation sets its pause
    assert total * 8 == len(rendered.pcm)


@pytest.mark.parametrize(("prompt_id", "language", "variables"), _cases())
def test_every_prompt_renders_in_both_languages(prompt_id: str, language: str, variables: dict[str, object]) -> None:
    """Every catalogue prompt, with every reason value, renders to 8 kHz int16 audio in en and es."""
    rendered = render(prompt_id, language, variables, name_clip=CLIP)
    assert rendered.pcm.dtype == np.int16 and rendered.pcm.ndim == 1
    assert rendered.duration_ms > 300
    assert tuple(s.segment_id for s in rendered.segments) == segments_for(prompt_id, language, variables)
    check_timeline(rendered, language)


def test_announcement_segment_order() -> None:
    """ACC-2: type, name clip, facility, monitoring, rate, most it can cost, then the keys in order."""
    assert segments_for("announcement", "en", ANNOUNCEMENT) == (
        "hello", "call_type.collect", "clip:name", "inmate_at", "facility.example-county-jail", "monitored",
        "rate_intro", "num.9", "money.cents", "per_minute",
        "max_cost_intro", "num.1", "money.dollar", "money.and", "num.30", "num.5", "money.cents",
        "for_up_to", "num.15", "time.minutes",
        "to_accept", "num.1", "to_refuse", "num.2", "to_block", "num.6",
        "es/offer_language", "es/num.9",
    )  # fmt: skip


def test_announcement_places_the_name_clip_where_the_template_says() -> None:
    """ACC-1: the caller's own recording is in the audio, sample for sample, after the call type."""
    rendered = render("announcement", "en", ANNOUNCEMENT, name_clip=CLIP)
    ids = [s.segment_id for s in rendered.segments]
    clip_seg = rendered.segments[ids.index("clip:name")]
    assert ids[ids.index("clip:name") - 1] == "call_type.collect"
    assert clip_seg.duration_ms == 1201  # padded to whole ms
    start = clip_seg.start_ms * 8
    assert np.array_equal(rendered.pcm[start : start + len(CLIP)], CLIP)
    assert not rendered.pcm[start + len(CLIP) : clip_seg.end_ms * 8].any()
    assert rendered.segments[ids.index("clip:name") + 1].start_ms - clip_seg.end_ms == Pause.CLAUSE.value


@pytest.mark.parametrize("language", LANGUAGES)
def test_caller_without_name_is_announced_by_facility_only(language: str) -> None:
    """ACC-1: name=none plays no clip; the call type goes straight to the facility."""
    variables = {**ANNOUNCEMENT, "name": "none"}
    ids = segments_for("announcement", language, variables)
    assert "clip:name" not in ids
    assert ids[1:4] == ("call_type.collect", "inmate_at", "facility.example-county-jail")
    rendered = render("announcement", language, variables)  # no clip needed
    check_timeline(rendered, language)


@pytest.mark.parametrize(("language", "other"), [("en", "es"), ("es", "en")])
def test_language_key_is_offered_in_the_other_language(language: str, other: str) -> None:
    """ACC-2: "Para español, oprima nueve" in English, "For English, press nine" in Spanish."""
    ids = segments_for("announcement", language, ANNOUNCEMENT)
    assert ids[-2:] == (f"{other}/offer_language", f"{other}/num.9")
    texts = load_texts()
    assert texts["es"].segments["offer_language"].startswith("Para español")
    assert texts["en"].segments["offer_language"].startswith("For English")


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_language_key_when_omitted(language: str) -> None:
    """A one-language facility omits key_language: no language offer is played."""
    variables = {k: v for k, v in ANNOUNCEMENT.items() if k != "key_language"}
    ids = segments_for("announcement", language, variables)
    assert not any("offer_language" in i for i in ids)
    assert ids[-2:] == ("to_block", "num.6")


@pytest.mark.parametrize("language", LANGUAGES)
def test_privileged_call_is_not_announced_as_monitored(language: str) -> None:
    """REG-3: an attorney's call is never recorded, so the announcement does not say it may be."""
    assert "monitored" in segments_for("announcement", language, ANNOUNCEMENT)
    assert "monitored" in segments_for("announcement", language, {**ANNOUNCEMENT, "privileged": 0})
    assert "monitored" not in segments_for("announcement", language, {**ANNOUNCEMENT, "privileged": 1})


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"facility": "example-state-prison"}, "facility.example-state-prison"),
        ({"facility": "north-ridge"}, "any_facility"),
        (
            {"facility": "renamed", "facility_name": "Example  state prison"},
            "facility.example-state-prison",
        ),
        ({"facility": "renamed", "facility_name": "Somewhere Else"}, "any_facility"),
    ],
)
def test_facility_name_segment(variables: dict[str, object], expected: str) -> None:
    """The facility is named by its recorded name; an unknown one is "a correctional facility"."""
    assert expected in segments_for("announcement", "en", {**ANNOUNCEMENT, **variables})


def test_call_type_is_spoken() -> None:
    """ACC-2: the announcement says whether it is a prepaid or a collect call."""
    assert "call_type.prepaid" in segments_for("announcement", "es", {**ANNOUNCEMENT, "call_type": "prepaid"})
    assert "prepagada" in text_for("announcement", "es", {**ANNOUNCEMENT, "call_type": "prepaid"})


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"allowed_seconds": 900}, "Your call is now connected. You have fifteen minutes."),
        (
            {"allowed_seconds": 754, "untimed": 0},
            "Your call is now connected. You have twelve minutes and thirty four seconds.",
        ),
        ({"untimed": 1}, "Your call is now connected. This call has no time limit."),
    ],
)
def test_connected_announces_the_allowed_time(variables: dict[str, object], expected: str) -> None:
    """LIM-1: the allowed duration is announced at the start; untimed calls say so."""
    assert text_for("connected", "en", variables) == expected


def test_time_warning_wording() -> None:
    """LIM-1 warnings at 60 s and 30 s left are spoken as durations in both languages."""
    assert text_for("time_warning", "en", {"seconds_left": 60}) == "This call will end in one minute."
    assert text_for("time_warning", "es", {"seconds_left": 30}) == "Esta llamada terminará en treinta segundos."


def test_say_name_ends_with_a_beep() -> None:
    """ACC-1: the name prompt ends with a 300 ms beep, the last thing played."""
    rendered = render("say_name", "en", {})
    assert rendered.segments[-1].segment_id == "tone:beep"
    assert np.array_equal(rendered.pcm[-len(beep_pcm()) :], beep_pcm())


@pytest.mark.parametrize(
    ("prompt_id", "language", "variables", "match"),
    [
        ("announce", "en", {}, "unknown prompt id 'announce'"),
        ("goodbye", "fr", {}, "unknown prompt language 'fr'"),
        ("blocked", "en", {}, "needs variable 'reason'"),
        ("blocked", "en", {"reason": "BLK-OTHER"}, "must be one of"),
        ("warning", "en", {"reason": "DIS-LIMIT"}, "must be one of"),
        ("time_warning", "en", {"seconds_left": -5}, "non-negative integer"),
        (
            "announcement",
            "en",
            {k: v for k, v in ANNOUNCEMENT.items() if k != "max_cost_minor"},
            "needs variable 'max_cost_minor'",
        ),
        ("announcement", "en", {**ANNOUNCEMENT, "key_accept": "A"}, "phone key"),
        ("connected", "en", {"untimed": 0}, "needs variable 'allowed_seconds'"),
    ],
)
def test_bad_request_is_refused(prompt_id: str, language: str, variables: dict[str, object], match: str) -> None:
    """Unknown prompt or language, a missing or bad variable: ValueError with a clear message."""
    with pytest.raises(ValueError, match=match):
        segments_for(prompt_id, language, variables)
    with pytest.raises(ValueError, match=match):
        render(prompt_id, language, variables, name_clip=CLIP)


def test_name_clip_required_when_announced() -> None:
    """name='clip' without a clip is an error, not a silent facility-only announcement."""
    with pytest.raises(ValueError, match="no name_clip"):
        render("announcement", "en", ANNOUNCEMENT)
    with pytest.raises(ValueError, match="int16"):
        render("announcement", "en", ANNOUNCEMENT, name_clip=CLIP.astype(np.float32))  # type: ignore[arg-type]


@pytest.mark.parametrize("language", LANGUAGES)
def test_committed_wavs_match_the_texts(language: str) -> None:
    """Every segment has its WAV (8 kHz mono 16-bit, whole ms, -6 dBFS peak) and no WAV is stray."""
    folder = default_prompts_dir() / language
    segments = load_texts()[language].segments
    assert {p.stem for p in folder.glob("*.wav")} == set(segments)
    for seg_id in segments:
        with wave.open(str(folder / f"{seg_id}.wav"), "rb") as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            assert w.getnframes() % 8 == 0 and w.getnframes() >= 8 * 150
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert 16000 <= int(np.abs(pcm.astype(np.int32)).max()) <= 16500


def test_committed_wavs_fit_the_size_budget() -> None:
    """All prompt audio together stays under 8 MB (it lives in git)."""
    total = sum(p.stat().st_size for lang in LANGUAGES for p in (default_prompts_dir() / lang).glob("*.wav"))
    assert total < 8 * 1024 * 1024


# ------------------------------------------------------------------------ texts files are checked at load


def _copy_prompts(tmp_path: Path, language: str, edit: Mapping[str, str]) -> Path:
    shutil.copytree(default_prompts_dir(), tmp_path / "prompts")
    path = tmp_path / "prompts" / language / "texts.toml"
    text = path.read_text(encoding="utf-8")
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return tmp_path / "prompts"


@pytest.mark.parametrize(
    ("language", "edit", "match"),
    [
        (
            "en",
            {'"{max_minutes:minutes}."': '"{max_hours:minutes}."'},
            "prompts.announcement.*no variable 'max_hours'",
        ),
        ("en", {'"per_minute",': '"per_hour",'}, "prompts.announcement.*no segment 'per_hour'"),
        ("es", {'BLK-SPEND = "Se alcanzó': 'BLK-SPENT = "Se alcanzó'}, "prompts.blocked.*blocked.BLK-SPEND"),
        ("es", {'goodbye = ["goodbye"]\n': ""}, "prompts must be exactly the catalogue.*goodbye"),
        ("en", {'19 = "nineteen"\n': ""}, "segments.*num.19"),
        ("en", {'"{rate_minor_per_min:money}"': '"{call_type:money}"'}, "needs a count variable"),
        ("es", {'lang = "en"': 'lang = "fr"'}, "unknown lang 'fr'"),
        ("en", {"\n[prompts]\n": "\n[prompt]\n"}, "unknown tables: prompt"),
    ],
)
def test_bad_texts_file_is_refused_naming_file_and_key(
    tmp_path: Path, language: str, edit: Mapping[str, str], match: str
) -> None:
    """A broken texts.toml is refused at load with the file and the key (InputError -> exit 2)."""
    prompts_dir = _copy_prompts(tmp_path, language, edit)
    with pytest.raises(InputError, match=match) as info:
        segments_for("goodbye", "en", {}, prompts_dir=prompts_dir)
    assert f"{language}/texts.toml" in str(info.value)


def test_missing_wav_is_reported_with_its_path(tmp_path: Path) -> None:
    """A deleted recording names the missing file and the command that makes it."""
    prompts_dir = _copy_prompts(tmp_path, "en", {})
    (prompts_dir / "en" / "goodbye.wav").unlink()
    with pytest.raises(InputError, match=r"goodbye\.wav.*ivr prompts build"):
        render("goodbye", "en", {}, prompts_dir=prompts_dir)


def test_cli_say_writes_the_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ivr prompts say` renders one prompt to an 8 kHz WAV and lists its segments."""
    from ivr.cli import main

    out = tmp_path / "p.wav"
    assert main(["prompts", "say", "blocked", "-l", "es", "-v", "reason=BLK-FUNDS", "-o", str(out)]) == 0
    with wave.open(str(out), "rb") as w:
        assert w.getframerate() == 8000
        frames = w.getnframes()
    assert frames == render("blocked", "es", {"reason": "BLK-FUNDS"}).pcm.size
    assert "blocked.BLK-FUNDS" in capsys.readouterr().out
    assert main(["prompts", "say", "blocked", "-o", str(out)]) == 2  # missing variable: bad input


def test_prompts_dir_can_be_set_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """IVR_PROMPTS_DIR points an installed engine at its prompts folder."""
    prompts_dir = _copy_prompts(tmp_path, "en", {'goodbye = "Goodbye."': 'goodbye = "Bye now."'})
    monkeypatch.setenv("IVR_PROMPTS_DIR", str(prompts_dir))
    assert default_prompts_dir() == prompts_dir
    assert text_for("goodbye", "en", {}) == "Bye now."


@pytest.mark.parametrize("language", LANGUAGES)
def test_untimed_call_announces_the_rate_but_no_maximum(language: str) -> None:
    """REG-3/LIM-1: without a time limit there is no "most it can cost"; the rate is still said."""
    variables = {k: v for k, v in ANNOUNCEMENT.items() if k not in ("max_cost_minor", "max_minutes")}
    ids = segments_for("announcement", language, variables)
    assert "max_cost_intro" not in ids and "for_up_to" not in ids
    assert (
        ids[ids.index("rate_intro") + 1 : ids.index("per_minute")]
        == segments_for("announcement", language, ANNOUNCEMENT)[ids.index("rate_intro") + 1 : ids.index("per_minute")]
    )
    with pytest.raises(ValueError, match="max_cost_minor"):
        segments_for("announcement", language, {**variables, "max_minutes": 15})
