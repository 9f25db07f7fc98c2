"""Build the simulator's speech clips with espeak-ng: ``python -m sim.audio.build``.

Clips are 8 kHz mono 16-bit WAVs (the engine's audio format, DESIGN.md section 4), made by the
same pipeline as the prompts (``ivr.prompts.build``: espeak-ng, band-limited resampling, trim,
normalise). They are committed so tests and ``ivr sim`` need no espeak-ng; this script is how they
were made. Kinds:

- ``name-*``: what a caller says when asked for their name (ACC-1);
- ``family-*``: a called party talking; ``caller-*``: the caller talking;
- ``third-*``: the third voice that joins a three-way call (DIS-3WAY).

The whole set is kept small (about 1 MB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from ivr.prompts.build import find_espeak, synthesize, wav_bytes

AUDIO_DIR = Path(__file__).resolve().parent

# (file stem, espeak-ng voice, words per minute, text)
CLIPS: tuple[tuple[str, str, int, str], ...] = (
    ("name-marcus", "en-us+m3", 150, "Marcus Johnson"),
    ("name-david", "en-us+m1", 150, "David Lee"),
    ("name-jose", "es+m2", 150, "José Ramírez"),
    ("name-tyrone", "en-us+m4", 150, "Tyrone Williams"),
    ("name-kevin", "en+m2", 150, "Kevin Brown"),
    ("name-maria", "en-us+f2", 150, "Maria Lopez"),
    ("family-1", "en-us+f3", 160, "Hi baby, it's so good to hear your voice. Are you doing okay in there?"),
    ("family-2", "en-us+f2", 160, "Your sister came by on Sunday, and the kids keep asking about you."),
    ("family-3", "en+m1", 155, "I put more money on the account this morning, so don't worry about that."),
    ("family-4", "en-us+f4", 165, "The lawyer called back. He says the hearing is moved to the twelfth."),
    ("family-5", "es+f3", 155, "Mijo, te extrañamos mucho. Tu abuela manda saludos."),
    ("family-6", "en-us+m5", 160, "Yeah, I hear you. We will be there for visiting on Saturday."),
    ("caller-1", "en-us+m3", 155, "I'm okay. The food is bad but I'm getting by. How is everybody?"),
    ("caller-2", "en-us+m1", 155, "Tell mom I love her. I got the letter and the pictures."),
    ("caller-3", "es+m2", 150, "Estoy bien, no te preocupes. Dile a todos que los quiero."),
    ("caller-4", "en+m4", 160, "I only have a few minutes, so listen. I need you to call my lawyer."),
    ("third-1", "en-us+f5", 165, "Hey, it's me, I'm on the line too. Can you hear me?"),
)


def build(out_dir: Path = AUDIO_DIR, espeak: str | None = None) -> list[Path]:
    exe = find_espeak(espeak)
    written: list[Path] = []
    with tempfile.TemporaryDirectory() as tmp:
        for stem, voice, wpm, text in CLIPS:
            pcm = synthesize(exe, voice, wpm, text, Path(tmp))
            path = out_dir / f"{stem}.wav"
            path.write_bytes(wav_bytes(pcm))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim.audio.build", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=AUDIO_DIR)
    parser.add_argument("--espeak", default=None)
    args = parser.parse_args(argv)
    try:
        paths = build(args.out, args.espeak)
    except Exception as exc:  # espeak-ng missing or failing: say so, exit 1
        print(f"sim.audio.build: {exc}", file=sys.stderr)
        return 1
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} clips, {total / 1e6:.2f} MB in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
