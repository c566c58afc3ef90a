"""Sender-constrained tokens at the resource: DPoP (RFC 9449 §4.3, §7) and mTLS (RFC 8705 §3)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ISSUER
from tests.dpop_proofs import hmac_proof, new_key, none_proof, proof
from tests.sdk.conftest import AUDIENCE, RS_URL, Minted, resign
from tokentrail import crypto
from tokentrail.clock import FrozenClock
from tokentrail.oauth.dpop import Nonces
from tokentrail.sdk import (
    BindingMismatch,
    BoundTokenAsBearer,
    InvalidProof,
    MalformedToken,
    MissingCertificate,
    MissingProof,
    ProofKeyMismatch,
    ProofReplayed,
    ReplayCache,
    StaticJwks,
    StaticRevocations,
    UseDPoPNonce,
    Verifier,
)
from tokentrail.services import Services


def _present(verifier: Verifier, bound: Minted, p: str | None, **kw: Any) -> Any:
    args: dict[str, Any] = {"method": "GET", "url": RS_URL, "scheme": "DPoP", **kw}
    return verifier.verify(bound.token, dpop_proof=p, **args)


class TestDPoP:
    def test_bound_token_as_bearer(
        self, verifier: Verifier, bound: Minted, clock: FrozenClock
    ) -> None:
        """RFC 9449 §7.2: a DPoP-bound token sent with the Bearer scheme is refused."""
        with pytest.raises(BoundTokenAsBearer) as caught:
            _present(verifier, bound, bound.proof(clock), scheme="Bearer")
        assert caught.value.error == "invalid_token"
        assert caught.value.www_authenticate.startswith('DPoP realm="api", error="invalid_token"')
        assert 'algs="ES256' in caught.value.www_authenticate

    def test_missing_proof(self, verifier: Verifier, bound: Minted) -> None:
        """A DPoP-bound token without a proof is refused with invalid_dpop_proof."""
        with pytest.raises(MissingProof) as caught:
            _present(verifier, bound, None)
        assert caught.value.error == "invalid_dpop_proof"

    def test_other_key(self, verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
        """A token bound to key A presented with a proof signed by key B is refused."""
        with pytest.raises(ProofKeyMismatch):
            _present(verifier, bound, bound.proof(clock, key=new_key()))

    def test_missing_ath(self, verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
        """A proof without ath is refused."""
        p = proof(bound.key, "GET", RS_URL, iat=clock.now())
        with pytest.raises(InvalidProof, match="ath"):
            _present(verifier, bound, p)

    @pytest.mark.parametrize("ath", ["wrong", "é" * 43, 17])
    def test_wrong_ath(
        self, verifier: Verifier, bound: Minted, clock: FrozenClock, ath: Any
    ) -> None:
        """A proof whose ath is not the hash of the presented token is refused."""
        p = bound.proof(clock, access_token=None, extra={"ath": ath})
        with pytest.raises(InvalidProof, match="ath"):
            _present(verifier, bound, p)

    def test_ath_of_another_token(
        self, verifier: Verifier, bound: Minted, clock: FrozenClock
    ) -> None:
        """A proof made for another token does not carry this one."""
        with pytest.raises(InvalidProof, match="ath"):
            _present(verifier, bound, bound.proof(clock, access_token="another.token.value"))

    def test_remembered_ath(self, verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
        """The token's ath is remembered (bounded: forgotten all at once when full) and
        still binds every proof to the token presented."""
        verifier._aths.update((f"token-{i}", "x") for i in range(1024))
        _present(verifier, bound, bound.proof(clock))  # full: forgotten, then remembered
        assert verifier._aths == {bound.token: crypto.sha256_b64url(bound.token.encode())}
        _present(verifier, bound, bound.proof(clock))
        with pytest.raises(InvalidProof, match="ath"):
            _present(verifier, bound, bound.proof(clock, access_token="another.token.value"))

    def test_replayed_proof(self, verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
        """The same proof twice: the second is a replay."""
        p = bound.proof(clock)
        _present(verifier, bound, p)
        with pytest.raises(ProofReplayed):
            _present(verifier, bound, p)

    def test_htm_mismatch(self, verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
        """The proof must name the request's method."""
        with pytest.raises(InvalidProof, match="htm"):
            _present(verifier, bound, bound.proof(clock, method="POST"))

    def test_htu_mismatch(self, verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
        """The proof must name the request's URL."""
        with pytest.raises(InvalidProof, match="htu"):
            _present(verifier, bound, bound.proof(clock, url="https://api.example/other"))

    @pytest.mark.parametrize("htu", [12, "https://api.example:99999/items"])
    def test_htu_unusable(
        self, verifier: Verifier, bound: Minted, clock: FrozenClock, htu: Any
    ) -> None:
        """An htu that is no URL is refused cleanly."""
        p = bound.proof(clock, url=htu)
        with pytest.raises(InvalidProof, match="htu"):
            _present(verifier, bound, p)

    def test_htu_normalised(self, verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
        """Case of scheme and host, the default port and a query do not matter."""
        p = bound.proof(clock, url="HTTPS://API.example:443/items?page=2")
        assert _present(verifier, bound, p, url=RS_URL + "?page=3")

    @pytest.mark.parametrize("offset", [-120, 120])
    def test_iat_outside_window(
        self, verifier: Verifier, bound: Minted, clock: FrozenClock, offset: int
    ) -> None:
        """A proof from too far in the past or the future is refused."""
        p = proof(bound.key, "GET", RS_URL, iat=clock.now() + offset, access_token=bound.token)
        with pytest.raises(InvalidProof, match="iat"):
            _present(verifier, bound, p)

    @pytest.mark.parametrize(
        "kind", ["none", "hmac", "private-jwk", "typ", "garbage", "jti", "iat"]
    )
    def test_bad_proofs(
        self, verifier: Verifier, bound: Minted, clock: FrozenClock, kind: str
    ) -> None:
        """Unsigned, MACed, private-key, wrongly typed or incomplete proofs are refused."""
        key = bound.key
        p = {
            "none": lambda: none_proof("GET", RS_URL, key),
            "hmac": lambda: hmac_proof("GET", RS_URL),
            "private-jwk": lambda: bound.proof(clock, jwk=key.as_dict(private=True)),
            "typ": lambda: bound.proof(clock, typ="JWT"),
            "garbage": lambda: "not-a-proof",
            "jti": lambda: bound.proof(clock, jti="short"),
            "iat": lambda: bound.proof(clock, extra={"iat": "now"}),
        }[kind]()
        with pytest.raises(InvalidProof) as caught:
            _present(verifier, bound, p)
        assert caught.value.error == "invalid_dpop_proof"
        assert caught.value.www_authenticate.startswith("DPoP ")

    def test_proof_too_long(self, verifier: Verifier, bound: Minted) -> None:
        """Proofs over 8 KiB are refused before parsing."""
        with pytest.raises(InvalidProof, match="too long"):
            _present(verifier, bound, "a" * 9000)

    def test_unbound_token_with_dpop_scheme(
        self, verifier: Verifier, bearer: Minted, clock: FrozenClock
    ) -> None:
        """A bearer token is not presented with the DPoP scheme."""
        with pytest.raises(BindingMismatch):
            verifier.verify(bearer.token, scheme="DPoP")

    def test_needs_method_and_url(
        self, verifier: Verifier, bound: Minted, clock: FrozenClock
    ) -> None:
        """Checking a proof without the request's method and URL is a programming error."""
        with pytest.raises(ValueError, match="method and url"):
            verifier.verify(bound.token, dpop_proof=bound.proof(clock))

    def test_unknown_confirmation_method(
        self, verifier: Verifier, bound: Minted, services: Services
    ) -> None:
        """A cnf the verifier does not understand fails closed."""
        token = resign(services, bound.token, cnf={"jwk": {"kty": "EC"}})
        with pytest.raises(BindingMismatch, match="unsupported"):
            verifier.verify(token)


class TestNonces:
    @pytest.fixture
    def nonces(self, clock: FrozenClock) -> Nonces:
        return Nonces(b"k" * 32, clock)

    @pytest.fixture
    def nonce_verifier(
        self, jwks_doc: dict[str, Any], clock: FrozenClock, nonces: Nonces
    ) -> Verifier:
        return Verifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks=StaticJwks(jwks_doc),
            revocations=StaticRevocations(),
            clock=clock,
            dpop_nonces=nonces,
        )

    def test_use_dpop_nonce_then_success(
        self, nonce_verifier: Verifier, bound: Minted, clock: FrozenClock
    ) -> None:
        """Without a nonce: use_dpop_nonce with DPoP-Nonce (RFC 9449 §9); with it, accepted."""
        with pytest.raises(UseDPoPNonce) as caught:
            _present(nonce_verifier, bound, bound.proof(clock))
        headers = caught.value.headers()
        assert caught.value.status == 401
        assert 'error="use_dpop_nonce"' in headers["WWW-Authenticate"]
        nonce = headers["DPoP-Nonce"]
        assert _present(nonce_verifier, bound, bound.proof(clock, nonce=nonce))

    def test_non_ascii_nonce(
        self, nonce_verifier: Verifier, bound: Minted, clock: FrozenClock
    ) -> None:
        """A non-ASCII nonce is a wrong nonce, not a crash."""
        with pytest.raises(UseDPoPNonce):
            _present(nonce_verifier, bound, bound.proof(clock, nonce="é"))

    def test_nonces_refuse_non_ascii(self, nonces: Nonces) -> None:
        """Nonces.valid answers False for non-ASCII input (compare_digest would raise)."""
        assert nonces.valid("é") is False


class TestReplayCache:
    def test_forgets_after_two_spans(self) -> None:
        """An id is remembered for at least one span and forgotten after two."""
        cache = ReplayCache(span=10)
        assert cache.first_use(("u", "a"), 0.0)
        assert not cache.first_use(("u", "a"), 9.0)
        assert not cache.first_use(("u", "a"), 15.0)  # moved to the previous generation
        assert len(cache) == 1
        assert cache.first_use(("u", "a"), 26.0)

    def test_long_idle_drops_everything(self) -> None:
        """After two idle spans both generations are dropped at once."""
        cache = ReplayCache(span=10)
        cache.first_use(("u", "a"), 0.0)
        cache.first_use(("u", "b"), 50.0)
        assert len(cache) == 1

    def test_full_cache_fails_closed(self) -> None:
        """With max_entries ids remembered, new proofs are refused."""
        cache = ReplayCache(2, span=10)
        cache.first_use(("u", "a"), 0.0)
        cache.first_use(("u", "b"), 0.0)
        with pytest.raises(InvalidProof, match="too many"):
            cache.first_use(("u", "c"), 1.0)

    def test_span_must_cover_window(self, jwks_doc: dict[str, Any]) -> None:
        """A replay cache shorter than twice the proof window is refused."""
        with pytest.raises(ValueError, match="twice"):
            Verifier(
                issuer=ISSUER,
                audience=AUDIENCE,
                jwks=StaticJwks(jwks_doc),
                revocations=StaticRevocations(),
                replay_cache=ReplayCache(span=30),
            )


def _certificate() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "workload")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class TestCertificateBinding:
    @pytest.fixture
    def pem(self) -> str:
        return _certificate()

    @pytest.fixture
    def cert_token(self, bearer: Minted, services: Services, pem: str) -> str:
        """A token of the app bound to ``pem`` (RFC 8705 §3 cnf.x5t#S256)."""
        x5t = crypto.cert_thumbprint(crypto.pem_to_der(pem))
        return resign(services, bearer.token, cnf={"x5t#S256": x5t})

    def test_matching_certificate(self, verifier: Verifier, cert_token: str, pem: str) -> None:
        """With the bound certificate the token verifies and reports the binding."""
        vt = verifier.verify(cert_token, client_cert_pem=pem, scheme="Bearer")
        assert vt.binding.kind == "mtls"
        assert verifier.verify(cert_token, client_cert_pem=pem)  # cached thumbprint

    def test_no_certificate(self, verifier: Verifier, cert_token: str) -> None:
        """Without a client certificate a certificate-bound token is refused."""
        with pytest.raises(MissingCertificate):
            verifier.verify(cert_token)

    def test_other_certificate(self, verifier: Verifier, cert_token: str) -> None:
        """Another client certificate does not match the binding."""
        with pytest.raises(BindingMismatch, match="another client certificate"):
            verifier.verify(cert_token, client_cert_pem=_certificate())

    def test_not_a_certificate(self, verifier: Verifier, cert_token: str) -> None:
        """A client certificate that is not PEM is refused cleanly."""
        with pytest.raises(BindingMismatch, match="PEM"):
            verifier.verify(cert_token, client_cert_pem="not a certificate")

    def test_dpop_scheme(self, verifier: Verifier, cert_token: str, pem: str) -> None:
        """A certificate-bound token is presented as Bearer, not DPoP."""
        with pytest.raises(BindingMismatch, match="certificate-bound"):
            verifier.verify(cert_token, client_cert_pem=pem, scheme="DPoP")

    def test_cnf_not_object(self, verifier: Verifier, bearer: Minted, services: Services) -> None:
        """A cnf that is not an object is malformed."""
        with pytest.raises(MalformedToken):
            verifier.verify(resign(services, bearer.token, cnf=["x"]))


class TestDeeplyNested:
    def test_nested_proof_payload(self, verifier: Verifier, bound: Minted) -> None:
        """A proof whose signed payload is JSON nested too deep is refused cleanly."""
        from joserfc import jws

        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": bound.key.as_dict(private=False)}
        payload = ("[" * 2000 + "]" * 2000).encode()
        p = jws.serialize_compact(header, payload, bound.key, algorithms=["ES256"])
        with pytest.raises(InvalidProof, match="nested"):
            _present(verifier, bound, p)

    def test_nested_token_header(self, verifier: Verifier) -> None:
        """A token whose header is JSON nested too deep is malformed, not a crash."""
        deep = crypto.b64url(("[" * 3000 + "]" * 3000).encode())
        with pytest.raises(MalformedToken):
            verifier.verify(f"{deep}.e30.c2ln")
