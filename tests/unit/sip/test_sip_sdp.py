"""SDP (RFC 4566) parsing and the RFC 3264 offer/answer rules we rely on."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.sip.sdp import (
    PCMA,
    PCMU,
    Direction,
    NoCommonCodecError,
    SdpError,
    build_answer,
    build_offer,
    is_hold,
    negotiate,
    parse_sdp,
)


def offer(formats: str = "0 8 101", extra: str = "", conn: str = "192.0.2.10", rtpmap: str = "") -> bytes:
    lines = [
        "v=0",
        "o=alice 2890844526 2890844527 IN IP4 host.atlanta.example.com",
        "s=-",
        f"c=IN IP4 {conn}",
        "t=0 0",
        f"m=audio 49170 RTP/AVP {formats}",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
    ]
    if rtpmap:
        lines.append(rtpmap)
    if extra:
        lines += extra.split("\n")
    return ("\r\n".join(lines) + "\r\n").encode()


def test_parse_reads_origin_connection_and_codecs() -> None:
    """o=, c=, m= and rtpmap are read; static payload types need no rtpmap (RFC 3551)."""
    sdp = parse_sdp(offer("0 8 18 101"))
    assert sdp.origin.session_version == 2890844527 and sdp.connection == "192.0.2.10"
    audio = sdp.audio()
    assert audio is not None and audio.port == 49170
    assert [c.name for c in audio.codecs] == ["PCMU", "PCMA", "G729", "telephone-event"]


def test_serialize_round_trip() -> None:
    """parse(serialize(x)) == x for our own offers and for a parsed peer offer."""
    ours = build_offer("10.0.0.1", 4000, session_id=42)
    assert parse_sdp(ours.to_bytes()) == ours
    theirs = parse_sdp(offer(extra="a=sendonly\nb=AS:64"))
    assert parse_sdp(theirs.to_bytes()) == theirs


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"v=1\r\n",
        b"v=0\r\no=x\r\n",
        b"v=0\r\nnot a line\r\n",
        b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio x RTP/AVP 0\r\n",
        b"\xff\xfe",
    ],
)
def test_unparseable_sdp_raises_400(bad: bytes) -> None:
    """Broken SDP raises SdpError with status 400."""
    with pytest.raises(SdpError) as info:
        parse_sdp(bad)
    assert info.value.status == 400


def test_answer_keeps_offerer_order_and_peer_dtmf_payload_type() -> None:
    """RFC 3264 6.1: answer with the offered codecs we support, in offer order; telephone-event
    keeps the peer's payload type (here 96, not our default 101)."""
    o = parse_sdp(offer("8 0 96", rtpmap="a=rtpmap:96 telephone-event/8000"))
    a = build_answer(o, "10.0.0.1", 5000, session_id=1)
    audio = a.audio()
    assert audio is not None and audio.formats == ("8", "0", "96")
    params = negotiate(a, o)
    assert params.codec == PCMA and params.dtmf_payload_type == 96
    assert (params.remote_address, params.remote_port) == ("192.0.2.10", 49170)


def test_offer_defaults_pcmu_pcma_and_event_101() -> None:
    """Our offer lists PCMU(0), PCMA(8) and telephone-event/8000 as payload type 101."""
    o = build_offer("10.0.0.1", 4000, session_id=1)
    audio = o.audio()
    assert audio is not None and audio.formats == ("0", "8", "101")
    assert audio.codecs[2].name == "telephone-event" and audio.codecs[2].payload_type == 101


def test_no_common_codec_is_488() -> None:
    """An offer with only G.729 cannot be answered: NoCommonCodecError carries 488."""
    with pytest.raises(NoCommonCodecError) as info:
        build_answer(parse_sdp(offer("18")), "10.0.0.1", 5000, session_id=1)
    assert info.value.status == 488


def test_answer_without_telephone_event_when_not_offered() -> None:
    """No telephone-event in the offer -> none in the answer (in-band DTMF then)."""
    a = build_answer(parse_sdp(offer("0")), "10.0.0.1", 5000, session_id=1)
    assert negotiate(a, parse_sdp(offer("0"))).dtmf_payload_type is None


def test_extra_video_stream_is_rejected_with_port_zero() -> None:
    """RFC 3264 section 6: every m= line is answered; unsupported ones get port 0."""
    text = offer() + b"m=video 51372 RTP/AVP 31\r\n"
    a = build_answer(parse_sdp(text), "10.0.0.1", 5000, session_id=1)
    assert [(m.media, m.port) for m in a.media] == [("audio", 5000), ("video", 0)]


