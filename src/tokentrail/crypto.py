"""The hazmat boundary: every signature, hash and key operation lives here.

Nothing else in tokentrail imports ``cryptography`` or ``joserfc``. Callers get
narrow typed functions: sign and verify our own access tokens, verify JWTs
signed by others (client assertions, upstream identity assertions), hash
secrets, compute JWK thumbprints, and seal signing keys under a key-encryption
key that never enters the database.

Two JWS code paths, chosen by measurement (docs/benchmarks.md):

* our own RFC 9068 access tokens are signed and verified by a lean compact-JWS
  path straight on ``cryptography`` (verification is the hot path of every
  introspection and every resource-server request);
* every JWT minted by someone else goes through ``joserfc``, which handles the
  whole zoo of algorithms and key formats those parties may use.

Tests check the two agree: joserfc verifies what the lean path signs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import json.scanner
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509 import verification as x509v
from joserfc import jwt as _jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from tokentrail.errors import InvalidToken

#: Signature algorithms tokentrail signs its own tokens with.
SIGNING_ALGORITHMS = ("ES256", "EdDSA")
#: Asymmetric algorithms accepted on JWTs from clients and upstream providers.
#: ``none`` and the HMAC family are never accepted (RFC 8725 §3.1, RFC 7523 §3).
ASSERTION_ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "EdDSA",
)

_PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

#: Built once for signing (verification binds its own, see :func:`signature_check`).
_ES256 = ec.ECDSA(hashes.SHA256())
_URLSAFE_TO_STD = bytes.maketrans(b"-_", b"+/")
_json_decoder = json.JSONDecoder()
_json_scan = json.scanner.make_scanner(cast(Any, _json_decoder))  # the C scanner json uses


def _json_loads(text: str) -> Any:
    """``json.loads(text)``, minus the wrapper's cost when the text is one bare JSON value.

    The C scanner reads the value at the start of ``text``; when it ends where the
    text ends, that is what ``json.loads`` returns. Anything else (whitespace around
    the value, trailing data, no value) goes through the full decoder, so the result
    or ``ValueError`` is the same as ``json.loads``'s.
    """
    try:
        value, end = _json_scan(text, 0)
    except StopIteration:
        return _json_decoder.decode(text)
    return value if end == len(text) else _json_decoder.decode(text)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url (same leniency as ``base64.urlsafe_b64decode``, faster).

    Raises ``ValueError`` (``binascii.Error`` or ``UnicodeEncodeError``) on bad input.
    """
    return binascii.a2b_base64(
        text.encode("ascii").translate(_URLSAFE_TO_STD) + b"=" * (-len(text) % 4)
    )


# --- secrets -----------------------------------------------------------------


def hash_secret(secret: str) -> str:
    """SHA-256 of a high-entropy secret, hex encoded.

    Every secret tokentrail hashes is one it generated with 256 random bits, so
    a fast hash is enough: there is nothing to brute-force. The hash is also
    the lookup key for refresh tokens and admin keys.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a presented secret with its stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def sha256_b64url(data: bytes) -> str:
    return b64url(hashlib.sha256(data).digest())


# --- key encryption ----------------------------------------------------------


def new_kek() -> bytes:
    """A fresh 256-bit key-encryption key."""
    return AESGCM.generate_key(bit_length=256)


def seal(kek: bytes, plaintext: bytes, *, context: bytes) -> bytes:
    """Encrypt ``plaintext`` under ``kek`` (AES-256-GCM, random nonce, bound to ``context``)."""
    nonce = os.urandom(12)
    return nonce + AESGCM(kek).encrypt(nonce, plaintext, context)


def unseal(kek: bytes, sealed: bytes, *, context: bytes) -> bytes:
    """Decrypt what :func:`seal` produced; raises ``ValueError`` when it was tampered with."""
    try:
        return AESGCM(kek).decrypt(sealed[:12], sealed[12:], context)
    except Exception as exc:  # cryptography raises InvalidTag
        raise ValueError("sealed key does not open with this key-encryption key") from exc


# --- our signing keys --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One of tokentrail's own signing keys."""

    kid: str
    alg: str
    private: _PrivateKey

    def public_jwk(self) -> dict[str, Any]:
        jwk = _public_jwk(self.private.public_key())
        jwk.update({"kid": self.kid, "alg": self.alg, "use": "sig"})
        return jwk

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate_signing_key(alg: str) -> SigningKey:
    """Create a signing key for ``alg`` (ES256, or EdDSA with Ed25519)."""
    private: _PrivateKey
    if alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    kid = jwk_thumbprint(_public_jwk(private.public_key()))[:16]
    return SigningKey(kid=kid, alg=alg, private=private)


