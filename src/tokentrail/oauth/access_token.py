"""JWT access tokens — RFC 9068, with lineage claims for local revocation checks.

Claims: ``iss sub aud exp iat jti client_id`` (RFC 9068 §2.2), ``scope`` when
any was granted, ``act`` for exchanged tokens (RFC 8693 §4.1), and two
tokentrail claims:

``tt_path``
    the id of the declared issuance path the token came through;
``tt_anc``
    the ids of every lineage ancestor (credential, session, refresh token,
    subject and actor tokens...). The token's own id is its ``jti``. A verifier
    holding the set of revoked ids rejects the token when ``jti`` or any
    ``tt_anc`` entry is in it — no call home, no per-descendant revocation.

Verification (RFC 9068 §4): ``typ`` is ``at+jwt``; the key is one we publish and
its algorithm matches; ``iss`` is exactly our issuer; ``exp`` is in the future;
the required claims are present. The audience check is the resource server's
(the verifier SDK); introspection answers for any audience.
"""

from __future__ import annotations

import json
from typing import Any

from tokentrail import crypto
from tokentrail.clock import Clock
from tokentrail.errors import InvalidToken
from tokentrail.keys import KeyRing

ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
REFRESH_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:refresh_token"
#: Time allowed past ``exp`` for clock differences between us and verifiers.
EXP_LEEWAY = 0
_REQUIRED = ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "tt_anc")


class AccessTokens:
    """Mint and verify our access tokens."""

    def __init__(self, keys: KeyRing, *, issuer: str, clock: Clock) -> None:
        self._keys = keys
        self._issuer = issuer
        self._clock = clock

    @property
    def issuer(self) -> str:
        return self._issuer

    def mint(self, claims: dict[str, Any]) -> str:
        return self._keys.signer().sign(claims)

    def verify(self, token: str, *, allow_expired: bool = False) -> dict[str, Any]:
        """The claims of a token we issued whose signature and time are valid.

        Does not check revocation (see :meth:`lineage`); raises
        :class:`~tokentrail.errors.InvalidToken` for every failure.
        """
        return self._claims(token, allow_expired=allow_expired, signature=True)

    def issued_claims(self, token: str) -> dict[str, Any]:
        """The claims of a token that names one of our current signing keys and whose
        time is valid, its signature NOT checked.

        Only for a caller that then matches the whole token against its record of
        issuance (:func:`digest` against the node's ``token_sha256``), which proves
        more than the signature does: that this exact token was issued here.
        """
        return self._claims(token, allow_expired=False, signature=False)

    def _claims(self, token: str, *, allow_expired: bool, signature: bool) -> dict[str, Any]:
        if len(token) > 8192:
            raise InvalidToken("token too long")
        try:
            claims = self._read(token, signature)
        except InvalidToken:
            # Perhaps another node rotated keys since we loaded them: a kid we do not
            # know is worth one fresh read of the key table, whatever the cache age.
            kid = _header_kid(token)
            if kid is None or kid in self._keys.verifier().kids():
                raise
            self._keys.refresh(force=True)
            claims = self._read(token, signature)
        if claims.get("iss") != self._issuer:
            raise InvalidToken("wrong issuer")
        if any(name not in claims for name in _REQUIRED):
            raise InvalidToken("missing claim")
        exp = claims["exp"]
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise InvalidToken("bad exp")
        if not allow_expired and exp + EXP_LEEWAY <= self._clock.now():
            raise InvalidToken("expired")
        if not isinstance(claims["tt_anc"], list) or not isinstance(claims["jti"], str):
            raise InvalidToken("bad lineage claims")
        return claims

    def _read(self, token: str, signature: bool) -> dict[str, Any]:
        verifier = self._keys.verifier()
        return verifier.verify(token) if signature else verifier.decode(token)


def digest(token: str) -> str:
    """What a node records of the access token minted for it (``meta["token_sha256"]``)."""
    return crypto.sha256_b64url(token.encode("ascii", "replace"))


def lineage(claims: dict[str, Any]) -> list[str]:
    """The ids whose revocation kills the token: its ``jti`` and ``tt_anc``."""
    return [claims["jti"], *(a for a in claims["tt_anc"] if isinstance(a, str))]


def _header_kid(token: str) -> str | None:
    """The ``kid`` of a compact JWS header, or None when there is no readable one."""
    try:
        header = json.loads(crypto.b64url_decode(token.split(".", 1)[0]))
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2
