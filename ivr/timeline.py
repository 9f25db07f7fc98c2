"""Draw a call's timeline: the picture an operator shows a family who asks why a call was cut.

Rows: the call's states as coloured bands; audio energy of each leg (when the call folder has
``facility.wav`` / ``called.wav``); prompts played; keys (counted or not, and why); every detection
with what it measured and the threshold; warnings; and the decision that ended the call.
Only the record (and optional WAVs) is read: a replayed call and a live one draw alike.
"""

from __future__ import annotations

import wave
from pathlib import Path
from typing import Any

import numpy as np

STATE_COLOURS = {
    "identify": "#d9d9d9", "record_name": "#cfcfcf", "check": "#bdbdbd", "dialing": "#c6dbef",
    "announce": "#fdd0a2", "await_key": "#fdae6b", "reserving": "#fee391", "connected": "#a1d99b",
    "closing": "#fcbba1", "ended": "#ffffff",
}


def _energy_db(path: Path, window_ms: int = 100) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-window RMS level in dBFS of a 16-bit mono WAV, or None when absent/unreadable."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                return None
            rate = w.getframerate()
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    except (OSError, wave.Error, EOFError):
        return None
    n = max(1, rate * window_ms // 1000)
    usable = len(samples) // n * n
    if usable == 0:
        return None
    frames = samples[:usable].reshape(-1, n)
    rms = np.sqrt(np.mean(frames**2, axis=1)) / 32768.0
    level = 20 * np.log10(np.maximum(rms, 1e-6))
    t = np.arange(len(level)) * window_ms / 1000.0
    return t, level


def _state_spans(timeline: list[dict[str, Any]], end_s: float) -> list[tuple[str, float, float]]:
    changes = [(e["t_ms"] / 1000, e["state"]) for e in timeline if "state" in e]
    spans = []
    for i, (t, name) in enumerate(changes):
        nxt = changes[i + 1][0] if i + 1 < len(changes) else end_s
        spans.append((name, t, max(nxt, t)))
    return spans


def plot_timeline(record: dict[str, Any], out: Path, *, folder: Path | None = None) -> Path:
    """Render ``record`` (and WAVs in ``folder``, if any) to a PNG at ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timeline: list[dict[str, Any]] = record.get("timeline", [])
    end_s = max([e.get("t_ms", 0) for e in timeline] + [record.get("duration_ms", 0), 1000]) / 1000
    fig, axes = plt.subplots(3, 1, figsize=(13, 7.5), sharex=True, gridspec_kw={"height_ratios": [1.2, 2, 2.4]})
    ax_state, ax_audio, ax_events = axes

    for name, t0, t1 in _state_spans(timeline, end_s):
        ax_state.axvspan(t0, t1, color=STATE_COLOURS.get(name, "#eeeeee"))
        if t1 - t0 > end_s * 0.04:
            ax_state.text((t0 + t1) / 2, 0.5, name, ha="center", va="center", fontsize=8)
    ax_state.set_yticks([])
    ax_state.set_title(
        f"{record.get('call_id')}  {record.get('facility_name')} -> {record.get('called_number')}   "
        f"outcome: {record.get('outcome')}  reason: {record.get('reason')}   "
        f"billed {record.get('billed_seconds')} s, {record.get('cost', {}).get('total_minor', 0)} cents",
        fontsize=10, loc="left")

    drew_audio = False
    if folder is not None:
        for leg, colour in (("facility", "tab:blue"), ("called", "tab:green")):
            energy = _energy_db(folder / f"{leg}.wav")
            if energy is not None:
                # facility.wav starts when the engine answers (t=0); called.wav when the family answers.
                offset = record.get("times_ms", {}).get("called_answered", 0) / 1000 if leg == "called" else 0.0
                ax_audio.plot(energy[0] + offset, energy[1], color=colour, lw=0.8, label=f"{leg} leg (dBFS)")
                drew_audio = True
    if not drew_audio:
        ax_audio.text(0.5, 0.5, "no audio in this record (flow, or privileged number: never recorded)",
                      transform=ax_audio.transAxes, ha="center", va="center", fontsize=9, color="grey")
    else:
        ax_audio.legend(loc="upper right", fontsize=8)
    ax_audio.set_ylabel("level")

    rows = {"prompt": 4, "key": 3, "detection": 2, "warning": 1, "decision": 0}
    for entry in timeline:
        t = entry.get("t_ms", 0) / 1000
        if entry.get("out") == "PlayPrompt":
            ax_events.plot([t], [rows["prompt"]], marker=">", color="tab:purple", ms=6)
            ax_events.annotate(entry.get("prompt_id", ""), (t, rows["prompt"]), fontsize=7, rotation=30,
                               xytext=(2, 4), textcoords="offset points")
    keys = record.get("acceptance", {}).get("keys", [])
    uncounted = [k for k in keys if not k.get("counted", True)]
    for key in keys:
        counted = key.get("counted", True)
        t = key["t_ms"] / 1000
        ax_events.plot([t], [rows["key"]], marker="o" if counted else "x", color="black" if counted else "grey")
        if counted or len(uncounted) <= 4:  # a dialled number after a flash would be a blur of labels
            ax_events.annotate(f"{key['key']} ({key['leg']}, {key['source']})", (t, rows["key"]), fontsize=7,
                               xytext=(2, 4), textcoords="offset points")
    if len(uncounted) > 4:
        first = uncounted[0]["t_ms"] / 1000
        digits = "".join(k["key"] for k in uncounted)
        ax_events.annotate(f"not counted: {digits[:24]}", (first, rows["key"]), fontsize=7, color="grey",
                           xytext=(2, -10), textcoords="offset points")
    for det in record.get("detections", []):
        t = det["t_ms"] / 1000
        colour = {"disconnected": "red", "warned": "orange"}.get(det.get("action", ""), "grey")
        ax_events.plot([t], [rows["detection"]], marker="D", color=colour)
        evidence = ", ".join(f"{k}={v}" for k, v in sorted(det.get("evidence", {}).items()))[:70]
        ax_events.annotate(f"{det['rule']} {det.get('action', '')}: {evidence}", (t, rows["detection"]),
                           fontsize=7, xytext=(2, -10), textcoords="offset points")
    for warn in record.get("warnings", []):
        ax_events.plot([warn["t_ms"] / 1000], [rows["warning"]], marker="^", color="orange")
        ax_events.annotate(warn["rule"], (warn["t_ms"] / 1000, rows["warning"]), fontsize=7, xytext=(2, 4),
                           textcoords="offset points")
    decision = record.get("decision") or {}
    if decision:
        t = decision.get("at_ms", 0) / 1000
        ax_events.axvline(t, color="red", lw=1, ls="--")
        evidence = ", ".join(f"{k}={v}" for k, v in sorted(decision.get("evidence", {}).items()))[:90]
        ax_events.annotate(f"{record.get('reason')} ({decision.get('source')}): {evidence}", (t, rows["decision"]),
                           fontsize=8, color="red", xytext=(-4, 4), textcoords="offset points", ha="right")
    ax_events.set_yticks(list(rows.values()), list(rows.keys()))
    ax_events.set_ylim(-0.7, 4.9)
    ax_events.set_xlabel("seconds since the facility's INVITE")
    ax_events.set_xlim(0, end_s * 1.02)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
