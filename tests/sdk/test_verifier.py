"""RFC 9068 §4 checks of the verifier, on tokens minted by the running app."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import ISSUER
from tests.dpop_proofs import thumbprint
from tests.sdk.conftest import AUDIENCE, RS_URL, Minted, resign
from tokentrail import crypto
from tokentrail.clock import FrozenClock
from tokentrail.sdk import (
    BadSignature,
    Expired,
    MalformedToken,
    NotYetValid,
    StaticJwks,
    StaticRevocations,
    UnknownKey,
    VerificationError,
    Verifier,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from tokentrail.services import Services


def _b64(obj: Any) -> str:
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _with_header(token: str, **header: Any) -> str:
    """``token`` with its JOSE header replaced (the signature no longer matters)."""
    _, payload, sig = token.split(".")
    return f"{_b64(header)}.{payload}.{sig}"


class TestAccepted:
    def test_bearer_token(self, verifier: Verifier, bearer: Minted) -> None:
        """A client-credentials token verifies and exposes subject, client, scope, path and
        lineage."""
        vt = verifier.verify(bearer.token, scheme="Bearer")
        assert vt.client_id == bearer.client.client_id
        assert vt.subject == bearer.client.client_id
        assert vt.scope == frozenset({"read"})
        assert vt.path == "workload-client-credentials"
        assert bearer.client.credential_id in vt.ancestors
        assert vt.lineage == (vt.jti, *vt.ancestors)
        assert vt.binding.kind == "none"
        assert vt.audience == (AUDIENCE,)
        assert vt.expires_at > vt.issued_at
        assert vt.has_scope("read")
        assert not vt.has_scope("write")

    def test_dpop_bound_token_with_proof(
        self, verifier: Verifier, bound: Minted, clock: FrozenClock
    ) -> None:
        """A DPoP-bound token with a valid proof verifies; its binding names the key."""
        vt = verifier.verify(
            bound.token, dpop_proof=bound.proof(clock), method="GET", url=RS_URL, scheme="DPoP"
        )
        assert vt.binding.jkt == thumbprint(bound.key)
        assert vt.path == "workload-dpop"

    def test_claims_are_read_only(self, verifier: Verifier, bearer: Minted) -> None:
        """The verified claims cannot be changed through the result."""
        vt = verifier.verify(bearer.token)
        with pytest.raises(TypeError):
            vt.claims["sub"] = "someone else"  # type: ignore[index]

    def test_application_at_jwt_type(
        self, verifier: Verifier, bearer: Minted, services: Services
    ) -> None:
        """The long media type application/at+jwt is accepted too (RFC 9068 §4)."""
        token = resign(services, bearer.token, typ="application/at+jwt")
        assert verifier.verify(token).jti

    def test_audience_list_containing_ours(
        self, verifier: Verifier, bearer: Minted, services: Services
    ) -> None:
        """An aud array is accepted when it contains this resource."""
        token = resign(services, bearer.token, aud=["https://other.example", AUDIENCE])
        assert verifier.verify(token).audience == ("https://other.example", AUDIENCE)

    def test_within_leeway_after_expiry(
        self, verifier: Verifier, bearer: Minted, clock: FrozenClock
    ) -> None:
        """A token a few seconds past exp still verifies within the leeway."""
        exp = verifier.verify(bearer.token).expires_at
        clock.set(exp + 10)
        assert verifier.verify(bearer.token)


class TestRefused:
    def test_wrong_typ(self, verifier: Verifier, bearer: Minted, services: Services) -> None:
        """An ID-token-like JWT (typ JWT) signed by the same key is refused."""
        token = resign(services, bearer.token, typ="JWT")
        with pytest.raises(WrongTokenType):
            verifier.verify(token)

    def test_wrong_issuer(
        self, bearer: Minted, jwks_doc: dict[str, Any], clock: FrozenClock
    ) -> None:
        """iss must be exactly the configured issuer."""
        other = Verifier(
            issuer=ISSUER + "/",
            audience=AUDIENCE,
            jwks=StaticJwks(jwks_doc),
            revocations=StaticRevocations(),
            clock=clock,
        )
        with pytest.raises(WrongIssuer):
            other.verify(bearer.token)

    def test_wrong_audience(
        self, bearer: Minted, jwks_doc: dict[str, Any], clock: FrozenClock
    ) -> None:
        """A token for another resource is refused."""
        other = Verifier(
            issuer=ISSUER,
            audience="https://billing.example",
            jwks=StaticJwks(jwks_doc),
            revocations=StaticRevocations(),
            clock=clock,
        )
        with pytest.raises(WrongAudience):
            other.verify(bearer.token)

    def test_wrong_audience_on_slow_path(
        self, verifier: Verifier, bearer: Minted, services: Services
    ) -> None:
        """A forged token for another audience reports the audience before the signature."""
        token = resign(services, bearer.token, aud="https://billing.example")
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(WrongAudience):
            verifier.verify(forged)

    def test_unknown_kid(self, bearer: Minted, clock: FrozenClock) -> None:
        """A token signed with a key the issuer does not publish is refused."""
        stranger = crypto.generate_signing_key("ES256")
        other = Verifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks=StaticJwks({"keys": [stranger.public_jwk()]}),
            revocations=StaticRevocations(),
            clock=clock,
        )
        with pytest.raises(UnknownKey):
            other.verify(bearer.token)

    def test_missing_kid(self, verifier: Verifier, bearer: Minted) -> None:
        """A header without kid names no published key."""
        with pytest.raises(UnknownKey):
            verifier.verify(_with_header(bearer.token, typ="at+jwt", alg="ES256"))

    def test_tampered_payload(self, verifier: Verifier, bearer: Minted) -> None:
        """Changing the payload breaks the signature."""
        header, payload, sig = bearer.token.split(".")
        claims = json.loads(crypto.b64url_decode(payload))
        claims["scope"] = "read write admin"
        with pytest.raises(BadSignature):
            verifier.verify(f"{header}.{_b64(claims)}.{sig}")

    def test_alg_none(self, verifier: Verifier, bearer: Minted) -> None:
        """alg none is never accepted."""
        header = json.loads(crypto.b64url_decode(bearer.token.split(".")[0]))
        token = _with_header(bearer.token, **{**header, "alg": "none"})
        with pytest.raises(BadSignature):
            verifier.verify(token.rsplit(".", 1)[0] + ".")

    def test_alg_not_the_keys(self, verifier: Verifier, bearer: Minted) -> None:
        """The header alg must be the published key's alg."""
        header = json.loads(crypto.b64url_decode(bearer.token.split(".")[0]))
        with pytest.raises(BadSignature):
            verifier.verify(_with_header(bearer.token, **{**header, "alg": "EdDSA"}))

    def test_crit_header(self, verifier: Verifier, bearer: Minted) -> None:
        """A crit header parameter is not understood, so the token is refused."""
        header = json.loads(crypto.b64url_decode(bearer.token.split(".")[0]))
        with pytest.raises(MalformedToken):
            verifier.verify(_with_header(bearer.token, **{**header, "crit": ["exp"]}))

    @pytest.mark.parametrize(
        "token",
        ["", "abc", "a.b", "a.b.c.d", "!!!.e30.sig", f"{_b64([1])}.e30.sig", "e30.e30.sig"],
    )
    def test_not_a_jws(self, verifier: Verifier, token: str) -> None:
        """Garbage is a MalformedToken, never a crash."""
        with pytest.raises(MalformedToken):
            verifier.verify(token)

    def test_payload_not_json(self, verifier: Verifier, bearer: Minted) -> None:
        """A payload that is not a JSON object is malformed."""
        header, _, sig = bearer.token.split(".")
        with pytest.raises(MalformedToken):
            verifier.verify(f"{header}.{_b64(b'[1, 2]')}.{sig}")

    def test_too_long(self, verifier: Verifier) -> None:
        """Tokens over 8 KiB are refused before any parsing."""
        with pytest.raises(MalformedToken):
            verifier.verify("a" * 9000)

    @pytest.mark.parametrize(
        "changes",
        [
            {"sub": None},
            {"jti": 42},
            {"exp": "tomorrow"},
            {"tt_anc": None},
            {"tt_anc": [["nested"]]},
            {"scope": ["read"]},
            {"nbf": "soon"},
            {"cnf": "jkt"},
            {"cnf": {"x5t#S256": 7}},
        ],
    )
    def test_bad_claims(
        self, verifier: Verifier, bearer: Minted, services: Services, changes: dict[str, Any]
    ) -> None:
        """A required claim missing or of the wrong type makes the token malformed."""
        with pytest.raises(MalformedToken):
            verifier.verify(resign(services, bearer.token, **changes))

    def test_expired(self, verifier: Verifier, bearer: Minted, clock: FrozenClock) -> None:
        """Past exp and the leeway, the token is refused."""
        exp = verifier.verify(bearer.token).expires_at
        clock.set(exp + 31)
        with pytest.raises(Expired) as caught:
            verifier.verify(bearer.token)
        assert caught.value.error == "invalid_token"

    def test_not_yet_valid(
        self, verifier: Verifier, bearer: Minted, services: Services, clock: FrozenClock
    ) -> None:
        """nbf beyond the leeway in the future is refused."""
        with pytest.raises(NotYetValid):
            verifier.verify(resign(services, bearer.token, nbf=int(clock.now()) + 120))

    def test_issued_in_the_future(
        self, verifier: Verifier, bearer: Minted, services: Services, clock: FrozenClock
    ) -> None:
        """iat beyond the leeway in the future is refused."""
        with pytest.raises(NotYetValid):
            verifier.verify(resign(services, bearer.token, iat=int(clock.now()) + 120))

    def test_challenge(self, verifier: Verifier, bearer: Minted, clock: FrozenClock) -> None:
        """A refused Bearer token carries the RFC 6750 §3 challenge with realm and error."""
        clock.advance(3600)
        with pytest.raises(VerificationError) as caught:
            verifier.verify(bearer.token, scheme="Bearer")
        assert caught.value.status == 401
        assert caught.value.www_authenticate == (
            'Bearer realm="api", error="invalid_token", error_description="the token has expired"'
        )