def load_signing_key(kid: str, alg: str, pem: bytes) -> SigningKey:
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("stored signing key has an unsupported type")
    return SigningKey(kid=kid, alg=alg, private=private)


def _public_jwk(public: _PublicKey) -> dict[str, Any]:
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(ECKey.import_key(public).as_dict(private=False))
    return dict(OKPKey.import_key(public).as_dict(private=False))


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK SHA-256 thumbprint, base64url (the value of ``cnf.jkt``)."""
    required = {
        "EC": ("crv", "kty", "x", "y"),
        "OKP": ("crv", "kty", "x"),
        "RSA": ("e", "kty", "n"),
    }.get(str(jwk.get("kty")))
    if required is None or any(not isinstance(jwk.get(k), str) for k in required):
        raise ValueError("JWK lacks the members its key type requires")
    canonical = json.dumps({k: jwk[k] for k in required}, separators=(",", ":"))
    return sha256_b64url(canonical.encode("utf-8"))


# --- signature checks ---------------------------------------------------------

#: ``check(signature, signing_input)`` returns when the JWS signature verifies and
#: raises ``InvalidSignature`` or ``ValueError`` when it does not.
SignatureCheck: TypeAlias = Callable[[bytes, bytes], None]

#: alg -> (curve, bytes of r and of s, hashlib constructor, prehashed ECDSA).
_EC_SIGNATURES: dict[str, tuple[str, int, Callable[[bytes], Any], ec.ECDSA]] = {
    "ES256": ("P-256", 32, hashlib.sha256, ec.ECDSA(Prehashed(hashes.SHA256()))),
    "ES384": ("P-384", 48, hashlib.sha384, ec.ECDSA(Prehashed(hashes.SHA384()))),
    "ES512": ("P-521", 66, hashlib.sha512, ec.ECDSA(Prehashed(hashes.SHA512()))),
}
_PKCS1V15 = padding.PKCS1v15()
_PSS_SHA256 = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)
_SHA256 = hashes.SHA256()


def ecdsa_der(r: bytes, s: bytes) -> bytes:
    """DER ``SEQUENCE { INTEGER r, INTEGER s }`` from the unsigned big-endian bytes of
    ``r`` and ``s``: what ``encode_dss_signature`` makes of the integers, without
    converting to and from Python integers (called twice per DPoP request)."""
    r = r.lstrip(b"\0")
    if not r or r[0] > 0x7F:  # minimal, non-negative: a single 0, or a 0 before a high bit
        r = b"\0" + r
    s = s.lstrip(b"\0")
    if not s or s[0] > 0x7F:
        s = b"\0" + s
    body = b"\x02%c%b\x02%c%b" % (len(r), r, len(s), s)
    # P-521 values make bodies of up to 138 bytes: long-form length from 128 on.
    return (b"\x30%c" % len(body) if len(body) < 0x80 else b"\x30\x81%c" % len(body)) + body


def signature_check(alg: str, public: Any) -> SignatureCheck:
    """The check of JWS signatures by ``public`` under ``alg``, built once per key.

    Everything that does not depend on the signature is bound here, not per call.
    ECDSA signatures travel as raw ``r || s`` (RFC 7518 §3.4) and are re-encoded
    to the DER ``cryptography`` expects (:func:`ecdsa_der`); the signing input is
    hashed by ``hashlib`` and handed over prehashed (the same ECDSA verification,
    without ``cryptography``'s per-call hash set-up). ``ValueError`` for an
    algorithm not listed here.
    """
    verify = public.verify
    if alg in _EC_SIGNATURES:
        _crv, size, digest, algorithm = _EC_SIGNATURES[alg]

        def check_ec(sig: bytes, data: bytes) -> None:
            if len(sig) != 2 * size:
                raise ValueError("bad EC signature length")
            verify(ecdsa_der(sig[:size], sig[size:]), digest(data).digest(), algorithm)

        return check_ec
    if alg == "EdDSA":
        return cast(SignatureCheck, verify)
    if alg == "RS256":
        return lambda sig, data: verify(sig, data, _PKCS1V15, _SHA256)
    if alg == "PS256":
        return lambda sig, data: verify(sig, data, _PSS_SHA256, _SHA256)
    raise ValueError(f"unsupported signature algorithm {alg!r}")


# --- lean compact JWS for our own access tokens -------------------------------


def _json_b64(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode("utf-8"))


class TokenSigner:
    """Signs compact JWS with one of our keys; the header is encoded once."""

    __slots__ = ("_ec", "_header", "_key")

    def __init__(self, key: SigningKey, *, typ: str) -> None:
        self._key = key
        self._ec = isinstance(key.private, ec.EllipticCurvePrivateKey)
        self._header = _json_b64({"alg": key.alg, "kid": key.kid, "typ": typ})

    @property
    def kid(self) -> str:
        return self._key.kid

    def sign(self, claims: dict[str, Any]) -> str:
        signing_input = f"{self._header}.{_json_b64(claims)}"
        data = signing_input.encode("ascii")
        private = self._key.private
        if isinstance(private, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(private.sign(data, _ES256))
            sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        else:
            sig = private.sign(data)
        return f"{signing_input}.{b64url(sig)}"


class TokenVerifier:
    """Verifies compact JWS signed by one of the keys it holds.

    It checks structure, header (``alg`` matches the key, ``typ`` is the one
    expected, ``crit`` absent) and the signature, and returns the claims. Claim
    semantics (``exp``, ``iss``, ``aud``, revocation) are the caller's; see
    :mod:`tokentrail.oauth.access_token`. Every failure is the same opaque
    :class:`~tokentrail.errors.InvalidToken`.
    """

    __slots__ = ("_headers", "_keys", "_typ")

    def __init__(self, public_jwks: list[dict[str, Any]], *, typ: str) -> None:
        self._typ = typ
        #: kid -> (alg, signature check with that key); the check is built once per key.
        self._keys: dict[str, tuple[str, SignatureCheck]] = {}
        for jwk in public_jwks:
            public = _import_public(jwk)
            kind = "ES256" if isinstance(public, ec.EllipticCurvePublicKey) else "EdDSA"
            self._keys[str(jwk["kid"])] = (str(jwk["alg"]), signature_check(kind, public))
        #: encoded header -> the check of the key it names, for headers that passed.
        self._headers: dict[str, SignatureCheck] = {}

    def kids(self) -> set[str]:
        return set(self._keys)

    def _check_for(self, header_b64: str) -> SignatureCheck:
        try:
            header = json.loads(b64url_decode(header_b64))
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            raise InvalidToken("header is not base64url JSON") from exc
        if not isinstance(header, dict) or header.get("typ") != self._typ or "crit" in header:
            raise InvalidToken("unexpected JOSE header")
        entry = self._keys.get(str(header.get("kid")))
        if entry is None or header.get("alg") != entry[0]:
            raise InvalidToken("unknown kid or algorithm mismatch")
        if len(self._headers) < 64:  # one entry per key; bounded against junk
            self._headers[header_b64] = entry[1]
        return entry[1]

    def verify(self, token: str) -> dict[str, Any]:
        signing_input, header_b64, payload_b64, sig_b64 = _compact(token)
        check = self._headers.get(header_b64) or self._check_for(header_b64)
        try:
            sig = b64url_decode(sig_b64)
        except ValueError as exc:
            raise InvalidToken("signature is not base64url") from exc
        try:
            check(sig, signing_input.encode("ascii", "replace"))
        except (InvalidSignature, ValueError) as exc:
            raise InvalidToken("bad signature") from exc
        return _payload_claims(payload_b64)

    def decode(self, token: str) -> dict[str, Any]:
        """The claims of a token whose header names one of these keys, its signature
        NOT checked: only for a caller that then matches the whole token against a
        record it trusts (introspection compares it with the digest recorded at
        issuance). Same structure and header checks as :meth:`verify`."""
        _signing_input, header_b64, payload_b64, _sig = _compact(token)
        if header_b64 not in self._headers:
            self._check_for(header_b64)
        return _payload_claims(payload_b64)


def _compact(token: str, error: type[InvalidToken] = InvalidToken) -> tuple[str, str, str, str]:
    """(signing input, header, payload, signature) of a compact JWS, still encoded."""
    # Partitioning keeps the signing input whole: no split-and-rejoin per call.
    signing_input, dot, sig_b64 = token.rpartition(".")
    header_b64, dot2, payload_b64 = signing_input.partition(".")
    if not dot or not dot2 or "." in payload_b64:
        raise error("not a compact JWS")
    return signing_input, header_b64, payload_b64, sig_b64


def _payload_claims(payload_b64: str, error: type[InvalidToken] = InvalidToken) -> dict[str, Any]:
    """A JWS payload's claims: UTF-8 JSON (RFC 7515 §5.2: no encoding sniffing, no BOM)
    holding an object (RFC 7519 §7.2)."""
    try:
        claims: dict[str, Any] = _json_loads(b64url_decode(payload_b64).decode("utf-8"))
    except ValueError as exc:
        raise error("payload is not base64url JSON") from exc
    except RecursionError as exc:  # whoever made the payload nested it too deep
        raise error("payload JSON nested too deep") from exc
    if type(claims) is not dict:
        raise error("payload is not a JSON object")
    return claims


def _import_public(jwk: dict[str, Any]) -> _PublicKey:
    kty = jwk.get("kty")
    key: Any
    if kty == "EC":
        key = ECKey.import_key(jwk).get_op_key("verify")
    elif kty == "OKP":
        key = OKPKey.import_key(jwk).get_op_key("verify")
    else:
        raise ValueError(f"unsupported key type {kty!r}")
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise ValueError("not a public key")
    return key


# --- JWTs signed by other parties --------------------------------------------


def parse_jwks(document: Any) -> dict[str, Any]:
    """Validate a JWKS document holding only public keys; return it normalised.

    Raises ``ValueError`` with a clear reason: not a ``{"keys": [...]}`` object,
    a key that does not import, or a key carrying private members.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('a JWKS must be a JSON object with a "keys" array')
    if not document["keys"]:
        raise ValueError("the JWKS holds no keys")
    private_members = {"d", "p", "q", "dp", "dq", "qi", "k"}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            raise ValueError("every JWKS entry must be a JSON object")
        if private_members & set(jwk):
            raise ValueError("the JWKS contains private key material; publish public keys only")
        if jwk.get("kty") == "oct":
            raise ValueError("symmetric keys are not accepted")
    try:
        KeySet.import_key_set(cast(Any, document))
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"the JWKS does not import: {exc}") from exc
    return {"keys": [dict(k) for k in document["keys"]]}


