"""Every detector over a whole recording at once: the same events as the streaming bank, faster.

``ivr replay`` re-runs the detectors over a call's WAVs and compares with what the live engine
reported (``detections.jsonl``). Feeding the streaming :class:`~ivr.detect.bank.BatchedDetectorBank`
frame by frame costs ~0.4 ms of Python and numpy overhead per 20 ms frame, most of it on frames
where nothing can happen. :func:`detect_frames` gives the same events (same types, same frame of
report, same times and evidence, bit for bit) in three steps:

1. **Features of every frame** (numpy, a segment of ~40 s at a time): the DTMF Goertzel bank and
   its window tests, the tone fit and classes, frame and 5 ms sub-block levels, the noise
   flatness. The matrix products are computed in stacks of ``rows`` frames, the height of the bank
   being reproduced (128 for the engine's banks, 1 for :class:`~ivr.detect.bank.DetectorBank`):
   OpenBLAS picks its kernel by the matrix height, and a 1-row, a 32-row and a 45,000-row product
   round differently in the last bit (a row's result does not depend on the other rows of its
   product: the engine relies on that for the legs sharing a bank). After the products the work
   is row by row, and two places where numpy's loop depends on the array's size or layout are
   kept as the bank has them: the DTMF window tests multiply strided complex slices, which numpy
   buffers (and then fuses multiply-adds) only for large arrays, so they run in slices of
   ``_CHUNK`` frames; ``rfft`` of several rows comes out column-major, and the flatness sums are
   taken in row order as for the one loud row of the reference.
2. **The adaptive recursions in scalar Python** where they are not linear: the silence floor
   (falls halfway, rises linearly, clipped) is 45,000 scalar steps per 15 minutes, the same IEEE
   operations in the same order as numpy's per-frame update (numpy does not fuse them). The
   hookflash's quiet-time counter (reset or add 20 ms) is integer arithmetic, done vectorised.
3. **The state machines only where something can change**, proven by the features:

   * DTMF: the streaming receiver's own per-block step (``DtmfBank._step``/``_finish``) runs on
     frames where a window passes every Q.24 test and while a key run is open; elsewhere the
     streaming code does nothing either (it walks only channels with a valid window or a run).
   * Hookflash: its own walk and corroboration (``HookflashBank._walk``/``_corroborate``) run on
     frames where the streaming ``interesting`` test holds: a burst after a long enough quiet, or
     candidates open (and not inside the refractory time after a report).
   * Silence, tones, noise: their frame-by-frame rules are run-length rules (a run of voice, of
     one tone class, of static), walked once per run instead of once per frame; a tone run is closed
     by the streaming ``ToneBank._close`` itself (names, cadence, SIT history).

Sans-I/O: samples in, events out. ``tests/unit/detect/test_detect_offline.py`` proves equality with
the streaming bank on the project's corpora and on Hypothesis-generated signals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ivr.detect.config import DetectorConfigs
from ivr.detect.dtmf import _ALL as _DTMF_FREQS
from ivr.detect.dtmf import _BASIS as _DTMF_BASIS
from ivr.detect.dtmf import _NF, BLOCK, DtmfBank, _WindowResult, fundamental_amplitudes
from ivr.detect.events import (
    DetectorEvent,
    DtmfEvent,
    HookflashEvent,
    NoiseEnded,
    NoiseStarted,
    SilenceEnded,
    SilenceStarted,
    ToneEvent,
)
from ivr.detect.hookflash import _QUIET_MARGIN_DB, SUB, SUB_MS, HookflashBank
from ivr.detect.levels import FRAME_MS, FRAME_SAMPLES, powers_to_dbm0, stacked_product
from ivr.detect.noise import _BAND, _HANN, _WINDOW
from ivr.detect.tones import _FIT as _TONE_FIT
from ivr.detect.tones import NONE, ToneBank

# Order of the detectors' events within one frame, as BatchedDetectorBank.feed reports them.
_DTMF, _SILENCE, _TONES, _HOOKFLASH, _NOISE = range(5)
# Frames per slice where numpy's choice of loop depends on the array size (see _dtmf).
_CHUNK = 256

FramedEvent = tuple[int, DetectorEvent]  # (index of the frame whose feed reported it, event)


@dataclass(frozen=True, slots=True)
class _Tagged:
    frame: int
    detector: int
    seq: int
    event: DetectorEvent


def detect_frames(
    frames: npt.ArrayLike,
    configs: DetectorConfigs | None = None,
    *,
    rows: int = 1,
    flush: bool = False,
) -> list[FramedEvent]:
    """The events a fresh bank row reports for ``frames`` (int16, shape (n, 160)), fed from ``now_ms`` 0.

    Returns (frame index, event) in the order the streaming bank reports them. ``rows`` is the
    height of the bank whose arithmetic is reproduced (:class:`~ivr.detect.bank.BatchedDetectorBank`
    with that many channels; 1 for :class:`~ivr.detect.bank.DetectorBank`). With ``flush`` the events
    of ``flush(20 * n)`` follow, as frame index ``n``. Event times count from the first frame, like
    a row's events count from its ``reset_row`` time.
    """
    c = configs or DetectorConfigs()
    x = np.asarray(frames)
    if x.ndim != 2 or x.shape[1] != FRAME_SAMPLES:
        raise ValueError(f"expected frames of shape (n, {FRAME_SAMPLES}), got {x.shape}")
    if rows < 1:
        raise ValueError("rows must be at least 1")
    n = x.shape[0]
    if n == 0:
        return []  # a fresh bank's flush reports nothing either
    hook = c.hookflash_enabled
    feats = _features(x, c, rows)
    tagged: list[_Tagged] = []
    dtmf_by_frame: dict[int, list[DtmfEvent]] = {}
    if feats.dtmf is not None:
        dtmf_events = _dtmf(feats.dtmf, c, n, flush)
        for k, e in dtmf_events:
            dtmf_by_frame.setdefault(k, []).append(e)
        if c.dtmf_enabled:
            tagged += [_Tagged(k, _DTMF, i, e) for i, (k, e) in enumerate(dtmf_events)]
    floor = np.empty(0)
    if c.silence_enabled or hook:
        sil_events, floor = _silence(feats.level, c, flush)
        if c.silence_enabled:
            tagged += [_Tagged(k, _SILENCE, i, e) for i, (k, e) in enumerate(sil_events)]
    tone_class = tone_since = np.empty(0, dtype=np.int64)
    if feats.tone_class is not None and feats.tone_power is not None:
        tone_events, tone_class, tone_since = _tones(feats.tone_class, feats.tone_power, c, flush, want_state=hook)
        if c.tones_enabled:
            tagged += [_Tagged(k, _TONES, i, e) for i, (k, e) in enumerate(tone_events)]
    if feats.sub_level is not None:
        flashes = _hookflash(feats.sub_level, c, floor, tone_class, tone_since, dtmf_by_frame)
        tagged += [_Tagged(k, _HOOKFLASH, i, e) for i, (k, e) in enumerate(flashes)]
    if feats.flatness is not None:
        noise_events = _noise(feats.level, feats.flatness, c, flush)
        tagged += [_Tagged(k, _NOISE, i, e) for i, (k, e) in enumerate(noise_events)]
    tagged.sort(key=lambda t: (t.frame, t.detector, t.seq))
    return [(t.frame, t.event) for t in tagged]


def detect_signal(samples: npt.NDArray[np.int16], configs: DetectorConfigs | None = None) -> list[DetectorEvent]:
    """:func:`ivr.detect.bank.detect_samples` (a DetectorBank over a whole signal, zero-padded to
    whole frames, then flushed), by the whole-recording path: the same events."""
    pad = (-len(samples)) % FRAME_SAMPLES
    pcm = np.concatenate([samples.astype(np.int16), np.zeros(pad, dtype=np.int16)])
    return [e for _, e in detect_frames(pcm.reshape(-1, FRAME_SAMPLES), configs, rows=1, flush=True)]


# -- features of every frame -----------------------------------------------------------------------


@dataclass(slots=True)
class _DtmfFeatures:
    amps: npt.NDArray[np.float64]  # (n, 2, 8): each block's amplitude at the 8 fundamentals
    energy: npt.NDArray[np.float64]  # (n, 2): each block's energy
    windows: _WindowResult  # (n, 2): the Q.24 tests of the window ending in each block


@dataclass(slots=True)
class _Features:
    level: npt.NDArray[np.float64]  # (n,) frame level, dBm0 (silence, noise)
    dtmf: _DtmfFeatures | None
    tone_class: npt.NDArray[np.int64] | None
    tone_power: npt.NDArray[np.float64] | None
    sub_level: npt.NDArray[np.float64] | None  # (n, 4) 5 ms levels (hookflash)
    flatness: npt.NDArray[np.float64] | None  # (n,) spectral flatness of loud frames, else 0 (noise)


# Frames per segment: features are computed a segment at a time, so a 15-minute leg never holds
# more than a few MB of intermediate arrays (first touches of fresh memory cost as much as the maths).
_SEGMENT = 8 * _CHUNK


def _features(x: npt.NDArray[np.int16], c: DetectorConfigs, rows: int) -> _Features:
    n = x.shape[0]
    hook = c.hookflash_enabled
    want_dtmf, want_tones = c.dtmf_enabled or hook, c.tones_enabled or hook
    level = np.empty(n)
    k = len(_DTMF_FREQS)
    dtmf_tracker = DtmfBank(1, c.dtmf)
    tone_tracker = ToneBank(1, c.tones)
    dtmf = _DtmfFeatures(np.zeros((n, 2, _NF)), np.zeros((n, 2)), _empty_windows(n)) if want_dtmf else None
    tone_class = np.zeros(n, dtype=np.int64) if want_tones else None
    tone_power = np.zeros(n) if want_tones else None
    sub_level = np.empty((n, FRAME_SAMPLES // SUB)) if hook else None
    flatness = np.zeros(n) if c.noise_enabled else None
    # The block before the segment (window a of its first window); before the stream: zeros.
    prev_coeff = np.zeros((1, k), dtype=np.complex128)
    prev_energy = np.zeros(1)
    prev_amps = np.zeros((1, _NF))
    for s0 in range(0, n, _SEGMENT):
        xs = x[s0 : s0 + _SEGMENT].astype(np.float64)
        m = xs.shape[0]
        seg = slice(s0, s0 + m)
        level[seg] = powers_to_dbm0(np.einsum("ij,ij->i", xs, xs) / FRAME_SAMPLES)
        if dtmf is not None:
            blocks = xs.reshape(2 * m, BLOCK)
            prod = stacked_product(blocks, _DTMF_BASIS, 2 * rows)
            coeffs = prod[:, :k] + 1j * prod[:, k:]  # (2m, K), block after block
            energy = np.einsum("ij,ij->i", blocks, blocks)
            coeffs3 = coeffs.reshape(m, 2, k)
            amps = fundamental_amplitudes(coeffs3, _CHUNK)
            # Window w of frame f is (block 2f + w - 1, block 2f + w).
            xa = np.concatenate([prev_coeff, coeffs[:-1]]).reshape(m, 2, k)
            ea = np.concatenate([prev_energy, energy[:-1]]).reshape(m, 2)
            _dtmf_windows(dtmf_tracker, xa, coeffs3, ea, energy.reshape(m, 2), amps, prev_amps, dtmf.windows, s0)
            dtmf.amps[seg] = amps
            dtmf.energy[seg] = energy.reshape(m, 2)
            prev_coeff, prev_energy, prev_amps = coeffs[-1:], energy[-1:], amps[-1, 1:2]
        if tone_class is not None and tone_power is not None:
            cls, pw = tone_tracker.classify_fitted(stacked_product(xs, _TONE_FIT, rows), xs)
            tone_class[seg] = cls
            tone_power[seg] = pw
        if sub_level is not None:
            sub = xs.reshape(m, -1, SUB)
            sub_level[seg] = powers_to_dbm0(np.einsum("ijk,ijk->ij", sub, sub) / SUB)
        if flatness is not None:
            loud = np.flatnonzero(level[seg] >= c.noise.min_level_dbm0)
            if len(loud):
                spec = np.abs(np.fft.rfft(xs[loud] * _HANN, axis=1)[:, _BAND]) ** 2 + 1e-9
                # rfft of several rows is laid out column-major and numpy then sums each row in
                # another order; the reference row is alone in its bank's loud rows (C order).
                spec = np.ascontiguousarray(spec)
                flatness[s0 + loud] = np.exp(np.mean(np.log(spec), axis=1)) / np.mean(spec, axis=1)
    return _Features(level, dtmf, tone_class, tone_power, sub_level, flatness)


def _empty_windows(n: int) -> _WindowResult:
    return _WindowResult(
        np.zeros((n, 2), dtype=bool), np.zeros((n, 2), dtype=np.intp), np.zeros((n, 2), dtype=np.intp),
        np.zeros((n, 2)), np.zeros((n, 2)), np.zeros((n, 2)), np.zeros((n, 2)), np.zeros((n, 2)),
    )


def _dtmf_windows(
    tracker: DtmfBank,
    xa: npt.NDArray[np.complex128],
    xb: npt.NDArray[np.complex128],
    ea: npt.NDArray[np.float64],
    eb: npt.NDArray[np.float64],
    amps: npt.NDArray[np.float64],
    prev_amps: npt.NDArray[np.float64],
    out: _WindowResult,
    offset: int,
) -> None:
    """The streaming window tests of a segment's frames, into ``out[offset:]``, computed only
    for frames where a window can pass them (the others stay invalid).

    Screen: :meth:`DtmfBank.possible_windows` on the blocks' amplitudes ``amps`` (``prev_amps``:
    the block before the segment), the streaming bank's own screen.
    """
    m = xb.shape[0]
    blocks = amps.reshape(2 * m, _NF)
    before = np.concatenate([prev_amps, blocks[:-1]])  # block a of each window
    possible = tracker.possible_windows(before, blocks, xa.reshape(2 * m, -1), xb.reshape(2 * m, -1), ea.reshape(-1),
                                        eb.reshape(-1)).reshape(m, 2).any(axis=1)
    rows = np.flatnonzero(possible)
    # In slices of a bank's size: on strided operands numpy buffers large arrays into contiguous
    # ones and then multiplies complex numbers with fused multiply-adds, which rounds differently
    # from the few rows a bank feeds (measured: from ~1,000 rows up). Gathered rows are
    # contiguous copies laid out as the bank's own stacked arrays.
    for i in range(0, len(rows), _CHUNK):
        take = rows[i : i + _CHUNK]
        part = tracker.window_features(xa[take], xb[take], ea[take], eb[take])
        for name in _WindowResult.__slots__:
            getattr(out, name)[offset + take] = getattr(part, name)


# -- DTMF ------------------------------------------------------------------------------------------


def _dtmf(feats: _DtmfFeatures, c: DetectorConfigs, n: int, flush: bool) -> list[tuple[int, DtmfEvent]]:
    """DtmfBank's events: its own per-block step, on frames with a valid window or an open run."""
    tracker = DtmfBank(1, c.dtmf)
    out: list[tuple[int, DtmfEvent]] = []
    amps, energy2, win = feats.amps, feats.energy, feats.windows
    zero_amp = np.zeros(_NF)
    candidates = np.flatnonzero(win.valid.any(axis=1)).tolist()
    done = 0  # frames before this one have been walked (or needed no walk)
    for first in candidates:
        if first < done:
            continue
        f = first
        while True:
            hist = [amps[f - 1, 0], amps[f - 1, 1]] if f else [zero_amp, zero_amp]
            hist += [amps[f, 0], amps[f, 1]]
            hist_e = [energy2[f - 1, 0], energy2[f - 1, 1]] if f else [0.0, 0.0]
            hist_e += [energy2[f, 0], energy2[f, 1]]
            one = _WindowResult(
                win.valid[f : f + 1], win.row[f : f + 1], win.col[f : f + 1], win.row_hz[f : f + 1],
                win.col_hz[f : f + 1], win.p_row[f : f + 1], win.p_col[f : f + 1], win.ratio[f : f + 1],
            )
            events: list[DtmfEvent] = []
            for w in range(2):
                tracker._step(0, 0, 2 * f + w, w, one, hist, hist_e, events)
            out += [(f, e) for e in events]
            f += 1
            if not tracker._runs or f >= n:
                break
        done = f
    if flush:
        out += [(n, e) for e in tracker.flush(n * FRAME_MS)[0]]
    return out


