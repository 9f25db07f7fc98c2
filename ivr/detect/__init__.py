"""Streaming audio detectors over 8 kHz, 20 ms frames (DESIGN.md section 4, issue 3).

Public API (all sans-I/O, numpy only):

* :mod:`ivr.detect.config`: ``DtmfConfig``, ``SilenceConfig``, ``ToneConfig``, ``HookflashConfig``,
  ``NoiseConfig``, ``DetectorConfigs`` and ``detector_configs_from_table(table, where)`` for the
  dialplan's ``[detectors]`` table.
* :mod:`ivr.detect.events`: ``DtmfEvent``, ``SilenceStarted``, ``SilenceEnded``, ``ToneEvent``,
  ``HookflashEvent``, ``NoiseStarted``, ``NoiseEnded`` (``evidence()``, ``to_json()``).
* :mod:`ivr.detect.bank`: ``BatchedDetectorBank(channels, configs, product_rows=)`` with ``reset_row(row, now_ms)``,
  ``feed(frames[channels, 160], now_ms) -> list[list[event]]`` and ``flush(now_ms)``; the one-leg
  ``DetectorBank``; ``detect_samples(pcm, configs)`` for a whole signal.
* :mod:`ivr.detect.offline`: ``detect_frames(frames, configs, rows=, flush=)`` and
  ``detect_signal(pcm, configs)``: a whole recording at once, the streaming bank's events exactly
  (``ivr replay``, ``ivr detect``).
* One detector alone: ``DtmfBank``/``DtmfDetector`` (dtmf.py), ``SilenceBank``/``SilenceDetector``,
  ``ToneBank``/``ToneDetector``, ``HookflashBank``, ``NoiseBank``/``NoiseDetector``.
* :mod:`ivr.detect.synth`: DTMF keys, tones, clicks and noise for simulated phones and tests.
* ``ivr detect FILE.wav`` (:mod:`ivr.detect.cli`).
"""

# The height (rows) whose rounding the engine's batched detector banks reproduce. numpy rounds a
# row bit-identically only at the same matrix height (OpenBLAS picks its kernel by height), so the
# live engine (its banks compute their products in stacks of this many rows, whatever their own
# height) and every replay of its recordings use this one number: ivr.net.detector_pool and
# ivr.replay read it here.
DETECTOR_BANK_ROWS = 128
