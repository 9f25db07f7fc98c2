"""Talk-off speech corpus: espeak-ng in English and Spanish, many voices, speeds and pitches.

``python -m bench.corpus.speech [--minutes 32]`` renders utterances (sentences, spoken digit strings,
humming-like sustained vowels) to 8 kHz 16-bit mono WAVs in the cache, deterministically (seeded).
Generation runs under ``nice``; already rendered files are kept.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.corpus.cache import cache_dir

ENGLISH = [
    "Hello, this is a collect call from the county jail. Can you hear me all right?",
    "I wanted to tell you that the hearing went fine and my lawyer is hopeful.",
    "Please put some money on the account so I can call you again next week.",
    "How are the kids doing at school? Tell them I miss them every single day.",
    "The food here is terrible, but the library is open on Tuesdays and Fridays.",
    "Did you talk to grandma about the birthday party on Saturday afternoon?",
    "My case number is four seven two nine one, write it down somewhere safe.",
    "We only have fifteen minutes, so let me say the important things first.",
    "Remember to call the public defender before noon, they close early on Friday.",
    "I love you too. Take care of yourself and kiss the baby for me.",
    "Yes, yes, I know. No, I did not forget. Okay, okay, alright then.",
    "The weather has been cold and rainy all week, the yard was closed twice.",
    "Could you send me a few books? Anything by Stephen King would be great.",
    "Mmm, hmm, yeah, uh huh, right, I see what you mean, sure thing.",
    "One, two, three, four, five, six, seven, eight, nine, ten, eleven, twelve.",
    "Oh wow, that is wonderful news! I am so happy for both of you, really.",
    "Whatever happens, we will get through this together, I promise you that.",
    "The phone number is five five five, eight six seven, five three zero nine.",
    "Ahhh, ooooh, eeeeh, mmmmmm, la la la la, doo doo doo, hmmmmm.",
    "They moved me to another unit, so the visiting hours changed to mornings.",
    "Say hi to everybody at church and thank them for the letters and cards.",
    "Press one to accept, press two to refuse, press nine to block this number.",
    "Tell your brother I said happy birthday and that I will call him soon.",
    "My release date might be in March, but nothing is certain yet.",
    "Shh, shh, it is okay, do not cry, everything will be fine, I promise.",
    "The commissary prices went up again, a bag of coffee costs eight dollars now.",
    "What did the doctor say about your knee? Are you going to need surgery?",
    "I have been reading a lot and going to the gym every morning at six.",
    "Did the check arrive? I mailed it on the twenty second of last month.",
    "Zero zero seven, nine nine nine, four four four, one one one, two two.",
]

SPANISH = [
    "Hola mamá, soy yo, te llamo desde la cárcel del condado, ¿me escuchas bien?",
    "Dile a mi hermano que necesito que hable con el abogado mañana temprano.",
    "¿Cómo están los niños? Diles que los quiero mucho y que pronto estaré en casa.",
    "La comida aquí es muy mala, pero por lo menos tenemos biblioteca los martes.",
    "Por favor pon dinero en la cuenta para que pueda llamarte la próxima semana.",
    "Mi número de caso es cuatro siete dos nueve uno, apúntalo por favor.",
    "Uno, dos, tres, cuatro, cinco, seis, siete, ocho, nueve, diez, once, doce.",
    "Sí, sí, ya sé. No, no se me olvidó. Bueno, bueno, está bien entonces.",
    "El teléfono es cinco cinco cinco, ocho seis siete, cinco tres cero nueve.",
    "Ay, qué bueno, me alegra mucho escuchar eso, de verdad que sí.",
    "Mmm, ajá, sí, claro, entiendo, aaah, ooooh, eeeeh, la la la la.",
    "Me cambiaron de unidad y ahora las visitas son por la mañana.",
    "Saluda a todos en la iglesia y dales las gracias por las cartas.",
    "Te quiero mucho, cuídate y dale un beso al bebé de mi parte.",
    "¿Qué te dijo el doctor de la rodilla? ¿Te van a tener que operar?",
    "Marque uno para aceptar, dos para rechazar, nueve para bloquear este número.",
    "Cero cero siete, nueve nueve nueve, cuatro cuatro cuatro, uno uno uno.",
    "El abogado dice que la audiencia es el quince de marzo a las nueve.",
    "No llores, mi amor, todo va a salir bien, te lo prometo.",
    "Aquí hace mucho frío y el patio estuvo cerrado casi toda la semana.",
]

HUMS = ["mmmmmmmmmmmm", "ooooooooooooh", "aaaaaaaaaaah", "eeeeeeeeeeee", "hmmmmmmmmmmm", "uuuuuuuuuuuu"]

EN_VOICES = ["en-us", "en-gb", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-rp", "en-gb-x-gbcwmd"]
ES_VOICES = ["es", "es-419"]
VARIANTS = [
    "",
    "+f1",
    "+f2",
    "+f3",
    "+f4",
    "+f5",
    "+m1",
    "+m2",
    "+m3",
    "+m4",
    "+m5",
    "+m6",
    "+m7",
    "+klatt",
    "+klatt2",
    "+klatt3",
    "+klatt4",
    "+Annie",
    "+Andrea",
    "+Alicia",
    "+grandma",
    "+grandpa",
]


def _digits(rng: random.Random, spanish: bool) -> str:
    words_en = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    words_es = ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve"]
    words = words_es if spanish else words_en
    return " ".join(words[rng.randrange(10)] for _ in range(rng.randint(4, 12)))


def utterance_plan(minutes: float, seed: int = 1234) -> list[tuple[str, str, int, int, str]]:
    """(name, voice, speed_wpm, pitch, text) for enough utterances to cover ``minutes``."""
    rng = random.Random(seed)
    plan: list[tuple[str, str, int, int, str]] = []
    # ~4.5 s per utterance on average.
    count = int(minutes * 60 / 4.5) + 1
    for i in range(count):
        spanish = rng.random() < 0.4
        voice = rng.choice(ES_VOICES if spanish else EN_VOICES) + rng.choice(VARIANTS)
        kind = rng.random()
        if kind < 0.2:
            text = _digits(rng, spanish)
        elif kind < 0.3:
            text = " ".join(rng.choice(HUMS) for _ in range(rng.randint(2, 4)))
        else:
            text = rng.choice(SPANISH if spanish else ENGLISH)
        speed = rng.choice([90, 120, 140, 160, 175, 190, 220])
        pitch = rng.choice([5, 20, 35, 50, 65, 80, 99])
        plan.append((f"utt{i:04d}", voice, speed, pitch, text))
    return plan


def _to_8k(path_in: Path, path_out: Path) -> None:
    subprocess.run(
        ["nice", "-n", "15", "sox", "-q", str(path_in), "-r", "8000", "-b", "16", "-c", "1", str(path_out)],
        check=True,
    )


def render(minutes: float = 32.0) -> list[Path]:
    """Render (or reuse) the corpus; returns the 8 kHz WAV paths in plan order."""
    out_dir = cache_dir("speech")
    paths: list[Path] = []
    for name, voice, speed, pitch, text in utterance_plan(minutes):
        out = out_dir / f"{name}.wav"
        if not out.exists():
            raw = out_dir / f"{name}.raw.wav"
            cmd = ["nice", "-n", "15", "espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch)]
            subprocess.run([*cmd, "-w", str(raw), text], check=True, capture_output=True)
            _to_8k(raw, out)
            raw.unlink()
        paths.append(out)
    return paths


def read_wav_8k(path: Path) -> npt.NDArray[np.int16]:
    """Samples of an 8 kHz mono 16-bit WAV."""
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == 8000 and w.getnchannels() == 1 and w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def load_speech(minutes: float = 32.0) -> list[npt.NDArray[np.int16]]:
    """The rendered utterances as arrays."""
    return [read_wav_8k(p) for p in render(minutes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=32.0)
    args = parser.parse_args()
    utts = load_speech(args.minutes)
    total = sum(len(u) for u in utts) / 8000
    print(f"{len(utts)} utterances, {total / 60:.1f} minutes in {cache_dir('speech')}")


if __name__ == "__main__":
    main()
