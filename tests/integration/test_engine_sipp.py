"""The engine (``ivr serve``) against SIPp on 127.0.0.1: the issue-4 interop cases, each checking the
SIP exchange (both SIPp scenarios must complete) and the call record's outcome and reason."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.integration.engine_harness import (
    NUMBER,
    SIPP,
    CalledParty,
    EngineRun,
    dialplan_text,
    dtmf,
    ivr,
    line_noise,
    run_call,
    short_prompts,
    start_engine,
    ulaw_file,
)

pytestmark = [pytest.mark.sipp, pytest.mark.skipif(SIPP is None, reason="SIPp (Debian sip-tester) not installed")]

FAST = {"digit_timeout_s": "2", "ring_timeout_s": "5", "closing_timeout_s": "3"}


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return short_prompts(tmp_path_factory.mktemp("prompts"))


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("audio")
    noise = line_noise(60)
    inband = noise.copy()
    inband[int(1.0 * 8000): int(1.0 * 8000) + 960] += dtmf("1")
    return {
        "noise": ulaw_file(d / "noise.ulaw", noise),
        "zeros": ulaw_file(d / "zeros.ulaw", np.zeros(8000 * 60)),
        "inband1": ulaw_file(d / "inband1.ulaw", inband),
    }


@pytest.fixture
def engine(tmp_path: Path, prompts: Path, request: pytest.FixtureRequest) -> Iterator[EngineRun]:
    changes = dict(FAST)
    changes.update(getattr(request, "param", {}))
    run = start_engine(tmp_path, prompts, dialplan_text(**changes))
    yield run
    run.stop()


def balance(run: EngineRun) -> dict[str, int]:
    """The family's balance through the ledger CLI (the contract tools outside the code use)."""
    return dict(json.loads(ivr("ledger", "--db", run.db_url, "balance", _account(run), "--json")))


def _account(run: EngineRun) -> str:
    import sqlite3

    con = sqlite3.connect(str(run.workdir / "ivr.db"))
    try:
        row = con.execute("select account_id from phone_numbers where number = ?", (NUMBER,)).fetchone()
    finally:
        con.close()
    return str(row[0])


def assert_call(record: dict[str, object], uas: str, uac: str, outcome: str, reason: str) -> None:
    assert (record["outcome"], record["reason"]) == (outcome, reason), json.dumps(record["decision"])
    assert uas.startswith("rc=0"), uas
    assert uac.startswith("rc=0"), uac


def test_accept_with_rfc4733_one_bills_the_call(engine: EngineRun, audio: dict[str, Path]) -> None:
    """ACC-2/ACC-5: '1' by RFC 4733 accepts; the called party hangs up; one started minute is charged."""
    called = CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "1").then("pause", 4000).then("bye")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "completed", "DIS-HANGUP")
    assert record["acceptance"]["accepted_key"]["source"] == "rfc4733"  # type: ignore[index]
    assert 1 <= record["billed_seconds"] <= 6  # type: ignore[operator]
    assert balance(engine)["available_minor"] == 1000 - record["cost"]["total_minor"]  # type: ignore[index]


def test_refuse_with_two_is_free(engine: EngineRun, audio: dict[str, Path]) -> None:
    """ACC-2/ACC-4: '2' refuses; nothing is charged."""
    called = CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "2")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "refused", "ACC-2")
    assert balance(engine)["available_minor"] == 1000


def test_block_with_six_blocks_the_number_at_once(engine: EngineRun, audio: dict[str, Path]) -> None:
    """ACC-6: '6' blocks the number for this facility at once, free; the ledger then refuses it (BLK-PARTY)."""
    called = CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "6")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "blocked", "ACC-6")
    import datetime as dt

    from ivr.dialplan import load_dialplan
    from ledger.api import CallFacts, Refused
    from ledger.service import LedgerService

    plan = load_dialplan(engine.workdir / "example-county-jail.toml")
    svc = LedgerService(engine.db_url)
    try:
        answer = svc.check(CallFacts("after-block", plan.facility.id, "inm-1001", NUMBER, "standard", plan.tariff,
                                     900, dt.datetime.now(dt.UTC)))
    finally:
        svc.close()
    assert isinstance(answer, Refused) and answer.reason == "BLK-PARTY"
    assert balance(engine)["available_minor"] == 1000


def test_no_input_replays_once_then_hangs_up_free(engine: EngineRun, audio: dict[str, Path]) -> None:
    """ACC-3: no key: the announcement plays twice, then the call ends, free."""
    record, uas, uac = run_call(engine, CalledParty(audio=audio["noise"]), gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "no_input", "ACC-3")
    plays = [e for e in record["timeline"] if e.get("out") == "PlayPrompt" and e.get("prompt_id") == "announcement"]  # type: ignore[attr-defined,union-attr]
    assert len(plays) == 2
    assert balance(engine)["available_minor"] == 1000


def test_busy_486_is_free(engine: EngineRun, audio: dict[str, Path]) -> None:
    """ACC-4: 486 Busy Here from the trunk: the caller hears it; nothing charged."""
    record, uas, uac = run_call(engine, CalledParty(answer="486"), gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "busy", "ACC-4")


