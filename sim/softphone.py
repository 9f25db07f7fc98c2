"""Real softphones behind the simulated trunk: a baresip configuration that registers a number.

``ivr sim baresip DIR --number +15125550201 --trunk 127.0.0.1:5070`` writes DIR/config and
DIR/accounts; then ``baresip -f DIR`` registers under the number at the simulated trunk, rings
(or answers by itself with ``--auto-answer``) when the engine calls that number, plays a speech
clip (or the microphone with ``--alsa``) and sends RFC 4733 keys typed on its console: press
``1`` to accept the collect call. Debian's baresip 1.0 is what the tests use.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from sim.media import AUDIO_DIR

Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class BaresipConfig:
    folder: Path
    number: str
    sip_port: int


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def write_baresip_config(
    folder: str | Path,
    number: str,
    trunk: Addr,
    *,
    auto_answer: bool = True,
    sip_port: int | None = None,
    source_clip: str = "family-1",
    heard_wav: str | Path | None = None,
    live_audio: bool = False,
) -> BaresipConfig:
    """A baresip config folder: loopback only, G.711, register ``number`` at ``trunk``.

    ``live_audio``: use ALSA (a person with a headset) instead of files; otherwise the phone says
    ``source_clip`` and writes what it hears to ``heard_wav`` (default DIR/heard.wav).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    port = sip_port or free_udp_port()
    heard = Path(heard_wav) if heard_wav else folder / "heard.wav"
    clip = Path(source_clip) if Path(source_clip).suffix else AUDIO_DIR / f"{source_clip}.wav"
    if live_audio:
        audio = "audio_player\t\talsa,default\naudio_source\t\talsa,default\naudio_alert\t\talsa,default\n"
        modules = "module\t\t\talsa.so\n"
    else:
        audio = (
            f"audio_player\t\taufile,{heard}\naudio_source\t\taufile,{clip}\n"
            f"audio_alert\t\taufile,{folder / 'alert.wav'}\n"
        )
        modules = "module\t\t\taufile.so\n"
    (folder / "config").write_text(
        "# written by sim.softphone: baresip on loopback, registering at the simulated trunk\n"
        "poll_method\t\tpoll\n"
        f"sip_listen\t\t127.0.0.1:{port}\n"
        "net_interface\t\t127.0.0.1\n"
        f"{audio}"
        "module_path\t\t/usr/lib/baresip/modules\n"
        "module\t\t\tg711.so\n"
        f"{modules}"
        "module\t\t\tstdio.so\n"
        "module\t\t\taccount.so\n"
        "module_app\t\tmenu.so\n",
        encoding="utf-8",
    )
    host, tport = trunk
    answer = ";answermode=auto" if auto_answer else ""
    (folder / "accounts").write_text(
        f'<sip:{number}@{host}:{tport}>;auth_pass=none{answer};regint=60;outbound="sip:{host}:{tport}"\n',
        encoding="utf-8",
    )
    return BaresipConfig(folder, number, port)