@pytest.mark.parametrize(
    ("extra", "conn", "hold", "answered"),
    [
        ("", "192.0.2.10", False, Direction.SENDRECV),
        ("a=sendrecv", "192.0.2.10", False, Direction.SENDRECV),
        ("a=sendonly", "192.0.2.10", True, Direction.RECVONLY),
        ("a=inactive", "192.0.2.10", True, Direction.INACTIVE),
        ("a=recvonly", "192.0.2.10", False, Direction.SENDONLY),
        ("", "0.0.0.0", True, Direction.RECVONLY),
    ],
)
def test_hold_detection_and_answer_direction(extra: str, conn: str, hold: bool, answered: Direction) -> None:
    """RFC 3264 8.4: sendonly, inactive and c=0.0.0.0 are hold; answers reverse the direction."""
    o = parse_sdp(offer(extra=extra, conn=conn))
    assert is_hold(o) is hold
    a = build_answer(o, "10.0.0.1", 5000, session_id=1)
    audio = a.audio()
    assert audio is not None and a.stream_direction(audio) is answered


def test_session_level_direction_applies_to_streams() -> None:
    """A session-level a=sendonly (before m=) puts the stream on hold too."""
    text = offer().replace(b"t=0 0\r\n", b"t=0 0\r\na=sendonly\r\n")
    assert is_hold(parse_sdp(text))


def test_negotiate_picks_first_answer_codec_we_offered() -> None:
    """The answerer's first listed codec is the one used (RFC 3264 6.1)."""
    ours = build_offer("10.0.0.1", 4000, session_id=1)
    answer = parse_sdp(offer("8 101"))
    params = negotiate(ours, answer)
    assert params.codec == PCMA and params.dtmf_payload_type == 101 and not params.on_hold
    assert negotiate(ours, parse_sdp(offer("0"))).codec == PCMU


@given(
    port=st.integers(1, 65535),
    session_id=st.integers(0, 2**62),
    version=st.integers(0, 2**62),
    direction=st.sampled_from(list(Direction)),
    address=st.sampled_from(["10.0.0.1", "192.0.2.255", "::1"]),
)
def test_offer_round_trip_property(
    port: int, session_id: int, version: int, direction: Direction, address: str
) -> None:
    """Any offer we build parses back equal, and the answer to it reverses its direction."""
    o = build_offer(address, port, session_id=session_id, session_version=version, direction=direction)
    assert parse_sdp(o.to_bytes()) == o
    a = build_answer(o, "10.0.0.2", 5000, session_id=1)
    audio = a.audio()
    assert audio is not None and a.stream_direction(audio) is direction.reversed()


_sdp_line = st.one_of(
    st.sampled_from(
        [
            "v=0",
            "o=- 1 1 IN IP4 h",
            "s=-",
            "c=IN IP4 0.0.0.0",
            "t=0 0",
            "m=audio 9 RTP/AVP 0 8 101",
            "a=rtpmap:101 telephone-event/8000",
            "a=sendonly",
            "a=inactive",
            "m=video 0 RTP/AVP 31",
            "a=rtpmap:0",
            "a=fmtp:",
            "c=IN IP6 ::",
            "b=AS:64",
            "m=audio 70000 RTP/AVP 0",
        ]
    ),
    st.text(alphabet="vosctmab=:/ 0123456789INPAVRT-.\t", max_size=30),
)


@given(lines=st.lists(_sdp_line, max_size=14), first=st.booleans())
def test_parse_sdp_raises_only_sdp_error(lines: list[str], first: bool) -> None:
    """Arbitrary line soups: parse_sdp returns a description or raises SdpError, nothing else;
    what it returns serializes and parses back equal, and answering it never crashes."""
    text = "\r\n".join((["v=0"] if first else []) + lines)
    try:
        sdp = parse_sdp(text.encode())
    except SdpError:
        return
    assert parse_sdp(sdp.to_bytes()) == sdp
    with contextlib.suppress(NoCommonCodecError):
        build_answer(sdp, "10.0.0.1", 5000, session_id=1)
    is_hold(sdp)


def test_active_stream_without_connection_address_is_400() -> None:
    """RFC 4566 5.7: an active m= line with no c= (media or session level) is invalid SDP."""
    text = b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    with pytest.raises(SdpError) as info:
        parse_sdp(text)
    assert info.value.status == 400
    assert parse_sdp(text.replace(b"audio 4000", b"audio 0")).audio() is None  # a rejected stream may omit it
