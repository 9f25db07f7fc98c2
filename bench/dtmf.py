"""In-band DTMF: the project's receiver and spandsp's ``dtmf_rx``, side by side on the same corpus.

    python -m bench.dtmf [--speech-minutes 32] [--music-minutes 30]

Builds a deterministic corpus (seeded) covering every ITU-T Q.24 condition of issue 3, runs both
receivers on the same samples and prints a Markdown table: detection rate per category,
rejections honoured, false keys per hour of speech (espeak-ng, English and Spanish, cached in
``$IVR_BENCH_CACHE``) and of music-like signals, onset error and throughput. spandsp is called
through ctypes (``bench/corpus/spandsp.py``) with its dial-tone filter on and default thresholds.
"""

from __future__ import annotations

import os

# Small matrix products: OpenBLAS threads only spin (and on a shared machine cost 4x the CPU).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from bench.corpus.spandsp import SpanDsp
from bench.corpus.speech import load_speech
from ivr.detect import synth
from ivr.detect.dtmf import DtmfBank, DtmfDetector
from ivr.rtp import g711
from ivr.types import DTMF_KEYS

Samples = npt.NDArray[np.float64]
RNG_SEED = 2026


@dataclass
class Trial:
    signal: Samples
    expected: str
    starts_ms: list[float] = field(default_factory=list)


@dataclass
class Category:
    name: str
    accept: bool  # True: the keys must be found; False: nothing may be found
    trials: list[Trial]


def _trial(
    rng: np.random.Generator,
    key: str,
    tone: Callable[[], Samples],
    expected: str | None = None,
    post: Callable[[Samples], Samples] | None = None,
) -> Trial:
    lead = 100.0 + float(rng.uniform(0.0, 20.0))
    sig = np.concatenate([synth.silence(lead), tone(), synth.silence(150.0)])
    if post is not None:
        sig = post(sig)
    return Trial(sig, key if expected is None else expected, [lead])


def _g711(law: str) -> Callable[[Samples], Samples]:
    def apply(sig: Samples) -> Samples:
        pcm = synth.to_pcm16(sig)
        if law == "ulaw":
            return g711.ulaw_decode(g711.ulaw_encode(pcm)).astype(np.float64)
        return g711.alaw_decode(g711.alaw_encode(pcm)).astype(np.float64)

    return apply


