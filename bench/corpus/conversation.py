"""Called-leg audio of conversations, with and without a hookflash (three-way) or call waiting.

What the engine hears from the called party: that party's voice (espeak-ng utterances from the
speech corpus) taking turns with the caller, whose voice comes back as hybrid echo about 25 dB
down; natural pauses (0.2-1.5 s, sometimes 3-8 s of thinking); steady line hiss at a per-call
level between -70 and -50 dBm0; everything through a G.711 mu-law round trip.

A flash (DIS-3WAY): after a pause, the on-hook click, 300-1100 ms on-hook (the phone's hiss is
gone: the line idles at -80..-72 dBm0), the off-hook click, then one of: dial tone then DTMF
dialing then ringback; dial tone then a voice; DTMF dialing straight away; then a third voice.
A call-waiting case: the 440 Hz tone (300 ms, -20..-12 dBm0) between turns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ivr.detect import synth
from ivr.rtp import g711

Samples = npt.NDArray[np.float64]
SR = 8000


@dataclass
class FlashTruth:
    kind: str  # "flash" or "call_waiting"
    at_ms: float
    variant: str


class ConversationMaker:
    """Deterministic conversation generator over a list of utterances (int16 arrays)."""

    def __init__(self, utterances: list[npt.NDArray[np.int16]], rng: np.random.Generator) -> None:
        self.utts = [u.astype(np.float64) for u in utterances if len(u) > SR // 2]
        self.rng = rng

    def _utt(self, level_db: float) -> Samples:
        u = self.utts[int(self.rng.integers(len(self.utts)))]
        return u * 10 ** (level_db / 20)

    def talk(self, seconds: float, hiss_dbm0: float) -> Samples:
        """``seconds`` of turn-taking as heard on the called leg, hiss included."""
        rng = self.rng
        parts: list[Samples] = []
        total = 0
        n = int(seconds * SR)
        called_level = float(rng.uniform(-8, 2))  # per call: how loud the called party is
        while total < n:
            who_called = rng.random() < 0.5
            seg = self._utt(called_level + rng.uniform(-3, 3)) if who_called else self._utt(-25 + rng.uniform(-5, 5))
            pause = rng.uniform(0.2, 1.5) if rng.random() < 0.9 else rng.uniform(3.0, 8.0)
            parts += [seg, np.zeros(int(pause * SR))]
            total += len(seg) + int(pause * SR)
        out = np.concatenate(parts)[:n]
        return out + synth.white_noise(len(out) / 8, hiss_dbm0, rng)

    def clean(self, seconds: float) -> npt.NDArray[np.int16]:
        hiss = float(self.rng.uniform(-70, -50))
        return self._g711(self.talk(seconds, hiss))

    def household(self, seconds: float) -> npt.NDArray[np.int16]:
        """A harder clean call: door knocks, cup and keyboard clicks in the pauses (one every
        ~15 s, 5-30 ms, -35..-10 dBm0) and the room noise changing level (TV, fan: every ~30 s,
        steps of 6-15 dB down or up, between -65 and -40 dBm0)."""
        rng = self.rng
        hiss = float(rng.uniform(-70, -50))
        out = self.talk(seconds, hiss)
        n = len(out)
        pos = 0
        level = float(rng.uniform(-65, -45))
        while pos < n:
            seg = int(rng.uniform(10, 50) * SR)
            room = synth.white_noise(min(seg, n - pos) / 8, level, rng)
            out[pos : pos + len(room)] += room[: n - pos]
            pos += seg
            level = float(np.clip(level + rng.choice([-1, 1]) * rng.uniform(6, 15), -65, -40))
        for _ in range(int(seconds / 15)):
            at = int(rng.integers(0, max(n - SR, 1)))
            c = synth.click(float(rng.uniform(5, 30)), float(rng.uniform(-35, -10)), rng)
            out[at : at + len(c)] += c[: n - at]
        return self._g711(out)

    def with_event(self, before_s: float, after_s: float) -> tuple[npt.NDArray[np.int16], FlashTruth]:
        """Conversation, then a flash (3 variants) or a call-waiting tone, then more talk."""
        rng = self.rng
        hiss = float(rng.uniform(-70, -50))
        head = self.talk(before_s, hiss)
        # Let the head end in a pause, as a flash needs the party to stop talking.
        head = np.concatenate([head, synth.white_noise(float(rng.uniform(300, 900)), hiss, rng)])
        at_ms = len(head) / 8.0
        kind = rng.random()
        if kind < 0.2:
            tone = synth.tone([440.0], 300.0, float(rng.uniform(-20, -12)))
            body = np.concatenate([tone + synth.white_noise(300, hiss, rng), synth.white_noise(700, hiss, rng)])
            tail = self.talk(after_s, hiss)
            truth = FlashTruth("call_waiting", at_ms, "call_waiting")
            return self._g711(np.concatenate([head, body, tail])), truth
        idle = float(rng.uniform(-80, -72))
        gap_ms = float(rng.uniform(300, 1100))
        parts = [
            synth.click(float(rng.uniform(5, 30)), float(rng.uniform(-20, -6)), rng),
            synth.white_noise(gap_ms, idle, rng),
            synth.click(float(rng.uniform(5, 30)), float(rng.uniform(-20, -6)), rng),
        ]
        variant = ["dial+dtmf+ringback", "dial+voice", "dtmf"][int(rng.integers(3))]
        line = idle + 8.0  # off-hook with the new call: a line, but not the old phone's hiss yet
        if variant.startswith("dial"):
            dial_ms = float(rng.uniform(500, 2500))
            parts.append(synth.tone([350, 440], dial_ms, -13.0) + synth.white_noise(dial_ms, line, rng))
        if "dtmf" in variant:
            for d in rng.choice(list("0123456789"), size=int(rng.integers(7, 11))):
                on = float(rng.uniform(60, 120))
                off = float(rng.uniform(60, 150))
                parts += [synth.dtmf(str(d), on, float(rng.uniform(-10, -4)), twist_db=float(rng.uniform(-2, 4)))]
                parts += [synth.white_noise(off, line, rng)]
        if "ringback" in variant or variant == "dtmf":
            for _ in range(int(rng.integers(1, 3))):
                parts += [synth.tone([440, 480], 2000, -19.0), synth.white_noise(4000, line, rng)]
        parts.append(self.talk(after_s, hiss))
        truth = FlashTruth("flash", at_ms, variant)
        return self._g711(np.concatenate([head, *parts])), truth

    @staticmethod
    def _g711(x: Samples) -> npt.NDArray[np.int16]:
        pcm = synth.to_pcm16(x)
        return g711.ulaw_decode(g711.ulaw_encode(pcm))
