"""Every prompt the call machine asks for in the replayed flows renders (the PlayPrompt contract)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ivr.log import configure
from ivr.prompts import PROMPT_IDS, render

replay = pytest.importorskip("ivr.replay")

FLOWS = Path(__file__).resolve().parents[1] / "data" / "flows"
CLIP = (np.sin(np.arange(8_000) * 0.3) * 5000).astype(np.int16)


def _requests() -> list[tuple[str, str, str]]:
    # ivr.cli.main (called by other tests under capsys) points structlog at that test's stderr, closed
    # since; log to this test's stderr, warnings only.
    configure(level="WARNING")
    seen: set[tuple[str, str, str]] = set()
    for path in replay.find_flows(FLOWS):
        for output in replay.run_flow(replay.load_flow(path)).outputs:
            if output.get("out") == "PlayPrompt":
                seen.add((output["prompt_id"], output["language"], json.dumps(output["variables"], sort_keys=True)))
    return sorted(seen)


def test_every_prompt_the_machine_plays_in_the_flows_renders() -> None:
    """Each (prompt, language, variables) the CallMachine emits is in the catalogue and renders."""
    requests = _requests()
    assert len(requests) >= 10
    for prompt_id, language, variables in requests:
        assert prompt_id in PROMPT_IDS
        rendered = render(prompt_id, language, json.loads(variables), name_clip=CLIP)
        assert rendered.duration_ms > 300
    played = {r[0] for r in requests}
    assert {"announcement", "connected", "warning", "disconnect"} <= played
