"""A small adaptive jitter buffer: received audio -> one 20 ms frame per tick for the detectors.

Sans-I/O. ``push(timestamp, samples, now)`` on every accepted audio packet (decoded);
``pull(now)`` once per 20 ms tick returns exactly one frame of ``frame_samples`` samples.

* Placement is by RTP timestamp (unwrapped, RFC 3550 section 5.1), sample-exact, so reordered
  packets land in place and packets of any duration (10, 20, 30 ms ...) work.
* Playout runs ``target`` frames behind the newest data. It starts at ``initial_delay_frames``;
  a packet that arrives too late to be played (dropped, counted) raises the target by one frame
  (up to ``max_delay_frames``) by holding playout for one tick; after ``shrink_after_frames`` ticks
  without late packets the target falls by one frame (down to ``min_delay_frames``) by skipping one.
* Missing audio is concealed by repeating the last good frame, attenuated by half each time, for
  at most ``max_conceal_frames`` frames, then silence (a simple PLC: G.711 Appendix I is better,
  but detectors only need no clicks and no invented tones; a repeat of a DTMF frame lasts 20 ms
  and fades, well under Q.24's 40 ms acceptance).
* A timestamp more than ``resync_frames`` away from playout (silence suppression, a restarted
  sender, a new SSRC) re-anchors the buffer instead of dropping everything as late or waiting.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from ivr.rtp.packet import ts_diff


class FrameKind(enum.Enum):
    AUDIO = "audio"  # every sample received
    CONCEALED = "concealed"  # some or all samples missing (repeated, faded or silent)
    NO_MEDIA = "no_media"  # nothing received yet (or after reset)


@dataclass(frozen=True, slots=True)
class PlayoutFrame:
    samples: NDArray[np.int16]
    kind: FrameKind


class EncodedFrame(NamedTuple):
    """A whole frame kept as received (G.711 octets) with its law's decode table: decoding is
    deferred to playout, where the engine decodes every leg's frame of a tick in one numpy pass."""

    payload: bytes
    table: NDArray[np.int16]  # ivr.rtp.g711.ULAW_DECODE or ALAW_DECODE

    def decode(self) -> NDArray[np.int16]:
        return self.table[np.frombuffer(self.payload, dtype=np.uint8)]


Frame = NDArray[np.int16] | EncodedFrame


@dataclass(frozen=True, slots=True)
class JitterStats:
    packets: int
    frames_played: int
    frames_concealed: int
    late_dropped: int
    duplicates: int
    overflow_dropped: int
    resyncs: int
    target_delay_frames: int
    depth_frames: int


