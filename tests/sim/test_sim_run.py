"""``ivr sim run``: outcomes inferred from the phones, the CLI's exit codes, and scenarios played
against the engine started in-process (records vs expectations)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivr.cli import main
from sim.phones import Observation
from sim.runner import infer_outcome
from sim.scenarios import load_scenario

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "scenarios" / "smoke.toml"
DAY = ROOT / "scenarios" / "day-at-the-county-jail.toml"
SPEC = load_scenario(SMOKE).calls[0]


def called(**kw: object) -> Observation:
    obs = Observation("called", "+15125550101", invited_at=0.1, answered_at=1.0, final_status=200)
    for k, v in kw.items():
        setattr(obs, k, v)
    return obs


def facility(**kw: object) -> Observation:
    obs = Observation("facility", "+15125550101", invited_at=0.0, answered_at=0.01, final_status=200, ended_by="peer")
    for k, v in kw.items():
        setattr(obs, k, v)
    return obs


KEY1 = [(3.0, "1", "rfc4733")]


@pytest.mark.parametrize(
    ("fac", "cal", "expected"),
    [
        (facility(final_status=403, ended_by=None), None, ("failed", "SIP-403")),
        (facility(), called(invited_at=None, answered_at=None, final_status=None), ("restricted", None)),
        (facility(), called(final_status=486, answered_at=None), ("busy", "ACC-4")),
        (facility(), called(final_status=487, answered_at=None, cancelled_at=9.0), ("no_answer", "ACC-4")),
        (facility(), called(ended_by="peer"), ("no_input", "ACC-3")),
        (facility(), called(ended_by="us", bye_sent_at=2.0), ("abandoned", "DIS-HANGUP")),
        (facility(ended_by="us", bye_sent_at=2.0), called(ended_by="peer"), ("abandoned", "DIS-HANGUP")),
        (facility(), called(keys_sent=[(3.0, "2", "info")], ended_by="peer"), ("refused", "ACC-2")),
        (facility(), called(keys_sent=[(3.0, "6", "rfc4733")], ended_by="peer"), ("blocked", "ACC-6")),
        (facility(), called(keys_sent=KEY1, ended_by="us", bye_sent_at=30.0), ("completed", "DIS-HANGUP")),
        (
            facility(ended_by="us", bye_sent_at=20.0),
            called(keys_sent=KEY1, ended_by="peer", ended_at=20.1),
            ("completed", "DIS-HANGUP"),
        ),
        (
            facility(),
            called(keys_sent=KEY1, ended_by="peer", ended_at=9.0, actions=[(8.0, "hold", "sendonly")]),
            ("disconnected", "DIS-HOLD"),
        ),
        (
            facility(),
            called(keys_sent=KEY1, ended_by="peer", ended_at=9.0, actions=[(8.0, "refer", "+1")]),
            ("disconnected", "DIS-HOLD"),
        ),
        (
            facility(),
            called(keys_sent=KEY1, ended_by="peer", ended_at=9.0, actions=[(8.0, "flash", "555")]),
            ("disconnected", "DIS-3WAY"),
        ),
        (
            facility(),
            called(keys_sent=KEY1, ended_by="peer", ended_at=9.0, actions=[(8.0, "call_waiting", "")]),
            ("disconnected", "DIS-3WAY"),
        ),
        (
            facility(),
            called(
                keys_sent=[*KEY1, (8.0, "5", "rfc4733")], ended_by="peer", ended_at=9.0, actions=[(8.0, "keys", "5")]
            ),
            ("disconnected", "DIS-DIGIT"),
        ),
        (
            facility(),
            called(keys_sent=KEY1, ended_by="peer", ended_at=30.0, actions=[(8.0, "silence", "")]),
            ("disconnected", "DIS-SILENCE"),
        ),
        (
            facility(),
            called(keys_sent=KEY1, ended_by="peer", ended_at=20.0, actions=[(8.0, "stop_rtp", "")]),
            ("dropped", "DIS-MEDIA"),
        ),
        (facility(), called(keys_sent=KEY1, ended_by="peer", ended_at=150.0), ("limited", None)),
    ],
)
def test_outcome_inferred_from_what_the_phones_saw(
    fac: Observation, cal: Observation | None, expected: tuple[str, str | None]
) -> None:
    """Without the engine's records, the phones' observations give the outcome (and the reason
    when it shows): DOMAIN.md ACC-*, DIS-*."""
    assert infer_outcome(SPEC, fac, cal) == expected


def test_cli_rejects_non_loopback_engine_and_bad_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 2 with a message for a non-loopback --engine, a bad --only and a bad scenario file."""
    assert main(["sim", "run", str(SMOKE), "--engine", "10.0.0.5:5060"]) == 2
    assert "loopback only" in capsys.readouterr().err
    assert main(["sim", "run", str(SMOKE), "--engine", "127.0.0.1:5060", "--only", "x"]) == 2
    bad = tmp_path / "bad.toml"
    bad.write_text('[[calls]]\ncaller = "A"\nnumber = "+15125550101"\nbehaviour = "fly"\n', encoding="utf-8")
    assert main(["sim", "check", str(bad)]) == 2
    assert f"{bad}: calls[1].behaviour: unknown behaviour 'fly'" in capsys.readouterr().err
    assert main(["sim", "check", str(DAY)]) == 0
    assert "107 calls" in capsys.readouterr().out


def _engine_available() -> bool:
    try:
        from ivr import engine  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _engine_available(), reason="ivr.engine is not installed")
def test_smoke_scenario_against_the_engine_in_process(tmp_path: Path) -> None:
    """`ivr sim run scenarios/smoke.toml`: the engine in-process, every call's record as expected,
    and the phones' own reading of each call agrees with the record's outcome."""
    out = tmp_path / "results.json"
    code = main(
        [
            "sim",
            "run",
            str(SMOKE),
            "--json",
            str(out),
            "--workdir",
            str(tmp_path / "work"),
            "--pcap",
            str(tmp_path / "smoke.pcap"),
        ]
    )
    results = json.loads(out.read_text(encoding="utf-8"))
    bad = [(r["index"], r["behaviour"], r["expected"], r["actual"], r["error"]) for r in results if not r["ok"]]
    assert bad == [] and code == 0
    assert {r["actual"]["source"] for r in results} == {"record"}
    for r in results:
        assert r["inferred"]["outcome"] == r["actual"]["outcome"], r["index"]
        if r["inferred"]["reason"] is not None:
            assert r["inferred"]["reason"] == r["actual"]["reason"], r["index"]
    from sim.pcap import read_calls

    calls = read_calls(tmp_path / "smoke.pcap")
    assert len(calls) == len(results)
    assert sorted(c.facility.number for c in calls) == sorted(r["number"] for r in results)


@pytest.mark.slow
@pytest.mark.skipif(not _engine_available(), reason="ivr.engine is not installed")
def test_day_at_the_county_jail_against_the_engine(tmp_path: Path) -> None:
    """Issue 6: the day (107 calls) runs with every outcome and reason as expected (a few minutes)."""
    out = tmp_path / "day.json"
    code = main(["sim", "run", str(DAY), "--json", str(out), "--workdir", str(tmp_path / "work")])
    results = json.loads(out.read_text(encoding="utf-8"))
    bad = [(r["index"], r["behaviour"], r["expected"], r["actual"], r["error"]) for r in results if not r["ok"]]
    assert bad == [] and code == 0
