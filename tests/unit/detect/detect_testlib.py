"""Helpers for the detector tests: run signals through detectors, G.711 round trips."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ivr.detect import synth
from ivr.detect.dtmf import DtmfDetector
from ivr.detect.events import DtmfEvent
from ivr.rtp import g711

Samples = npt.NDArray[np.float64]


def pad(signal: Samples, before_ms: float = 97.0, after_ms: float = 120.0) -> Samples:
    """Surround a signal with silence (odd lead so tones do not start on a frame edge)."""
    return np.concatenate([synth.silence(before_ms), signal, synth.silence(after_ms)])


def run_dtmf(
    signal: Samples | npt.NDArray[np.int16],
    detector: DtmfDetector | None = None,
    frame_hook: Callable[[int, npt.NDArray[np.int16]], npt.NDArray[np.int16]] | None = None,
) -> list[DtmfEvent]:
    """Feed a signal frame by frame (``frame_hook`` may alter a frame, e.g. drop it)."""
    det = detector or DtmfDetector()
    frames = synth.to_frames(signal)
    events: list[DtmfEvent] = []
    for i, frame in enumerate(frames):
        f = frame_hook(i, frame) if frame_hook else frame
        events.extend(det.feed(f, i * 20))
    events.extend(det.flush(len(frames) * 20))
    return events


def digits(events: list[DtmfEvent]) -> str:
    return "".join(e.digit for e in events)


def ulaw_round_trip(samples: Samples) -> npt.NDArray[np.int16]:
    return g711.ulaw_decode(g711.ulaw_encode(synth.to_pcm16(samples)))


def alaw_round_trip(samples: Samples) -> npt.NDArray[np.int16]:
    return g711.alaw_decode(g711.alaw_encode(synth.to_pcm16(samples)))
