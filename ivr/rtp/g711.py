"""G.711 mu-law and A-law (ITU-T G.711, 11/1988) through numpy lookup tables.

Bit-exact with the ITU-T G.191 Software Tool Library reference (``g711.c``: ``ulaw_compress``,
``ulaw_expand``, ``alaw_compress``, ``alaw_expand``) for every 16-bit input and every code:

* Encoding takes a 16-bit two's-complement sample. Mu-law uses its 14 most significant bits, A-law
  its 13; a negative sample's magnitude is its one's complement (``~x``), as in G.191. That makes the
  law odd-symmetric: ``encode(~x) == encode(x) ^ 0x80``. (The common "Sun" code, used by Python's
  ``audioop`` and many libraries, negates instead for mu-law and so differs from G.191 on 508
  negative inputs, at interval edges, by one quantization step; A-law agrees. tests/unit/rtp pins
  both facts.)
* Decoding returns the middle of the quantization interval (G.711 Tables 1 and 2, column
  "decoder output value"), left-justified in 16 bits, exactly as G.191's ``*_expand``.

Encode tables have 65536 entries indexed by the sample's bit pattern (``int16 -> uint16`` view),
decode tables 256 entries; both are built once at import from the segment/step rules below.

Transcoding mu-law <-> A-law (bridging legs with different codecs) goes through linear PCM
(decode then encode): 256-entry byte tables applied with ``bytes.translate``. This is what
B2BUAs usually do; it is *not* the direct code conversion of G.711 Tables 3 and 4, which differs
from decode-encode for a few codes.
"""

from __future__ import annotations

import enum

import numpy as np
from numpy.typing import NDArray

SAMPLE_RATE_HZ = 8000
ULAW_SILENCE = 0xFF  # code for 0 (positive zero): what a silent mu-law line carries
ALAW_SILENCE = 0xD5  # code for the smallest positive value (A-law has no zero)

Samples = NDArray[np.int16]


def _all_int16() -> NDArray[np.int32]:
    # Indexed by the uint16 bit pattern: entry i holds the int16 whose bits are i.
    return np.arange(1 << 16, dtype=np.int32).astype(np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> NDArray[np.uint8]:
    x = _all_int16()
    # 14-bit magnitude, one's complement for negatives (G.191), then the 33 bias that turns the
    # mu-law segment boundaries (31, 95, 223, ... 8159: G.711 Table 2) into powers of two minus one.
    magnitude = np.where(x < 0, ~x, x) >> 2
    biased = np.minimum(magnitude + 33, 0x1FFF)
    segment = np.zeros_like(biased)
    for k in range(1, 8):
        segment += biased >= (32 << k)
    mantissa = (biased >> (segment + 1)) & 0x0F
    code = 0x7F - ((segment << 4) | mantissa)  # mu-law transmits the code inverted
    code = np.where(x >= 0, code | 0x80, code)
    out: NDArray[np.uint8] = code.astype(np.uint8)
    return out


def _build_ulaw_decode() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    inverted = 0xFF - code
    segment = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    step = 8 << segment  # quantization step in 16-bit units (2 << segment in 14-bit units)
    # start of the segment (biased) + mantissa steps + half a step, minus the bias: interval middle
    value = (128 << segment) + step * mantissa + step // 2 - 132
    value = np.where(code & 0x80, value, -value)
    return value.astype(np.int16)


def _build_alaw_encode() -> NDArray[np.uint8]:
    x = _all_int16()
    magnitude = np.where(x < 0, ~x, x) >> 4  # 12-bit magnitude (+ sign = 13 bits), G.191
    segment = np.zeros_like(magnitude)
    for k in range(1, 8):
        segment += magnitude >= (16 << (k - 1))
    # Segments 0 and 1 share the smallest step (G.711 Table 1: the first chord is linear).
    shift = np.maximum(segment - 1, 0)
    mantissa = (magnitude >> shift) & 0x0F
    code = (segment << 4) | mantissa
    code = np.where(x >= 0, code | 0x80, code)
    out: NDArray[np.uint8] = (code ^ 0x55).astype(np.uint8)  # even bits inverted on the line (Table 1)
    return out


def _build_alaw_decode() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32)
    plain = (code ^ 0x55) & 0x7F
    segment = plain >> 4
    mantissa = plain & 0x0F
    leading = np.where(segment > 0, mantissa + 16, mantissa)
    value = ((leading << 4) + 8) << np.maximum(segment - 1, 0)
    value = np.where(code & 0x80, value, -value)
    out: NDArray[np.int16] = value.astype(np.int16)
    return out


