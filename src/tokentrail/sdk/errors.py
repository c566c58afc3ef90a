"""Why a presented access token was refused: one exception type per failure.

Every type derives from :class:`VerificationError` and carries what a resource
server sends back: the HTTP ``status``, the RFC 6750 §3.1 / RFC 9449 §7.1 error
code (``error``), and the ``WWW-Authenticate`` value (:attr:`~VerificationError.www_authenticate`;
:meth:`~VerificationError.headers` adds ``DPoP-Nonce`` and ``Retry-After`` where they apply).

Codes and statuses::

    MissingToken                 (no code)            401   RFC 6750 §3.1: no error info
    MalformedRequest             invalid_request      400
    MalformedToken, WrongTokenType, WrongIssuer, WrongAudience,
    UnknownKey, BadSignature, Expired, NotYetValid,
    BindingMismatch, BoundTokenAsBearer, MissingCertificate, Revoked
                                 invalid_token        401
    MissingProof, InvalidProof, ProofReplayed, ProofKeyMismatch
                                 invalid_dpop_proof   401   RFC 9449 §7.1
    UseDPoPNonce                 use_dpop_nonce       401   RFC 9449 §9 (+ DPoP-Nonce)
    InsufficientScope            insufficient_scope   403   RFC 6750 §3.1
    StaleRevocationView, KeysUnavailable
                                 invalid_token        503   fail closed (+ Retry-After)

The last two are the verifier's own trouble, not the client's: the revocation
view is older than its bound, or no signing keys could be fetched. They answer
503 so that clients retry instead of asking the authority for new tokens.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "BadSignature",
    "BindingMismatch",
    "BoundTokenAsBearer",
    "Expired",
    "InsufficientScope",
    "InvalidProof",
    "KeysUnavailable",
    "MalformedRequest",
    "MalformedToken",
    "MissingCertificate",
    "MissingProof",
    "MissingToken",
    "NotYetValid",
    "ProofKeyMismatch",
    "ProofReplayed",
    "Revoked",
    "StaleRevocationView",
    "UnknownKey",
    "UseDPoPNonce",
    "VerificationError",
    "WrongAudience",
    "WrongIssuer",
    "WrongTokenType",
]


def _quoted(value: str) -> str:
    """An RFC 9110 quoted-string; RFC 6750 §3 allows no quote or backslash inside."""
    clean = "".join(c for c in value if c not in '"\\' and 0x20 <= ord(c) < 0x7F)
    return f'"{clean}"'


class VerificationError(Exception):
    """A presented access token (or its proof of possession) was refused."""

    #: RFC 6750 §3.1 / RFC 9449 §7.1 error code; None when the RFC asks for none.
    error: ClassVar[str | None] = "invalid_token"
    #: HTTP status a resource server answers with.
    status: ClassVar[int] = 401
    #: Authentication scheme of the challenge unless the verifier says otherwise.
    default_scheme: ClassVar[str] = "Bearer"

    def __init__(self, description: str = "") -> None:
        super().__init__(description or type(self).__name__)
        self.description = description
        #: ``Bearer`` or ``DPoP``: the scheme the challenge is issued for.
        self.scheme = self.default_scheme
        #: RFC 6750 §3 ``realm``, set by the verifier.
        self.realm: str | None = None
        #: RFC 9449 §7.1 ``algs``: the proof algorithms the resource accepts.
        self.algs: str = ""

    def challenge_params(self) -> list[str]:
        params = []
        if self.realm:
            params.append(f"realm={_quoted(self.realm)}")
        if self.error:
            params.append(f"error={_quoted(self.error)}")
            if self.description:
                params.append(f"error_description={_quoted(self.description)}")
        return params

    @property
    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` header value to send with the error response."""
        params = self.challenge_params()
        if self.scheme == "DPoP" and self.algs:
            params.append(f"algs={_quoted(self.algs)}")
        return f"{self.scheme} {', '.join(params)}" if params else self.scheme

    def headers(self) -> dict[str, str]:
        """Every header the error response carries."""
        return {"WWW-Authenticate": self.www_authenticate}

    def body(self) -> dict[str, str]:
        """A small JSON body for the error response (the headers are what the RFCs define)."""
        out = {"error": self.error} if self.error else {}
        out["error_description"] = self.description or "authentication required"
        return out


