"""The JWS verification paths of tokentrail.crypto, against joserfc-made signatures."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tokentrail import crypto
from tokentrail.errors import InvalidToken

KEYS = {
    "ES256": lambda: ECKey.generate_key("P-256"),
    "ES384": lambda: ECKey.generate_key("P-384"),
    "ES512": lambda: ECKey.generate_key("P-521"),
    "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
    "RS256": lambda: RSAKey.generate_key(2048),
    "PS256": lambda: RSAKey.generate_key(2048),
}


def _b64json(obj: Any) -> str:
    return crypto.b64url(json.dumps(obj).encode())


@contextlib.contextmanager
def _refused(detail: str) -> Iterator[None]:
    """The block raises :class:`crypto.EmbeddedKeyError` whose detail contains ``detail``."""
    with pytest.raises(crypto.EmbeddedKeyError) as info:
        yield
    assert detail in info.value.detail


def _proof(key: Any, alg: str, payload: bytes = b'{"jti": "x"}') -> str:
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": key.as_dict(private=False)}
    return jws.serialize_compact(header, payload, key, algorithms=[alg])


@pytest.fixture(scope="module", params=sorted(KEYS))
def signed(request: pytest.FixtureRequest) -> tuple[str, Any, str]:
    """(alg, joserfc key, a compact JWS it signed with a jwk header)."""
    alg = request.param
    key = KEYS[alg]()
    return alg, key, _proof(key, alg)


class TestSignatureCheck:
    def test_accepts_joserfc_signatures(self, signed: tuple[str, Any, str]) -> None:
        """Every DPoP algorithm verifies what joserfc signs, and only that."""
        alg, key, token = signed
        signing_input, _, sig_b64 = token.rpartition(".")
        check = crypto.signature_check(alg, key.get_op_key("verify"))
        sig = crypto.b64url_decode(sig_b64)
        check(sig, signing_input.encode())
        with pytest.raises((InvalidSignature, ValueError)):
            check(sig, signing_input.encode() + b"x")
        with pytest.raises((InvalidSignature, ValueError)):
            check(sig[:-1] + bytes([sig[-1] ^ 1]), signing_input.encode())

    @pytest.mark.parametrize("length", [0, 63, 65, 96])
    def test_ec_signature_of_the_wrong_length(self, length: int) -> None:
        """An ES256 signature must be exactly r || s, 64 bytes."""
        key = ECKey.generate_key("P-256")
        check = crypto.signature_check("ES256", key.get_op_key("verify"))
        with pytest.raises(ValueError, match="length"):
            check(b"\x01" * length, b"data")

    def test_unknown_algorithm(self) -> None:
        """An algorithm without a check is refused when the check is built."""
        key = RSAKey.generate_key(2048)
        with pytest.raises(ValueError, match="unsupported"):
            crypto.signature_check("RS384", key.get_op_key("verify"))


class TestEmbeddedKeyVerifier:
    def test_valid(self, signed: tuple[str, Any, str]) -> None:
        """Header, claims and the key's thumbprint come back; the second call uses the cache."""
        _alg, key, token = signed
        verifier = crypto.EmbeddedKeyVerifier(typ="dpop+jwt")
        for _ in range(2):
            header, claims, jkt = verifier.verify(token)
            assert claims == {"jti": "x"}
            assert header["typ"] == "dpop+jwt"
            assert jkt == key.thumbprint()

    @pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d", "..."])
    def test_not_compact(self, token: str) -> None:
        with _refused("compact"):
            crypto.EmbeddedKeyVerifier(typ="dpop+jwt").verify(token)

    def test_signature_not_base64url(self) -> None:
        token = _proof(ECKey.generate_key("P-256"), "ES256")
        with _refused("base64url"):
            crypto.EmbeddedKeyVerifier(typ="dpop+jwt").verify(token[: token.rindex(".")] + ".é")

    @pytest.mark.parametrize(
        "payload",
        [
            '{"jti": "x"}'.encode("utf-16"),  # RFC 7519 §7.2: UTF-8 only
            b'\xef\xbb\xbf{"jti": "x"}',  # no byte-order mark
            b'{"jti": "\xff"}',  # not UTF-8
            b"{not json",
        ],
        ids=["utf-16", "bom", "not-utf-8", "not-json"],
    )
    def test_payload_not_utf8_json(self, payload: bytes) -> None:
        """A correctly signed payload that is not UTF-8 JSON is refused."""
        token = _proof(ECKey.generate_key("P-256"), "ES256", payload)
        with _refused("payload is not base64url JSON"):
            crypto.EmbeddedKeyVerifier(typ="dpop+jwt").verify(token)

    def test_payload_not_an_object(self) -> None:
        token = _proof(ECKey.generate_key("P-256"), "ES256", b'["jti"]')
        with _refused("not a JSON object"):
            crypto.EmbeddedKeyVerifier(typ="dpop+jwt").verify(token)

    def test_payload_nested_too_deep(self) -> None:
        """A signed payload nested beyond the JSON parser's limit is an error, not a crash."""
        token = _proof(ECKey.generate_key("P-256"), "ES256", b"[" * 2000 + b"]" * 2000)
        with _refused("nested"):
            crypto.EmbeddedKeyVerifier(typ="dpop+jwt").verify(token)

    def test_wrong_key(self) -> None:
        """A proof signed by another key than the one in its header fails."""
        key, other = ECKey.generate_key("P-256"), ECKey.generate_key("P-256")
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": other.as_dict(private=False)}
        token = jws.serialize_compact(header, b"{}", key, algorithms=["ES256"])
        with _refused("bad signature"):
            crypto.EmbeddedKeyVerifier(typ="dpop+jwt").verify(token)

    def test_algorithm_not_allowed_by_this_verifier(self) -> None:
        token = _proof(RSAKey.generate_key(2048), "PS256")
        verifier = crypto.EmbeddedKeyVerifier(typ="dpop+jwt", algorithms=("ES256",))
        with _refused("asymmetric"):
            verifier.verify(token)

    def test_algorithm_without_a_check(self) -> None:
        """An allowed algorithm tokentrail has no check for is refused, never guessed."""
        key = RSAKey.generate_key(2048)
        token = _proof(key, "RS384")
        verifier = crypto.EmbeddedKeyVerifier(typ="dpop+jwt", algorithms=("RS384",))
        with _refused("does not import"):
            verifier.verify(token)


