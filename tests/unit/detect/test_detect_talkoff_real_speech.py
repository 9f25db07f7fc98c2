"""Talk-off on real recorded speech shipped by a Debian package (alsa-utils' test sounds, GPL-2).

The only real human speech found in Debian/PyPI packages usable here: nine short studio recordings
of a voice saying "Front left", "Rear center"... (about 13 s in all). Small, but real: no key,
no three-way flash and no call-progress tone may be reported on it, at several levels and after G.711.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivr.detect.audio import load_8k
from ivr.detect.bank import detect_samples
from ivr.detect.config import DetectorConfigs
from ivr.detect.events import DtmfEvent, HookflashEvent, ToneEvent
from tests.unit.detect.detect_testlib import ulaw_round_trip

SOUNDS = Path("/usr/share/sounds/alsa")
FILES = sorted(SOUNDS.glob("*.wav")) if SOUNDS.is_dir() else []

pytestmark = pytest.mark.skipif(not FILES, reason="alsa-utils' recorded speech not installed (install.sh adds it)")


@pytest.mark.parametrize("gain_db", [6.0, 0.0, -10.0])
def test_no_false_key_flash_or_tone_on_real_recorded_speech(gain_db: float) -> None:
    """Every recording, louder and softer, and through a mu-law round trip: no DTMF, flash or tone."""
    configs = DetectorConfigs(hookflash_enabled=True)
    for path in FILES:
        speech = load_8k(path).astype(np.float64) * 10 ** (gain_db / 20)
        for pcm in (np.clip(speech, -32768, 32767), ulaw_round_trip(speech)):
            events = detect_samples(np.asarray(pcm).astype(np.int16), configs)
            bad = [e for e in events if isinstance(e, DtmfEvent | HookflashEvent | ToneEvent)]
            assert bad == [], f"{path.name} at {gain_db:+} dB: {bad[:2]}"
