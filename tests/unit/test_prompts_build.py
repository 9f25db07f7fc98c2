"""`ivr prompts build`: espeak-ng -> 8 kHz WAVs, resampling, determinism (issue 2 point 5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ivr.cli import main
from ivr.prompts import LANGUAGES, default_prompts_dir, render
from ivr.prompts.build import HEAD_PAD_MS, TAIL_PAD_MS, build, finish, resample


def _level_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(2) * np.std(x) + 1e-15))


@pytest.mark.parametrize(("freq_hz", "low_db", "high_db"), [(300, -0.1, 0.1), (1000, -0.1, 0.1), (3400, -0.5, 0.1)])
def test_resampler_keeps_the_telephone_band(freq_hz: int, low_db: float, high_db: float) -> None:
    """22,050 -> 8,000 Hz keeps 300-3400 Hz (G.712 band) within half a dB."""
    t = np.arange(22_050) / 22_050
    y = resample(np.sin(2 * np.pi * freq_hz * t), 22_050)
    assert len(y) == 8000
    assert low_db <= _level_db(y[500:-500]) <= high_db


@pytest.mark.parametrize("freq_hz", [4500, 5000, 7000, 10_000])
def test_resampler_removes_what_would_alias(freq_hz: int) -> None:
    """Content above 4 kHz (which would fold back into the band) is at least 70 dB down."""
    t = np.arange(22_050) / 22_050
    y = resample(np.sin(2 * np.pi * freq_hz * t), 22_050)
    assert _level_db(y[500:-500]) < -70


def test_finish_trims_normalises_and_pads_to_whole_ms() -> None:
    """Silence around speech is cut to short pads, the peak is -6 dBFS, the length whole ms."""
    tone = 0.1 * np.sin(2 * np.pi * 440 * np.arange(803) / 8000)
    x = np.concatenate([np.zeros(1600), tone, np.zeros(2400)])
    pcm = finish(x)
    assert pcm.dtype == np.int16 and len(pcm) % 8 == 0
    assert 16_300 <= int(np.abs(pcm.astype(np.int32)).max()) <= 16_384
    expected = 803 + 8 * (HEAD_PAD_MS + TAIL_PAD_MS)
    assert expected - 16 <= len(pcm) <= expected + 8
    assert pcm[0] == 0 and pcm[-1] == 0  # fades: no click at the cut


def test_finish_refuses_silence() -> None:
    """A text espeak-ng renders as silence is an error, not an empty recording."""
    with pytest.raises(ValueError, match="silent"):
        finish(np.zeros(800))


def test_build_without_espeak_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No espeak-ng: exit 1 with a message saying what to install; nothing is written."""
    missing = str(tmp_path / "no-such-espeak-ng")
    assert main(["prompts", "build", "--espeak", missing, "--out", str(tmp_path / "out")]) == 1
    assert "apt-get install espeak-ng" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_build_is_deterministic_and_matches_the_committed_wavs(tmp_path: Path) -> None:
    """Two builds give identical files, equal to the committed ones, and the output renders."""
    first, second = tmp_path / "a", tmp_path / "b"
    reports = build(out_dir=first)
    build(out_dir=second)
    assert [r.removed for r in reports] == [[], []]
    for language in LANGUAGES:
        files = sorted(p.name for p in (first / language).iterdir())
        assert files == sorted(p.name for p in (second / language).iterdir())
        for name in files:
            data = (first / language / name).read_bytes()
            assert data == (second / language / name).read_bytes(), name
            assert data == (default_prompts_dir() / language / name).read_bytes(), f"stale: {language}/{name}"
    assert render("goodbye", "es", {}, prompts_dir=first).duration_ms > 300