class TestTokenVerifier:
    @pytest.fixture(params=crypto.SIGNING_ALGORITHMS)
    def key(self, request: pytest.FixtureRequest) -> crypto.SigningKey:
        return crypto.generate_signing_key(request.param)

    def test_round_trip(self, key: crypto.SigningKey) -> None:
        token = crypto.TokenSigner(key, typ="at+jwt").sign({"sub": "s"})
        verifier = crypto.TokenVerifier([key.public_jwk()], typ="at+jwt")
        assert verifier.verify(token) == {"sub": "s"}
        assert verifier.verify(token) == {"sub": "s"}  # header cached

    def test_tampered(self, key: crypto.SigningKey) -> None:
        token = crypto.TokenSigner(key, typ="at+jwt").sign({"sub": "s"})
        verifier = crypto.TokenVerifier([key.public_jwk()], typ="at+jwt")
        header, _payload, sig = token.split(".")
        forged = f"{header}.{_b64json({'sub': 'admin'})}.{sig}"
        with pytest.raises(InvalidToken) as info:
            verifier.verify(forged)
        assert info.value.detail == "bad signature"

    @pytest.mark.parametrize("sig", ["", "AAAA", "é"])
    def test_bad_signature_encoding_or_length(self, sig: str) -> None:
        key = crypto.generate_signing_key("ES256")
        token = crypto.TokenSigner(key, typ="at+jwt").sign({"sub": "s"})
        verifier = crypto.TokenVerifier([key.public_jwk()], typ="at+jwt")
        with pytest.raises(InvalidToken):
            verifier.verify(token[: token.rindex(".") + 1] + sig)

    @pytest.mark.parametrize(
        ("payload", "detail"),
        [
            (b"[1]", "payload is not a JSON object"),
            (b"{not json", "payload is not base64url JSON"),
            ('{"sub": "s"}'.encode("utf-16"), "payload is not base64url JSON"),
        ],
    )
    def test_signed_payload_not_a_json_object(self, payload: bytes, detail: str) -> None:
        key = crypto.generate_signing_key("EdDSA")
        header = _b64json({"alg": "EdDSA", "kid": key.kid, "typ": "at+jwt"})
        signing_input = f"{header}.{crypto.b64url(payload)}"
        token = f"{signing_input}.{crypto.sign_detached(key, signing_input.encode())}"
        verifier = crypto.TokenVerifier([key.public_jwk()], typ="at+jwt")
        with pytest.raises(InvalidToken) as info:
            verifier.verify(token)
        assert info.value.detail == detail

    def test_decode_reads_our_header_but_not_the_signature(self) -> None:
        """decode() (for callers that match the whole token against a record) checks the
        structure and that the header names one of our keys, and nothing of the signature."""
        key = crypto.generate_signing_key("ES256")
        token = crypto.TokenSigner(key, typ="at+jwt").sign({"sub": "s"})
        verifier = crypto.TokenVerifier([key.public_jwk()], typ="at+jwt")
        header, payload, _sig = token.split(".")
        assert verifier.decode(f"{header}.{payload}.AAAA") == {"sub": "s"}
        assert verifier.decode(f"{header}.{payload}.AAAA") == {"sub": "s"}  # header cached
        stranger = crypto.TokenSigner(crypto.generate_signing_key("ES256"), typ="at+jwt")
        refused = {
            "not compact": f"{header}.{payload}",
            "unknown kid": stranger.sign({"sub": "s"}),
            "array": f"{header}.{crypto.b64url(b'[1]')}.AAAA",
            "not json": f"{header}.{crypto.b64url(b'{x')}.AAAA",
            "too deep": f"{header}.{crypto.b64url(b'[' * 100_000)}.AAAA",
        }
        for token_ in refused.values():
            with pytest.raises(InvalidToken):
                verifier.decode(token_)


