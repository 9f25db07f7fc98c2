"""Property tests (Hypothesis) for the simulator's parsers: the capture reader and the scenario
validator never fail with anything but a clear InputError, and captures round-trip."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.errors import InputError
from sim.pcap import PcapWriter, read_calls, read_datagrams
from sim.scenarios import parse_scenario

ports = st.integers(min_value=1, max_value=65535)
datagrams = st.lists(
    st.tuples(st.binary(min_size=0, max_size=300), ports, ports, st.integers(min_value=0, max_value=2**31 - 1)),
    max_size=20,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(datagrams)
def test_written_captures_read_back_exactly(items: list[tuple[bytes, int, int, int]]) -> None:
    """Whatever UDP payloads and ports, PcapWriter -> read_datagrams gives them back in order."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.pcap"
        writer = PcapWriter(path)
        for payload, sport, dport, usec in items:
            writer.write(payload, ("127.0.0.1", sport), ("127.0.0.2", dport), 1_600_000_000 + usec / 1e6)
        writer.close()
        got = read_datagrams(path)
        assert [(d.payload, d.src[1], d.dst[1]) for d in got] == [(p, s, d) for p, s, d, _ in items]
        read_calls(path)  # arbitrary payloads are not SIP calls, and must not break the call builder


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_files_are_input_errors_or_empty(data: bytes) -> None:
    """Random bytes (with or without a valid magic) give an InputError or some datagrams, never a crash."""
    for prefix in (b"", bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"), bytes.fromhex("0a0d0d0a")):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "x.pcap"
            path.write_bytes(prefix + data)
            try:
                read_datagrams(path)
                read_calls(path)
            except InputError:
                pass


toml_scalars = st.one_of(
    st.integers(-5, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), st.text(max_size=12)
)
call_keys = st.sampled_from(
    [
        "caller",
        "number",
        "behaviour",
        "expect",
        "talk_s",
        "at_s",
        "rings",
        "key_method",
        "identify",
        "hold_mode",
        "keys",
        "digits",
        "repeat",
        "telephone_event",
        "bogus",
    ]
)
calls = st.lists(
    st.dictionaries(
        call_keys,
        st.one_of(
            toml_scalars,
            st.sampled_from(["A1", "+15125550101", "talk", "hold", "refuse", "info", "pin", "sendonly", "55"]),
        ),
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(calls)
def test_scenario_validation_only_raises_input_errors(raw_calls: list[dict[str, Any]]) -> None:
    """Any [[calls]] content is either a valid scenario or an InputError naming the file."""
    data = {"callers": [{"id": "A1", "name": "Ann", "pin": "1234"}], "calls": raw_calls}
    try:
        scenario = parse_scenario(data, Path("x.toml"))
    except InputError as exc:
        assert str(exc).startswith("x.toml: ")
    else:
        assert len(scenario.calls) >= len(raw_calls)