def build_categories() -> list[Category]:
    """Every Q.24 condition of issue 3, 16 keys each, deterministic."""
    rng = np.random.default_rng(RNG_SEED)
    keys = list(DTMF_KEYS)
    cats: list[Category] = []

    def add(name: str, accept: bool, trials: list[Trial]) -> None:
        cats.append(Category(name, accept, trials))

    add(
        "nominal, -3/-10/-20 dBm0, 50 ms",
        True,
        [_trial(rng, k, lambda k=k, lv=lv: synth.dtmf(k, 50, lv)) for k in keys for lv in (-3, -10, -20)],
    )
    add(
        "frequency +-1.5 % (low, high, both)",
        True,
        [
            _trial(rng, k, lambda k=k, lo=lo, hi=hi: synth.dtmf(k, 50, -10, low_dev_pct=lo, high_dev_pct=hi))
            for k in keys
            for lo, hi in ((1.5, 0), (-1.5, 0), (0, 1.5), (0, -1.5), (1.5, 1.5), (-1.5, -1.5))
        ],
    )
    add(
        "frequency +-3.5 % (must reject)",
        False,
        [
            _trial(rng, k, lambda k=k, lo=lo, hi=hi: synth.dtmf(k, 80, -10, low_dev_pct=lo, high_dev_pct=hi), "")
            for k in keys
            for lo, hi in ((3.5, 0), (-3.5, 0), (0, 3.5), (0, -3.5))
        ],
    )
    add("tone 40 ms", True, [_trial(rng, k, lambda k=k: synth.dtmf(k, 40, -10)) for k in keys for _ in range(3)])
    add(
        "tone 23 ms (must reject)",
        False,
        [_trial(rng, k, lambda k=k: synth.dtmf(k, 23, -10), "") for k in keys for _ in range(3)],
    )

    def pair(k: str, gap_ms: float) -> Samples:
        return np.concatenate([synth.dtmf(k, 45, -10), synth.silence(gap_ms), synth.dtmf(k, 45, -10)])

    add(
        "pause 40 ms between keys (2 keys)",
        True,
        [_trial(rng, k, lambda k=k: pair(k, 40), k * 2) for k in keys for _ in range(2)],
    )
    add(
        "interruption 10 ms (bridged, 1 key)",
        True,
        [_trial(rng, k, lambda k=k: pair(k, 10)) for k in keys for _ in range(2)],
    )
    add(
        "twist +8 dB normal",
        True,
        [_trial(rng, k, lambda k=k, lv=lv: synth.dtmf(k, 50, lv, twist_db=8)) for k in keys for lv in (-4, -12)],
    )
    add(
        "twist -4 dB reverse",
        True,
        [_trial(rng, k, lambda k=k, lv=lv: synth.dtmf(k, 50, lv, twist_db=-4)) for k in keys for lv in (-8, -16)],
    )
    add("level 0 dBm0", True, [_trial(rng, k, lambda k=k: synth.dtmf(k, 50, 0)) for k in keys])
    add("level -25 dBm0", True, [_trial(rng, k, lambda k=k: synth.dtmf(k, 50, -25)) for k in keys])
    add("level -55 dBm0 (must reject)", False, [_trial(rng, k, lambda k=k: synth.dtmf(k, 80, -55), "") for k in keys])
    add(
        "G.711 mu-law round trip, -10/-25 dBm0",
        True,
        [
            _trial(rng, k, lambda k=k, lv=lv: synth.dtmf(k, 50, lv), post=_g711("ulaw"))
            for k in keys
            for lv in (-10, -25)
        ],
    )
    add(
        "G.711 A-law round trip, -10/-25 dBm0",
        True,
        [
            _trial(rng, k, lambda k=k, lv=lv: synth.dtmf(k, 50, lv), post=_g711("alaw"))
            for k in keys
            for lv in (-10, -25)
        ],
    )

    def lose_packet(sig: Samples) -> Samples:
        # Zero one whole 20 ms packet (frame-aligned) inside the 120 ms key.
        out = sig.copy()
        frame = int(rng.integers(7, 11))
        out[frame * 160 : (frame + 1) * 160] = 0.0
        return out

    add(
        "20 ms packet lost inside a 120 ms key",
        True,
        [_trial(rng, k, lambda k=k: synth.dtmf(k, 120, -10), post=lose_packet) for k in keys for _ in range(2)],
    )

    def dial_under(sig: Samples) -> Samples:
        return sig + synth.tone([350.0, 440.0], len(sig) / 8, -13.0, phase=float(rng.uniform(0, 6)))

    add(
        "dial tone underneath (-13 dBm0 each)",
        True,
        [_trial(rng, k, lambda k=k, lv=lv: synth.dtmf(k, 50, lv), post=dial_under) for k in keys for lv in (-7, -10)],
    )

    def noise_at(level_dbm0: float) -> Callable[[Samples], Samples]:
        def apply(sig: Samples) -> Samples:
            # 10 dB below the key's total power (two tones: level + 3 dB).
            return sig + synth.white_noise(len(sig) / 8, level_dbm0 + 3.0 - 10.0, rng)

        return apply

    add(
        "white noise, 10 dB SNR, -10/-20 dBm0",
        True,
        [
            _trial(rng, k, lambda k=k, lv=lv: synth.dtmf(k, 60, lv), post=noise_at(lv))
            for k in keys
            for lv in (-10, -20)
            for _ in range(2)
        ],
    )
    return cats


