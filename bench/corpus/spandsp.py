"""spandsp's ``dtmf_rx`` through ctypes: the reference receiver for bench/dtmf.py only.

Debian ``libspandsp2`` (0.0.6). Not a dependency of the engine. The realtime callback reports each
digit's on and off transitions; spandsp confirms a change after two agreeing 102-sample blocks, so
its start estimate is the on-report time minus those two blocks (25.5 ms).
"""

from __future__ import annotations

import ctypes

import numpy as np
import numpy.typing as npt

_LIB_NAME = "libspandsp.so.2"
_BLOCK = 102
_REPORT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int)


class SpanDsp:
    """A loaded libspandsp; ``detect`` runs one stream through a fresh receiver."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL(_LIB_NAME)
        self.lib.dtmf_rx_init.restype = ctypes.c_void_p
        self.lib.dtmf_rx_init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self.lib.dtmf_rx.restype = ctypes.c_int
        self.lib.dtmf_rx.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]
        self.lib.dtmf_rx_parms.restype = None
        # Debian's 0.0.6 build takes ints here (later versions take floats): passing floats leaves
        # garbage in the integer registers and the receiver never fires.
        self.lib.dtmf_rx_parms.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        self.lib.dtmf_rx_set_realtime_callback.restype = None
        self.lib.dtmf_rx_set_realtime_callback.argtypes = [ctypes.c_void_p, _REPORT, ctypes.c_void_p]
        self.lib.dtmf_rx_free.restype = ctypes.c_int
        self.lib.dtmf_rx_free.argtypes = [ctypes.c_void_p]

    def detect(
        self, samples: npt.NDArray[np.int16], filter_dialtone: bool = True, chunk: int = 160
    ) -> list[tuple[str, int, int]]:
        """(digit, start_ms, end_ms) for each digit spandsp reports in ``samples``.

        ``filter_dialtone`` switches on spandsp's 350/440 Hz notch (its documentation says it has
        poor dial-tone tolerance otherwise); thresholds and twists are spandsp's defaults.
        """
        pcm = np.ascontiguousarray(samples, dtype=np.int16)
        events: list[tuple[str, int, int]] = []
        state = {"pos": 0, "digit": "", "start": 0}

        def report(_user: int | None, code: int, _level: int, _delay: int) -> None:
            t = state["pos"]
            if code:
                if state["digit"]:
                    events.append((str(state["digit"]), int(state["start"]), int(t)))
                state["digit"] = chr(code)
                state["start"] = max(0, int(t) - 2 * _BLOCK)
            elif state["digit"]:
                events.append((str(state["digit"]), int(state["start"]), max(0, int(t) - 2 * _BLOCK)))
                state["digit"] = ""

        callback = _REPORT(report)
        rx = self.lib.dtmf_rx_init(None, None, None)
        self.lib.dtmf_rx_set_realtime_callback(rx, callback, None)
        self.lib.dtmf_rx_parms(rx, 1 if filter_dialtone else 0, -1, -1, -99)
        base = pcm.ctypes.data
        for start in range(0, len(pcm), chunk):
            n = min(chunk, len(pcm) - start)
            state["pos"] = start + n
            self.lib.dtmf_rx(rx, base + 2 * start, n)
        # Flush: a digit still on at the end is closed with silence.
        tail = np.zeros(4 * _BLOCK, dtype=np.int16)
        state["pos"] = len(pcm) + len(tail)
        self.lib.dtmf_rx(rx, tail.ctypes.data, len(tail))
        self.lib.dtmf_rx_free(rx)
        return [(d, s * 1000 // 8000, e * 1000 // 8000) for d, s, e in events]
