"""What a simulated phone puts on the line: speech clips, pauses, in-band signals, noise.

:class:`AudioScript` is a small pull-based mixer: the phone asks it for the next N samples and it
answers with 16-bit PCM at 8 kHz. A *bed* (speech clips separated by pauses, or silence) runs
continuously; *inserts* (an in-band DTMF key, the three-way sequence, the call-waiting tone)
replace the bed while they play, as a real phone mutes the microphone while it sends a key;
static noise is added on top when the line is noisy (DIS-NOISE).

Signals follow DOMAIN.md and DESIGN.md section 4: a hookflash is a click under 40 ms between
silences, then dial tone (350 + 440 Hz, ITU-T E.180 / North American precise tone plan), DTMF
dialing (ITU-T Q.23 frequencies) and a third voice; call waiting is 440 Hz for 250 ms.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.detect import synth
from ivr.detect.audio import load_8k

AUDIO_DIR = Path(__file__).resolve().parent / "audio"
SAMPLE_RATE_HZ = 8000
Pcm = npt.NDArray[np.int16]

# Levels (dBm0): speech clips are normalised near full scale by the build; these are the signals'.
DTMF_LEVEL_DBM0 = -8.0
DIAL_TONE_LEVEL_DBM0 = -13.0  # precise tone plan: each frequency at -13 dBm0
CALL_WAITING_LEVEL_DBM0 = -13.0
CLICK_LEVEL_DBM0 = -6.0
STATIC_LEVEL_DBM0 = -22.0
SPEECH_GAIN = 0.5  # the clips peak near full scale; a phone's speech is ~ -6 dB below that


@functools.lru_cache(maxsize=64)
def load_clip(name: str) -> Pcm:
    """A shipped clip by stem (``family-1``) or a path to an 8 kHz (or resampled) WAV."""
    path = Path(name)
    if not path.suffix:
        path = AUDIO_DIR / f"{name}.wav"
    if not path.exists():
        raise FileNotFoundError(f"no speech clip {name!r} (looked for {path})")
    return load_8k(path)


def clips(prefix: str) -> list[str]:
    """The shipped clip stems that start with ``prefix`` (``family-``, ``caller-``, ``name-``)."""
    return sorted(p.stem for p in AUDIO_DIR.glob(f"{prefix}*.wav"))


def dtmf_pcm(keys: str, *, tone_ms: float = 100.0, gap_ms: float = 80.0) -> Pcm:
    """In-band keys (Q.24 accepts tones of 40 ms or more; 100 ms is a typical phone)."""
    parts: list[npt.NDArray[np.float64]] = []
    for key in keys:
        parts.append(synth.dtmf(key, tone_ms, DTMF_LEVEL_DBM0))
        parts.append(synth.silence(gap_ms))
    return synth.to_pcm16(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int16)


def three_way_pcm(
    digits: str,
    *,
    rng: np.random.Generator,
    click_ms: float = 20.0,
    gap_ms: float = 600.0,
    dial_tone_ms: float = 1500.0,
    third_voice: str | None = "third-1",
) -> Pcm:
    """A hookflash and a new call: click (< 40 ms), silence (300-1100 ms), dial tone 350+440 Hz,
    the digits in-band, a ring pause, then the third party's voice (DIS-3WAY)."""
    if not click_ms < 40.0:
        raise ValueError("a hookflash click is shorter than 40 ms")
    if not 300.0 <= gap_ms <= 1100.0:
        raise ValueError("the silence after a flash is 300-1100 ms")
    parts = [
        synth.silence(800.0),  # the party stops talking before pressing the hook switch
        synth.click(click_ms, CLICK_LEVEL_DBM0, rng),
        synth.silence(gap_ms),
        synth.tone((350.0, 440.0), dial_tone_ms, DIAL_TONE_LEVEL_DBM0),
        synth.silence(300.0),
    ]
    out = [synth.to_pcm16(np.concatenate(parts)), dtmf_pcm(digits), np.zeros(8000, dtype=np.int16)]
    if third_voice:
        out.append(scaled(load_clip(third_voice)))
    return np.concatenate(out)


