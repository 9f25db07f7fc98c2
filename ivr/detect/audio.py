"""Reading WAV files for ``ivr detect``: stdlib ``wave``, PCM 8/16/24/32-bit, any rate -> 8 kHz.

Resampling is a windowed-sinc interpolator written with numpy (no scipy at run time): each output
sample is a weighted sum of the input around its position, low-pass filtered at 0.45 x the lower
of the two rates (the anti-alias filter) with a Blackman window.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.detect.levels import SAMPLE_RATE_HZ
from ivr.errors import InputError

_HALF_ZEROS = 12  # half-width of the kernel in zero crossings of the low-pass sinc


def read_wav(path: str | Path) -> tuple[npt.NDArray[np.float64], int]:
    """Mono samples scaled to the 16-bit range (float64) and the sample rate.

    Raises :class:`InputError` naming the file for anything unreadable or multi-channel.
    """
    name = str(path)
    try:
        with wave.open(name, "rb") as w:
            channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError as exc:
        raise InputError("no such file", where=name) from exc
    except wave.Error as exc:
        # Python 3.11's wave rejects WAVE_FORMAT_EXTENSIBLE, which sox and others write for
        # 24/32-bit PCM: read those chunks ourselves.
        parsed = _read_extensible(name)
        if parsed is None:
            raise InputError(f"not a readable PCM WAV file ({exc})", where=name) from exc
        channels, width, rate, raw = parsed
    except (EOFError, OSError) as exc:
        raise InputError(f"not a readable PCM WAV file ({exc})", where=name) from exc
    if channels != 1:
        raise InputError(f"{channels} channels; only mono WAV files are supported", where=name)
    if rate < 4000 or rate > 384_000:
        raise InputError(f"unsupported sample rate {rate} Hz", where=name)
    if width == 1:  # unsigned 8-bit
        data = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) * 256.0
    elif width == 2:
        data = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    elif width == 3:
        b = np.frombuffer(raw[: len(raw) - len(raw) % 3], dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        data = v.astype(np.float64) / 256.0
    elif width == 4:
        data = np.frombuffer(raw, dtype="<i4").astype(np.float64) / 65536.0
    else:
        raise InputError(f"unsupported sample width {width} bytes", where=name)
    return data, rate


_PCM_SUBFORMAT = bytes.fromhex("0100000000001000800000aa00389b71")


def _read_extensible(name: str) -> tuple[int, int, int, bytes] | None:
    """(channels, sample width, rate, data) of a WAVE_FORMAT_EXTENSIBLE PCM file, else None."""
    try:
        with open(name, "rb") as fh:
            blob = fh.read()
    except OSError:
        return None
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        return None
    pos = 12
    fmt: tuple[int, int, int] | None = None
    while pos + 8 <= len(blob):
        cid, size = struct.unpack_from("<4sI", blob, pos)
        body = blob[pos + 8 : pos + 8 + size]
        if cid == b"fmt " and len(body) >= 40:
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
            if tag != 0xFFFE or body[24:40] != _PCM_SUBFORMAT or bits % 8:
                return None
            fmt = (channels, bits // 8, rate)
        elif cid == b"data" and fmt is not None:
            return fmt[0], fmt[1], fmt[2], body
        pos += 8 + size + (size & 1)
    return None


def resample(samples: npt.NDArray[np.float64], rate_in: int, rate_out: int = SAMPLE_RATE_HZ) -> npt.NDArray[np.float64]:
    """Band-limited resampling from ``rate_in`` to ``rate_out`` (windowed sinc)."""
    if rate_in == rate_out or len(samples) == 0:
        return samples.astype(np.float64)
    # Cut-off relative to the input rate: below the Nyquist frequency of the lower rate.
    fc = 0.9 * min(rate_in, rate_out) / rate_in / 2.0  # cycles per input sample
    half = int(np.ceil(_HALF_ZEROS / (2.0 * fc)))
    n_out = int(len(samples) * rate_out // rate_in)
    step = rate_in / rate_out
    padded = np.concatenate([np.zeros(half + 1), samples, np.zeros(half + 2)])
    out = np.empty(n_out)
    offsets = np.arange(-half + 1, half + 1)
    chunk = max(1, 2_000_000 // (2 * half))
    for start in range(0, n_out, chunk):
        idx = np.arange(start, min(n_out, start + chunk))
        pos = idx * step
        base = np.floor(pos).astype(np.int64)
        taps = base[:, None] + offsets[None, :]
        dist = pos[:, None] - taps
        window = np.where(
            np.abs(dist) < half, 0.42 + 0.5 * np.cos(np.pi * dist / half) + 0.08 * np.cos(2 * np.pi * dist / half), 0.0
        )
        kernel = 2.0 * fc * np.sinc(2.0 * fc * dist) * window
        out[idx - 0] = np.sum(padded[taps + half + 1] * kernel, axis=1)
    return out


def load_8k(path: str | Path) -> npt.NDArray[np.int16]:
    """A WAV file as 8 kHz int16 samples (resampled and converted as needed)."""
    data, rate = read_wav(path)
    data = resample(data, rate, SAMPLE_RATE_HZ)
    return np.clip(np.round(data), -32768, 32767).astype(np.int16)
