"""``ivr prompts build`` (regenerate the WAVs from the texts) and ``ivr prompts say`` (render one prompt)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ivr.errors import InputError
from ivr.prompts.build import EspeakMissingError, build, wav_bytes
from ivr.prompts.catalogue import LANGUAGES, PROMPT_IDS


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("prompts", help="prompt audio: build the WAVs, render a prompt")
    sub = parser.add_subparsers(dest="prompts_command", metavar="ACTION")
    sub.required = True

    b = sub.add_parser("build", help="regenerate every segment WAV from prompts/<lang>/texts.toml with espeak-ng")
    b.add_argument("--out", type=Path, help="write here instead of the prompts folder (texts are copied along)")
    b.add_argument("--texts", type=Path, help="prompts folder to read (default: the project's prompts/)")
    b.add_argument("--voice-en", help="espeak-ng voice for English (default: [build] voice in the texts)")
    b.add_argument("--voice-es", help="espeak-ng voice for Spanish (default: [build] voice in the texts)")
    b.add_argument("--speed", type=int, help="words per minute (default: [build] speed_wpm in the texts)")
    b.add_argument("--espeak", help="path of the espeak-ng program")
    b.set_defaults(handler=_build)

    s = sub.add_parser("say", help="render one prompt to a WAV file (to listen to a wording)")
    s.add_argument("prompt_id", help=f"one of: {', '.join(sorted(PROMPT_IDS))}")
    s.add_argument("--language", "-l", default="en", choices=LANGUAGES)
    s.add_argument("--var", "-v", action="append", default=[], metavar="NAME=VALUE", help="a prompt variable")
    s.add_argument("--name-wav", type=Path, help="the caller's name clip (8 kHz mono 16-bit WAV)")
    s.add_argument("--texts", type=Path, help="prompts folder (default: the project's prompts/)")
    s.add_argument("--out", "-o", type=Path, required=True, help="WAV file to write")
    s.set_defaults(handler=_say)


def _build(args: argparse.Namespace) -> int:
    voices = {lang: v for lang, v in (("en", args.voice_en), ("es", args.voice_es)) if v}
    try:
        reports = build(
            source_dir=args.texts, out_dir=args.out, voices=voices, speed_wpm=args.speed, espeak=args.espeak
        )
    except EspeakMissingError as exc:
        print(f"ivr prompts build: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"ivr prompts build: {exc}", file=sys.stderr)
        return 1
    print(
        f"{'language':<9}{'voice':<10}{'segments':>9}{'written':>9}{'unchanged':>10}{'removed':>8}"
        f"{'audio s':>9}{'WAV kB':>8}"
    )
    for r in reports:
        print(
            f"{r.language:<9}{r.voice:<10}{r.segments:>9}{r.written:>9}{r.unchanged:>10}{len(r.removed):>8}"
            f"{r.audio_ms / 1000:>9.1f}{r.wav_bytes / 1024:>8.0f}"
        )
    return 0


def _say(args: argparse.Namespace) -> int:
    import wave

    import numpy as np

    from ivr.prompts.audio import render

    variables: dict[str, object] = {}
    for item in args.var:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise InputError(f"--var wants NAME=VALUE, got {item!r}")
        variables[name] = value
    clip = None
    if args.name_wav is not None:
        try:
            with wave.open(str(args.name_wav), "rb") as w:
                if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (8000, 1, 2):
                    raise InputError("must be 8 kHz mono 16-bit", where=str(args.name_wav))
                clip = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        except (OSError, wave.Error) as exc:
            raise InputError(f"cannot read: {exc}", where=str(args.name_wav)) from None
    try:
        rendered = render(args.prompt_id, args.language, variables, name_clip=clip, prompts_dir=args.texts)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    args.out.write_bytes(wav_bytes(rendered.pcm))
    for seg in rendered.segments:
        print(f"{seg.start_ms:>7} ms {seg.duration_ms:>6} ms  {seg.segment_id}")
    print(f"{rendered.duration_ms} ms -> {args.out}")
    return 0
