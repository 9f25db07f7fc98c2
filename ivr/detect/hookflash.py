"""Hookflash / three-way calling (DOMAIN.md DIS-3WAY), batched.

A flash is the called party's phone going on-hook for 300-1100 ms: the line shows a *click* (a
burst shorter than ``max_click_ms``, ``min_click_over_floor_db`` above the noise floor) between
silences (``min_silence_before_ms`` before, ``min_silence_after_ms`` after). A click alone is weak
evidence (a short word between pauses looks alike), so by default a flash is reported only with
corroboration inside ``followup_window_ms`` after the click:

* ``floor_step``: the line's noise floor during the silence after the click is at least
  ``min_floor_step_db`` *below* the floor tracked before it and at most ``max_floor_after_dbm0``
  (the phone's microphone and the room are gone while on-hook: only idle-line noise is left);
* ``dial`` / ``ringback``: a dial tone (>= 300 ms) or ringback (>= 500 ms) starts after the click;
* ``dtmf``: a DTMF key after the click (dialing the third party).

Levels are measured in 5 ms sub-blocks so a click's length is known to 5 ms. The floor before the
click comes from the silence detector's adaptive floor (it tracks the quiet parts, so ordinary
pauses do not look like a drop). The call-waiting tone is reported by :mod:`ivr.detect.tones`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ivr.detect.config import HookflashConfig
from ivr.detect.events import DtmfEvent, HookflashEvent
from ivr.detect.levels import FRAME_MS, as_frames, powers_to_dbm0
from ivr.detect.tones import DIAL, RINGBACK

SUB = 40  # samples per sub-block (5 ms)
SUB_MS = 5
_QUIET_MARGIN_DB = 6.0  # within this of the floor a sub-block is "quiet"
_DECAY_SKIP_MS = 40  # ignore the click's tail when measuring the floor after it
_IDLE, _BURST, _AFTER, _AWAIT = range(4)


@dataclass(slots=True)
class _Candidate:
    at_ms: int
    click_ms: int
    peak_dbm0: float
    floor_before: float
    quiet_before_ms: int
    state: int = _BURST
    measuring: bool = True
    quiet_after_ms: int = 0
    after_power_sum: float = 0.0
    after_count: int = 0

    def floor_after(self) -> float:
        if self.after_count == 0:
            return -120.0
        # The sum holds linear powers relative to 0 dBm0.
        return float(10.0 * np.log10(max(self.after_power_sum / self.after_count, 1e-12)))


class HookflashBank:
    """Hookflash detection for ``channels`` legs. Feed it the floor, tone state and DTMF events
    from the other detectors of the same bank (see :class:`ivr.detect.bank.DetectorBank`)."""

    def __init__(self, channels: int, config: HookflashConfig | None = None) -> None:
        self.config = config or HookflashConfig()
        self.channels = channels
        self._quiet_ms = np.zeros(channels, dtype=np.int64)
        # Per channel: candidates, oldest first. The last one may still be in its burst or its
        # silence-after; the others are confirmed clicks waiting for corroboration.
        self._cands: dict[int, list[_Candidate]] = {}
        self._refractory_until = np.full(channels, -(10**12), dtype=np.int64)
        self._origin_ms = np.zeros(channels, dtype=np.int64)

    def reset_row(self, row: int, now_ms: int) -> None:
        self._quiet_ms[row] = 0
        self._cands.pop(row, None)
        self._refractory_until[row] = -(10**12)
        self._origin_ms[row] = now_ms

    def feed(
        self,
        frames: npt.ArrayLike,
        now_ms: int,
        floor_dbm0: npt.NDArray[np.float64],
        tone_class: npt.NDArray[np.int64],
        tone_since_ms: npt.NDArray[np.int64],
        dtmf: list[list[DtmfEvent]],
    ) -> list[list[HookflashEvent]]:
        """One 20 ms frame per channel plus the context from the other detectors (same origin)."""
        cfg = self.config
        x = as_frames(frames)
        sub = x.reshape(self.channels, -1, SUB)
        level = powers_to_dbm0(np.einsum("ijk,ijk->ij", sub, sub) / SUB)
        floor = np.nan_to_num(floor_dbm0, nan=-120.0)
        quiet = level < np.maximum(floor, -75.0)[:, None] + _QUIET_MARGIN_DB
        all_quiet = quiet.all(axis=1)
        rel = now_ms - self._origin_ms
        # Channels that need the per-sub-block walk: a burst right after a long enough silence,
        # or candidates in progress. Everyone else is a vector update.
        before = self._quiet_ms + np.argmin(quiet, axis=1) * SUB_MS
        interesting = ~all_quiet & (before >= cfg.min_silence_before_ms)
        if self._cands:
            interesting[list(self._cands)] = True
        interesting &= rel >= self._refractory_until
        out: list[list[HookflashEvent]] = [[] for _ in range(self.channels)]
        trailing = np.argmin(quiet[:, ::-1], axis=1) * SUB_MS
        quiet_before = self._quiet_ms
        self._quiet_ms = np.where(all_quiet, self._quiet_ms + FRAME_MS, trailing)
        for ch in np.flatnonzero(interesting).tolist():
            self._walk(ch, int(rel[ch]), int(quiet_before[ch]), level[ch], quiet[ch], float(floor[ch]))
            if ch in self._cands:
                self._corroborate(ch, int(rel[ch]), int(tone_class[ch]), int(tone_since_ms[ch]), dtmf[ch], out[ch])
        return out

    def _walk(
        self,
        ch: int,
        t0: int,
        quiet_before: int,
        level: npt.NDArray[np.float64],
        quiet: npt.NDArray[np.bool_],
        floor: float,
    ) -> None:
        """Advance channel ``ch`` through this frame's sub-blocks (``quiet_before``: quiet ms so far)."""
        cfg = self.config
        cands = self._cands.setdefault(ch, [])
        quiet_ms = quiet_before
        for i in range(len(level)):
            t = t0 + i * SUB_MS
            q = bool(quiet[i])
            lvl = float(level[i])
            # Confirmed clicks keep measuring the floor after them until something is heard.
            for c in cands:
                if c.state == _AWAIT and c.measuring:
                    if q:
                        c.quiet_after_ms += SUB_MS
                        c.after_power_sum += 10.0 ** (lvl / 10.0)
                        c.after_count += 1
                    else:
                        c.measuring = False
            cur = cands[-1] if cands and cands[-1].state in (_BURST, _AFTER) else None
            if cur is None:
                if q:
                    quiet_ms += SUB_MS
                elif quiet_ms >= cfg.min_silence_before_ms:
                    # A new burst after a silence: a new candidate (the older ones keep waiting).
                    cands.append(_Candidate(t, SUB_MS, lvl, floor, quiet_ms))
                    del cands[:-3]
                    quiet_ms = 0
                else:
                    quiet_ms = 0
            elif cur.state == _BURST:
                if not q:
                    cur.click_ms += SUB_MS
                    cur.peak_dbm0 = max(cur.peak_dbm0, lvl)
                    if cur.click_ms >= cfg.max_click_ms:
                        cands.pop()  # too long for a click: speech after a pause
                elif cur.peak_dbm0 >= cur.floor_before + cfg.min_click_over_floor_db:
                    cur.state = _AFTER
                    cur.quiet_after_ms = SUB_MS
                    quiet_ms = SUB_MS
                else:
                    cands.pop()
                    quiet_ms = SUB_MS
            else:  # _AFTER: the silence after the burst
                if q:
                    cur.quiet_after_ms += SUB_MS
                    quiet_ms += SUB_MS
                    if cur.quiet_after_ms > _DECAY_SKIP_MS:
                        cur.after_power_sum += 10.0 ** (lvl / 10.0)
                        cur.after_count += 1
                    if cur.quiet_after_ms >= cfg.min_silence_after_ms:
                        cur.state = _AWAIT
                else:
                    cands.pop()  # sound too soon after the burst: speech, not a click
                    quiet_ms = 0
        if not cands:
            del self._cands[ch]

    def _corroborate(
        self,
        ch: int,
        t: int,
        tone_class: int,
        tone_since: int,
        dtmf: list[DtmfEvent],
        out: list[HookflashEvent],
    ) -> None:
        """Report the best confirmed click once the evidence is there; forget stale ones."""
        cfg = self.config
        now_end = t + FRAME_MS
        cands = self._cands[ch]
        waiting = [c for c in cands if c.state == _AWAIT]
        chosen: tuple[_Candidate, list[str]] | None = None
        for cand in waiting:
            evidence: list[str] = []
            floor_after = cand.floor_after()
            if (
                cand.after_count >= 8
                and cand.floor_before - floor_after >= cfg.min_floor_step_db
                and floor_after <= cfg.max_floor_after_dbm0
            ):
                evidence.append("floor_step")
            if tone_class == DIAL and tone_since >= cand.at_ms and now_end - tone_since >= 300:
                evidence.append("dial")
            if tone_class == RINGBACK and tone_since >= cand.at_ms and now_end - tone_since >= 500:
                evidence.append("ringback")
            if any(e.start_ms >= cand.at_ms for e in dtmf):
                evidence.append("dtmf")
            if not evidence and cfg.require_corroboration:
                continue
            # A click followed by a drop of the floor is the on-hook moment itself: prefer it;
            # otherwise the earliest click (the on-hook click comes before the off-hook one).
            if chosen is None or ("floor_step" in evidence and "floor_step" not in chosen[1]):
                chosen = (cand, evidence)
        if chosen is not None:
            cand, evidence = chosen
            out.append(
                HookflashEvent(
                    at_ms=cand.at_ms,
                    click_ms=cand.click_ms,
                    click_dbm0=cand.peak_dbm0,
                    floor_before_dbm0=cand.floor_before,
                    floor_after_dbm0=cand.floor_after(),
                    silence_before_ms=cand.quiet_before_ms,
                    silence_after_ms=cand.quiet_after_ms,
                    followed_by=tuple(evidence),
                    reported_ms=now_end,
                    config=cfg,
                )
            )
            del self._cands[ch]
            self._refractory_until[ch] = cand.at_ms + cfg.followup_window_ms
            return
        cands[:] = [c for c in cands if c.state != _AWAIT or now_end - c.at_ms <= cfg.followup_window_ms]
        if not cands:
            del self._cands[ch]

    def flush(self, now_ms: int) -> list[list[HookflashEvent]]:
        self._cands.clear()
        return [[] for _ in range(self.channels)]
