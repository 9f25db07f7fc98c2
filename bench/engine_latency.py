"""Engine latency (issue 4 point 6b, 6c), measured at the called party's sockets on loopback.

    python3 -m bench.engine_latency [--calls 50] [--concurrency 1] [--prompts test|real]

``ivr serve`` runs as a subprocess (tests/integration/engine_harness.py: SQLite ledger, roster,
county-jail dialplan with ``name_max_ms = 500``). SIPp is the facility gateway; the called party
behind the trunk is this script: the project's sans-I/O UserAgent on the asyncio UDP adapter
(ivr.net.sip_udp) plus one raw UDP RTP socket per call, sending line noise every 20 ms. Per call:

(b) post-answer delay: from the moment our 200 OK left the socket to the first RTP packet from the
    engine (``first rtp``) and to the first packet carrying announcement audio (``first audio``,
    a frame that is not G.711 silence);
(c) key to action: we send RFC 4733 '2' (refuse) 300 ms into the announcement: a start packet with
    the marker bit, two updates, three end packets, 20 ms apart (RFC 4733 section 2.5.1). Measured
    from the last end packet and from the first packet (the onset), to the engine's first action on
    the called leg (the first packet of the refusal confirmation prompt, made loud here so it can be
    told apart) and to the engine's BYE arriving. The engine acts on the onset (a KeyPress is emitted
    on the first event packet), so the BYE may arrive before our last end packet is sent: figures
    "from the end" are then negative (we still send the whole key, as a phone would).

Prints p50 / p99 / max per figure. Loopback only; bounded (``--calls``); stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ivr.net.sip_udp import SipUdpEndpoint, open_sip_endpoint  # noqa: E402
from ivr.rtp.g711 import Codec  # noqa: E402
from ivr.rtp.packet import RtpPacket, parse_datagram  # noqa: E402
from ivr.sip import events as sev  # noqa: E402
from ivr.sip.sdp import build_answer  # noqa: E402
from ivr.sip.useragent import UAConfig, UserAgent  # noqa: E402
from tests.integration.engine_harness import (  # noqa: E402
    FS,
    NUMBER,
    SIPP,
    dialplan_text,
    free_even_port,
    free_port,
    gateway_xml,
    line_noise,
    short_prompts,
    start_engine,
    ulaw_file,
)

KEY_AT_S = 0.3  # press '2' this long after the first announcement audio
CONFIRM_AMPLITUDE = 12000  # the refusal confirmation prompt, loud: the first frame above LOUD is it
LOUD = 6000


@dataclass
class CallTimes:
    answered_at: float = 0.0
    first_rtp_at: float | None = None
    first_audio_at: float | None = None
    key_onset_at: float | None = None
    key_end_at: float | None = None
    confirm_at: float | None = None
    bye_at: float | None = None
    peer: tuple[str, int] | None = None
    te_pt: int | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # keeps the media task referenced


class RtpSide(asyncio.DatagramProtocol):
    """One call's RTP socket at the called party: timestamps the engine's packets."""

    def __init__(self, times: CallTimes, loop: asyncio.AbstractEventLoop) -> None:
        self.times = times
        self.loop = loop
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        now = self.loop.time()
        t = self.times
        if t.first_rtp_at is None:
            t.first_rtp_at = now
        packet = parse_datagram(data)
        if not isinstance(packet, RtpPacket) or packet.payload_type not in (0, 8):
            return
        codec = Codec.PCMU if packet.payload_type == 0 else Codec.PCMA
        if t.first_audio_at is None and any(b != codec.silence_byte for b in packet.payload):
            t.first_audio_at = now
        loud = t.key_onset_at is not None and t.confirm_at is None
        if loud and int(np.abs(codec.decode(packet.payload).astype(np.int32)).max()) > LOUD:
            t.confirm_at = now


class CalledParty:
    """Answers every INVITE at once, sends noise, presses '2' during the announcement."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.sip: SipUdpEndpoint | None = None
        self.calls: dict[str, CallTimes] = {}
        self.done: list[CallTimes] = []
        self.rng = random.Random(1)
        self.noise = Codec.PCMU.encode(line_noise(1.0).astype(np.int16))

    def on_events(self, events: list[sev.UAEvent]) -> None:
        for e in events:
            if isinstance(e, sev.InviteReceived) and e.sdp is not None:
                self.loop.create_task(self._answer(e))
            elif isinstance(e, sev.ByeReceived | sev.CallCancelled) and e.call_id in self.calls:
                t = self.calls.pop(e.call_id)
                t.bye_at = self.loop.time()  # the media task stops once the key's packets are all out
                self.done.append(t)

    async def _answer(self, invite: sev.InviteReceived) -> None:
        assert self.sip is not None and invite.sdp is not None
        times = CallTimes()
        transport, _ = await self.loop.create_datagram_endpoint(
            lambda: RtpSide(times, self.loop), local_addr=("127.0.0.1", 0))
        port = transport.get_extra_info("sockname")[1]
        answer = build_answer(invite.sdp, "127.0.0.1", port, session_id=self.rng.randrange(2**31))
        audio = invite.sdp.audio()
        assert audio is not None
        times.peer = (invite.sdp.stream_address(audio) or "127.0.0.1", audio.port)
        times.te_pt = next((c.payload_type for c in audio.codecs if c.name.lower() == "telephone-event"), None)
        self.calls[invite.call_id] = times
        self.sip.command(lambda ua, now: ua.answer(invite.call_id, answer, now))
        times.answered_at = self.loop.time()  # the 200 OK has just been handed to the socket
        times.tasks.append(self.loop.create_task(self._media(times, transport)))

    async def _media(self, t: CallTimes, transport: asyncio.DatagramTransport) -> None:
        """Noise every 20 ms (monotonic schedule); RFC 4733 '2' at KEY_AT_S into the announcement."""
        assert t.peer is not None
        ssrc, seq, ts = self.rng.randrange(2**32), self.rng.randrange(2**16), self.rng.randrange(2**32)
        start = self.loop.time()
        n = 0
        key_packets: list[tuple[bytes, bool]] = []
        try:
            while t.bye_at is None or key_packets:
                due = t.first_audio_at is not None and self.loop.time() >= t.first_audio_at + KEY_AT_S
                if due and t.key_onset_at is None and not key_packets and t.te_pt is not None:
                    # RFC 4733 section 2.3: event 2, volume 10; durations grow; three end packets.
                    for i, (end, dur) in enumerate([(False, 160), (False, 320), (False, 480),
                                                    (True, 640), (True, 640), (True, 640)]):
                        payload = bytes([2, (0x80 if end else 0) | 10]) + dur.to_bytes(2, "big")
                        key_packets.append((payload, i == 0))
                    key_ts = ts
                if key_packets:
                    payload, marker = key_packets.pop(0)
                    assert t.te_pt is not None
                    data = RtpPacket(t.te_pt, seq, key_ts, ssrc, payload, marker=marker).to_bytes()
                    transport.sendto(data, t.peer)
                    now = self.loop.time()
                    if marker:
                        t.key_onset_at = now
                    if not key_packets:
                        t.key_end_at = now
                else:
                    off = (n * 160) % (len(self.noise) - 160)
                    transport.sendto(RtpPacket(0, seq, ts, ssrc, self.noise[off: off + 160]).to_bytes(), t.peer)
                seq = (seq + 1) & 0xFFFF
                ts = (ts + 160) & 0xFFFFFFFF
                n += 1
                await asyncio.sleep(max(0.0, start + n * 0.02 - self.loop.time()))
        finally:
            with contextlib.suppress(Exception):
                transport.close()