ULAW_ENCODE: NDArray[np.uint8] = _build_ulaw_encode()
ULAW_DECODE: NDArray[np.int16] = _build_ulaw_decode()
ALAW_ENCODE: NDArray[np.uint8] = _build_alaw_encode()
ALAW_DECODE: NDArray[np.int16] = _build_alaw_decode()
for _table in (ULAW_ENCODE, ULAW_DECODE, ALAW_ENCODE, ALAW_DECODE):
    _table.setflags(write=False)

ULAW_TO_ALAW: bytes = ALAW_ENCODE[ULAW_DECODE.view(np.uint16)].tobytes()
ALAW_TO_ULAW: bytes = ULAW_ENCODE[ALAW_DECODE.view(np.uint16)].tobytes()


def _as_index(samples: NDArray[np.int16]) -> NDArray[np.uint16]:
    return np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16)


def ulaw_encode(samples: NDArray[np.int16]) -> bytes:
    """16-bit linear PCM -> mu-law octets (G.711, G.191 ``ulaw_compress``)."""
    return ULAW_ENCODE[_as_index(samples)].tobytes()


def ulaw_decode(payload: bytes) -> Samples:
    """Mu-law octets -> 16-bit linear PCM (G.711, G.191 ``ulaw_expand``)."""
    return ULAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


def alaw_encode(samples: NDArray[np.int16]) -> bytes:
    """16-bit linear PCM -> A-law octets (G.711, G.191 ``alaw_compress``)."""
    return ALAW_ENCODE[_as_index(samples)].tobytes()


def alaw_decode(payload: bytes) -> Samples:
    """A-law octets -> 16-bit linear PCM (G.711, G.191 ``alaw_expand``)."""
    return ALAW_DECODE[np.frombuffer(payload, dtype=np.uint8)]


class Codec(enum.Enum):
    """The two G.711 payload formats with their static RTP payload types (RFC 3551 section 6)."""

    PCMU = 0
    PCMA = 8

    @property
    def payload_type(self) -> int:
        return self.value

    @property
    def encoding_name(self) -> str:
        """The SDP ``a=rtpmap`` encoding name (RFC 3551 section 4.5.14)."""
        return self.name

    @property
    def silence_byte(self) -> int:
        return ULAW_SILENCE if self is Codec.PCMU else ALAW_SILENCE

    @classmethod
    def from_payload_type(cls, payload_type: int) -> Codec | None:
        return _BY_PAYLOAD_TYPE.get(payload_type)

    @classmethod
    def from_name(cls, name: str) -> Codec | None:
        upper = name.upper()
        for codec in cls:
            if codec.name == upper:
                return codec
        return None

    def encode(self, samples: NDArray[np.int16]) -> bytes:
        return ulaw_encode(samples) if self is Codec.PCMU else alaw_encode(samples)

    def decode(self, payload: bytes) -> Samples:
        return ulaw_decode(payload) if self is Codec.PCMU else alaw_decode(payload)

    @property
    def decode_table(self) -> NDArray[np.int16]:
        """The 256-entry decode table (code -> 16-bit sample): ``decode(p) == decode_table[p]``."""
        return ULAW_DECODE if self is Codec.PCMU else ALAW_DECODE

    def silence(self, n_samples: int) -> bytes:
        if n_samples == 160:
            return _SILENCE_20MS[self.value]
        return bytes([self.silence_byte]) * n_samples


_BY_PAYLOAD_TYPE: dict[int, Codec] = {codec.value: codec for codec in Codec}
_SILENCE_20MS: dict[int, bytes] = {codec.value: bytes([codec.silence_byte]) * 160 for codec in Codec}


def transcode(payload: bytes, source: Codec, target: Codec) -> bytes:
    """Convert G.711 octets between laws via linear PCM (identity when the codecs match)."""
    if source is target:
        return payload
    return payload.translate(ULAW_TO_ALAW if source is Codec.PCMU else ALAW_TO_ULAW)