@pytest.mark.parametrize("alg", crypto.SIGNING_ALGORITHMS)
def test_detached_signatures(alg: str) -> None:
    key = crypto.generate_signing_key(alg)
    sig = crypto.sign_detached(key, b"data")
    assert crypto.verify_detached(key.public_jwk(), b"data", sig)
    assert not crypto.verify_detached(key.public_jwk(), b"other", sig)
    assert not crypto.verify_detached(key.public_jwk(), b"data", sig[:-4])


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '{"a":[1,2,{"b":null}]}',
        ' {"a": 1}',
        '{"a": 1}\n',
        '{"a": 1}x',
        '{"a": 1}{}',
        "[1]",
        "1",
        "",
        "   ",
        "x",
        '{"a": }',
        '{"a": 1',
        "NaN",
        '"\\ud800"',
    ],
)
def test_json_loads_is_json_loads(text: str) -> None:
    """The fast path gives json.loads's value, or its error, for every text."""
    try:
        expected: Any = json.loads(text)
    except ValueError as exc:
        with pytest.raises(type(exc)):
            crypto._json_loads(text)
    else:
        assert repr(crypto._json_loads(text)) == repr(expected)  # NaN is not NaN


def test_json_loads_nested_too_deep() -> None:
    with pytest.raises(RecursionError):
        crypto._json_loads("[" * 5000 + "]" * 5000)


@pytest.mark.parametrize("size", [32, 48, 66])
def test_ecdsa_der_is_encode_dss_signature(size: int) -> None:
    """Raw r || s to DER matches cryptography's encoder: random values, leading zeros,
    high bits, zero and all-ones integers, short- and long-form lengths."""
    rng = random.Random(size)
    edges = [bytes(size), b"\x00" * (size - 1) + b"\x01", b"\x80" + bytes(size - 1), b"\xff" * size]
    values = edges + [bytes(zeros) + rng.randbytes(size - zeros) for zeros in (0, 1, 2) * 60]
    for r in values:
        for s in [*rng.sample(values, 8), *edges]:
            expected = encode_dss_signature(int.from_bytes(r, "big"), int.from_bytes(s, "big"))
            assert crypto.ecdsa_der(r, s) == expected
