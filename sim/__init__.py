"""The SIP simulator (issue 6): everything that drives the engine from outside, on loopback.

- :mod:`sim.trunk`: a simulated SIP trunk and registrar (record-routing stateless proxy) that routes
  each called number to a simulated phone or to a registered softphone.
- :mod:`sim.phones`: simulated called parties and facility callers over real UDP and RTP.
- :mod:`sim.media`: what they say: espeak-ng speech clips (``sim/audio``), in-band keys, hookflash,
  dial tone, call-waiting tone, static.
- :mod:`sim.scenarios`: the scenario file format (TOML), validated; :mod:`sim.runner` plays one.
- :mod:`sim.pcap`: pcap/pcapng reader and writer; calls rebuilt from captures.
- :mod:`sim.softphone`: a baresip configuration that registers at the simulated trunk.
- :mod:`sim.cli`: ``ivr sim run | check | trunk | baresip``.
"""
