"""Digest authentication: RFC 2617 / RFC 7616 known answers, challenge choice, server verification."""

from __future__ import annotations

import pytest

from ivr.sip.auth import (
    AuthError,
    Challenge,
    DigestVerifier,
    authorization,
    best_challenge,
    digest_response,
    parse_auth_params,
    parse_challenge,
)


def test_rfc2617_md5_qop_auth_known_answer() -> None:
    """RFC 2617 section 3.5: the Mufasa example yields 6629fae49393a05397450978507c4ef1."""
    assert (
        digest_response(
            algorithm="MD5",
            username="Mufasa",
            realm="testrealm@host.com",
            password="Circle Of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop="auth",
            nc="00000001",
            cnonce="0a4f113b",
        )
        == "6629fae49393a05397450978507c4ef1"
    )


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_known_answers(algorithm: str, expected: str) -> None:
    """RFC 7616 section 3.9.1 examples for MD5 and SHA-256."""
    assert (
        digest_response(
            algorithm=algorithm,
            username="Mufasa",
            realm="http-auth@example.org",
            password="Circle of Life",
            method="GET",
            uri="/dir/index.html",
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop="auth",
            nc="00000001",
            cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        )
        == expected
    )


def test_parse_challenge_reads_qop_opaque_stale() -> None:
    """Quoted values, qop list, opaque and stale are read; algorithm defaults to MD5."""
    c = parse_challenge('Digest realm="atlanta.com", nonce="84a4cc6f", qop="auth,auth-int", opaque="5ccc", stale=TRUE')
    assert c == Challenge("atlanta.com", "84a4cc6f", "MD5", ("auth", "auth-int"), "5ccc", True)


@pytest.mark.parametrize(
    "value", ['Basic realm="x"', 'Digest nonce="1"', 'Digest realm="r", nonce="n", algorithm=SHA-1', "Digest garbage"]
)
def test_unusable_challenges_raise(value: str) -> None:
    """Other schemes, missing realm, unknown algorithms: AuthError."""
    with pytest.raises(AuthError):
        parse_challenge(value)


def test_best_challenge_prefers_sha256() -> None:
    """RFC 8760 section 2.4: with MD5 and SHA-256 offered, answer SHA-256; skip unusable ones."""
    c = best_challenge(
        [
            'Digest realm="r", nonce="a", algorithm=MD5',
            'Basic realm="r"',
            'Digest realm="r", nonce="b", algorithm=SHA-256',
        ]
    )
    assert c is not None and c.algorithm == "SHA-256" and c.nonce == "b"
    assert best_challenge(['Basic realm="r"']) is None


def test_authorization_header_carries_nc_cnonce_and_opaque() -> None:
    """The Authorization value names qop=auth, nc=00000001, the cnonce and echoes opaque."""
    value = authorization(
        Challenge("r", "n", "SHA-256", ("auth",), "op"),
        username="u",
        password="p",
        method="INVITE",
        uri="sip:x@y",
        cnonce="abc",
    )
    p = parse_auth_params(value.removeprefix("Digest "))
    assert (p["qop"], p["nc"], p["cnonce"], p["opaque"], p["algorithm"]) == ("auth", "00000001", "abc", "op", "SHA-256")


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "SHA-256-sess"])
def test_verifier_accepts_right_password_and_rejects_wrong(algorithm: str) -> None:
    """Server side: a client answer to our challenge verifies; a wrong password does not."""
    v = DigestVerifier("gw.example", b"secret", {"gw": "pw"}, algorithm=algorithm)
    challenge = parse_challenge(v.challenge(100.0))
    good = authorization(challenge, username="gw", password="pw", method="INVITE", uri="sip:a@b", cnonce="c")
    bad = authorization(challenge, username="gw", password="nope", method="INVITE", uri="sip:a@b", cnonce="c")
    assert v.verify(good, method="INVITE", now=101.0) == (True, False)
    assert v.verify(bad, method="INVITE", now=101.0) == (False, False)
    assert v.verify(good, method="BYE", now=101.0) == (False, False)


def test_verifier_flags_stale_nonce() -> None:
    """An old nonce with the right password is stale (re-challenge with stale=true)."""
    v = DigestVerifier("gw.example", b"secret", {"gw": "pw"}, nonce_ttl_s=60)
    challenge = parse_challenge(v.challenge(0.0))
    value = authorization(challenge, username="gw", password="pw", method="INVITE", uri="sip:a@b", cnonce="c")
    assert v.verify(value, method="INVITE", now=61.0) == (False, True)


def test_verifier_rejects_forged_nonce() -> None:
    """A nonce not signed with our secret is refused even with the right password."""
    v = DigestVerifier("gw.example", b"secret", {"gw": "pw"})
    forged = Challenge("gw.example", "100.000.deadbeef", "SHA-256", ("auth",))
    value = authorization(forged, username="gw", password="pw", method="INVITE", uri="sip:a@b", cnonce="c")
    assert v.verify(value, method="INVITE", now=100.0) == (False, False)
