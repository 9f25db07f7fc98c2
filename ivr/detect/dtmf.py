"""In-band DTMF receiver (ITU-T Q.24, North American limits), streaming and batched.

How it works (DESIGN.md section 4):

* Each 20 ms frame is cut into two 10 ms blocks of 80 samples. For every block and channel one
  matrix product gives the complex DFT coefficient at the 8 DTMF frequencies, their second
  harmonics and the dial-tone frequencies (350, 440 Hz): a Goertzel bank, computed for all
  channels at once.
* A 20 ms *window* is two consecutive blocks (hop 10 ms). In each window:
  - the **frequency** of each DTMF component is measured from the phase advance between the two
    blocks (unambiguous within +-50 Hz); Q.24 asks to accept +-1.5 % and reject beyond +-3.5 %, so
    the limit (``max_frequency_deviation_pct``) sits between, and it does not depend on level;
  - the **level** of each tone is the block amplitude corrected for the measured offset (so a
    tone 1.5 % off is not penalised), compared with ``min_level_dbm0`` (Q.24: 0 to -25 dBm0
    accepted, -55 rejected);
  - **twist** (low minus high group level) within +``max_normal_twist_db`` / -``max_reverse_twist_db``;
  - **talk-off guards**: the two tones against everything else in the window (minus dial tone,
    which may lie underneath) and each tone's second harmonic, measured coherently over 20 ms.
* A key is a *run* of blocks carrying the same pair. A block's *coverage* is its amplitude at the
  pair divided by the run's steady amplitude: a block half covered by the tone has half the
  amplitude, so the onset and offset are located to a few ms inside the 10 ms blocks. Gaps of up
  to ``max_interruption_ms`` (Q.24: bridge 10 ms; a lost 20 ms packet too) are bridged; three empty
  blocks (a 40 ms pause always contains three) end the key. The key is reported when it ends, if
  its measured duration reaches ``min_duration_ms`` (Q.24: accept 40 ms, reject 23 ms) and at least
  two windows passed every test.

The heavy part is vectorised over channels; Python code runs only for channels with a candidate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from ivr.detect.config import DtmfConfig
from ivr.detect.events import DtmfEvent
from ivr.detect.levels import SAMPLE_RATE_HZ, as_frames, dbm0_to_power, power_to_dbm0, stacked_product

ROW_HZ: tuple[float, ...] = (697.0, 770.0, 852.0, 941.0)
COL_HZ: tuple[float, ...] = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD: tuple[str, ...] = ("123A", "456B", "789C", "*0#D")

BLOCK = 80  # samples per analysis block (10 ms)
BLOCK_MS = 10
_FUND = np.array(ROW_HZ + COL_HZ)
_HARM = 2.0 * _FUND
_DIAL = np.array([350.0, 440.0])
_ALL = np.concatenate([_FUND, _HARM, _DIAL])
_NF = len(_FUND)
_OMEGA = 2.0 * np.pi * _ALL / SAMPLE_RATE_HZ
_n = np.arange(BLOCK)
# Real basis: cos then -sin columns, so block @ basis = Re, Im of the block DFT at each frequency.
_BASIS = np.concatenate([np.cos(np.outer(_n, _OMEGA)), -np.sin(np.outer(_n, _OMEGA))], axis=1)
# Phase of each frequency's own advance over one block: removed to leave the offset only.
_ADVANCE = np.exp(-1j * _OMEGA * BLOCK)
_HZ_PER_RAD = SAMPLE_RATE_HZ / (2.0 * np.pi * BLOCK)
_DIAL_BINS = slice(2 * len(ROW_HZ + COL_HZ), 2 * len(ROW_HZ + COL_HZ) + len(_DIAL))  # 350 and 440 Hz in _ALL


@functools.lru_cache(maxsize=64)
def _leading_index(shape: tuple[int, ...]) -> tuple[npt.NDArray[np.intp], ...]:
    """Broadcastable aranges over every axis of ``shape`` (what np.ix_/np.ogrid give)."""
    return tuple(np.arange(n).reshape([n if i == axis else 1 for i in range(len(shape))])
                 for axis, n in enumerate(shape))


def _pick(values: npt.NDArray[Any], index: npt.NDArray[np.intp]) -> npt.NDArray[Any]:
    """``values[..., index]`` position by position: ``np.take_along_axis(values, index[..., None],
    axis=-1)[..., 0]``, the same gather (so the same numbers) without that function's Python, which
    cost more than the arithmetic at ten calls per 20 ms bank feed."""
    picked: npt.NDArray[Any] = values[(*_leading_index(index.shape), index)]
    return picked


def fundamental_amplitudes(coeffs: npt.NDArray[np.complex128], step: int) -> npt.NDArray[np.float64]:
    """``|X| / (BLOCK / 2)`` at the 8 fundamentals of (frames, 2, K) block coefficients, in slices
    of ``step`` frames: numpy buffers strided complex operands (and its loop rounds differently)
    only in large arrays, so a bank and the offline path slice as the bank being reproduced."""
    if len(coeffs) <= step:
        amps: npt.NDArray[np.float64] = np.abs(coeffs[..., :_NF]) / (BLOCK / 2)
        return amps
    return np.concatenate([np.abs(coeffs[i : i + step, :, :_NF]) / (BLOCK / 2) for i in range(0, len(coeffs), step)])


def key_for(row: int, col: int) -> str:
    """The key at keypad row ``row`` (0..3) and column ``col`` (0..3)."""
    return KEYPAD[row][col]


def _block_dft(frames: npt.NDArray[np.float64],
               product_rows: int | None = None) -> tuple[npt.NDArray[np.complex128], npt.NDArray[np.float64]]:
    """(channels, 2, K) complex DFT coefficients and (channels, 2) block energies; the product
    rounds as a bank of ``product_rows`` channels' (default: all of them)."""
    channels = frames.shape[0]
    blocks = frames.reshape(channels * 2, BLOCK)
    prod = stacked_product(blocks, _BASIS, 2 * (product_rows or channels))
    k = len(_ALL)
    coeffs = (prod[:, :k] + 1j * prod[:, k:]).reshape(channels, 2, k)
    energy = np.einsum("ij,ij->i", blocks, blocks).reshape(channels, 2)
    return coeffs, energy


