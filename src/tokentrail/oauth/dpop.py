"""Demonstrating Proof of Possession — RFC 9449.

A DPoP proof is a JWT the client signs with a private key it keeps, sent in
the ``DPoP`` header of each request. The server checks it (§4.3) and binds the
tokens it issues to the key's thumbprint (``cnf.jkt``, §6.1): a thief who copies
the token cannot use it without the key.

Checks, in §4.3 order: one well-formed JWT; ``typ`` is ``dpop+jwt``; ``alg`` is
asymmetric; the signature verifies with the header ``jwk``, which carries no
private members; ``jti``, ``htm``, ``htu`` and ``iat`` are present; ``htm`` and
``htu`` match the request (``htu`` compared after normalisation, without query
and fragment); ``iat`` is within the window; the server nonce when one is
required; ``ath`` when an access token is presented; and the ``jti`` is new.
The ``jti`` cache lives in the database, so every node on it shares it, and
entries expire with the window.

Server nonces (§8) are stateless: ``base64url(epoch || HMAC(key, epoch))`` with
the key derived from the installation's key-encryption key, so any node can
check a nonce any other node issued. A nonce is valid for its epoch and the
next.
"""

from __future__ import annotations

import hmac
import math
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tokentrail import crypto
from tokentrail.clock import Clock
from tokentrail.detections import signalled
from tokentrail.errors import InvalidToken, OAuthError
from tokentrail.policy.paths import DetectionKind
from tokentrail.storage.store import Store, Tx

#: Seconds a proof is accepted after (and, for clock skew, before) its ``iat``.
PROOF_WINDOW = 60
#: Lifetime of a server nonce epoch, in seconds.
NONCE_EPOCH = 300


class InvalidDPoPProof(OAuthError):
    """RFC 9449 §5, §7.1: the DPoP proof is missing where required, or invalid."""

    error = "invalid_dpop_proof"
    status = 400

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": f'DPoP error="{self.error}", algs="{_ALGS}"'}


class UseDPoPNonce(OAuthError):
    """RFC 9449 §8: the server requires a nonce; the response carries one in ``DPoP-Nonce``."""

    error = "use_dpop_nonce"
    status = 400

    def __init__(self, nonce: str, description: str = "") -> None:
        super().__init__(description or "resend the request with this DPoP-Nonce")
        self.nonce = nonce

    def headers(self) -> dict[str, str]:
        return {
            "DPoP-Nonce": self.nonce,
            "WWW-Authenticate": f'DPoP error="{self.error}", algs="{_ALGS}"',
        }


_ALGS = " ".join(crypto.DPOP_ALGORITHMS)


@dataclass(frozen=True, slots=True)
class Proof:
    """A validated DPoP proof."""

    jkt: str
    jti: str
    iat: int
    claims: dict[str, Any]
    #: What the replay cache records for this proof (its jti at its normalised htu).
    replay_key: str = ""
    htu: str = ""


def normalize_htu(url: str) -> str:
    """Scheme and host lowercased, default port dropped, no query or fragment (§4.3)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and not (
        (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
    ):
        host = f"{host}:{port}"
    return urlunsplit((scheme, host, parts.path or "/", "", ""))


class Nonces:
    """Stateless server nonces shared by every node holding the same key."""

    def __init__(self, key: bytes, clock: Clock) -> None:
        self._key = key
        self._clock = clock

    def current(self) -> str:
        epoch = math.floor(self._clock.now() / NONCE_EPOCH)
        return self._make(epoch)

    def _make(self, epoch: int) -> str:
        raw = struct.pack(">Q", epoch)
        return crypto.b64url(raw + crypto.hmac_sha256(self._key, raw)[:16])

    def valid(self, nonce: str) -> bool:
        if not nonce.isascii():  # compare_digest raises TypeError on non-ASCII str
            return False
        epoch = math.floor(self._clock.now() / NONCE_EPOCH)
        return any(hmac.compare_digest(nonce, self._make(e)) for e in (epoch, epoch - 1))


class DPoPValidator:
    def __init__(self, store: Store, clock: Clock, nonces: Nonces, *, require_nonce: bool) -> None:
        self._store = store
        self._clock = clock
        self._nonces = nonces
        self._require_nonce = require_nonce
        self._jws = crypto.EmbeddedKeyVerifier(typ="dpop+jwt")

    @property
    def nonces(self) -> Nonces:
        return self._nonces

    def validate(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        error: type[OAuthError] = InvalidDPoPProof,
    ) -> Proof:
        """Check ``proof`` for a request and record its jti (raises ``error`` or
        :class:`UseDPoPNonce`)."""
        checked = self.check(proof, method=method, url=url, access_token=access_token, error=error)
        self.record(checked, error=error)
        return checked

    def record(self, proof: Proof, *, error: type[OAuthError] = InvalidDPoPProof) -> None:
        """Record a checked proof's jti in a transaction of its own (refused if replayed)."""
        with self._store.write() as tx:
            self.remember(tx, proof, error=error)

    def remember(self, tx: Tx, proof: Proof, *, error: type[OAuthError] = InvalidDPoPProof) -> None:
        """Record a checked proof's jti in ``tx``; a replay (already recorded) is refused."""
        now = self._clock.now()
        if not tx.remember_once(proof.replay_key, expires_at=proof.iat + 2 * PROOF_WINDOW, now=now):
            raise signalled(
                error("DPoP proof was already used (replay)"),
                DetectionKind.PROOF_REPLAY,
                jkt=proof.jkt,
                htu=proof.htu,
            )

    def check(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        access_token: str | None = None,
        error: type[OAuthError] = InvalidDPoPProof,
    ) -> Proof:
        """Check ``proof`` for a request, all but its replay (:meth:`remember` records
        it); raises ``error`` or :class:`UseDPoPNonce`."""
        if len(proof) > 8192:
            raise error("DPoP proof too large")
        try:
            _header, claims, jkt = self._jws.verify(proof)
        except InvalidToken as exc:
            raise error(f"invalid DPoP proof: {exc.detail}") from exc
        jti = claims.get("jti")
        iat = claims.get("iat")
        if not isinstance(jti, str) or not 16 <= len(jti) <= 256:
            raise error("DPoP proof jti missing or malformed")
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise error("DPoP proof iat missing")
        if claims.get("htm") != method:
            raise error("DPoP proof htm does not match the request method")
        htu = claims.get("htu")
        try:
            htu_ok = isinstance(htu, str) and normalize_htu(htu) == normalize_htu(url)
        except ValueError:
            htu_ok = False
        if not htu_ok:
            raise error("DPoP proof htu does not match the request URL")
        now = self._clock.now()
        if abs(now - iat) > PROOF_WINDOW:
            raise error("DPoP proof iat is outside the acceptable window")
        if self._require_nonce:
            nonce = claims.get("nonce")
            if not isinstance(nonce, str) or not self._nonces.valid(nonce):
                raise UseDPoPNonce(self._nonces.current())
        if access_token is not None:
            ath = claims.get("ath")
            expected = crypto.sha256_b64url(access_token.encode("ascii", "replace"))
            if not (isinstance(ath, str) and ath.isascii() and hmac.compare_digest(ath, expected)):
                raise error("DPoP proof ath does not match the access token")
        target = normalize_htu(url)
        key = crypto.hash_secret(f"dpop\x00{target}\x00{jti}")
        return Proof(jkt=jkt, jti=jti, iat=iat, claims=claims, replay_key=key, htu=target)