def write_prompts(dest: Path, real: bool) -> Path:
    """Test prompts (40 ms segments) or the real ones. The refusal confirmation is made loud so its
    first packet can be told from the announcement: a 40 ms 1 kHz tone (test), or the real prompt
    scaled to a peak of CONFIRM_AMPLITUDE (real)."""
    if real:
        shutil.copytree(ROOT / "prompts", dest, dirs_exist_ok=True)
    else:
        short_prompts(dest)
    for path in dest.rglob("call_refused_confirm.wav"):
        if real:
            with wave.open(str(path), "rb") as r:
                pcm = np.frombuffer(r.readframes(r.getnframes()), dtype="<i2").astype(np.float64)
            samples = pcm * (CONFIRM_AMPLITUDE / max(1.0, float(np.abs(pcm).max())))
        else:
            t = np.arange(int(0.04 * FS)) / FS
            samples = CONFIRM_AMPLITUDE * np.sin(2 * np.pi * 1000 * t)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(FS)
            w.writeframes(samples.astype("<i2").tobytes())
    return dest


async def measure(trunk_port: int, sip_port: int, workdir: Path, calls: int, concurrency: int,
                  audio: Path) -> list[CallTimes]:
    loop = asyncio.get_running_loop()
    party = CalledParty(loop)
    party.sip = await open_sip_endpoint(UserAgent(UAConfig(local_addr=("127.0.0.1", trunk_port))),
                                        ("127.0.0.1", trunk_port), party.on_events)
    assert SIPP is not None
    (workdir / "gateway.xml").write_text(gateway_xml(audio))
    gateway = await asyncio.create_subprocess_exec(
        SIPP, "-sf", str(workdir / "gateway.xml"), "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1",
        "-mp", str(free_even_port()), "-s", NUMBER, "-m", str(calls), "-l", str(concurrency), "-r", "10",
        "-timeout", str(30 + calls * 5), "-nostdin", f"127.0.0.1:{sip_port}",
        cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await gateway.wait()
    await asyncio.sleep(0.5)
    for t in [*party.done, *party.calls.values()]:
        for task in t.tasks:
            task.cancel()
    party.sip.close()
    return party.done


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=1, help="calls up at once (SIPp -l)")
    p.add_argument("--prompts", choices=("test", "real"), default="test")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    if SIPP is None:
        print("SIPp (Debian sip-tester) is not installed", file=sys.stderr)
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="engine-latency-"))
    prompts = write_prompts(workdir / "prompts", args.prompts == "real")
    audio = ulaw_file(workdir / "noise.ulaw", line_noise(120))
    run = start_engine(workdir / "engine", prompts, dialplan_text(name_max_ms="500", digit_timeout_s="5"),
                       deposit="1000.00")
    t0 = time.monotonic()
    try:
        done = asyncio.run(measure(run.trunk_port, run.sip_port, run.workdir, args.calls, args.concurrency, audio))
    finally:
        run.stop()
    wall = time.monotonic() - t0
    records = run.records()
    outcomes: dict[str, int] = {}
    for r in records:
        outcomes[f"{r['outcome']}/{r['reason']}"] = outcomes.get(f"{r['outcome']}/{r['reason']}", 0) + 1
    ms = 1000.0
    rows = {
        "(b) 200 OK -> first RTP": [(t.first_rtp_at - t.answered_at) * ms for t in done if t.first_rtp_at],
        "(b) 200 OK -> first announcement audio": [(t.first_audio_at - t.answered_at) * ms
                                                   for t in done if t.first_audio_at],
        "(c) key end -> BYE": [(t.bye_at - t.key_end_at) * ms for t in done if t.bye_at and t.key_end_at],
        "(c) key onset -> BYE": [(t.bye_at - t.key_onset_at) * ms for t in done if t.bye_at and t.key_onset_at],
        "(c) key end -> confirmation prompt": [(t.confirm_at - t.key_end_at) * ms
                                               for t in done if t.confirm_at and t.key_end_at],
        "(c) key onset -> confirmation prompt": [(t.confirm_at - t.key_onset_at) * ms
                                                 for t in done if t.confirm_at and t.key_onset_at],
    }
    print(f"engine latency: {len(done)} calls measured of {args.calls}, concurrency {args.concurrency}, "
          f"{args.prompts} prompts, {wall:.0f} s, load average {os.getloadavg()[0]:.2f}")
    print(f"call records: {outcomes}")
    print(f"{'figure':42s} {'n':>4s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s}")
    for name, values in rows.items():
        print(f"{name:42s} {len(values):4d} {pct(values, 50):8.1f} {pct(values, 99):8.1f} "
              f"{(max(values) if values else float('nan')):8.1f}")
    if args.keep:
        print(f"work directory: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
