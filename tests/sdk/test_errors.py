"""The exception types: error codes, statuses and WWW-Authenticate challenges."""

from __future__ import annotations

import pytest

from tests.sdk.conftest import RS_URL, Minted
from tokentrail.clock import FrozenClock
from tokentrail.sdk import (
    BadSignature,
    BindingMismatch,
    BoundTokenAsBearer,
    Expired,
    InsufficientScope,
    InvalidProof,
    KeysUnavailable,
    MalformedRequest,
    MalformedToken,
    MissingCertificate,
    MissingProof,
    MissingToken,
    NotYetValid,
    ProofKeyMismatch,
    ProofReplayed,
    Revoked,
    StaleRevocationView,
    UnknownKey,
    UseDPoPNonce,
    VerificationError,
    Verifier,
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
    parse_authorization,
    require_scope,
)


@pytest.mark.parametrize(
    ("exc", "error", "status"),
    [
        (MissingToken(), None, 401),
        (MalformedRequest(), "invalid_request", 400),
        (MalformedToken(), "invalid_token", 401),
        (WrongTokenType(), "invalid_token", 401),
        (WrongIssuer(), "invalid_token", 401),
        (WrongAudience(), "invalid_token", 401),
        (BadSignature(), "invalid_token", 401),
        (UnknownKey(), "invalid_token", 401),
        (Expired(), "invalid_token", 401),
        (NotYetValid(), "invalid_token", 401),
        (BindingMismatch(), "invalid_token", 401),
        (BoundTokenAsBearer(), "invalid_token", 401),
        (MissingCertificate(), "invalid_token", 401),
        (Revoked("x"), "invalid_token", 401),
        (MissingProof(), "invalid_dpop_proof", 401),
        (InvalidProof(), "invalid_dpop_proof", 401),
        (ProofReplayed(), "invalid_dpop_proof", 401),
        (ProofKeyMismatch(), "invalid_dpop_proof", 401),
        (UseDPoPNonce("n"), "use_dpop_nonce", 401),
        (InsufficientScope(("write",)), "insufficient_scope", 403),
        (StaleRevocationView(10, 5), "invalid_token", 503),
        (KeysUnavailable(), "invalid_token", 503),
    ],
)
def test_codes(exc: VerificationError, error: str | None, status: int) -> None:
    """Every failure type is a VerificationError with its RFC error code and HTTP status."""
    assert isinstance(exc, VerificationError)
    assert exc.error == error
    assert exc.status == status


def test_missing_token_offers_both_schemes() -> None:
    """RFC 6750 §3.1: no error code when no credentials came; both schemes are offered."""
    exc = MissingToken("authentication required")
    exc.realm = "api"
    exc.algs = "ES256 EdDSA"
    assert exc.www_authenticate == 'Bearer realm="api", DPoP algs="ES256 EdDSA"'
    assert exc.body() == {"error_description": "authentication required"}


def test_missing_token_without_realm_or_algs() -> None:
    """Without realm and algs the challenge is the bare scheme."""
    assert MissingToken().www_authenticate == "Bearer"
    assert MalformedRequest().www_authenticate.startswith('Bearer error="invalid_request"')


def test_description_is_quoted_safely() -> None:
    """Quotes, backslashes and control characters never reach the header."""
    exc = WrongIssuer('bad "iss"\\\n')
    assert exc.www_authenticate == 'Bearer error="invalid_token", error_description="bad iss"'


def test_dpop_challenge_carries_algs() -> None:
    """RFC 9449 §7.1: a DPoP challenge names the accepted algorithms."""
    exc = InvalidProof("bad proof")
    exc.algs = "ES256"
    assert exc.www_authenticate == (
        'DPoP error="invalid_dpop_proof", error_description="bad proof", algs="ES256"'
    )


def test_insufficient_scope_challenge(verifier: Verifier, bearer: Minted) -> None:
    """require_scope names the scopes the resource needs (RFC 6750 §3.1)."""
    vt = verifier.verify(bearer.token)
    assert require_scope(vt, "read") is vt
    with pytest.raises(InsufficientScope) as caught:
        require_scope(vt, "read", "write")
    assert caught.value.www_authenticate == (
        'Bearer error="insufficient_scope", '
        'error_description="requires scope read write", scope="read write"'
    )


class TestParseAuthorization:
    def test_schemes(self) -> None:
        """Bearer and DPoP schemes are recognised case-insensitively."""
        assert parse_authorization(["bearer abc"]) == ("Bearer", "abc", None)
        assert parse_authorization(["DPOP  abc "], ["p"]) == ("DPoP", "abc", "p")

    @pytest.mark.parametrize("headers", [[], ["Basic dXNlcg=="]])
    def test_no_token(self, headers: list[str]) -> None:
        """No Authorization header, or another scheme, means no credentials."""
        with pytest.raises(MissingToken):
            parse_authorization(headers)

    @pytest.mark.parametrize("headers", [["Bearer a", "Bearer b"], ["Bearer "]])
    def test_malformed(self, headers: list[str]) -> None:
        """A repeated header or an empty token is a bad request."""
        with pytest.raises(MalformedRequest):
            parse_authorization(headers)

    def test_two_proofs(self) -> None:
        """RFC 9449 §4.3: one DPoP header at most."""
        with pytest.raises(InvalidProof):
            parse_authorization(["DPoP a"], ["p1", "p2"])


def test_insufficient_scope_of_bound_token(
    verifier: Verifier, bound: Minted, clock: FrozenClock
) -> None:
    """For a DPoP-bound token the insufficient_scope challenge uses the DPoP scheme."""
    vt = verifier.verify(
        bound.token, dpop_proof=bound.proof(clock), method="GET", url=RS_URL, scheme="DPoP"
    )
    with pytest.raises(InsufficientScope) as caught:
        require_scope(vt, "admin")
    assert caught.value.scheme == "DPoP"