def verify_foreign_jwt(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a JWT signed by a client or an upstream provider with a key of ``jwks``.

    Only asymmetric algorithms are accepted; ``none`` and HMAC never are. Returns
    ``(header, claims)``; claim checks are the caller's. Failures raise
    :class:`~tokentrail.errors.InvalidToken`.
    """
    try:
        keys = KeySet.import_key_set(cast(Any, jwks))
        decoded = _jwt.decode(token, keys, algorithms=list(ASSERTION_ALGORITHMS))
    except (JoseError, ValueError, TypeError, KeyError, UnicodeError, RecursionError) as exc:
        raise InvalidToken(f"assertion signature: {type(exc).__name__}") from exc
    return dict(decoded.header), dict(decoded.claims)


# --- JWS carrying their own public key (DPoP proofs, RFC 9449 §4.2) -----------

#: Asymmetric algorithms accepted on DPoP proofs (RFC 9449 §4.2: never none or MAC).
DPOP_ALGORITHMS = ("ES256", "ES384", "ES512", "EdDSA", "RS256", "PS256")
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})


class EmbeddedKeyError(InvalidToken):
    """A JWS with an embedded key failed a check; ``detail`` says which."""


@dataclass(frozen=True, slots=True)
class _EmbeddedKey:
    check: SignatureCheck
    jkt: str
    header: dict[str, Any]


class EmbeddedKeyVerifier:
    """Verifies compact JWS whose header carries the public verification key (``jwk``).

    The decoded key and its signature check are cached by the header's encoded
    form: a client sends the same header (``typ``, ``alg``, ``jwk``) with every
    proof, so after the first request a proof costs one signature check and one
    small JSON decode.
    """

    def __init__(self, *, typ: str, algorithms: tuple[str, ...] = DPOP_ALGORITHMS) -> None:
        self._typ = typ
        self._algorithms = frozenset(algorithms)
        self._cache: dict[str, _EmbeddedKey] = {}

    def _key(self, header_b64: str) -> _EmbeddedKey:
        try:
            header = json.loads(b64url_decode(header_b64))
        except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            raise EmbeddedKeyError("header is not base64url JSON") from exc
        if not isinstance(header, dict):
            raise EmbeddedKeyError("header is not a JSON object")
        if header.get("typ") != self._typ:
            raise EmbeddedKeyError(f"typ must be {self._typ}")
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise EmbeddedKeyError("alg must be an asymmetric algorithm")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict):
            raise EmbeddedKeyError("jwk header missing")
        if _PRIVATE_MEMBERS & set(jwk):
            raise EmbeddedKeyError("jwk contains private key material")
        if "crit" in header:
            raise EmbeddedKeyError("crit headers are not supported")
        try:
            check = signature_check(alg, _public_key_for(alg, jwk))
            jkt = jwk_thumbprint(jwk)
        except (ValueError, TypeError, KeyError, JoseError) as exc:
            raise EmbeddedKeyError("jwk does not match alg or does not import") from exc
        entry = _EmbeddedKey(check, jkt, header)
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[header_b64] = entry
        return entry

    def verify(self, token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        """(header, claims, JWK thumbprint) of a valid JWS; raises :class:`EmbeddedKeyError`."""
        signing_input, header_b64, payload_b64, sig_b64 = _compact(token, EmbeddedKeyError)
        key = self._cache.get(header_b64) or self._key(header_b64)
        try:
            sig = b64url_decode(sig_b64)
        except ValueError as exc:
            raise EmbeddedKeyError("signature is not base64url") from exc
        try:
            key.check(sig, signing_input.encode("ascii", "replace"))
        except (InvalidSignature, ValueError) as exc:
            raise EmbeddedKeyError("bad signature") from exc
        return key.header, _payload_claims(payload_b64, EmbeddedKeyError), key.jkt


def _public_key_for(alg: str, jwk: dict[str, Any]) -> Any:
    kty = jwk.get("kty")
    if alg in _EC_SIGNATURES:
        if kty != "EC" or jwk.get("crv") != _EC_SIGNATURES[alg][0]:
            raise ValueError("EC key on the wrong curve")
        return ECKey.import_key(jwk).get_op_key("verify")
    if alg == "EdDSA":
        if kty != "OKP" or jwk.get("crv") != "Ed25519":
            raise ValueError("EdDSA needs an Ed25519 key")
        return OKPKey.import_key(jwk).get_op_key("verify")
    if kty != "RSA":
        raise ValueError("RSA algorithm needs an RSA key")
    key = RSAKey.import_key(jwk).get_op_key("verify")
    if key.key_size < 2048:
        raise ValueError("RSA keys must be at least 2048 bits")
    return key


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def derive_key(kek: bytes, purpose: bytes) -> bytes:
    """A 256-bit key for ``purpose`` derived from the key-encryption key (HKDF-SHA256)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(kek)


def cert_thumbprint(der: bytes) -> str:
    """RFC 8705 §3.1 ``x5t#S256``: base64url SHA-256 of the DER certificate."""
    return sha256_b64url(der)


def pem_to_der(pem: str) -> bytes:
    """DER bytes of a PEM certificate; ``ValueError`` if it is not one."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError("not a PEM certificate") from exc
    return cert.public_bytes(serialization.Encoding.DER)


# --- X.509 client certificates (RFC 8705) -------------------------------------


def der_to_pem(der: bytes) -> str:
    """PEM text of a DER certificate; ``ValueError`` if it is not one."""
    cert = _load_der(der)
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _load_der(der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ValueError("not a DER certificate") from exc


@dataclass(frozen=True, slots=True)
class CertificateFacts:
    """What tokentrail reads from a client certificate."""

    #: RFC 4514 string of the subject, as ``tls_client_auth`` compares it.
    subject_dn: str
    not_before: float
    not_after: float
    #: ``x5t#S256`` of the certificate.
    thumbprint: str


def certificate_facts(der: bytes) -> CertificateFacts:
    """Subject, validity period and thumbprint of a DER certificate (``ValueError`` if none)."""
    cert = _load_der(der)
    return CertificateFacts(
        subject_dn=cert.subject.rfc4514_string(),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        thumbprint=cert_thumbprint(der),
    )


def normalize_dn(dn: str) -> str:
    """The canonical RFC 4514 form of a distinguished name (``ValueError`` if it does not parse).

    ``cn=svc, o=Acme`` and ``CN=svc,O=Acme`` are the same name; registering the
    canonical form lets ``tls_client_auth`` compare strings exactly.
    """
    try:
        name = x509.Name.from_rfc4514_string(_tidy_dn(dn))
    except ValueError as exc:
        raise ValueError(f"not an RFC 4514 distinguished name: {dn!r}") from exc
    if not name.rdns:
        raise ValueError("the subject DN is empty")
    return name.rfc4514_string()


def _escaped(text: str, index: int) -> bool:
    """Whether ``text[index]`` is escaped by an odd run of backslashes before it."""
    run = 0
    while index - run - 1 >= 0 and text[index - run - 1] == "\\":
        run += 1
    return run % 2 == 1


def _tidy_dn(dn: str) -> str:
    """Accept what people type: ``cn = svc, o = Acme`` becomes ``CN=svc,O=Acme``.

    Attribute types are case-insensitive (RFC 4512 §1.4) and unescaped spaces
    around separators carry no meaning (RFC 4514 §3 requires them escaped in
    values), so both are normalised before the strict parser sees the string.
    """
    pieces: list[tuple[str, str]] = []
    start = 0
    for i, char in enumerate(dn):
        if char in ",+" and not _escaped(dn, i):
            pieces.append((dn[start:i], char))
            start = i + 1
    pieces.append((dn[start:], ""))
    out: list[str] = []
    for ava, sep in pieces:
        kind, eq, value = ava.partition("=")
        kind = kind.strip()
        if kind.isalpha():
            kind = kind.upper()
        value = value.lstrip(" ")
        while value.endswith(" ") and not _escaped(value, len(value) - 1):
            value = value[:-1]
        out.append(f"{kind}{eq}{value}{sep}")
    return "".join(out)


class ClientCertificateTrust:
    """Trust anchors for ``tls_client_auth`` (RFC 8705 §2.1) and path validation against them.

    Validation is RFC 5280 path building by ``cryptography.x509.verification``
    with its client profile: signatures, validity periods, CA basic constraints
    and key usage, and ``clientAuth`` when the leaf restricts its extended key
    usage. The leaf may omit subjectAltName and authorityKeyIdentifier, which the
    web-PKI defaults require but enterprise client certificates often lack:
    tokentrail matches the subject DN, not a SAN.
    """

    def __init__(self, anchors: Sequence[x509.Certificate]) -> None:
        if not anchors:
            raise ValueError("the trust-anchor bundle holds no certificate")
        self._anchors = list(anchors)
        self._store = x509v.Store(self._anchors)
        self._ee_policy = (
            x509v.ExtensionPolicy.webpki_defaults_ee()
            .may_be_present(x509.SubjectAlternativeName, x509v.Criticality.AGNOSTIC, None)
            .may_be_present(x509.AuthorityKeyIdentifier, x509v.Criticality.AGNOSTIC, None)
        )
        self._ca_policy = x509v.ExtensionPolicy.webpki_defaults_ca()

    @classmethod
    def from_pem(cls, data: bytes) -> ClientCertificateTrust:
        """Trust the certificates of a PEM bundle; ``ValueError`` if it holds none."""
        try:
            anchors = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise ValueError("the trust-anchor bundle is not PEM certificates") from exc
        return cls(anchors)

    def pem_bundle(self) -> str:
        """The anchors as PEM (what a TLS server context loads to request client certificates)."""
        return "".join(
            a.public_bytes(serialization.Encoding.PEM).decode("ascii") for a in self._anchors
        )

    def verify(self, der: bytes, *, at: float, intermediates: Sequence[bytes] = ()) -> str:
        """The subject DN of a client certificate that chains to an anchor and is valid at ``at``.

        Raises ``ValueError`` naming why the certificate is not acceptable.
        """
        leaf = _load_der(der)
        untrusted = [_load_der(c) for c in intermediates]
        verifier = (
            x509v.PolicyBuilder()
            .store(self._store)
            .time(datetime.fromtimestamp(at, tz=UTC))
            .extension_policies(ca_policy=self._ca_policy, ee_policy=self._ee_policy)
            .build_client_verifier()
        )
        try:
            verifier.verify(leaf, untrusted)
        except x509v.VerificationError as exc:
            raise ValueError(f"certificate not trusted: {exc}") from exc
        return leaf.subject.rfc4514_string()


def _cert_public_jwk(cert: x509.Certificate) -> dict[str, Any]:
    public = cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return dict(ECKey.import_key(public).as_dict(private=False))
    if isinstance(public, rsa.RSAPublicKey):
        return dict(RSAKey.import_key(public).as_dict(private=False))
    if isinstance(public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return dict(OKPKey.import_key(public).as_dict(private=False))
    raise ValueError("the certificate's key type is not supported")


def _x5c_der(entry: Any) -> bytes:
    # RFC 7517 §4.7: x5c entries are standard base64 (not base64url) DER.
    if not isinstance(entry, str):
        raise ValueError("x5c entries must be base64 strings")
    try:
        return base64.b64decode(entry, validate=True)
    except binascii.Error as exc:
        raise ValueError("an x5c entry is not base64") from exc


def parse_certificate_jwks(document: Any) -> dict[str, Any]:
    """A JWKS for ``self_signed_tls_client_auth`` (RFC 8705 §2.2): every key carries ``x5c``.

    The first certificate of each key's ``x5c`` must hold that very key
    (RFC 7517 §4.7); it is the certificate the client presents in TLS.
    Raises ``ValueError`` with the reason.
    """
    jwks = parse_jwks(document)
    for jwk in jwks["keys"]:
        x5c = jwk.get("x5c")
        if not isinstance(x5c, list) or not x5c:
            raise ValueError("every key of a self-signed client's JWKS needs an x5c certificate")
        cert = _load_der(_x5c_der(x5c[0]))
        if jwk_thumbprint(_cert_public_jwk(cert)) != jwk_thumbprint(jwk):
            raise ValueError("the first x5c certificate does not hold the key it is listed with")
    return jwks


def registered_certificates(jwks: dict[str, Any]) -> list[bytes]:
    """DER of the first ``x5c`` certificate of every key of a JWKS checked by
    :func:`parse_certificate_jwks` (entries that do not decode are skipped)."""
    found: list[bytes] = []
    for jwk in jwks.get("keys", []):
        x5c = jwk.get("x5c") if isinstance(jwk, dict) else None
        if isinstance(x5c, list) and x5c:
            try:
                found.append(_x5c_der(x5c[0]))
            except ValueError:
                continue
    return found


# --- detached signatures (audit checkpoints) ----------------------------------


def sign_detached(key: SigningKey, data: bytes) -> str:
    """A base64url signature of ``data`` with one of our keys (raw r||s for ES256)."""
    private = key.private
    if isinstance(private, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hashes.SHA256())))
        return b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
    return b64url(private.sign(data))


def verify_detached(public_jwk: dict[str, Any], data: bytes, signature: str) -> bool:
    """Whether ``signature`` over ``data`` verifies with ``public_jwk`` (ES256 or EdDSA)."""
    try:
        public = _import_public(public_jwk)
        kind = "ES256" if isinstance(public, ec.EllipticCurvePublicKey) else "EdDSA"
        signature_check(kind, public)(b64url_decode(signature), data)
    except (InvalidSignature, ValueError, TypeError, KeyError, JoseError):
        return False
    return True


def sign_jwt(key: SigningKey, claims: dict[str, Any]) -> str:
    """A compact JWT (``typ: JWT``) signed with ``key``, for tools playing an identity provider."""
    return TokenSigner(key, typ="JWT").sign(claims)
