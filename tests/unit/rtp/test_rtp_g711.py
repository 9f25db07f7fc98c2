"""G.711 tables: bit-exact against a scalar reference written from the G.711 tables (and G.191)."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest

from ivr.rtp import g711
from ivr.rtp.g711 import Codec

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
ALL_CODES = bytes(range(256))

# G.711 Table 2 (mu-law): segment end decision values on the 14-bit magnitude scale and steps.
ULAW_SEGMENT_ENDS = (31, 95, 223, 479, 991, 2015, 4063, 8159)
ULAW_STEPS = (2, 4, 8, 16, 32, 64, 128, 256)
# G.711 Table 1 (A-law): segment end decision values on the 12-bit magnitude scale and steps.
ALAW_SEGMENT_ENDS = (16, 32, 64, 128, 256, 512, 1024, 2048)
ALAW_STEPS = (1, 1, 2, 4, 8, 16, 32, 64)


def magnitude(x: int, drop_bits: int) -> int:
    """Sign-magnitude input as G.191 forms it: one's complement of a negative sample."""
    return ((-x - 1) if x < 0 else x) >> drop_bits


def ref_ulaw_encode(x: int) -> int:
    """Scalar mu-law encoder: walk the Table 2 segments, index the interval, invert the code."""
    m = magnitude(x, 2)
    start = -1  # the first interval of segment 0 is one unit wide: [-1, 1) holds only 0
    index = 127
    for seg, (end, step) in enumerate(zip(ULAW_SEGMENT_ENDS, ULAW_STEPS, strict=True)):
        if m < end:
            index = 16 * seg + (m - start) // step
            break
        start = end
    code = 0x7F - index
    return code | 0x80 if x >= 0 else code


