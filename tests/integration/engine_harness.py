"""Run the real engine (``ivr serve`` as a subprocess) against SIPp on 127.0.0.1.

SIPp plays the facility gateway (UAC) and the called party behind the trunk (UAS). Scenarios are
built from small action lists so each test reads like the call it places. Test prompts are 40 ms
each (the texts and segment structure are the real ones) so a two-attempt flow takes seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ivr.rtp.g711 import Codec

ROOT = Path(__file__).resolve().parents[2]
SIPP = shutil.which("sipp")
SIPP_SHARE = Path("/usr/share/sip-tester")
NUMBER = "+15125550123"
INMATE = "inm-1001"
FS = 8000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_even_port() -> int:
    while True:
        port = free_port()
        if port % 2 == 0 and port < 65000:
            return port


# ----------------------------------------------------------------------------- audio files


def ulaw_file(path: Path, samples: np.ndarray) -> Path:
    path.write_bytes(Codec.PCMU.encode(samples.astype(np.int16)))
    return path


def line_noise(seconds: float, level: float = 30.0, seed: int = 1) -> np.ndarray:
    """A live line's hiss (about -60 dBm0): never digital zero."""
    rng = np.random.default_rng(seed)
    return rng.normal(0, level, int(seconds * FS))


def dtmf(digit: str, ms: int = 120, amp: float = 5000.0) -> np.ndarray:
    low = {"1": 697, "2": 697, "3": 697, "4": 770, "5": 770, "6": 770, "7": 852, "8": 852, "9": 852,
           "*": 941, "0": 941, "#": 941}[digit]
    high = {"1": 1209, "4": 1209, "7": 1209, "*": 1209, "2": 1336, "5": 1336, "8": 1336, "0": 1336,
            "3": 1477, "6": 1477, "9": 1477, "#": 1477}[digit]
    t = np.arange(int(FS * ms / 1000)) / FS
    return amp * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))