class TestSurface:
    def test_verify_request(self, verifier: Verifier, bearer: Minted) -> None:
        """verify_request takes the raw header values of a request."""
        vt = verifier.verify_request(
            authorization=[f"Bearer {bearer.token}"], method="GET", url=RS_URL
        )
        assert vt.client_id == bearer.client.client_id

    def test_configuration_is_readable(
        self, verifier: Verifier, revocations: StaticRevocations
    ) -> None:
        """The verifier exposes its issuer, audience, realm, view and replay cache."""
        assert (verifier.issuer, verifier.audience, verifier.realm) == (ISSUER, AUDIENCE, "api")
        assert verifier.revocations is revocations
        assert len(verifier.replay_cache) == 0
        assert verifier.algs.startswith("ES256")

    def test_nbf_in_the_past(
        self, verifier: Verifier, bearer: Minted, services: Services, clock: FrozenClock
    ) -> None:
        """An nbf already reached is fine."""
        assert verifier.verify(resign(services, bearer.token, nbf=int(clock.now()) - 5))

    def test_forged_wrong_issuer(
        self, verifier: Verifier, bearer: Minted, services: Services
    ) -> None:
        """A forged token from another issuer reports the issuer before the signature."""
        token = resign(services, bearer.token, iss="https://evil.example")
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(WrongIssuer):
            verifier.verify(forged)