def ref_ulaw_decode(code: int) -> int:
    """Scalar mu-law decoder: the middle of the interval, times 4 to left-justify 14 bits in 16."""
    index = 0x7F - (code & 0x7F)
    seg, j = divmod(index, 16)
    start = -1 if seg == 0 else ULAW_SEGMENT_ENDS[seg - 1]
    step = ULAW_STEPS[seg]
    value = 4 * (start + j * step + step // 2)
    return value if code & 0x80 else -value


def ref_alaw_encode(x: int) -> int:
    """Scalar A-law encoder: Table 1 segments on the 12-bit magnitude, even bits inverted."""
    m = magnitude(x, 4)
    start = 0
    index = 127
    for seg, (end, step) in enumerate(zip(ALAW_SEGMENT_ENDS, ALAW_STEPS, strict=True)):
        if m < end:
            index = 16 * seg + (m - start) // step
            break
        start = end
    code = index | 0x80 if x >= 0 else index
    return code ^ 0x55


def ref_alaw_decode(code: int) -> int:
    """Scalar A-law decoder: middle of the interval (half a step up), times 16 for 16 bits."""
    index = (code ^ 0x55) & 0x7F
    seg, j = divmod(index, 16)
    start = 0 if seg == 0 else ALAW_SEGMENT_ENDS[seg - 1]
    step = ALAW_STEPS[seg]
    value = (16 * (start + j * step)) + 8 * step
    return value if code & 0x80 else -value


def test_ulaw_encode_matches_g711_table_for_all_65536_inputs() -> None:
    """mu-law encode agrees with the Table 2 walk for every 16-bit sample."""
    expected = bytes(ref_ulaw_encode(int(x)) for x in ALL_SAMPLES)
    assert g711.ulaw_encode(ALL_SAMPLES) == expected


def test_alaw_encode_matches_g711_table_for_all_65536_inputs() -> None:
    """A-law encode agrees with the Table 1 walk for every 16-bit sample."""
    expected = bytes(ref_alaw_encode(int(x)) for x in ALL_SAMPLES)
    assert g711.alaw_encode(ALL_SAMPLES) == expected


@pytest.mark.parametrize(
    ("decode", "reference"),
    [(g711.ulaw_decode, ref_ulaw_decode), (g711.alaw_decode, ref_alaw_decode)],
    ids=["ulaw", "alaw"],
)
def test_decode_gives_interval_middle_for_all_256_codes(decode, reference) -> None:  # type: ignore[no-untyped-def]
    """Every code decodes to the middle of its quantization interval."""
    assert decode(ALL_CODES).tolist() == [reference(c) for c in range(256)]


@pytest.mark.parametrize(
    ("code", "value"),
    [(0xFF, 0), (0x7F, 0), (0x80, 32124), (0x00, -32124), (0xFE, 8), (0xEF, 132)],
)
def test_ulaw_known_points(code: int, value: int) -> None:
    """Spot values of the mu-law decoder (zero, full scale, first steps)."""
    assert int(g711.ulaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize(("code", "value"), [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256), (0xD4, 24)])
def test_alaw_known_points(code: int, value: int) -> None:
    """Spot values of the A-law decoder (smallest step, full scale)."""
    assert int(g711.alaw_decode(bytes([code]))[0]) == value


@pytest.mark.parametrize("codec", list(Codec))
def test_encode_is_odd_symmetric_under_ones_complement(codec: Codec) -> None:
    """encode(~x) == encode(x) ^ 0x80 for every sample (the G.191 sign convention)."""
    a = np.frombuffer(codec.encode(ALL_SAMPLES), dtype=np.uint8)
    b = np.frombuffer(codec.encode(~ALL_SAMPLES), dtype=np.uint8)
    assert np.array_equal(a ^ 0x80, b)


@pytest.mark.parametrize("codec", list(Codec))
def test_decode_then_encode_is_identity_on_codes(codec: Codec) -> None:
    """Every code survives decode -> encode (except mu-law's negative zero, which becomes +0)."""
    back = codec.encode(codec.decode(ALL_CODES))
    expected = bytearray(ALL_CODES)
    if codec is Codec.PCMU:
        expected[0x7F] = 0xFF  # -0 and +0 both decode to 0; 0 encodes as +0
    assert back == bytes(expected)


def test_transcode_goes_through_linear() -> None:
    """mu-law <-> A-law byte tables equal decode-then-encode for every code."""
    assert g711.transcode(ALL_CODES, Codec.PCMU, Codec.PCMA) == g711.alaw_encode(g711.ulaw_decode(ALL_CODES))
    assert g711.transcode(ALL_CODES, Codec.PCMA, Codec.PCMU) == g711.ulaw_encode(g711.alaw_decode(ALL_CODES))
    assert g711.transcode(b"\x01\x02", Codec.PCMA, Codec.PCMA) == b"\x01\x02"


def test_silence_bytes_decode_to_near_zero() -> None:
    """The idle codes decode to 0 (mu-law) and the smallest step (A-law)."""
    assert Codec.PCMU.decode(Codec.PCMU.silence(4)).tolist() == [0, 0, 0, 0]
    assert Codec.PCMA.decode(Codec.PCMA.silence(2)).tolist() == [8, 8]


def _audioop():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:  # removed in Python 3.13
            return None
    return audioop


def test_audioop_decoders_agree_for_all_codes() -> None:
    """CPython's audioop (3.11) decodes every mu-law and A-law code to the same value."""
    audioop = _audioop()
    if audioop is None:
        pytest.skip("audioop not available (Python >= 3.13)")
    ulaw = np.frombuffer(audioop.ulaw2lin(ALL_CODES, 2), dtype=np.int16)
    alaw = np.frombuffer(audioop.alaw2lin(ALL_CODES, 2), dtype=np.int16)
    assert np.array_equal(ulaw, g711.ulaw_decode(ALL_CODES))
    assert np.array_equal(alaw, g711.alaw_decode(ALL_CODES))


def test_audioop_alaw_encoder_agrees_for_all_inputs() -> None:
    """audioop.lin2alaw equals our A-law encoder on all 65536 samples."""
    audioop = _audioop()
    if audioop is None:
        pytest.skip("audioop not available (Python >= 3.13)")
    assert audioop.lin2alaw(ALL_SAMPLES.tobytes(), 2) == g711.alaw_encode(ALL_SAMPLES)


def test_audioop_ulaw_encoder_differs_only_by_sun_negation() -> None:
    """audioop.lin2ulaw (Sun code: -x, not ~x) equals ours on x >= 0 and differs by one step elsewhere."""
    audioop = _audioop()
    if audioop is None:
        pytest.skip("audioop not available (Python >= 3.13)")
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_SAMPLES.tobytes(), 2), dtype=np.uint8)
    ours = np.frombuffer(g711.ulaw_encode(ALL_SAMPLES), dtype=np.uint8)
    positive = ALL_SAMPLES >= 0
    assert np.array_equal(theirs[positive], ours[positive])
    # Sun's magnitude for x < 0 is -(x >> 2) = ceil(|x| / 4), G.191's is ~x >> 2 = floor((|x| - 1) / 4):
    # one unit apart, so the codes differ only where that unit crosses an interval boundary.
    sun_like = np.array([ref_ulaw_encode_sun(int(x)) for x in ALL_SAMPLES[~positive]], dtype=np.uint8)
    assert np.array_equal(theirs[~positive], sun_like)
    differ = theirs[~positive] != ours[~positive]
    assert int(differ.sum()) == 508  # of 32768 negative inputs, all at quantization interval edges
    step = np.abs(theirs[~positive].astype(int) - ours[~positive].astype(int))
    assert set(np.unique(step[differ]).tolist()) == {1}


def ref_ulaw_encode_sun(x: int) -> int:
    """The Sun/audioop sign handling for x < 0: magnitude -(x >> 2), same Table 2 walk."""
    m = -(x >> 2)
    start = -1
    index = 127
    for seg, (end, step) in enumerate(zip(ULAW_SEGMENT_ENDS, ULAW_STEPS, strict=True)):
        if m < end:
            index = 16 * seg + (m - start) // step
            break
        start = end
    return 0x7F - index


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
@pytest.mark.parametrize(("codec", "encoding"), [(Codec.PCMU, "u-law"), (Codec.PCMA, "a-law")])
def test_sox_decodes_every_code_like_us(codec: Codec, encoding: str, tmp_path: Path) -> None:
    """sox's G.711 decoder gives the same 16-bit value for every code.

    (sox's *encoder* rounds to the nearest level instead of truncating like G.191, so it differs at
    interval edges: 510 mu-law and 1020 A-law inputs out of 65536, measured; it is not a reference.)
    """
    src = tmp_path / "codes.raw"
    src.write_bytes(ALL_CODES)
    out = tmp_path / "lin.raw"
    subprocess.run(
        [
            "sox",
            "-t",
            "raw",
            "-r",
            "8000",
            "-e",
            encoding,
            "-b",
            "8",
            "-c",
            "1",
            str(src),
            "-t",
            "raw",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "-c",
            "1",
            str(out),
        ],
        check=True,
    )
    assert np.array_equal(np.frombuffer(out.read_bytes(), dtype="<i2"), codec.decode(ALL_CODES))