class JitterBuffer:
    """Reorders, drops late packets, conceals gaps, adapts its delay. One per receiving leg."""

    def __init__(
        self,
        *,
        frame_samples: int = 160,
        initial_delay_frames: int = 2,
        min_delay_frames: int = 1,
        max_delay_frames: int = 10,
        max_conceal_frames: int = 3,
        shrink_after_frames: int = 500,
        resync_frames: int = 50,
    ) -> None:
        if not 0 <= min_delay_frames <= initial_delay_frames <= max_delay_frames < resync_frames:
            raise ValueError("need 0 <= min <= initial <= max delay < resync distance")
        self.frame_samples = frame_samples
        self.min_delay_frames = min_delay_frames
        self.max_delay_frames = max_delay_frames
        self.max_conceal_frames = max_conceal_frames
        self.shrink_after_frames = shrink_after_frames
        self.resync_frames = resync_frames
        self.target = initial_delay_frames
        self._silence: NDArray[np.int16] = np.zeros(frame_samples, dtype=np.int16)
        # Whole frames (the usual case: one aligned 20 ms packet) are kept as the decoded array;
        # frames built from pieces (other packet sizes, odd alignment) carry a mask of filled samples.
        self._full: dict[int, Frame] = {}
        self._frames: dict[int, tuple[NDArray[np.int16], NDArray[np.bool_]]] = {}
        self._last_ts: int | None = None  # last wire timestamp, for unwrapping
        self._last_ext = 0  # its unwrapped value
        self._play: int | None = None  # next frame index to play
        self._newest = 0
        self._hold = False
        self._last_good: Frame | None = None
        self._conceal_run = 0
        self._since_late = 0
        self._packets = 0
        self._played = 0
        self._concealed = 0
        self._late = 0
        self._duplicates = 0
        self._overflow = 0
        self._resyncs = 0

    def _unwrap(self, timestamp: int) -> int:
        ext = 0 if self._last_ts is None else self._last_ext + ts_diff(timestamp, self._last_ts)
        self._last_ts = timestamp
        self._last_ext = ext
        return ext

    def _anchor(self, index: int) -> None:
        self._full.clear()
        self._frames.clear()
        self._play = index - self.target
        self._newest = index
        self._hold = False

    def push(self, timestamp: int, samples: NDArray[np.int16], now: float) -> None:
        """One decoded audio packet. The array is kept, not copied: do not modify it afterwards.

        (``now`` is accepted for symmetry with the other sans-I/O entry points.)
        """
        del now
        self._push(timestamp, samples, len(samples))

    def push_encoded(self, timestamp: int, payload: bytes, table: NDArray[np.int16], now: float) -> None:
        """One G.711 packet, decoded with ``table`` (one sample per octet) only when played out.

        Exactly :meth:`push` of ``table[payload]``: a whole aligned frame is kept encoded, any
        other piece is decoded at once and placed sample by sample.
        """
        del now
        self._push(timestamp, EncodedFrame(payload, table), len(payload))

    def _push(self, timestamp: int, samples: Frame, length: int) -> None:
        if length == 0:
            return
        self._packets += 1
        ext = self._unwrap(timestamp)
        index, offset = divmod(ext, self.frame_samples)
        if self._play is None:
            self._anchor(index)
        assert self._play is not None
        distance = index - self._play
        if distance >= self.resync_frames or distance < -self.resync_frames:
            self._resyncs += 1
            self._anchor(index)
        elif index < self._play:
            self._late += 1
            self._since_late = 0
            if self.target < self.max_delay_frames:
                self.target += 1
                self._hold = True  # play one concealed frame without advancing: one frame more delay
            return
        self._newest = max(self._newest, index + (offset + length - 1) // self.frame_samples)
        self._write(index, offset, samples, length)
        assert self._play is not None
        # Overflow (a burst, or a sender whose clock runs fast): keep at most max delay + 2 frames.
        while self._newest - self._play > self.max_delay_frames + 2:
            if (self._full.pop(self._play, None) is not None) | (self._frames.pop(self._play, None) is not None):
                self._overflow += 1
            self._play += 1

    def _write(self, index: int, offset: int, frame: Frame, length: int) -> None:
        n = self.frame_samples
        if offset == 0 and length == n and index not in self._frames:
            if index in self._full:
                self._duplicates += 1
            else:
                self._full[index] = frame
            return
        samples = _decoded(frame)
        position = 0
        duplicate = True
        assert self._play is not None
        while position < len(samples):
            take = min(n - offset, len(samples) - position)
            if index >= self._play:
                entry = self._frames.get(index)
                if entry is None:
                    whole = self._full.pop(index, None)
                    if whole is not None:
                        entry = (_decoded(whole).copy(), np.ones(n, dtype=np.bool_))
                    else:
                        entry = (np.zeros(n, dtype=np.int16), np.zeros(n, dtype=np.bool_))
                    self._frames[index] = entry
                data, mask = entry
                if not mask[offset : offset + take].all():
                    duplicate = False
                data[offset : offset + take] = samples[position : position + take]
                mask[offset : offset + take] = True
            position += take
            index += 1
            offset = 0
        if duplicate:
            self._duplicates += 1

    def pull(self, now: float) -> PlayoutFrame:
        """The next 20 ms frame; call exactly once per tick."""
        frame, kind = self.pull_frame(now)
        return PlayoutFrame(_decoded(frame), kind)

    def pull_frame(self, now: float) -> tuple[Frame, FrameKind]:
        """:meth:`pull`, with a whole received frame possibly still encoded (:class:`EncodedFrame`):
        the caller decodes it (the engine does all legs of a tick at once). Call exactly once per tick."""
        del now
        if self._play is None:
            return self._silence, FrameKind.NO_MEDIA
        if self._hold:
            self._hold = False
            return self._conceal()
        self._since_late += 1
        if (
            self._since_late >= self.shrink_after_frames
            and self.target > self.min_delay_frames
            and self._newest - self._play > self.min_delay_frames
        ):
            self._full.pop(self._play, None)  # skip one frame: one frame less delay
            self._frames.pop(self._play, None)
            self._play += 1
            self.target -= 1
            self._since_late = 0
        whole = self._full.pop(self._play, None)
        entry = self._frames.pop(self._play, None)
        self._play += 1
        if whole is not None:
            self._played += 1
            self._last_good = whole
            self._conceal_run = 0
            return whole, FrameKind.AUDIO
        if entry is None:
            return self._conceal()
        data, mask = entry
        self._played += 1
        if mask.all():
            self._last_good = data
            self._conceal_run = 0
            return data, FrameKind.AUDIO
        self._concealed += 1
        data = np.where(mask, data, 0).astype(np.int16)
        return data, FrameKind.CONCEALED

    def _conceal(self) -> tuple[Frame, FrameKind]:
        self._played += 1
        self._concealed += 1
        self._conceal_run += 1
        if self._last_good is None or self._conceal_run > self.max_conceal_frames:
            return self._silence, FrameKind.CONCEALED
        last = self._last_good = _decoded(self._last_good)
        faded = (last.astype(np.int32) >> self._conceal_run).astype(np.int16)
        return faded, FrameKind.CONCEALED

    @property
    def delay_s(self) -> float:
        """The current playout delay target (how far frames lag their arrival), in seconds."""
        return self.target * self.frame_samples / 8000

    def reset(self) -> None:
        """Forget everything (new call, re-INVITE to another stream)."""
        self._full.clear()
        self._frames.clear()
        self._play = None
        self._last_ts = None
        self._last_good = None
        self._conceal_run = 0

    def stats(self) -> JitterStats:
        depth = 0 if self._play is None else max(0, self._newest - self._play + 1)
        return JitterStats(
            self._packets,
            self._played,
            self._concealed,
            self._late,
            self._duplicates,
            self._overflow,
            self._resyncs,
            self.target,
            depth,
        )


def _decoded(frame: Frame) -> NDArray[np.int16]:
    return frame.decode() if isinstance(frame, EncodedFrame) else frame