def run_project(trials: list[Trial]) -> list[list[tuple[str, int, int]]]:
    """All trials of a category as rows of one batched receiver."""
    length = max(len(t.signal) for t in trials)
    length += (-length) % 160
    rows = np.zeros((len(trials), length))
    for i, t in enumerate(trials):
        rows[i, : len(t.signal)] = t.signal
    pcm = synth.to_pcm16(rows)
    bank = DtmfBank(len(trials))
    found: list[list[tuple[str, int, int]]] = [[] for _ in trials]
    for f in range(length // 160):
        for r, evs in enumerate(bank.feed(pcm[:, f * 160 : (f + 1) * 160], f * 20)):
            found[r].extend((e.digit, e.start_ms, e.end_ms) for e in evs)
    for r, evs in enumerate(bank.flush(length // 8)):
        found[r].extend((e.digit, e.start_ms, e.end_ms) for e in evs)
    return found


def score(cat: Category, found: list[list[tuple[str, int, int]]]) -> tuple[int, list[float]]:
    ok = 0
    onset: list[float] = []
    for t, evs in zip(cat.trials, found, strict=True):
        digits = "".join(d for d, _, _ in evs)
        if digits == t.expected:
            ok += 1
            if cat.accept and t.starts_ms:
                onset.append(abs(evs[0][1] - t.starts_ms[0]))
    return ok, onset


def false_keys_per_hour(pieces: list[Samples], spandsp: SpanDsp) -> tuple[float, int, int, int]:
    """(hours, project, spandsp, spandsp with dial-tone filter) false keys (rows for the project)."""
    total = sum(len(p) for p in pieces)
    length = max(len(p) for p in pieces)
    length += (-length) % 160
    rows = np.zeros((len(pieces), length))
    for i, p in enumerate(pieces):
        rows[i, : len(p)] = p
    pcm = synth.to_pcm16(rows)
    bank = DtmfBank(len(pieces))
    ours = 0
    for f in range(length // 160):
        ours += sum(len(evs) for evs in bank.feed(pcm[:, f * 160 : (f + 1) * 160], f * 20))
    ours += sum(len(evs) for evs in bank.flush(length // 8))
    # spandsp: one long stream with 200 ms of silence between pieces.
    gap = np.zeros(1600, dtype=np.int16)
    stream = np.concatenate([np.concatenate([synth.to_pcm16(p), gap]) for p in pieces])
    theirs = len(spandsp.detect(stream, filter_dialtone=False))
    theirs_f = len(spandsp.detect(stream))
    return total / 8000 / 3600, ours, theirs, theirs_f


def throughput(spandsp: SpanDsp, speech: list[npt.NDArray[np.int16]]) -> tuple[float, float, float]:
    """Audio seconds per CPU second: project single channel, project batched (200 ch), spandsp."""
    audio = np.concatenate(speech)[: 8000 * 120]
    audio = audio[: len(audio) - len(audio) % 160]
    frames = audio.reshape(-1, 160)
    det = DtmfDetector()
    t0 = time.process_time()
    for i, fr in enumerate(frames):
        det.feed(fr, i * 20)
    single = len(audio) / 8000 / (time.process_time() - t0)
    channels = 200
    block = frames[:1500]  # 30 s per channel
    rows = np.stack([np.roll(block, 37 * c, axis=0) for c in range(channels)], axis=1)  # (t, ch, 160)
    bank = DtmfBank(channels)
    t0 = time.process_time()
    for i in range(rows.shape[0]):
        bank.feed(rows[i], i * 20)
    batched = channels * block.shape[0] * 0.02 / (time.process_time() - t0)
    t0 = time.process_time()
    spandsp.detect(audio, chunk=160)
    ref = len(audio) / 8000 / (time.process_time() - t0)
    return single, batched, ref


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speech-minutes", type=float, default=32.0)
    parser.add_argument("--music-minutes", type=float, default=30.0)
    args = parser.parse_args()
    spandsp = SpanDsp()
    print("| category | trials | project | spandsp (defaults) | spandsp (dial-tone filter on) |")
    print("|---|---:|---:|---:|---:|")
    onsets_ours: list[float] = []
    onsets_ref: list[float] = []
    for cat in build_categories():
        ours, on_ours = score(cat, run_project(cat.trials))
        ref_found = [spandsp.detect(synth.to_pcm16(t.signal), filter_dialtone=False, chunk=40) for t in cat.trials]
        ref, on_ref = score(cat, ref_found)
        ref_f, _ = score(cat, [spandsp.detect(synth.to_pcm16(t.signal), chunk=40) for t in cat.trials])
        onsets_ours += on_ours
        onsets_ref += on_ref
        n = len(cat.trials)
        label = "honoured" if not cat.accept else "detected"
        print(f"| {cat.name} | {n} | {ours / n:.1%} {label} | {ref / n:.1%} | {ref_f / n:.1%} |")
    speech = load_speech(args.speech_minutes)
    gains = (10 ** (6 / 20), 1.0, 10 ** (-10 / 20))
    pieces = [np.clip(u.astype(np.float64) * g, -32768, 32767) for g in gains for u in speech]
    hours, ours_fk, ref_fk, ref_ffk = false_keys_per_hour(pieces, spandsp)
    print(
        f"| talk-off: speech, {hours:.2f} h (espeak-ng en/es, +6, 0 and -10 dB) | false keys | "
        f"{ours_fk} ({ours_fk / hours:.1f}/h) | {ref_fk} ({ref_fk / hours:.1f}/h) | "
        f"{ref_ffk} ({ref_ffk / hours:.1f}/h) |"
    )
    rng = np.random.default_rng(RNG_SEED + 1)
    music = synth.music_like(args.music_minutes * 60.0, rng)
    chunks = [
        np.clip(music[i : i + 8000 * 30] * g, -32768, 32767) for g in gains for i in range(0, len(music), 8000 * 30)
    ]
    hours, ours_fk, ref_fk, ref_ffk = false_keys_per_hour(chunks, spandsp)
    print(
        f"| talk-off: music-like, {hours:.2f} h (chords, melodies, sweeps; +6, 0 and -10 dB) | false keys | "
        f"{ours_fk} ({ours_fk / hours:.1f}/h) | {ref_fk} ({ref_fk / hours:.1f}/h) | "
        f"{ref_ffk} ({ref_ffk / hours:.1f}/h) |"
    )
    print(
        f"| onset error, start_ms vs truth (mean / p95 / max) | {len(onsets_ours)} / {len(onsets_ref)} | "
        f"{np.mean(onsets_ours):.1f} / {np.percentile(onsets_ours, 95):.1f} / {np.max(onsets_ours):.0f} ms | "
        f"{np.mean(onsets_ref):.1f} / {np.percentile(onsets_ref, 95):.1f} / {np.max(onsets_ref):.0f} ms | |"
    )
    single, batched, ref = throughput(spandsp, speech)
    print(f"| throughput, audio s per CPU s (one channel) | | {single:,.0f} | {ref:,.0f} (C) | |")
    print(f"| throughput, audio s per CPU s (200 channels batched) | | {batched:,.0f} | | |")


if __name__ == "__main__":
    main()