def short_prompts(dest: Path) -> Path:
    """The real prompt texts with every segment 40 ms long (a quiet 300 Hz tone)."""
    t = np.arange(int(0.04 * FS)) / FS
    tone = (300 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes()
    for lang in ("en", "es"):
        src, out = ROOT / "prompts" / lang, dest / lang
        out.mkdir(parents=True, exist_ok=True)
        for item in src.iterdir():
            if item.suffix == ".wav":
                with wave.open(str(out / item.name), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(FS)
                    w.writeframes(tone)
            elif item.is_file():
                shutil.copy(item, out / item.name)
    return dest


# ----------------------------------------------------------------------------- SIPp scenarios


def _xml(name: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n{body}\n</scenario>\n'


def _send(msg: str, retrans: bool = False) -> str:
    attr = ' retrans="500"' if retrans else ""
    return f"  <send{attr}>\n    <![CDATA[\n{msg}\n    ]]>\n  </send>"


IN_DIALOG = """      From: <sip:called@[local_ip]:[local_port]>;tag=[pid]CP[call_number]
      To: [$caller]
      [last_Call-ID:]
      Contact: <sip:called@[local_ip]:[local_port]>
      Max-Forwards: 70"""


def _sdp(codecs: str, direction: str = "sendrecv", address: str = "[media_ip]", version: int = 1) -> str:
    rtpmap = {"0": "a=rtpmap:0 PCMU/8000", "8": "a=rtpmap:8 PCMA/8000", "101": "a=rtpmap:101 telephone-event/8000"}
    lines = "\n".join(f"      {rtpmap[c]}" for c in codecs.split())
    return f"""      v=0
      o=called 1 {version} IN IP4 [local_ip]
      s=-
      c=IN IP4 {address}
      t=0 0
      m=audio [media_port] RTP/AVP {codecs}
{lines}
      a={direction}"""


@dataclass
class CalledParty:
    """What the SIPp called party does after it answers (a list of actions, in order)."""

    answer: str = "200"  # "200", "486" (busy), "ring" (never answers: waits for our CANCEL)
    codecs: str = "0 101"
    audio: Path | None = None
    actions: list[tuple[str, Any]] = field(default_factory=list)
    cseq: int = 1

    def then(self, action: str, arg: Any = None) -> CalledParty:
        self.actions.append((action, arg))
        return self

    def xml(self) -> str:
        parts = ["""  <recv request="INVITE" crlf="true">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="caller"/>
      <ereg regexp="sip:[^>]*" search_in="hdr" header="Contact:" check_it="true" assign_to="contact"/>
    </action>
  </recv>
  <Reference variables="caller,contact"/>"""]
        to_tag = "[last_To:];tag=[pid]CP[call_number]"
        head = f"""      [last_Via:]
      [last_From:]
      {to_tag}
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:called@[local_ip]:[local_port]>"""
        if self.answer == "486":
            parts.append(_send(f"      SIP/2.0 486 Busy Here\n{head}\n      Content-Length: 0"))
            parts.append('  <recv request="ACK"/>')
            return _xml("called_busy", "\n".join(parts))
        parts.append(_send(f"      SIP/2.0 180 Ringing\n{head}\n      Content-Length: 0"))
        if self.answer == "ring":
            parts.append('  <recv request="CANCEL"/>')
            parts.append(_send("      SIP/2.0 200 OK\n      [last_Via:]\n      [last_From:]\n      [last_To:]\n"
                               "      [last_Call-ID:]\n      [last_CSeq:]\n      Content-Length: 0"))
            parts.append(_send("""      SIP/2.0 487 Request Terminated
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]CP[call_number]
      [last_Call-ID:]
      CSeq: [cseq] INVITE
      Content-Length: 0"""))
            parts.append('  <recv request="ACK"/>')
            return _xml("called_no_answer", "\n".join(parts).replace("[cseq]", "1"))
        parts.append('  <label id="answer"/>')
        parts.append(_send(f"      SIP/2.0 200 OK\n{head}\n      Content-Type: application/sdp\n"
                           f"      Content-Length: [len]\n\n{_sdp(self.codecs)}", retrans=True))
        # A retransmitted INVITE (our 200 was lost or late) is answered with the 200 again (RFC 3261 13.3.1.4).
        parts.append('  <recv request="INVITE" optional="true" next="answer"/>')
        parts.append('  <recv request="ACK" crlf="true"/>')
        if self.audio is not None:
            parts.append(f'  <nop><action><exec rtp_stream="{self.audio},-1,0"/></action></nop>')
        version = 1
        ended_by_engine = True
        for action, arg in self.actions:
            if action == "pause":
                parts.append(f'  <pause milliseconds="{int(arg)}"/>')
            elif action == "key":  # RFC 4733 from SIPp's own captures
                name = {"*": "star", "#": "pound"}.get(arg, arg)
                # play_pcap_audio runs in the background; no pause after it, so a BYE the key causes
                # finds SIPp already waiting for it (a message during a <pause> fails the call).
                parts.append(f'  <nop><action><exec play_pcap_audio="{SIPP_SHARE}/dtmf_2833_{name}.pcap"/>'
                             '</action></nop>')
            elif action == "mute":  # stop sending RTP (media timeout)
                parts.append('  <nop><action><exec rtp_stream="pause"/></action></nop>')
            elif action == "info":
                self.cseq += 1
                body = f"Signal={arg}\r\nDuration=160\r\n"
                parts.append(_send(f"""      INFO [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{IN_DIALOG}
      CSeq: {self.cseq} INFO
      Content-Type: application/dtmf-relay
      Content-Length: {len(body)}

      Signal={arg}
      Duration=160""", retrans=True))
                parts.append('  <recv response="200"/>')
            elif action == "reinvite":
                direction, address = arg
                version += 1
                self.cseq += 1
                parts.append(_send(f"""      INVITE [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{IN_DIALOG}
      CSeq: {self.cseq} INVITE
      Content-Type: application/sdp
      Content-Length: [len]

{_sdp(self.codecs, direction, address, version)}""", retrans=True))
                parts.append('  <recv response="100" optional="true"/>')
                parts.append('  <recv response="200"/>')
                parts.append(_send(f"""      ACK [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{IN_DIALOG}
      CSeq: {self.cseq} ACK
      Content-Length: 0"""))
            elif action == "refer":
                self.cseq += 1
                parts.append(_send(f"""      REFER [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{IN_DIALOG}
      CSeq: {self.cseq} REFER
      Refer-To: <sip:+15125550999@[local_ip]>
      Content-Length: 0""", retrans=True))
                parts.append('  <recv response="202" optional="true"/>')
                parts.append('  <recv response="603" optional="true"/>')
                parts.append('  <recv response="403" optional="true"/>')
            elif action == "bye":
                self.cseq += 1
                parts.append(_send(f"""      BYE [$contact] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{IN_DIALOG}
      CSeq: {self.cseq} BYE
      Content-Length: 0""", retrans=True))
                parts.append('  <recv response="200"/>')
                ended_by_engine = False
                break
        if ended_by_engine:
            parts.append('  <recv request="BYE" timeout="60000"/>')
            parts.append(_send("      SIP/2.0 200 OK\n      [last_Via:]\n      [last_From:]\n      [last_To:]\n"
                               "      [last_Call-ID:]\n      [last_CSeq:]\n      Content-Length: 0"))
        parts.append('  <pause milliseconds="200"/>')
        return _xml("called_party", "\n".join(parts))


def gateway_xml(audio: Path, *, hangup_after_ms: int | None = None, inmate: str | None = INMATE) -> str:
    """The facility gateway: INVITE with X-Inmate-Id, stream the caller's audio, BYE or wait for ours."""
    inmate_header = f"\n      X-Inmate-Id: {inmate}" if inmate else ""
    dialog = """      From: "Facility" <sip:gateway@[local_ip]:[local_port]>;tag=[pid]GW[call_number]
      [last_To:]
      Call-ID: [call_id]
      Contact: <sip:gateway@[local_ip]:[local_port]>
      Max-Forwards: 70"""
    parts = [_send(f"""      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Facility" <sip:gateway@[local_ip]:[local_port]>;tag=[pid]GW[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:gateway@[local_ip]:[local_port]>
      Max-Forwards: 70{inmate_header}
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=gateway 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=rtpmap:101 telephone-event/8000""", retrans=True),
             '  <recv response="100" optional="true"/>',
             '  <recv response="180" optional="true"/>',
             '  <recv response="200"/>',
             _send(f"""      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{dialog}
      CSeq: 1 ACK
      Content-Length: 0"""),
             f'  <nop><action><exec rtp_stream="{audio},-1,0"/></action></nop>']
    if hangup_after_ms is not None:
        parts.append(f'  <pause milliseconds="{hangup_after_ms}"/>')
        parts.append(_send(f"""      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{dialog}
      CSeq: 2 BYE
      Content-Length: 0""", retrans=True))
        parts.append('  <recv response="200"/>')
    else:
        parts.append('  <recv request="BYE" timeout="90000"/>')
        parts.append(_send("      SIP/2.0 200 OK\n      [last_Via:]\n      [last_From:]\n      [last_To:]\n"
                           "      [last_Call-ID:]\n      [last_CSeq:]\n      Content-Length: 0"))
    parts.append('  <pause milliseconds="200"/>')
    return _xml("gateway", "\n".join(parts))


# ----------------------------------------------------------------------------- the engine


def dialplan_text(**changes: str) -> str:
    """The county jail's dialplan with some lines replaced: ``digit_timeout_s="2"`` etc."""
    text = (ROOT / "dialplans" / "example-county-jail.toml").read_text()
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        if key in changes and "=" in line:
            line = f"{key} = {changes.pop(key)}"
        lines.append(line)
    assert not changes, f"no such keys in the dialplan: {changes}"
    return "\n".join(lines) + "\n"


@dataclass
class EngineRun:
    workdir: Path
    sip_port: int
    trunk_port: int
    process: subprocess.Popen[bytes]
    db_url: str

    @property
    def recordings(self) -> Path:
        return self.workdir / "recordings"

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.recordings.glob("*/record.json")):
            out.append(json.loads(path.read_text()))
        return out

    def wait_record(self, timeout_s: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = self.records()
            if records:
                return records[0]
            time.sleep(0.1)
        raise AssertionError(f"no call record after {timeout_s} s; engine log:\n{self.log()[-3000:]}")

    def log(self) -> str:
        path = self.workdir / "serve.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def ivr(*args: str, check: bool = True) -> str:
    result = subprocess.run([sys.executable, "-m", "ivr.cli", *args], capture_output=True, text=True, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"ivr {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def seed_ledger(db_url: str, *, deposit: str = "10.00", numbers: tuple[str, ...] = (NUMBER,)) -> str:
    args = ["ledger", "--db", db_url, "open", "--holder", "Mary Doe", "--json"]
    for n in numbers:
        args += ["--number", n]
    account = json.loads(ivr(*args))["account_id"]
    ivr("ledger", "--db", db_url, "deposit", account, deposit, "--method", "card", "--json")
    ivr("roster", "--db", db_url, "add", INMATE, "--name", "John Doe", "--facility", "example-county-jail",
        "--pin", "482913")
    return str(account)


def start_engine(workdir: Path, prompts: Path, dialplan: str, *, deposit: str = "10.00") -> EngineRun:
    workdir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{workdir / 'ivr.db'}"
    seed_ledger(db_url, deposit=deposit)
    plan = workdir / "example-county-jail.toml"
    plan.write_text(dialplan)
    sip_port, trunk_port = free_port(), free_port()
    env = dict(os.environ, IVR_PROMPTS_DIR=str(prompts))
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115 - the engine writes it until stopped
    process = subprocess.Popen(
        [sys.executable, "-m", "ivr.cli", "serve", "--listen", f"127.0.0.1:{sip_port}", "--gateway", "127.0.0.1",
         "--trunk", f"127.0.0.1:{trunk_port}", "--dialplan", str(plan), "--db", db_url,
         "--recordings", str(workdir / "recordings")],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    run = EngineRun(workdir, sip_port, trunk_port, process, db_url)
    deadline = time.monotonic() + 20
    while "engine_started" not in run.log():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"engine did not start:\n{run.log()}")
        time.sleep(0.05)
    return run


def start_gateway(run: EngineRun, audio: Path, *, hangup_after_ms: int | None = None, number: str = NUMBER,
                  timeout_s: float = 60.0) -> subprocess.Popen[bytes]:
    """SIPp as the facility gateway calling ``number`` through the engine (stdout+stderr piped)."""
    assert SIPP is not None
    (run.workdir / "gateway.xml").write_text(gateway_xml(audio, hangup_after_ms=hangup_after_ms))
    return subprocess.Popen(
        [SIPP, "-sf", str(run.workdir / "gateway.xml"), "-i", "127.0.0.1", "-p", str(free_port()), "-mi",
         "127.0.0.1", "-mp", str(free_even_port()), "-s", number, "-m", "1", "-timeout", str(int(timeout_s)),
         "-timeout_error", "-nostdin", "-trace_err", f"127.0.0.1:{run.sip_port}"],
        cwd=run.workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run_call(run: EngineRun, called: CalledParty, *, gateway_audio: Path, hangup_after_ms: int | None = None,
             number: str = NUMBER, timeout_s: float = 60.0) -> tuple[dict[str, Any], str, str]:
    """Place one call: SIPp UAS as the called party, SIPp UAC as the gateway. Returns (record, uas, uac logs)."""
    wd = run.workdir
    (wd / "called.xml").write_text(called.xml())
    assert SIPP is not None
    uas = subprocess.Popen(
        [SIPP, "-sf", str(wd / "called.xml"), "-i", "127.0.0.1", "-p", str(run.trunk_port), "-mi", "127.0.0.1",
         "-mp", str(free_even_port()), "-m", "1", "-timeout", str(int(timeout_s)), "-timeout_error", "-nostdin",
         "-trace_err"], cwd=wd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(0.3)
    gateway = start_gateway(run, gateway_audio, hangup_after_ms=hangup_after_ms, number=number, timeout_s=timeout_s)
    gateway_out, _ = gateway.communicate(timeout=timeout_s + 10)
    try:
        uas_out, _ = uas.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        uas.kill()
        uas_out, _ = uas.communicate()
    record = run.wait_record()
    uas_log = f"rc={uas.returncode}\n" + uas_out.decode(errors="replace")[-2000:]
    uac_log = f"rc={gateway.returncode}\n" + gateway_out.decode(errors="replace")[-2000:]
    return record, uas_log, uac_log
