"""Assembling a prompt's audio (pydub) from segment WAVs, the caller's name clip and pauses.

Everything is 8 kHz mono 16-bit linear PCM, the rate of G.711 (ITU-T G.711) so the RTP layer only
encodes. Durations are whole milliseconds (8 samples): the build pads recordings to that, and the
name clip is padded here, so every ``Segment`` is exact and the total length is the sum of the
segments and the pauses between them (the last segment has none after it).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.errors import InputError
from ivr.prompts.texts import CLIP_NAME, TONE_BEEP, default_prompts_dir, expand, piece_label

with warnings.catch_warnings():
    # pydub looks for ffmpeg at import and warns when it is absent; we only read and write WAV.
    warnings.filterwarnings("ignore", message="Couldn't find ffmpeg", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message="'audioop' is deprecated", category=DeprecationWarning)
    from pydub import AudioSegment

SAMPLE_RATE = 8000
SAMPLES_PER_MS = SAMPLE_RATE // 1000
SAMPLE_WIDTH = 2  # bytes: 16-bit linear
BEEP_HZ = 1000
BEEP_MS = 300

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of a rendered prompt: a recorded segment id, ``clip:name`` or ``tone:beep``."""

    segment_id: str
    start_ms: int
    duration_ms: int

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms


@dataclass(frozen=True, slots=True, eq=False)
class Rendered:
    """A prompt's audio (int16, 8 kHz mono) and the ordered segments it is made of."""

    pcm: Pcm
    segments: tuple[Segment, ...]

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) // SAMPLES_PER_MS


def _from_pcm(pcm: Pcm) -> AudioSegment:
    return AudioSegment(data=pcm.astype("<i2").tobytes(), sample_width=SAMPLE_WIDTH, frame_rate=SAMPLE_RATE, channels=1)


def beep_pcm() -> Pcm:
    """The record-after-the-tone beep: 1 kHz for 300 ms at -10 dBFS, 10 ms raised-cosine ramps (no click)."""
    n = BEEP_MS * SAMPLES_PER_MS
    t = np.arange(n) / SAMPLE_RATE
    tone = np.sin(2 * np.pi * BEEP_HZ * t) * (10 ** (-10 / 20))
    ramp = 10 * SAMPLES_PER_MS
    envelope = np.ones(n)
    envelope[:ramp] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    envelope[-ramp:] = envelope[:ramp][::-1]
    out: Pcm = np.round(tone * envelope * 32767).astype(np.int16)
    return out


@lru_cache(maxsize=4096)
def _load_segment(path: str, stamp: tuple[int, int]) -> AudioSegment:
    del stamp  # cache key only: a rebuilt file is read again
    try:
        audio = AudioSegment.from_wav(path)
    except FileNotFoundError:
        raise InputError("prompt audio missing: run `ivr prompts build`", where=path) from None
    if (audio.frame_rate, audio.channels, audio.sample_width) != (SAMPLE_RATE, 1, SAMPLE_WIDTH):
        raise InputError(
            f"must be 8 kHz mono 16-bit, is {audio.frame_rate} Hz, {audio.channels} channel(s), "
            f"{8 * audio.sample_width}-bit (run `ivr prompts build`)",
            where=path,
        )
    return _whole_ms(audio)


def _whole_ms(audio: AudioSegment) -> AudioSegment:
    extra = int(audio.frame_count()) % SAMPLES_PER_MS
    if extra:
        pad = SAMPLES_PER_MS - extra
        audio = audio + AudioSegment(data=b"\0\0" * pad, sample_width=SAMPLE_WIDTH, frame_rate=SAMPLE_RATE, channels=1)
    return audio


def load_segment(prompts_dir: Path, language: str, segment_id: str) -> AudioSegment:
    """The recording of one segment (cached until the file changes)."""
    path = prompts_dir / language / f"{segment_id}.wav"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError("prompt audio missing: run `ivr prompts build`", where=str(path)) from None
    return _load_segment(str(path), (st.st_mtime_ns, st.st_size))


def _check_clip(name_clip: object) -> Pcm:
    if not isinstance(name_clip, np.ndarray) or name_clip.dtype != np.int16 or name_clip.ndim != 1:
        raise ValueError("name_clip must be a 1-D int16 array of 8 kHz samples")
    if name_clip.size == 0:
        raise ValueError("name_clip is empty: announce by facility only (name='none', ACC-1)")
    clip: Pcm = name_clip
    return clip


def render(
    prompt_id: str,
    language: str,
    variables: Mapping[str, object],
    *,
    name_clip: Pcm | None = None,
    prompts_dir: Path | None = None,
) -> Rendered:
    """Assemble ``prompt_id`` in ``language``: recordings, the name clip where the template puts it, pauses.

    Raises ``ValueError`` for an unknown prompt or language, a missing or bad variable, or
    ``name='clip'`` without a ``name_clip``. ``name_clip`` is ignored when the prompt does not play it.
    """
    base = (prompts_dir or default_prompts_dir()).resolve()
    pieces = expand(prompt_id, language, variables, base)
    parts: list[AudioSegment] = []
    segments: list[Segment] = []
    position_ms = 0
    for i, piece in enumerate(pieces):
        if piece.segment_id == CLIP_NAME:
            if name_clip is None:
                raise ValueError(
                    f"prompt {prompt_id!r} plays the caller's name (name='clip') but no name_clip was given"
                )
            audio = _whole_ms(_from_pcm(_check_clip(name_clip)))
        elif piece.segment_id == TONE_BEEP:
            audio = _from_pcm(beep_pcm())
        else:
            audio = load_segment(base, piece.language, piece.segment_id)
        duration_ms = int(audio.frame_count()) // SAMPLES_PER_MS
        segments.append(Segment(piece_label(piece, language), position_ms, duration_ms))
        parts.append(audio)
        position_ms += duration_ms
        if i < len(pieces) - 1:
            parts.append(AudioSegment.silent(duration=piece.pause.value, frame_rate=SAMPLE_RATE))
            position_ms += piece.pause.value
    combined = parts[0]
    for part in parts[1:]:
        combined += part
    pcm: Pcm = np.frombuffer(combined.raw_data, dtype="<i2").astype(np.int16)
    assert len(pcm) == position_ms * SAMPLES_PER_MS, "segments and pauses must add up to the audio"
    return Rendered(pcm, tuple(segments))
