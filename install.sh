#!/usr/bin/env bash
# Installs everything the engine, its simulator and its tests need on a Debian machine:
# Debian packages (espeak-ng for prompts, SIPp and baresip as real SIP peers, spandsp as the DTMF
# reference for bench/, sox for audio checks, tcpdump for captures that ivr replay reads) and the Python package with its dev extra.
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    espeak-ng sip-tester baresip libspandsp2 sox tcpdump alsa-utils >/dev/null
else
  echo "install.sh: no apt-get; install espeak-ng, sipp, baresip, libspandsp2, sox yourself" >&2
fi
# pyvoip (GPL-3.0, optional): the softphone the interop tests register at the simulated trunk.
python3 -m pip install -q -e ".[dev,pyvoip]"
# The per-packet media path compiled with mypyc (ivr/native.py; about 15 s). Without it, or after
# an edit of one of its sources until the next build, the engine runs the same Python sources.
python3 -m ivr.build_native build >/dev/null || echo "install.sh: media path not compiled; the engine runs on the Python sources" >&2
# pyenv installs console scripts behind shims: make `ivr` reachable at once.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash || true; fi
echo "installed: run 'ivr demo' (or see README.md)"
