"""`ivr detect FILE.wav`: one JSON object per event per line; bad input exits 2 naming the file."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from ivr.cli import main
from ivr.detect import synth
from ivr.detect.audio import read_wav, resample


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000, width: int = 2, channels: int = 1) -> Path:
    """Write PCM at any width (the float signal is in 16-bit units)."""
    data = np.repeat(samples[:, None], channels, axis=1).reshape(-1)
    if width == 1:
        raw = (np.clip(np.round(data / 256.0), -128, 127) + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.clip(np.round(data), -32768, 32767).astype("<i2").tobytes()
    elif width == 3:
        v = np.clip(np.round(data * 256.0), -(2**23), 2**23 - 1).astype(np.int32)
        raw = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    else:
        raw = np.clip(np.round(data * 65536.0), -(2**31), 2**31 - 1).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def signal(rate: int = 8000) -> np.ndarray:
    rng = np.random.default_rng(1)
    sig = np.concatenate(
        [
            synth.silence(1000),
            synth.dtmf("5", 100, -10),
            synth.silence(1000),
            synth.tone([350, 440], 1500, -13),
            synth.silence(1200),
        ]
    )
    sig = sig + synth.white_noise(len(sig) / 8, -65, rng)
    if rate != 8000:
        sig = resample(sig, 8000, rate)
    return sig


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_events_are_printed_one_json_object_per_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A key, a dial tone and the silences are printed with the contract keys first."""
    path = write_wav(tmp_path / "call.wav", signal())
    assert main(["detect", str(path)]) == 0
    events = lines(capsys)
    kinds = [(e["type"], e.get("digit") or e.get("name")) for e in events]
    assert ("dtmf", "5") in kinds and ("tone", "dial") in kinds
    dtmf = next(e for e in events if e["type"] == "dtmf")
    assert list(dtmf)[:4] == ["type", "digit", "start_ms", "end_ms"]
    assert abs(int(dtmf["start_ms"]) - 1000) <= 10 and abs(int(dtmf["end_ms"]) - 1100) <= 10  # type: ignore[call-overload]
    starts = [int(e.get("start_ms", e.get("at_ms", 0))) for e in events]  # type: ignore[call-overload]
    assert starts == sorted(starts)
    assert any(e["type"] == "silence" for e in events)


def test_only_selects_detectors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--only dtmf prints only keys."""
    path = write_wav(tmp_path / "call.wav", signal())
    assert main(["detect", str(path), "--only", "dtmf"]) == 0
    assert [e["type"] for e in lines(capsys)] == ["dtmf"]


@pytest.mark.parametrize(("rate", "width"), [(16000, 2), (11025, 2), (44100, 3), (48000, 4), (8000, 1), (22050, 3)])
def test_other_rates_and_widths_are_converted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rate: int, width: int
) -> None:
    """8/24/32-bit PCM and other sample rates are converted to 16-bit 8 kHz first."""
    path = write_wav(tmp_path / "call.wav", signal(rate), rate=rate, width=width)
    assert main(["detect", str(path), "--only", "dtmf,tones"]) == 0
    kinds = [(e["type"], e.get("digit") or e.get("name")) for e in lines(capsys)]
    assert kinds == [("dtmf", "5"), ("tone", "dial")]


def test_resampling_keeps_a_tone_and_its_level() -> None:
    """A 1 kHz tone resampled 44.1 kHz -> 8 kHz keeps its frequency and level (within 0.2 dB)."""
    n = np.arange(44100)
    x = 10000 * np.sin(2 * np.pi * 1000 * n / 44100)
    y = resample(x, 44100, 8000)[400:-400]
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = np.argmax(spectrum) * 8000 / len(y)
    assert abs(peak_hz - 1000) < 2
    assert abs(20 * np.log10(np.sqrt(2 * np.mean(y**2)) / 10000)) < 0.2


def test_stereo_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A multi-channel WAV exits 2 with a message naming the file."""
    path = write_wav(tmp_path / "stereo.wav", signal(), channels=2)
    assert main(["detect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "stereo.wav" in err and "channels" in err


@pytest.mark.parametrize("content", [b"", b"not a wav at all", b"RIFF\x00\x00\x00\x00WAVEjunk"])
def test_unreadable_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes) -> None:
    """Garbage exits 2 naming the file."""
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    assert main(["detect", str(path)]) == 2
    assert "broken.wav" in capsys.readouterr().err


def test_missing_file_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing file exits 2 naming it."""
    assert main(["detect", str(tmp_path / "nope.wav")]) == 2
    assert "nope.wav" in capsys.readouterr().err


def test_dialplan_thresholds_are_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--dialplan: [detectors.dtmf] min_level_dbm0 = -5 hides a -10 dBm0 key."""
    path = write_wav(tmp_path / "call.wav", signal())
    plan = tmp_path / "jail.toml"
    plan.write_text("[detectors.dtmf]\nmin_level_dbm0 = -5.0\n")
    assert main(["detect", str(path), "--dialplan", str(plan), "--only", "dtmf"]) == 0
    assert lines(capsys) == []


def test_dialplan_with_unknown_key_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in [detectors.*] exits 2 naming the file and the key."""
    path = write_wav(tmp_path / "call.wav", signal())
    plan = tmp_path / "jail.toml"
    plan.write_text("[detectors.dtmf]\nmin_levle_dbm0 = -5.0\n")
    assert main(["detect", str(path), "--dialplan", str(plan)]) == 2
    assert "jail.toml: detectors.dtmf.min_levle_dbm0" in capsys.readouterr().err


def test_unknown_detector_in_only_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--only with an unknown name exits 2."""
    path = write_wav(tmp_path / "call.wav", signal())
    assert main(["detect", str(path), "--only", "dtmf,radar"]) == 2
    assert "radar" in capsys.readouterr().err


def test_read_wav_scales_8_bit_to_16_bit_range(tmp_path: Path) -> None:
    """8-bit unsigned PCM is centred and scaled to the 16-bit range."""
    path = write_wav(tmp_path / "b.wav", np.array([0.0, 12800.0, -12800.0]), width=1)
    data, rate = read_wav(path)
    assert rate == 8000 and list(data) == [0.0, 12800.0, -12800.0]


def test_wave_format_extensible_24_bit_is_read(tmp_path: Path) -> None:
    """WAVE_FORMAT_EXTENSIBLE PCM (what sox writes for 24-bit) is read despite Python 3.11's wave."""
    import struct

    values = np.array([0, 1000, -1000, 32767], dtype=np.int32) * 256
    data = np.stack([values & 0xFF, (values >> 8) & 0xFF, (values >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    sub = bytes.fromhex("0100000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 48000, 3, 24, 22, 24, 4) + sub
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path = tmp_path / "ext.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    samples, rate = read_wav(path)
    assert rate == 16000 and list(samples) == [0.0, 1000.0, -1000.0, 32767.0]
