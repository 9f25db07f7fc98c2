"""HTTP Digest authentication for SIP (RFC 3261 section 22, RFC 2617, RFC 7616, RFC 8760).

Client side: :func:`parse_challenge` reads a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value
and :func:`authorization` computes the ``Authorization`` / ``Proxy-Authorization`` value, with
MD5 or SHA-256 (and their ``-sess`` variants), ``qop=auth`` (or ``auth-int``) and nc/cnonce.
Server side: :class:`DigestVerifier` issues stateless nonces (an HMAC of a timestamp) and checks
credentials, for gateways that authenticate with digest.

``cnonce`` values and the verifier's secret come from the caller (sans-I/O: no hidden randomness).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from ivr.sip.message import split_list

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
# RFC 8760 section 2.4: when several challenges are offered, SHA-256 is preferred over MD5.
ALGORITHM_PREFERENCE = ("SHA-256", "SHA-256-sess", "MD5", "MD5-sess")


class AuthError(ValueError):
    """An unusable challenge (unknown scheme or algorithm, missing realm or nonce)."""


def _h(algorithm: str, text: str) -> str:
    base = algorithm.upper().removesuffix("-SESS")
    fn = _HASHES.get(base)
    if fn is None:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    return fn(text.encode("utf-8")).hexdigest()


def parse_auth_params(text: str) -> dict[str, str]:
    """``a="b", c=d`` -> {'a': 'b', 'c': 'd'} (names lower-cased, quotes removed)."""
    out: dict[str, str] = {}
    for part in split_list(text):
        name, eq, value = part.partition("=")
        if not eq:
            raise AuthError(f"bad auth parameter {part!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        out[name.strip().lower()] = value
    return out


@dataclass(frozen=True, slots=True)
class Challenge:
    """A Digest challenge (RFC 3261 section 20.44 / RFC 7616 section 3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported scheme {scheme!r}")
    p = parse_auth_params(rest)
    if "realm" not in p or "nonce" not in p:
        raise AuthError("challenge without realm or nonce")
    algorithm = p.get("algorithm", "MD5")
    canon = next((a for a in ALGORITHM_PREFERENCE if a.lower() == algorithm.lower()), None)
    if canon is None:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    qop = tuple(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=p["realm"],
        nonce=p["nonce"],
        algorithm=canon,
        qop=qop,
        opaque=p.get("opaque"),
        stale=p.get("stale", "").lower() == "true",
    )


def best_challenge(values: list[str]) -> Challenge | None:
    """The strongest usable challenge among several (RFC 8760 section 2.4), None if none."""
    usable: list[Challenge] = []
    for v in values:
        try:
            usable.append(parse_challenge(v))
        except AuthError:
            continue
    if not usable:
        return None
    return min(usable, key=lambda c: ALGORITHM_PREFERENCE.index(c.algorithm))


def digest_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None,
    nc: str,
    cnonce: str,
    body: bytes = b"",
) -> str:
    """The ``response`` value: KD(H(A1), nonce:nc:cnonce:qop:H(A2)) (RFC 7616 section 3.4.1)."""
    a1 = _h(algorithm, f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        a1 = _h(algorithm, f"{a1}:{nonce}:{cnonce}")
    if qop == "auth-int":
        base = algorithm.upper().removesuffix("-SESS")
        a2 = _h(algorithm, f"{method}:{uri}:{_HASHES[base](body).hexdigest()}")
    else:
        a2 = _h(algorithm, f"{method}:{uri}")
    if qop:
        return _h(algorithm, f"{a1}:{nonce}:{nc}:{cnonce}:{qop}:{a2}")
    return _h(algorithm, f"{a1}:{nonce}:{a2}")  # RFC 2069 compatibility (no qop)


def authorization(
    challenge: Challenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The value of ``Authorization`` / ``Proxy-Authorization`` answering ``challenge``."""
    qop: str | None = None
    if "auth" in challenge.qop:
        qop = "auth"
    elif "auth-int" in challenge.qop:
        qop = "auth-int"
    nc_text = f"{nc:08x}"
    resp = digest_response(
        algorithm=challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        qop=qop,
        nc=nc_text,
        cnonce=cnonce,
        body=body,
    )
    parts = [
        f'username="{username}"',
        f'realm="{challenge.realm}"',
        f'nonce="{challenge.nonce}"',
        f'uri="{uri}"',
        f'response="{resp}"',
        f"algorithm={challenge.algorithm}",
    ]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}", f'cnonce="{cnonce}"']
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(parts)


class DigestVerifier:
    """Server-side digest (RFC 3261 section 22.4) with stateless nonces.

    A nonce is ``<issued-at>.<hmac(secret, issued-at:realm)>``; it is valid for ``nonce_ttl_s``
    seconds of the caller's clock. Replay protection by nc tracking is not kept (stateless);
    the short nonce lifetime bounds replays.
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        passwords: dict[str, str],
        *,
        algorithm: str = "SHA-256",
        nonce_ttl_s: float = 300.0,
    ) -> None:
        if algorithm.upper().removesuffix("-SESS") not in _HASHES:
            raise AuthError(f"unsupported algorithm {algorithm!r}")
        self.realm = realm
        self._secret = secret
        self._passwords = passwords
        self.algorithm = algorithm
        self.nonce_ttl_s = nonce_ttl_s

    def _sign(self, issued: str) -> str:
        return hmac.new(self._secret, f"{issued}:{self.realm}".encode(), hashlib.sha256).hexdigest()[:32]

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A ``WWW-Authenticate`` value to send with 401."""
        issued = f"{now:.3f}"
        nonce = f"{issued}.{self._sign(issued)}"
        stale_text = ", stale=true" if stale else ""
        return f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={self.algorithm}, qop="auth"{stale_text}'

    def verify(self, value: str, *, method: str, now: float, body: bytes = b"") -> tuple[bool, bool]:
        """Check an ``Authorization`` value: (ok, stale). ``stale`` means: right password, old nonce."""
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            return False, False
        try:
            p = parse_auth_params(rest)
        except AuthError:
            return False, False
        username = p.get("username", "")
        nonce = p.get("nonce", "")
        issued, dot, sig = nonce.rpartition(".")
        password = self._passwords.get(username)
        if password is None or p.get("realm") != self.realm or not dot:
            return False, False
        if not hmac.compare_digest(sig, self._sign(issued)):
            return False, False
        algorithm = p.get("algorithm", "MD5")
        if algorithm.upper() != self.algorithm.upper():
            return False, False
        try:
            expected = digest_response(
                algorithm=algorithm,
                username=username,
                realm=self.realm,
                password=password,
                method=method,
                uri=p.get("uri", ""),
                nonce=nonce,
                qop=p.get("qop"),
                nc=p.get("nc", ""),
                cnonce=p.get("cnonce", ""),
                body=body,
            )
        except (AuthError, KeyError):
            return False, False
        if not hmac.compare_digest(expected, p.get("response", "")):
            return False, False
        try:
            age = now - float(issued)
        except ValueError:
            return False, False
        if age > self.nonce_ttl_s or age < -1.0:
            return False, True
        return True, False