# -- silence ---------------------------------------------------------------------------------------


def _silence_floor(level: npt.NDArray[np.float64], c: DetectorConfigs) -> npt.NDArray[np.float64]:
    """The adaptive floor after each frame: SilenceBank.feed's update, one scalar step per frame.

    Same IEEE operations in the same order (numpy's ``floor + 0.5 * (level - floor)``, ``+ rise``,
    then clip), so bit for bit the streaming floor; it is not linear (which branch depends on the
    floor), so no lfilter.
    """
    cfg = c.silence
    rise = cfg.floor_rise_db_per_s * FRAME_MS / 1000.0
    low = cfg.absolute_silence_dbm0 - 15.0
    high = cfg.max_floor_dbm0
    out = np.empty(len(level))
    values = level.tolist()
    if not values:
        return out
    fl = values[0]  # a fresh row's floor starts at its first frame's level
    result: list[float] = []
    append = result.append
    for lv in values:
        fl = fl + 0.5 * (lv - fl) if lv < fl else fl + rise
        # np.clip(f, low, high) is min(max(f, low), high) for finite values.
        if fl < low:
            fl = low
        elif fl > high:
            fl = high
        append(fl)
    out[:] = result
    return out


def _runs(values: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> tuple[list[int], list[int], list[int]]:
    """Run-length encoding: (values, first frames, last frames) of the runs of equal values."""
    n = len(values)
    if n == 0:
        return [], [], []
    change = np.flatnonzero(values[1:] != values[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change - 1, [n - 1]])
    return values[starts].tolist(), starts.tolist(), ends.tolist()


def _silence(
    level: npt.NDArray[np.float64], c: DetectorConfigs, flush: bool
) -> tuple[list[FramedEvent], npt.NDArray[np.float64]]:
    """SilenceBank's events from the per-frame voice decisions, walked run by run.

    Per frame the streaming rule is: a voice frame extends the voice run; a quiet run that sees
    ``min_voice_ms`` of voice in one piece ends (SilenceEnded, if it was reported), at the time the
    voice began; a quiet frame outside a quiet run starts one; an unreported quiet run that has
    lasted ``min_silence_ms`` is reported (SilenceStarted). Within a run of equal voice decisions
    these fire at frames computed directly.
    """
    cfg = c.silence
    n = len(level)
    floor = _silence_floor(level, c)
    threshold = np.maximum(floor + cfg.voice_margin_db, cfg.min_voice_dbm0)
    voice = (level >= threshold) & (level > cfg.absolute_silence_dbm0)
    # Frames of voice (within one voice run) that end a quiet run: the run's frame j has
    # voice_run_ms = 20 (j + 1), which must reach min_voice_ms.
    end_after = max(0, -(-cfg.min_voice_ms // FRAME_MS) - 1)
    out: list[FramedEvent] = []
    in_quiet, reported = True, False
    quiet_start = 0  # ms
    quiet_floor = -120.0

    def report(first: int, limit: int) -> None:
        """Report the open quiet run at the first frame in [first, limit) where it is long enough."""
        nonlocal reported, quiet_floor
        if reported:
            return
        # rel + 20 - quiet_start >= min_silence_ms with rel = 20 k.
        due = max(first, -(-(quiet_start + cfg.min_silence_ms - FRAME_MS) // FRAME_MS))
        if due < limit:
            quiet_floor = float(floor[due])
            out.append((due, SilenceStarted(quiet_start, due * FRAME_MS + FRAME_MS, quiet_floor,
                                            float(threshold[due]), cfg)))
            reported = True

    for is_voice, a, b in zip(*_runs(voice), strict=True):
        if is_voice:
            if not in_quiet:
                continue
            e = a + end_after
            report(a, min(e, b + 1))
            if e <= b:
                if reported:
                    out.append((e, SilenceEnded(quiet_start, a * FRAME_MS, quiet_floor, float(threshold[e]), cfg)))
                in_quiet = reported = False
        else:
            if not in_quiet:
                in_quiet, quiet_start = True, a * FRAME_MS
            report(a, b + 1)
    if flush and in_quiet and reported:  # reported implies n > 0
        out.append((n, SilenceEnded(quiet_start, n * FRAME_MS, quiet_floor, float(threshold[-1]), cfg)))
    return out, floor


# -- call-progress tones ---------------------------------------------------------------------------


def _tones(
    cls: npt.NDArray[np.int64], pw: npt.NDArray[np.float64], c: DetectorConfigs, flush: bool, want_state: bool
) -> tuple[list[FramedEvent], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """ToneBank's events, walked run by run of the frame classes.

    Streaming rule per frame: the running class extends on a frame of the same class; it closes on
    another class, or on the second frame without it (one missing frame is bridged); a class
    starts on a frame when none is running. ``_close`` (event naming, SIT history) is the streaming
    detector's own. Also returns, per frame, the running class and its start after that frame's
    feed (what the hookflash detector reads), when ``want_state``.
    """
    n = len(cls)
    tracker = ToneBank(1, c.tones)
    active = np.zeros(n if want_state else 0, dtype=np.int64)
    since = np.zeros(n if want_state else 0, dtype=np.int64)
    out: list[FramedEvent] = []
    cur = NONE
    cur_first = 0  # frame where the running class started
    last_on = -1  # last frame of the running class

    def close(at: int) -> None:
        nonlocal cur
        tracker.active_class[0] = cur
        tracker.active_since_ms[0] = cur_first * FRAME_MS
        tracker._last_on_ms[0] = (last_on + 1) * FRAME_MS
        events: list[ToneEvent] = []
        tracker._close(0, events)
        out.extend((at, e) for e in events)
        if want_state:
            active[cur_first:at] = cur
            since[cur_first:at] = cur_first * FRAME_MS
        cur = NONE

    for value, a, b in zip(*_runs(cls), strict=True):
        if value == NONE:
            continue
        if cur != NONE:
            if value == cur and a - last_on <= 2:  # adjacent cannot be: runs of one class are merged
                tracker._level[0] = max(float(tracker._level[0]), float(pw[a : b + 1].max()))
                last_on = b
                continue
            # Closed by a second missing frame (if there was one), else by this other class.
            close(last_on + 2 if a > last_on + 2 else a)
        cur, cur_first, last_on = value, a, b
        level = float(pw[a])
        for p in pw[a + 1 : b + 1].tolist():  # streaming: max(level, float(pw)) frame by frame
            level = max(level, p)
        tracker._level[0] = level
    if cur != NONE:
        if last_on + 2 < n:
            close(last_on + 2)
        elif flush:
            close(n)
        elif want_state:
            active[cur_first:] = cur
            since[cur_first:] = cur_first * FRAME_MS
    return out, active, since


# -- hookflash -------------------------------------------------------------------------------------


def _hookflash(
    level: npt.NDArray[np.float64],
    c: DetectorConfigs,
    floor_dbm0: npt.NDArray[np.float64],
    tone_class: npt.NDArray[np.int64],
    tone_since: npt.NDArray[np.int64],
    dtmf_by_frame: dict[int, list[DtmfEvent]],
) -> list[FramedEvent]:
    """HookflashBank's walk and corroboration, on the frames its ``feed`` would walk."""
    cfg = c.hookflash
    n = level.shape[0]
    out: list[FramedEvent] = []
    tracker = HookflashBank(1, cfg)
    floor = np.nan_to_num(floor_dbm0, nan=-120.0)
    quiet = level < np.maximum(floor, -75.0)[:, None] + _QUIET_MARGIN_DB
    all_quiet = quiet.all(axis=1)
    trailing = np.argmin(quiet[:, ::-1], axis=1) * SUB_MS
    # Quiet ms before each frame's feed: +20 after an all-quiet frame, else that frame's trailing
    # quiet (the streaming ``_quiet_ms`` update), from the last not-all-quiet frame.
    idx = np.arange(n)
    last_reset = np.maximum.accumulate(np.where(~all_quiet, idx, -1))
    before_last = np.concatenate([[-1], last_reset[:-1]])  # last reset strictly before frame k
    base = trailing[np.maximum(before_last, 0)]
    quiet_before = np.where(before_last >= 0, base + FRAME_MS * (idx - 1 - before_last), FRAME_MS * idx)
    before = quiet_before + np.argmin(quiet, axis=1) * SUB_MS
    triggers = np.flatnonzero(~all_quiet & (before >= cfg.min_silence_before_ms)).tolist()
    done = 0
    no_keys: list[DtmfEvent] = []
    for first in triggers:
        if first < done:
            continue
        f = first
        while True:
            rel = f * FRAME_MS
            if rel >= int(tracker._refractory_until[0]):
                tracker._walk(0, rel, int(quiet_before[f]), level[f], quiet[f], float(floor[f]))
                if 0 in tracker._cands:
                    events: list[HookflashEvent] = []
                    tracker._corroborate(0, rel, int(tone_class[f]), int(tone_since[f]),
                                         dtmf_by_frame.get(f, no_keys), events)
                    out += [(f, e) for e in events]
            f += 1
            if 0 not in tracker._cands or f >= n:
                break
        done = f
    return out


# -- static ----------------------------------------------------------------------------------------


def _ring(k: int) -> npt.NDArray[np.intp]:
    """Frame held by each slot of the noise detector's 1 s ring after frame ``k`` (-1: none yet)."""
    j = np.arange(_WINDOW)
    return k - (k - j) % _WINDOW


def _noise(level: npt.NDArray[np.float64], flat: npt.NDArray[np.float64], c: DetectorConfigs,
           flush: bool) -> list[FramedEvent]:
    """NoiseBank's events: per-frame static tests vectorised, the ring statistics in slot order.

    The streaming detector keeps 1 s of frames in a ring (slot = frame index mod 50 for a fresh
    bank) and takes its mean and standard deviation in slot order; float sums depend on the order,
    so the offline path gathers the same slots in the same order.
    """
    cfg = c.noise
    n = level.shape[0]
    out: list[FramedEvent] = []
    loud = level >= cfg.min_level_dbm0
    static = loud & (flat >= cfg.min_flatness)
    # Static frames in the ring after frame k (frames k-49..k; before the stream: not static).
    csum = np.concatenate([[0], np.cumsum(static)])
    lo = np.maximum(np.arange(n) + 1 - _WINDOW, 0)
    count = csum[np.arange(n) + 1] - csum[lo]
    share_ok = np.flatnonzero(count / float(_WINDOW) >= 0.9)
    noisy = np.zeros(n, dtype=bool)
    if len(share_ok):
        slots = share_ok[:, None] - (share_ok[:, None] - np.arange(_WINDOW)[None, :]) % _WINDOW
        ring_levels = np.where(slots >= 0, level[np.maximum(slots, 0)], -120.0)
        spread = 2.56 * ring_levels.std(axis=1)
        noisy[share_ok] = spread <= cfg.max_level_spread_db

    def gathered(k: int, values: npt.NDArray[np.float64], empty: float) -> npt.NDArray[np.float64]:
        s = _ring(k)
        return np.where(s >= 0, values[np.maximum(s, 0)], empty)

    def mean_flat(k: int) -> float:
        return float(np.mean(gathered(k, flat, 0.0)))

    def ended(k: int, start_ms: int, end_ms: int) -> NoiseEnded:
        ring_levels = gathered(k, level, -120.0)
        mean_level = float(10.0 * np.log10(np.mean(10.0 ** (ring_levels / 10.0))))
        return NoiseEnded(start_ms, end_ms, mean_level, mean_flat(k), cfg)

    in_noise = reported = False
    start_ms = 0
    for is_noisy, a, b in zip(*_runs(noisy), strict=True):
        if not is_noisy:
            continue
        start_ms = max(a * FRAME_MS + FRAME_MS - _WINDOW * FRAME_MS, 0)
        in_noise, reported = True, False
        # Confirmed at the first frame where it has lasted min_duration_ms, up to and including
        # the frame that ends it (the streaming feed confirms before it ends).
        stop = b + 2 if b + 1 < n else b + 1
        due = max(a, -(-(start_ms + cfg.min_duration_ms - FRAME_MS) // FRAME_MS))
        if due < stop:
            out.append((due, NoiseStarted(start_ms, due * FRAME_MS + FRAME_MS, float(level[due]), mean_flat(due), cfg)))
            reported = True
        if b + 1 < n:
            if reported:
                out.append((b + 1, ended(b + 1, start_ms, (b + 1) * FRAME_MS)))
            in_noise = reported = False
    if flush and in_noise and reported:
        out.append((n, ended(n - 1, start_ms, n * FRAME_MS)))
    return out