class MissingToken(VerificationError):
    """No access token: no ``Authorization`` header, or one with another scheme.

    RFC 6750 §3.1: the challenge carries no error code. It offers both schemes
    (RFC 9449 §7.1).
    """

    error = None

    @property
    def www_authenticate(self) -> str:
        bearer = "Bearer"
        if self.realm:
            bearer += f" realm={_quoted(self.realm)}"
        return f"{bearer}, DPoP algs={_quoted(self.algs)}" if self.algs else bearer


class MalformedRequest(VerificationError):
    """The request's authentication headers are unusable (repeated, empty token)."""

    error = "invalid_request"
    status = 400


class MalformedToken(VerificationError):
    """Not a compact JWS with a JSON header and payload, or a required claim is missing or
    of the wrong type."""


class WrongTokenType(MalformedToken):
    """RFC 9068 §4 step 1: the JOSE ``typ`` is not ``at+jwt`` (keeps ID tokens out)."""


class WrongIssuer(VerificationError):
    """RFC 9068 §4 step 3: ``iss`` is not exactly the configured issuer."""


class WrongAudience(VerificationError):
    """RFC 9068 §4 step 4: ``aud`` does not contain this resource server."""


class BadSignature(VerificationError):
    """RFC 9068 §4 step 5: the signature does not verify, or ``alg`` is not the key's."""


class UnknownKey(BadSignature):
    """The ``kid`` names no key the issuer publishes (even after a JWKS refetch)."""


class Expired(VerificationError):
    """RFC 9068 §4 step 6: ``exp`` is past, beyond the leeway."""


class NotYetValid(VerificationError):
    """``nbf`` or ``iat`` lies in the future, beyond the leeway."""


class BindingMismatch(VerificationError):
    """The token's sender constraint (``cnf``) does not match the request.

    A certificate-bound token with another client certificate, a token presented
    with the ``DPoP`` scheme that is not DPoP-bound, or an unknown ``cnf`` method.
    """


class BoundTokenAsBearer(BindingMismatch):
    """RFC 9449 §7.2: a DPoP-bound token presented with the ``Bearer`` scheme."""

    default_scheme = "DPoP"


class MissingCertificate(BindingMismatch):
    """RFC 8705 §3: a certificate-bound token without a TLS client certificate."""


class MissingProof(VerificationError):
    """A DPoP-bound token came without a ``DPoP`` proof header."""

    error = "invalid_dpop_proof"
    default_scheme = "DPoP"


class InvalidProof(VerificationError):
    """RFC 9449 §4.3: the DPoP proof fails a check (signature, typ, alg, htm, htu, iat, ath)."""

    error = "invalid_dpop_proof"
    default_scheme = "DPoP"


class ProofReplayed(InvalidProof):
    """RFC 9449 §11.1: the proof's ``jti`` was already used for this URI within the window."""


class ProofKeyMismatch(InvalidProof):
    """RFC 9449 §4.3: the proof is signed by a key other than the one the token is bound to."""


class UseDPoPNonce(VerificationError):
    """RFC 9449 §9: the resource requires a server nonce; resend with ``DPoP-Nonce``."""

    error = "use_dpop_nonce"
    default_scheme = "DPoP"

    def __init__(self, nonce: str, description: str = "") -> None:
        super().__init__(description or "resend the request with the DPoP-Nonce value")
        self.nonce = nonce

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "DPoP-Nonce": self.nonce}


class Revoked(VerificationError):
    """The token or one of its lineage ancestors (``tt_anc``) is revoked."""

    def __init__(self, revoked_id: str) -> None:
        super().__init__("the token or one of its ancestors is revoked")
        #: The first id of the token's lineage found revoked.
        self.revoked_id = revoked_id


class _Unavailable(VerificationError):
    status = 503
    retry_after = 1

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Retry-After": str(self.retry_after)}


class StaleRevocationView(_Unavailable):
    """Fail closed: the revocation view is older than its bound (DESIGN.md, "Fail closed")."""

    def __init__(self, staleness: float, bound: float) -> None:
        super().__init__("revocation status is not current; retry shortly")
        self.staleness = staleness
        self.bound = bound


class KeysUnavailable(_Unavailable):
    """The issuer's signing keys could not be fetched and none are cached."""


class InsufficientScope(VerificationError):
    """RFC 6750 §3.1: the token lacks a scope the resource requires."""

    error = "insufficient_scope"
    status = 403

    def __init__(self, required: tuple[str, ...]) -> None:
        super().__init__(f"requires scope {' '.join(required)}")
        self.required = required

    def challenge_params(self) -> list[str]:
        return [*super().challenge_params(), f"scope={_quoted(' '.join(self.required))}"]