def call_waiting_pcm(duration_ms: float = 250.0) -> Pcm:
    """The call-waiting tone: 440 Hz, 200-300 ms (DIS-3WAY), between short silences."""
    parts = [
        synth.silence(100.0),
        synth.tone((440.0,), duration_ms, CALL_WAITING_LEVEL_DBM0),
        synth.silence(100.0),
    ]
    return synth.to_pcm16(np.concatenate(parts))


def scaled(pcm: Pcm, gain: float = SPEECH_GAIN) -> Pcm:
    return np.clip(np.round(pcm.astype(np.float64) * gain), -32768, 32767).astype(np.int16)


class AudioScript:
    """The mixer of one phone's outgoing audio (see the module docstring)."""

    def __init__(self, rng: random.Random, *, talk_clips: list[str] | None = None) -> None:
        self._rng = rng
        self._np_rng = np.random.default_rng(rng.getrandbits(32))
        self._talk_clips = talk_clips or []
        self.talking = False
        self.static = False
        self.silent = False  # digital silence: overrides everything but inserts
        self._bed = np.zeros(0, dtype=np.int16)  # what is left of the current clip or pause
        self._inserts: list[Pcm] = []
        self._insert_pos = 0
        self.samples_out = 0
        self._speak_next = False

    def talk(self, on: bool = True) -> None:
        if on and not self.talking:
            self._bed = np.zeros(0, dtype=np.int16)
            self._speak_next = True  # a conversation starts with speech, not with a pause
        self.talking = on
        if not on:
            self._bed = np.zeros(0, dtype=np.int16)

    def insert(self, pcm: Pcm) -> None:
        """Play ``pcm`` instead of the bed as soon as the inserts before it are done."""
        if len(pcm):
            self._inserts.append(pcm)

    def say(self, clip: str) -> None:
        """Say one clip now (e.g. the caller's name) instead of the bed."""
        self.insert(scaled(load_clip(clip)))

    @property
    def inserting(self) -> bool:
        return bool(self._inserts)

    def _next_bed(self) -> Pcm:
        if self.talking and self._talk_clips:
            if self._speak_next or self._rng.random() < 0.5:
                self._speak_next = False
                return scaled(load_clip(self._rng.choice(self._talk_clips)))
            # a pause in the conversation (the other party talks), 1-3 s
            return np.zeros(int(self._rng.uniform(1.0, 3.0) * SAMPLE_RATE_HZ), dtype=np.int16)
        return np.zeros(SAMPLE_RATE_HZ // 5, dtype=np.int16)

    def next(self, n: int) -> Pcm:
        """The next ``n`` samples of the line."""
        out = np.zeros(n, dtype=np.int16)
        filled = 0
        while filled < n:
            if self._inserts:
                current = self._inserts[0]
                take = min(n - filled, len(current) - self._insert_pos)
                out[filled : filled + take] = current[self._insert_pos : self._insert_pos + take]
                self._insert_pos += take
                filled += take
                if self._insert_pos >= len(current):
                    self._inserts.pop(0)
                    self._insert_pos = 0
                continue
            if self.silent:
                filled = n
                break
            if not len(self._bed):
                self._bed = self._next_bed()
            take = min(n - filled, len(self._bed))
            out[filled : filled + take] = self._bed[:take]
            self._bed = self._bed[take:]
            filled += take
        if self.static and not self.silent:
            noise = synth.white_noise(n * 1000 / SAMPLE_RATE_HZ, STATIC_LEVEL_DBM0, self._np_rng)[:n]
            out = np.clip(out.astype(np.float64) + noise, -32768, 32767).astype(np.int16)
        self.samples_out += n
        return out
