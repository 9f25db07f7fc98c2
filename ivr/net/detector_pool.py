"""The engine's detector rows: every leg's 20 ms of received audio, each tick, into batched banks.

Legs take rows of :class:`ivr.detect.bank.BatchedDetectorBank` (one bank family per dialplan's
detector settings). Each tick pulls every attached leg's frame, writes it to the leg's recording
and its row, runs each bank in use once and hands the events to the calls.

The per-leg work is kept to Python that does not touch numpy: with hundreds of legs a numpy call
per leg and tick (decode, astype, a row assignment) cost more than the detectors themselves
(bench/detector_pool.py). So a bank's G.711 frames are decoded into its block with one table
lookup per law, a leg's recording takes its row's bytes out of one ``tobytes`` of the block, and
a call hears of its frames (``CallSession.on_name_frame``) only while it records the caller's name.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ivr.detect import DETECTOR_BANK_ROWS
from ivr.rtp.jitter import EncodedFrame
from ivr.types import Leg

if TYPE_CHECKING:
    from ivr.detect.bank import BatchedDetectorBank
    from ivr.net.runner import CallSession, LegIO

FRAME = 160  # samples per 20 ms at 8 kHz
FRAME_BYTES = 2 * FRAME  # one frame of 16-bit little-endian PCM (the WAVs' format)
_NATIVE_IS_LITTLE = sys.byteorder == "little"


class DetectorPool:
    """Rows of batched detector banks shared by every leg of the engine."""

    # Each row's results are those of a bank of PRODUCT_ROWS rows, bit for bit: the matrix products
    # are computed in stacks of that height (BatchedDetectorBank's product_rows), and ivr/replay.py
    # re-runs a recorded leg in a bank of that height. A bank's cost is partly numpy's per-call
    # overhead, so tall banks cost less per row, but a bank is fed whole however few of its rows
    # are in use. So a dialplan's first SHORT_BANKS banks are PRODUCT_ROWS tall (up to 512 legs,
    # as before) and the next ones ROWS: 1,000 legs take 5 feeds a tick instead of 8.
    PRODUCT_ROWS = DETECTOR_BANK_ROWS
    SHORT_BANKS = 4
    ROWS = 4 * DETECTOR_BANK_ROWS

    def __init__(self) -> None:
        self._banks: dict[int, list[BatchedDetectorBank]] = {}  # by id(plan)
        self._free: dict[int, list[tuple[BatchedDetectorBank, int]]] = {}
        # Per bank (by id): its users by row, and the (rows, 160) frame block fed each tick,
        # reused; free rows hold zeros.
        self._users: dict[int, dict[int, tuple[CallSession, LegIO]]] = {}
        self._frames: dict[int, npt.NDArray[np.int16]] = {}
        self._bank: dict[int, BatchedDetectorBank] = {}

    def attach(self, session: CallSession, io: LegIO) -> None:
        from ivr.detect.bank import BatchedDetectorBank
        from ivr.detect.config import DetectorConfigs

        configs = session.plan.detectors if isinstance(session.plan.detectors, DetectorConfigs) else DetectorConfigs()
        key = id(session.plan)
        free = self._free.setdefault(key, [])
        if not free:
            banks = self._banks.setdefault(key, [])
            rows = self.ROWS if len(banks) >= self.SHORT_BANKS else self.PRODUCT_ROWS
            bank = BatchedDetectorBank(rows, configs, product_rows=self.PRODUCT_ROWS)
            banks.append(bank)
            self._bank[id(bank)] = bank
            self._users[id(bank)] = {}
            self._frames[id(bank)] = np.zeros((rows, FRAME), dtype=np.int16)
            free.extend((bank, row) for row in range(rows - 1, -1, -1))
        bank, row = free.pop()
        # One clock for every row: 20 ms per media tick (frame-exact, not wall time), so the same
        # frames fed from a leg's WAV with the same origin reproduce the live events bit for bit.
        io.origin_ms = session.engine.bank_ms
        bank.reset_row(row, io.origin_ms)
        io.detector = (bank, row)
        self._users[id(bank)][row] = (session, io)

    def detach(self, io: LegIO) -> None:
        if io.detector is None:
            return
        bank, row = io.detector
        io.detector = None
        self._users[id(bank)].pop(row, None)
        self._frames[id(bank)][row] = 0  # a free row is fed silence, as before it was taken
        for key, banks in self._banks.items():
            if any(b is bank for b in banks):
                self._free.setdefault(key, []).append((bank, row))
                return

    def tick(self, now: float, bank_ms: int) -> None:
        """Pull 20 ms from every attached leg, run each bank in use once, hand the events to the calls.

        G.711 frames come out of the jitter buffers still encoded and are decoded together, one
        table lookup per law and bank (the same samples as decoding each on arrival).
        """
        for bank_id, users in list(self._users.items()):
            if users:
                self._tick_bank(bank_id, users, now, bank_ms)

    def _tick_bank(self, bank_id: int, users: dict[int, tuple[CallSession, LegIO]], now: float,
                   bank_ms: int) -> None:
        block = self._frames[bank_id]
        # By decode table: (table, rows, payloads) of the frames still in G.711.
        groups: dict[int, tuple[npt.NDArray[np.int16], list[int], list[bytes]]] = {}
        pulled: list[tuple[int, CallSession, LegIO]] = []
        for row, user in users.items():  # (nothing here attaches or detaches a leg)
            io = user[1]
            media = io.path.media  # (not the LegIO.media property: a Python call per leg and tick)
            if media is None:
                continue
            frame = media.pull_encoded(now)
            if isinstance(frame, EncodedFrame):
                group = groups.get(id(frame.table))
                if group is None:
                    group = groups[id(frame.table)] = (frame.table, [], [])
                group[1].append(row)
                group[2].append(frame.payload)
            else:
                block[row] = frame
            pulled.append((row, user[0], io))
        if not pulled:
            return
        for table, rows, payloads in groups.values():
            codes = np.frombuffer(b"".join(payloads), dtype=np.uint8).reshape(len(rows), FRAME)
            block[rows] = table[codes]
        pcm: bytes | None = None  # the block as the WAVs store it, taken once if a leg records
        fed = False
        for row, session, io in pulled:
            if io.detector is None:  # ended by an earlier leg's frame this tick (its call hung up)
                continue
            if io.wav is not None and session.record_audio:
                if pcm is None:
                    pcm = (block if _NATIVE_IS_LITTLE else block.astype("<i2")).tobytes()
                start = row * FRAME_BYTES
                io.record_pcm(pcm[start:start + FRAME_BYTES])
            if session.name_frames is not None and io.leg is Leg.FACILITY:
                session.on_name_frame(block[row], now)
                if io.detector is None:  # the frame ended the leg
                    continue
            fed = True
        if not fed:
            return
        # Every row of a bank shares the bank's clock; a row's events count from its attach time.
        rows_events = self._bank[bank_id].feed(block, bank_ms)
        if not any(rows_events):
            return
        for row, events in enumerate(rows_events):
            if not events:
                continue
            found = users.get(row)
            if found is not None:
                session, io = found
                for event in events:
                    session.log_detection(io, event, bank_ms)
                    session.engine.detector_event(session, io, event)

