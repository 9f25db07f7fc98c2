"""baresip (Debian, 1.0.x) as a headless, auto-answering called party on 127.0.0.1.

baresip runs with its own config directory (``-f DIR``): SIP on a given loopback port, the account
``answermode=auto`` (answers at once; baresip 1.0 routes an INVITE by its Request-URI user, so the
account's user is the E.164 number the engine calls, else baresip answers 404), G.711 only, media
on the loopback address (``-n 127.0.0.1``; else baresip writes the host's first non-loopback
address in its SDP, the engine sends RTP there and drops baresip's RTP from 127.0.0.1 as coming
from the wrong source), no sound card: the microphone is a WAV file (``aufile`` source) and the
loudspeaker is ``aubridge`` (a software sink). Commands go through the ``ctrl_tcp`` module
(netstring-framed JSON: ``{"command": "sndcode", "params": "1"}`` sends the key as an RFC 4733
telephone-event, the way baresip's menu sends keys; ``hangup`` sends BYE).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BARESIP = shutil.which("baresip")
MODULES = Path("/usr/lib/baresip/modules")
NEEDED_MODULES = ("g711.so", "aufile.so", "aubridge.so", "ctrl_tcp.so", "menu.so", "account.so")


def available() -> bool:
    """baresip and the modules the harness needs are installed."""
    return BARESIP is not None and all((MODULES / m).exists() for m in NEEDED_MODULES)


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(samples, -32768, 32767).astype("<i2").tobytes())
    return path


def config_text(sip_port: int, ctrl_port: int, source_wav: Path, rtp_ports: tuple[int, int]) -> str:
    return f"""# written by tests/integration/baresip_harness.py
poll_method		epoll
net_interface		127.0.0.1
sip_listen		127.0.0.1:{sip_port}
sip_trans_def		udp
audio_player		aubridge,speaker
audio_source		aufile,{source_wav}
audio_alert		aubridge,alert
audio_srate		8000
audio_channels		1
rtp_ports		{rtp_ports[0]}-{rtp_ports[1]}
rtp_timeout		0
module_path		{MODULES}
module			g711.so
module			aufile.so
module			aubridge.so
module_app		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{ctrl_port}
dns_server		127.0.0.1:53
"""


@dataclass
class Baresip:
    workdir: Path
    sip_port: int
    ctrl_port: int
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        path = self.workdir / "baresip.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def command(self, command: str, params: str = "", timeout_s: float = 5.0) -> dict[str, object]:
        """One ctrl_tcp command; returns baresip's JSON response."""
        payload = json.dumps({"command": command, "params": params, "token": f"t{time.monotonic_ns()}"}).encode()
        with socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=timeout_s) as s:
            s.sendall(str(len(payload)).encode() + b":" + payload + b",")
            buf = b""
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                for message in _netstrings(buf):
                    data = json.loads(message)
                    if data.get("response"):
                        return dict(data)
        raise AssertionError(f"no ctrl_tcp response to {command!r}; baresip log:\n{self.log()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _netstrings(buf: bytes) -> list[bytes]:
    out = []
    while b":" in buf:
        head, _, rest = buf.partition(b":")
        if not head.isdigit() or len(rest) < int(head) + 1:
            break
        n = int(head)
        out.append(rest[:n])
        buf = rest[n + 1 :]
    return out


def start_baresip(workdir: Path, sip_port: int, ctrl_port: int, source_wav: Path, user: str,
                  rtp_ports: tuple[int, int] = (31000, 31999)) -> Baresip:
    """Start baresip with a fresh config directory; wait until its control port answers."""
    assert BARESIP is not None
    conf = workdir / "baresip"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config").write_text(config_text(sip_port, ctrl_port, source_wav, rtp_ports))
    # baresip 1.0 answers 404 to a Request-URI user no account has: the account's user is the number.
    (conf / "accounts").write_text(f"<sip:{user}@127.0.0.1>;regint=0;answermode=auto;audio_codecs=PCMU,PCMA\n")
    (conf / "contacts").write_text("")
    log = open(workdir / "baresip.log", "wb")  # noqa: SIM115 - written until stopped
    # -v -s: verbose with a SIP trace in baresip.log, for the failure message
    process = subprocess.Popen([BARESIP, "-f", str(conf), "-n", "127.0.0.1", "-v", "-s"], cwd=workdir,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    run = Baresip(workdir, sip_port, ctrl_port, process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"baresip exited ({process.returncode}):\n{run.log()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", ctrl_port), timeout=0.2):
                return run
        except OSError:
            time.sleep(0.1)
    run.stop()
    raise AssertionError(f"baresip control port never opened:\n{run.log()[-3000:]}")