@dataclass(slots=True)
class _Run:
    """A candidate key on one channel (Python state only while a tone is present)."""

    row: int
    col: int
    first_block: int  # index of the first block recorded in ``amps``
    amps: list[tuple[float, float, float]]  # per block: row amplitude, col amplitude, tone fraction
    steady_row: float
    steady_col: float
    valid_windows: int = 1
    gap_blocks: int = 0
    last_on: int = -1
    first_on: int = -1
    measures: list[tuple[float, float, float, float, float]] = field(default_factory=list)


@dataclass(slots=True)
class _WindowResult:
    valid: npt.NDArray[np.bool_]  # (C, 2)
    row: npt.NDArray[np.intp]
    col: npt.NDArray[np.intp]
    row_hz: npt.NDArray[np.float64]
    col_hz: npt.NDArray[np.float64]
    p_row: npt.NDArray[np.float64]
    p_col: npt.NDArray[np.float64]
    ratio: npt.NDArray[np.float64]


class DtmfBank:
    """DTMF receivers for ``channels`` legs at once: ``feed`` takes a (channels, 160) int16 array."""

    def __init__(self, channels: int, config: DtmfConfig | None = None, *, product_rows: int | None = None) -> None:
        self.config = config or DtmfConfig()
        self.channels = channels
        # The height whose rounding the bank reproduces (see BatchedDetectorBank): the block DFT
        # is computed in products of that many channels, the rest in slices of at most that many.
        self.product_rows = product_rows or channels
        cfg = self.config
        self._min_power = dbm0_to_power(cfg.min_level_dbm0)
        self._min_ratio = 10.0 ** (cfg.min_tone_to_rest_db / 10.0)
        self._harm_ratio = 10.0 ** (-cfg.min_harmonic_rejection_db / 10.0)
        self._normal = 10.0 ** (cfg.max_normal_twist_db / 10.0)
        self._reverse = 10.0 ** (cfg.max_reverse_twist_db / 10.0)
        self._max_gap_blocks = cfg.max_interruption_ms // BLOCK_MS
        self._prev_coeffs = np.zeros((channels, len(_ALL)), dtype=np.complex128)
        self._prev_energy = np.zeros(channels)
        # Amplitudes at the 8 fundamentals of the last two blocks (for onset refinement).
        self._hist_amp = np.zeros((channels, 2, _NF))
        self._hist_energy = np.zeros((channels, 2))
        self._origin_ms = np.zeros(channels, dtype=np.int64)
        self._runs: dict[int, _Run] = {}

    def reset_row(self, row: int, now_ms: int) -> None:
        """Start channel ``row`` afresh: a new leg whose stream begins at ``now_ms``."""
        self._prev_coeffs[row] = 0
        self._prev_energy[row] = 0
        self._hist_amp[row] = 0
        self._hist_energy[row] = 0
        self._origin_ms[row] = now_ms
        self._runs.pop(row, None)

    def _amplitudes(self, coeffs: npt.NDArray[np.complex128]) -> npt.NDArray[np.float64]:
        """``|X| / (BLOCK / 2)`` at the fundamentals (see :func:`fundamental_amplitudes`)."""
        return fundamental_amplitudes(coeffs, self.product_rows)

    def _windows(self, rows: list[int], xa: npt.NDArray[np.complex128], xb: npt.NDArray[np.complex128],
                 ea: npt.NDArray[np.float64], eb: npt.NDArray[np.float64]) -> _WindowResult:
        """The window tests of channels ``rows`` (their results in that order), in slices of at
        most ``product_rows`` channels (see :func:`fundamental_amplitudes`). ``xa``/``ea``: block a
        of each channel's two windows, ``xb``/``eb``: block b (this frame's blocks)."""
        step = self.product_rows
        if len(rows) > step:
            parts = [self._windows(rows[i : i + step], xa, xb, ea, eb) for i in range(0, len(rows), step)]
            return _WindowResult(*(np.concatenate([getattr(part, name) for part in parts])
                                   for name in _WindowResult.__slots__))
        return self.window_features(xa[rows], xb[rows], ea[rows], eb[rows])

    def window_features(
        self,
        xa: npt.NDArray[np.complex128],
        xb: npt.NDArray[np.complex128],
        ea: npt.NDArray[np.float64],
        eb: npt.NDArray[np.float64],
    ) -> _WindowResult:
        """Every Q.24 test of the windows (block a, block b): shapes (rows, 2, K) and (rows, 2).

        Row by row: each window's result depends on its own row only, so the offline path
        (:mod:`ivr.detect.offline`) passes a recording's windows a few hundred at a time (past
        ~1,000 rows numpy buffers the strided complex products and rounds them differently).
        """
        cfg = self.config
        fa = xa[..., :_NF]
        fb = xb[..., :_NF]
        # Frequency offset from the phase advance between the blocks.
        dphi = np.angle(fb * np.conj(fa) * _ADVANCE[:_NF])
        dev_hz = dphi * _HZ_PER_RAD
        amp = (np.abs(fa) + np.abs(fb)) / BLOCK  # mean of the two blocks' amplitudes
        # The 10 ms block loses amplitude for an off-nominal tone (sinc): undo it for the level.
        corr = np.maximum(np.abs(np.sinc(dev_hz * BLOCK / SAMPLE_RATE_HZ)), 0.5)
        power = (amp / corr) ** 2 / 2.0
        row = np.argmax(power[..., :4], axis=-1)
        col = np.argmax(power[..., 4:], axis=-1)
        p_row = _pick(power[..., :4], row)
        p_col = _pick(power[..., 4:], col)
        # Coherent 20 ms estimates for harmonics and dial tone (finer frequency resolution).
        coherent = xa[..., _NF:] + xb[..., _NF:] * _ADVANCE[_NF:]
        cpow = (np.abs(coherent) / (2 * BLOCK)) ** 2 * 2.0
        h_row = _pick(cpow[..., :4], row)
        h_col = _pick(cpow[..., 4:8], col)
        total = (ea + eb) / (2 * BLOCK)
        if cfg.filter_dial_tone:
            total = total - cpow[..., 8] - cpow[..., 9]
        rest = np.maximum(total - p_row - p_col, total * 1e-4 + 1e-3)
        ratio = (p_row + p_col) / rest
        row_dev = _pick(dev_hz[..., :4], row)
        col_dev = _pick(dev_hz[..., 4:], col)
        row_f = _FUND[row]
        col_f = _FUND[4 + col]
        max_dev = cfg.max_frequency_deviation_pct / 100.0
        # 2 x 697, 2 x 770 and 2 x 852 Hz lie 58-71 Hz from a high-group tone: allow for the part of
        # that tone the 20 ms harmonic bin picks up, or keys 2, 6 and C would fail off-nominal.
        leak = p_col * np.sinc((col_f + col_dev - 2.0 * row_f) * (2 * BLOCK) / SAMPLE_RATE_HZ) ** 2 * 1.5
        # Both blocks must carry the pair, or the phase advance means nothing.
        amp_a = np.abs(fa) / (BLOCK / 2)
        amp_b = np.abs(fb) / (BLOCK / 2)
        a_row_min = np.minimum(
            _pick(amp_a[..., :4], row),
            _pick(amp_b[..., :4], row),
        )
        a_col_min = np.minimum(
            _pick(amp_a[..., 4:], col),
            _pick(amp_b[..., 4:], col),
        )
        valid = (
            (p_row >= self._min_power)
            & (p_col >= self._min_power)
            & (p_col <= p_row * self._reverse)
            & (p_row <= p_col * self._normal)
            & (np.abs(row_dev) <= max_dev * row_f)
            & (np.abs(col_dev) <= max_dev * col_f)
            & (ratio >= self._min_ratio)
            & (h_row <= p_row * self._harm_ratio + leak)
            & (h_col <= p_col * self._harm_ratio)
            & (a_row_min**2 / 2 >= self._min_power * 0.25)
            & (a_col_min**2 / 2 >= self._min_power * 0.25)
        )
        return _WindowResult(valid, row, col, row_f + row_dev, col_f + col_dev, p_row, p_col, ratio)

    def possible_windows(
        self,
        before: npt.NDArray[np.float64],
        blocks: npt.NDArray[np.float64],
        xa: npt.NDArray[np.complex128],
        xb: npt.NDArray[np.complex128],
        ea: npt.NDArray[np.float64],
        eb: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.bool_]:
        """Which windows can pass :meth:`window_features`' tests: shapes (..., 8) for the amplitudes
        (``|X| / (BLOCK / 2)`` at the fundamentals) of their blocks a (``before``) and b
        (``blocks``), (..., K) for the blocks' coefficients, (...) for their energies.

        A necessary condition, with a 1 % margin so rounding cannot matter. ``window_features``
        corrects the two blocks' mean amplitude ``amp`` by at most a factor 2 (``corr >= 0.5``), so
        a tone's power is at most ``2 amp**2``: the strongest row and column bins must reach
        ``min_level_dbm0``, both blocks must carry a quarter of it, and the two bounds together
        must stand ``min_tone_to_rest_db`` above the rest of the window (``ratio >= r`` needs
        ``pair * (1 + r) >= r * total``). Silence, line noise and nearly all speech fail it and
        need no window test at all (the tests' arithmetic, with its angles and sincs, is most of
        the detector's cost).
        """
        min_power = self._min_power
        upper = 2.0 * ((before + blocks) / 2.0) ** 2
        both = np.minimum(before, blocks) ** 2 / 2.0 >= min_power * 0.25 * 0.99
        best_row = upper[..., :4].max(axis=-1)
        best_col = upper[..., 4:].max(axis=-1)
        ratio = self._min_ratio
        possible: npt.NDArray[np.bool_] = (
            (best_row >= min_power * 0.99)
            & (best_col >= min_power * 0.99)
            & both[..., :4].any(axis=-1)
            & both[..., 4:].any(axis=-1)
            & ((best_row + best_col) * (1.0 + ratio) * 1.01 >= ratio * self._window_total(xa, xb, ea, eb))
        )
        return possible

    def _window_total(
        self,
        xa: npt.NDArray[np.complex128],
        xb: npt.NDArray[np.complex128],
        ea: npt.NDArray[np.float64],
        eb: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float64]:
        """The window's power that the tones are weighed against (without dial tone if filtered)."""
        total: npt.NDArray[np.float64] = (ea + eb) / (2 * BLOCK)
        if self.config.filter_dial_tone:
            dial = xa[..., _DIAL_BINS] + xb[..., _DIAL_BINS] * _ADVANCE[_DIAL_BINS]
            dpow = (np.abs(dial) / (2 * BLOCK)) ** 2 * 2.0
            total = total - dpow[..., 0] - dpow[..., 1]
        return total

    def feed(self, frames: npt.ArrayLike, now_ms: int) -> list[list[DtmfEvent]]:
        """Process one 20 ms frame per channel (``now_ms``: time of the frames' first sample).

        The window tests run only on the channels where a window can pass them
        (:meth:`possible_windows`) or a key is in progress: each channel's result depends on its
        own row only, so the others' would not change anything (ivr/detect/offline.py does the same).
        """
        x = as_frames(frames)
        if x.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[0]}")
        coeffs, energy = _block_dft(x, self.product_rows)
        amps = self._amplitudes(coeffs)  # (C, 2, 8)
        out: list[list[DtmfEvent]] = [[] for _ in range(self.channels)]
        # Block a of the window ending in each of this frame's blocks: the last frame's second
        # block, then this frame's first.
        before = np.stack([self._hist_amp[:, 1], amps[:, 0]], axis=1)
        xa = np.stack([self._prev_coeffs, coeffs[:, 0]], axis=1)
        ea = np.stack([self._prev_energy, energy[:, 0]], axis=1)
        possible = self.possible_windows(before, amps, xa, coeffs, ea, energy)
        rows: list[int] = np.flatnonzero(possible.any(axis=1)).tolist()
        if self._runs:
            rows = sorted(set(rows).union(self._runs))
        if rows:
            win = self._windows(rows, xa, coeffs, ea, energy)
            valid = cast(list[bool], win.valid.any(axis=1).tolist())
            for at, ch in enumerate(rows):
                if not valid[at] and ch not in self._runs:
                    continue
                base_block = (now_ms - int(self._origin_ms[ch])) // BLOCK_MS
                hist = [self._hist_amp[ch, 0], self._hist_amp[ch, 1], amps[ch, 0], amps[ch, 1]]
                hist_e = [self._hist_energy[ch, 0], self._hist_energy[ch, 1], energy[ch, 0], energy[ch, 1]]
                for w in range(2):
                    self._step(ch, at, base_block + w, w, win, hist, hist_e, out[ch])
        self._prev_coeffs = coeffs[:, 1].copy()
        self._prev_energy = energy[:, 1].copy()
        self._hist_amp = amps.copy()
        self._hist_energy = energy.copy()
        return out

    def _step(
        self,
        ch: int,
        at: int,
        block: int,
        w: int,
        win: _WindowResult,
        hist: list[npt.NDArray[np.float64]],
        hist_e: list[float],
        out: list[DtmfEvent],
    ) -> None:
        """Advance channel ``ch`` by one block (index ``block``); ``hist[w + 2]`` is that block and
        ``win``'s row ``at`` holds the channel's window tests."""
        valid = bool(win.valid[at, w])
        row = int(win.row[at, w])
        col = int(win.col[at, w])
        run = self._runs.get(ch)

        def block_amps(i: int, r: int, c: int) -> tuple[float, float, float]:
            a_r = float(hist[i][r])
            a_c = float(hist[i][4 + c])
            e = float(hist_e[i]) / BLOCK
            frac = (a_r * a_r + a_c * a_c) / 2.0 / e if e > 0 else 0.0
            return a_r, a_c, frac

        if run is not None:
            a_r, a_c, frac = block_amps(w + 2, run.row, run.col)
            same = valid and row == run.row and col == run.col
            if same:
                run.valid_windows += 1
                run.steady_row = max(run.steady_row, a_r)
                run.steady_col = max(run.steady_col, a_c)
                run.measures.append(self._measure(at, w, win))
            run.amps.append((a_r, a_c, frac))
            cover = 0.5 * (a_r / run.steady_row + a_c / run.steady_col)
            other = valid and not same
            if cover >= 0.5 and frac >= 0.3 and not other:
                run.last_on = block
                run.gap_blocks = 0
            else:
                run.gap_blocks += 1
                if run.gap_blocks > self._max_gap_blocks or other:
                    self._finish(ch, run, out)
                    del self._runs[ch]
                    run = None
        if run is None and valid:
            # Start a run at the window's first block; keep one block before it for the onset.
            amps3 = [block_amps(i, row, col) for i in (w, w + 1, w + 2)]
            steady_r = max(amps3[1][0], amps3[2][0])
            steady_c = max(amps3[1][1], amps3[2][1])
            new = _Run(row, col, block - 2, amps3, steady_r, steady_c)
            new.measures.append(self._measure(at, w, win))
            new.last_on = block
            self._runs[ch] = new

    def _measure(self, at: int, w: int, win: _WindowResult) -> tuple[float, float, float, float, float]:
        return (
            float(win.row_hz[at, w]),
            float(win.col_hz[at, w]),
            float(win.p_row[at, w]),
            float(win.p_col[at, w]),
            float(win.ratio[at, w]),
        )

    def _finish(self, ch: int, run: _Run, out: list[DtmfEvent]) -> None:
        """Close a run: locate onset/offset from block coverage, apply the duration rules."""
        if run.valid_windows < 2:
            return
        covers = [
            min(1.0, 0.5 * (a_r / run.steady_row + a_c / run.steady_col)) if frac >= 0.3 else 0.0
            for a_r, a_c, frac in run.amps
        ]
        on = [i for i, c in enumerate(covers) if c >= 0.5]
        if not on:
            return
        first, last = on[0], on[-1]
        before = covers[first - 1] if first > 0 else 0.0
        after = covers[last + 1] if last + 1 < len(covers) else 0.0
        start = (run.first_block + first) * BLOCK_MS + (1.0 - covers[first] - before) * BLOCK_MS
        end = (run.first_block + last + 1) * BLOCK_MS - (1.0 - covers[last] - after) * BLOCK_MS
        start_ms = round(start)
        end_ms = round(end)
        if end_ms - start_ms < self.config.min_duration_ms:
            return
        m = np.array(run.measures)
        row_hz, col_hz, p_row, p_col, ratio = (float(v) for v in np.median(m, axis=0))
        low = power_to_dbm0(p_row)
        high = power_to_dbm0(p_col)
        out.append(
            DtmfEvent(
                digit=key_for(run.row, run.col),
                start_ms=start_ms,
                end_ms=end_ms,
                low_hz=row_hz,
                high_hz=col_hz,
                low_dbm0=low,
                high_dbm0=high,
                twist_db=low - high,
                tone_to_rest_db=10.0 * math.log10(max(ratio, 1e-9)),
                config=self.config,
            )
        )

    def flush(self, now_ms: int) -> list[list[DtmfEvent]]:
        """End of stream: report keys still sounding."""
        out: list[list[DtmfEvent]] = [[] for _ in range(self.channels)]
        for ch, run in sorted(self._runs.items()):
            self._finish(ch, run, out[ch])
        self._runs.clear()
        return out


class DtmfDetector:
    """One leg's DTMF receiver: ``feed(frame, now_ms) -> list[DtmfEvent]``."""

    def __init__(self, config: DtmfConfig | None = None) -> None:
        self._bank = DtmfBank(1, config)
        self.config = self._bank.config

    def feed(self, frame: npt.ArrayLike, now_ms: int) -> list[DtmfEvent]:
        return self._bank.feed(frame, now_ms)[0]

    def flush(self, now_ms: int) -> list[DtmfEvent]:
        return self._bank.flush(now_ms)[0]
