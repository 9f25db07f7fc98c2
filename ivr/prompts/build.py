"""``ivr prompts build``: every segment's text -> espeak-ng -> 8 kHz mono 16-bit WAV.

espeak-ng writes 22,050 Hz; we resample here in numpy (a Kaiser-windowed sinc, polyphase) rather than
with an external tool so the only build dependency is espeak-ng and the output is bit-for-bit
repeatable: same texts, same voice, same espeak-ng -> same files (the committed WAVs do not churn).
Each recording is trimmed of espeak's leading and trailing silence, peak-normalised to -6 dBFS
(room for G.711's range, even loudness across segments), given 3 ms fades so cuts never click, and
padded to whole milliseconds.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.errors import InputError
from ivr.prompts.catalogue import LANGUAGES
from ivr.prompts.texts import TEXTS_FILE, default_prompts_dir, load_texts

SAMPLE_RATE = 8000
CUTOFF_HZ = 3700.0  # the telephone channel passes 300-3400 Hz (G.712); stop band from about 4000 Hz
TRANSITION_HZ = 600.0
STOPBAND_DB = 80.0
PEAK = 0.5  # -6 dBFS
TRIM_RATIO = 0.02  # louder than 2 % of the peak counts as speech when trimming
HEAD_PAD_MS = 15
TAIL_PAD_MS = 30
FADE_MS = 3

Samples = npt.NDArray[np.float64]


class EspeakMissingError(RuntimeError):
    """espeak-ng is not installed (Debian package ``espeak-ng``)."""


@dataclass(slots=True)
class LanguageReport:
    language: str
    voice: str
    segments: int = 0
    written: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)
    audio_ms: int = 0
    wav_bytes: int = 0


def _kaiser_table(up: int, rate_in: int) -> tuple[Samples, int]:
    """Polyphase low-pass taps: row k is the filter for the output position k/up between inputs."""
    cutoff = min(CUTOFF_HZ, 0.45 * rate_in, 0.45 * SAMPLE_RATE) / rate_in  # cycles per input sample
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    taps = (STOPBAND_DB - 7.95) / (2.285 * 2 * math.pi * TRANSITION_HZ / rate_in)
    half = math.ceil(taps / 2) + 1
    offsets = np.arange(-half + 1, half + 1)
    frac = np.arange(up)[:, None] / up
    d = frac - offsets[None, :]
    window = np.i0(beta * np.sqrt(np.clip(1 - (d / half) ** 2, 0.0, None))) / np.i0(beta)
    table = 2 * cutoff * np.sinc(2 * cutoff * d) * window
    table /= table.sum(axis=1, keepdims=True)  # unity gain at DC for every phase
    return table, half


def resample(x: Samples, rate_in: int) -> Samples:
    """Resample ``x`` from ``rate_in`` to 8 kHz (band-limited to 3.7 kHz first)."""
    if rate_in == SAMPLE_RATE:
        return x.copy()
    g = math.gcd(rate_in, SAMPLE_RATE)
    up, down = SAMPLE_RATE // g, rate_in // g
    table, half = _kaiser_table(up, rate_in)
    n_out = -(-len(x) * up // down)
    padded = np.concatenate([np.zeros(half), x, np.zeros(half + 1)])
    offsets = np.arange(-half + 1, half + 1) + half
    out = np.empty(n_out)
    for start in range(0, n_out, 4096):  # chunks keep the gathered matrix small
        n = np.arange(start, min(start + 4096, n_out))
        base, phase = np.divmod(n * down, up)
        out[n] = np.sum(padded[base[:, None] + offsets[None, :]] * table[phase], axis=1)
    return out


def finish(x: Samples, sample_rate: int = SAMPLE_RATE) -> npt.NDArray[np.int16]:
    """Trim, normalise, fade and pad to whole ms; -> int16."""
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    if peak == 0.0:
        raise ValueError("the recording is silent")
    loud = np.flatnonzero(np.abs(x) > TRIM_RATIO * peak)
    per_ms = sample_rate // 1000
    start = max(int(loud[0]) - HEAD_PAD_MS * per_ms, 0)
    end = min(int(loud[-1]) + 1 + TAIL_PAD_MS * per_ms, len(x))
    y = x[start:end] * (PEAK / peak)
    fade = min(FADE_MS * per_ms, len(y) // 2)
    ramp = np.arange(fade) / fade
    y[:fade] *= ramp
    y[len(y) - fade :] *= ramp[::-1]
    y = np.concatenate([y, np.zeros(-len(y) % per_ms)])
    return np.round(np.clip(y, -1.0, 1.0) * 32767).astype(np.int16)


def wav_bytes(pcm: npt.NDArray[np.int16], sample_rate: int = SAMPLE_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def _read_wav(path: Path) -> tuple[Samples, int]:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise RuntimeError(f"{path}: espeak-ng wrote {8 * w.getsampwidth()}-bit audio, expected 16-bit")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1)
    return data, rate


def find_espeak(explicit: str | None = None) -> str:
    path = shutil.which(explicit or "espeak-ng")
    if path is None:
        raise EspeakMissingError(
            f"{explicit or 'espeak-ng'} not found: install it (Debian: apt-get install espeak-ng) or pass --espeak PATH"
        )
    return path


def synthesize(espeak: str, voice: str, speed_wpm: int, text: str, workdir: Path) -> npt.NDArray[np.int16]:
    """One segment: espeak-ng to a temporary WAV, then resample and finish."""
    out = workdir / "segment.wav"
    # Text on stdin (-b 1: UTF-8) so a text starting with "-" is never read as an option.
    result = subprocess.run(
        [espeak, "-v", voice, "-s", str(speed_wpm), "-b", "1", "-w", str(out)],
        input=text.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {result.stderr.decode(errors='replace').strip()}")
    data, rate = _read_wav(out)
    return finish(resample(data, rate))


def build(
    *,
    source_dir: Path | None = None,
    out_dir: Path | None = None,
    voices: Mapping[str, str] | None = None,
    speed_wpm: int | None = None,
    espeak: str | None = None,
) -> list[LanguageReport]:
    """Regenerate every segment WAV of every language; returns what was done per language.

    ``out_dir`` defaults to ``source_dir``; a different ``out_dir`` also receives the texts, so it is a
    complete prompts folder for ``render(prompts_dir=...)``. WAVs of segments no longer in the texts
    are removed from ``out_dir/<language>/`` so the folder matches the texts exactly.
    """
    espeak_path = find_espeak(espeak)
    source = (source_dir or default_prompts_dir()).resolve()
    out = (out_dir or source).resolve()
    all_texts = load_texts(source)
    reports = []
    with tempfile.TemporaryDirectory(prefix="ivr-prompts-") as tmp:
        for language in LANGUAGES:
            texts = all_texts[language]
            voice = (voices or {}).get(language) or texts.voice
            report = LanguageReport(language, voice, segments=len(texts.segments))
            folder = out / language
            folder.mkdir(parents=True, exist_ok=True)
            if folder != source / language:
                shutil.copyfile(texts.path, folder / TEXTS_FILE)
            for seg_id in sorted(texts.segments):
                try:
                    pcm = synthesize(
                        espeak_path, voice, speed_wpm or texts.speed_wpm, texts.segments[seg_id], Path(tmp)
                    )
                except ValueError as exc:
                    raise InputError(str(exc), where=f"{texts.path}: segments.{seg_id}") from None
                data = wav_bytes(pcm)
                target = folder / f"{seg_id}.wav"
                if target.exists() and target.read_bytes() == data:
                    report.unchanged += 1
                else:
                    target.write_bytes(data)
                    report.written += 1
                report.audio_ms += len(pcm) // (SAMPLE_RATE // 1000)
                report.wav_bytes += len(data)
            for stale in sorted(folder.glob("*.wav")):
                if stale.stem not in texts.segments:
                    stale.unlink()
                    report.removed.append(stale.name)
            reports.append(report)
    return reports
