"""PIN hashing for account holders (customer-service verification) and callers (ivr.roster).

scrypt (RFC 7914) with a random 16-byte salt per PIN; the stored string names its parameters so
they can be raised later without breaking old rows. Comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import os

# RFC 7914 section 2 parameters: N=2**14, r=8, p=1 costs ~16 MiB and a few tens of ms per check,
# enough to make offline guessing of short PINs slow while an IVR answers instantly.
_N, _R, _P = 2**14, 8, 1


def hash_pin(pin: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${digest.hex()}"


def verify_pin_hash(pin: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(
        pin.encode(), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r), p=int(p), dklen=len(digest_hex) // 2
    )
    return hmac.compare_digest(digest.hex(), digest_hex)


def valid_pin(pin: str) -> bool:
    """PINs are 4 to 12 DTMF digits (what a caller can key on a facility phone)."""
    return pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12