def test_no_answer_is_cancelled_after_the_ring_timeout(engine: EngineRun, audio: dict[str, Path]) -> None:
    """ACC-4: nobody answers in ring_timeout_s: the engine CANCELs (SIPp sees the CANCEL), free."""
    record, uas, uac = run_call(engine, CalledParty(answer="ring"), gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "no_answer", "ACC-4")


@pytest.mark.parametrize(("direction", "address"), [("sendonly", "[media_ip]"), ("inactive", "[media_ip]"),
                                                    ("sendrecv", "0.0.0.0")], ids=["sendonly", "inactive", "c0000"])
def test_hold_by_reinvite_disconnects(engine: EngineRun, audio: dict[str, Path], direction: str, address: str) -> None:
    """DIS-HOLD: a re-INVITE putting the call on hold (sendonly, inactive, c=0.0.0.0) disconnects at once."""
    called = (CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "1").then("pause", 3000)
              .then("reinvite", (direction, address)))
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "disconnected", "DIS-HOLD")


def test_refer_disconnects_and_is_never_followed(engine: EngineRun, audio: dict[str, Path]) -> None:
    """DIS-HOLD: REFER (a transfer) disconnects; the engine never calls the Refer-To target."""
    called = CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "1").then("pause", 3000).then("refer")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "disconnected", "DIS-HOLD")
    assert record["decision"]["evidence"]["signal"] == "REFER"  # type: ignore[index]


def test_second_stray_key_disconnects_after_a_warning(engine: EngineRun, audio: dict[str, Path]) -> None:
    """DIS-DIGIT: a stray key warns, the second disconnects."""
    called = (CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "1").then("pause", 3000)
              .then("key", "5").then("pause", 2500).then("key", "8"))
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "disconnected", "DIS-DIGIT")
    assert len(record["warnings"]) == 1  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", [{"media_timeout_s": "2"}], indirect=True)
def test_rtp_stopping_is_a_credited_system_drop(engine: EngineRun, audio: dict[str, Path]) -> None:
    """DIS-MEDIA/ACT-4: the called party's RTP stops: dropped after the media timeout, credited."""
    called = CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "1").then("pause", 2500).then("mute")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "dropped", "DIS-MEDIA")
    assert record["credited"] is True and record["cost"]["total_minor"] == 0  # type: ignore[index]


@pytest.mark.parametrize("engine", [{"warn_after_s": "5", "disconnect_after_s": "8"}], indirect=True)
def test_digital_silence_on_both_legs_warns_then_disconnects(engine: EngineRun, audio: dict[str, Path]) -> None:
    """DIS-SILENCE: both parties silent (digital silence): warned, then disconnected."""
    called = CalledParty(audio=audio["zeros"]).then("pause", 1500).then("key", "1")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["zeros"])
    assert_call(record, uas, uac, "disconnected", "DIS-SILENCE")
    assert [w["rule"] for w in record["warnings"]] == ["DIS-SILENCE"]  # type: ignore[union-attr,index]


def test_inband_one_accepts_when_no_telephone_event_was_negotiated(engine: EngineRun,
                                                                   audio: dict[str, Path]) -> None:
    """ACC-5: the answer has no telephone-event: '1' is detected in-band and accepts."""
    called = CalledParty(codecs="0", audio=audio["inband1"]).then("pause", 4000).then("bye")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "completed", "DIS-HANGUP")
    assert record["acceptance"]["accepted_key"]["source"] == "inband"  # type: ignore[index]


@pytest.mark.parametrize("engine", [{"weekday_s": "10", "weekend_s": "10"}], indirect=True)
def test_time_limit_disconnects_and_bills_the_limit(engine: EngineRun, audio: dict[str, Path]) -> None:
    """DIS-LIMIT/LIM-1: a 10-second facility limit ends the call at 10 s, billed 10 s."""
    called = CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "1")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "limited", "DIS-LIMIT")
    assert record["billed_seconds"] == 10


def test_caller_hanging_up_during_the_announcement_ends_the_called_leg_free(engine: EngineRun,
                                                                            audio: dict[str, Path]) -> None:
    """ACC-4: the caller hangs up while the family hears the announcement: the called leg gets BYE, free."""
    called = CalledParty(audio=audio["noise"])
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"], hangup_after_ms=4500)
    assert_call(record, uas, uac, "abandoned", "DIS-HANGUP")
    assert record["decision"]["evidence"]["hung_up"] == "facility"  # type: ignore[index]
    assert balance(engine)["available_minor"] == 1000


def test_recorded_call_replays_to_identical_decisions(engine: EngineRun, audio: dict[str, Path]) -> None:
    """A live call's folder (events.jsonl + record.json) replays to the same outputs and record."""
    called = CalledParty(audio=audio["noise"]).then("pause", 1500).then("key", "1").then("pause", 2000).then("bye")
    record, uas, uac = run_call(engine, called, gateway_audio=audio["noise"])
    assert_call(record, uas, uac, "completed", "DIS-HANGUP")
    folder = next(engine.recordings.glob("*/record.json")).parent
    assert {p.name for p in folder.iterdir()} >= {"record.json", "events.jsonl", "facility.wav", "called.wav"}
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "ivr.cli", "replay", str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
