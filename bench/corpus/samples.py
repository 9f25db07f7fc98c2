"""Write the small shipped talk-off samples (tests/data/audio/) from the espeak-ng corpus.

``python -m bench.corpus.samples``: two 8 kHz mono WAVs of about 17 s each (< 300 KB), one
English and one Spanish, mixing voices, speeds, pitches, spoken digits and hums.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from bench.corpus.speech import ES_VOICES, load_speech, utterance_plan

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "audio"
SECONDS = 17.0


def main() -> None:
    plan = utterance_plan(32.0)
    utts = load_speech(32.0)
    OUT.mkdir(parents=True, exist_ok=True)
    for lang, spanish in (("en", False), ("es", True)):
        picked: list[np.ndarray] = []
        total = 0
        for (_, voice, _, _, _), u in zip(plan, utts, strict=True):
            if (voice.split("+")[0] in ES_VOICES) != spanish or len(u) > 5 * 8000:
                continue
            picked.append(u)
            picked.append(np.zeros(1200, dtype=np.int16))
            total += len(u) + 1200
            if total >= SECONDS * 8000:
                break
        pcm = np.concatenate(picked)[: int(SECONDS * 8000)]
        path = OUT / f"talkoff_{lang}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(pcm.astype("<i2").tobytes())
        print(path, path.stat().st_size)


if __name__ == "__main__":
    main()
