"""Verify a presented tokentrail access token in-process, without calling home.

A resource server builds one :class:`Verifier` at start-up and shares it across
threads and asyncio tasks: its configuration is immutable, the keys it reads
are immutable snapshots (:mod:`tokentrail.sdk.jwks`), and the only state that
changes per request, the DPoP proof replay cache, sits behind a lock.

Checks, in order, each failure its own exception (:mod:`tokentrail.sdk.errors`):

1. RFC 9068 §4: ``typ`` is ``at+jwt`` (or ``application/at+jwt``); ``iss`` is
   exactly the issuer; ``aud`` contains this resource; the signature verifies
   with a key the issuer publishes under the header's ``kid``, with that key's
   ``alg``; the required claims are there; ``exp`` (and ``nbf``/``iat``) hold
   within the leeway.
2. The sender constraint (``cnf``). ``cnf.jkt`` (RFC 9449): the request must
   carry the ``DPoP`` scheme (a bound token sent as ``Bearer`` is refused, §7.2)
   and a proof that passes §4.3: signature by the embedded public key, ``typ``,
   asymmetric ``alg``, ``htm``, ``htu`` (normalised), ``iat`` within the
   window, the server nonce when one is required, ``ath`` = hash of the token,
   the key's thumbprint = ``cnf.jkt``, and a ``jti`` not seen before for this
   URI (an in-memory cache, bounded, whose entries expire with the window).
   ``cnf.x5t#S256`` (RFC 8705 §3): the TLS client certificate has that thumbprint.
3. Revocation: the token's ``jti`` and every ``tt_anc`` ancestor against the
   :class:`~tokentrail.sdk.revocation.RevocationView`, after checking the view
   is not older than its bound (fail closed).

JWS handling is :mod:`tokentrail.crypto`'s: :class:`~tokentrail.crypto.TokenVerifier`
for the access token and :class:`~tokentrail.crypto.EmbeddedKeyVerifier` for
the proof. On the hot path a request costs the two signature checks plus two
small JSON decodes, a few dictionary look-ups and one short lock (a token's
``ath`` is computed once and remembered; bench/bench_verifier.py measures it).
"""

from __future__ import annotations

import functools
import hmac
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import anyio.to_thread

from tokentrail import crypto
from tokentrail.clock import Clock, SystemClock
from tokentrail.errors import InvalidToken
from tokentrail.oauth.binding import UNBOUND, Binding
from tokentrail.oauth.dpop import PROOF_WINDOW, normalize_htu
from tokentrail.sdk.errors import (
    BadSignature,
    BindingMismatch,
    BoundTokenAsBearer,
    Expired,
    InsufficientScope,
    InvalidProof,
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
    WrongAudience,
    WrongIssuer,
    WrongTokenType,
)
from tokentrail.sdk.jwks import FetchNeeded, JwksSource, PublishedKeys
from tokentrail.sdk.revocation import RevocationView

__all__ = [
    "DEFAULT_LEEWAY",
    "NonceSource",
    "ReplayCache",
    "VerifiedToken",
    "Verifier",
    "parse_authorization",
    "require_scope",
]

#: Seconds of clock difference tolerated on ``exp``, ``nbf`` and ``iat``.
DEFAULT_LEEWAY = 30.0
#: Longest access token or DPoP proof looked at.
MAX_TOKEN_LENGTH = 8192
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")
_NUMBER = (int, float)


class NonceSource(Protocol):
    """Server nonces for DPoP proofs (RFC 9449 §9); :class:`tokentrail.oauth.dpop.Nonces` is one."""

    def current(self) -> str: ...

    def valid(self, nonce: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """An access token that passed every check, and what a resource server needs of it."""

    #: Every claim of the token (read-only).
    claims: Mapping[str, Any] = field(repr=False)
    #: ``sub``: the resource owner, or the client itself for client credentials.
    subject: str
    client_id: str
    #: Granted scopes (``scope`` split on spaces).
    scope: frozenset[str]
    #: ``tt_path``: the declared issuance path the token came through.
    path: str | None
    #: The token's own lineage id (``jti``).
    jti: str
    #: ``tt_anc``: every lineage ancestor (credential, session, refresh token, ...).
    ancestors: tuple[str, ...]
    #: What the token is bound to (``jkt`` for DPoP, ``x5t`` for mTLS), checked.
    binding: Binding

    @property
    def lineage(self) -> tuple[str, ...]:
        """The ids whose revocation kills the token: ``jti`` then ``tt_anc``."""
        return (self.jti, *self.ancestors)

    @property
    def audience(self) -> tuple[str, ...]:
        aud = self.claims["aud"]
        return (aud,) if isinstance(aud, str) else tuple(aud)

    @property
    def expires_at(self) -> float:
        return float(self.claims["exp"])

    @property
    def issued_at(self) -> float:
        return float(self.claims["iat"])

    def has_scope(self, *scopes: str) -> bool:
        return self.scope.issuperset(scopes)


def require_scope(token: VerifiedToken, *scopes: str) -> VerifiedToken:
    """``token`` if it holds every one of ``scopes``; else :class:`InsufficientScope`."""
    if not token.scope.issuperset(scopes):
        exc = InsufficientScope(tuple(scopes))
        if token.binding.jkt is not None:
            exc.scheme = "DPoP"
        raise exc
    return token


def parse_authorization(
    authorization: Sequence[str], dpop: Sequence[str] = ()
) -> tuple[str, str, str | None]:
    """``(scheme, token, proof)`` from the request's ``Authorization`` and ``DPoP`` headers.

    ``scheme`` is ``Bearer`` or ``DPoP``. Raises :class:`MissingToken` without an
    ``Authorization`` header of either scheme, :class:`MalformedRequest` for a
    repeated header or an empty token, :class:`InvalidProof` for several proofs.
    """
    if not authorization:
        raise MissingToken("authentication required")
    if len(authorization) > 1:
        raise MalformedRequest("send one Authorization header")
    scheme, _, token = authorization[0].strip().partition(" ")
    lowered = scheme.lower()
    if lowered not in ("bearer", "dpop"):
        raise MissingToken("the Authorization scheme must be Bearer or DPoP")
    token = token.strip()
    if not token:
        raise MalformedRequest("the Authorization header carries no token")
    if len(dpop) > 1:
        raise InvalidProof("send one DPoP header")  # RFC 9449 §4.3 check 1
    return ("DPoP" if lowered == "dpop" else "Bearer"), token, (dpop[0] if dpop else None)


class ReplayCache:
    """Seen DPoP proof ids, kept while their proof could still be accepted (RFC 9449 §11.1).

    Two generations of ``span`` seconds each: an id is remembered for at least
    ``span`` and at most twice that, and forgotten a whole generation at a time
    (no per-entry bookkeeping on the hot path). ``span`` must cover the longest
    time a proof stays acceptable after it is first seen; the verifier uses
    twice its proof window (a proof's ``iat`` may lie up to one window ahead).
    Bounded: with ``max_entries`` ids remembered, new proofs are refused (fail
    closed) until a generation expires. Thread-safe.
    """

    def __init__(self, max_entries: int = 200_000, *, span: float = 2.0 * PROOF_WINDOW) -> None:
        self._max = max_entries
        self._span = span
        self._current: set[tuple[str, str]] = set()
        self._previous: set[tuple[str, str]] = set()
        self._started = -math.inf
        self._lock = threading.Lock()

    @property
    def span(self) -> float:
        return self._span

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)

    def first_use(self, key: tuple[str, str], now: float) -> bool:
        """True the first time ``key`` is seen within the span; False for a replay."""
        with self._lock:
            if now - self._started >= self._span:
                aged = now - self._started < 2 * self._span
                self._previous = self._current if aged else set()
                self._current = set()
                self._started = now
            if key in self._current or key in self._previous:
                return False
            if len(self._current) + len(self._previous) >= self._max:
                raise InvalidProof("too many recent proofs; retry shortly")
            self._current.add(key)
            return True


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(crypto.b64url_decode(segment))
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise MalformedToken(f"the {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise MalformedToken(f"the {what} is not a JSON object")
    return value


class Verifier:
    """Verifies access tokens of one issuer for one resource (audience).

    ``leeway`` is the clock difference tolerated on ``exp``/``nbf``/``iat``;
    ``proof_window`` how long after (and before, for skew) its ``iat`` a DPoP
    proof is accepted; ``dpop_nonces``, when given, makes proofs carry a server
    nonce (RFC 9449 §9); ``realm`` goes into the challenges.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks: JwksSource,
        revocations: RevocationView,
        clock: Clock | None = None,
        leeway: float = DEFAULT_LEEWAY,
        proof_window: float = PROOF_WINDOW,
        dpop_nonces: NonceSource | None = None,
        replay_cache: ReplayCache | None = None,
        realm: str | None = None,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._jwks = jwks
        self._revocations = revocations
        self._clock: Clock = SystemClock() if clock is None else clock
        self._leeway = leeway
        self._proof_window = proof_window
        self._nonces = dpop_nonces
        self._replay = (
            ReplayCache(span=2.0 * proof_window) if replay_cache is None else replay_cache
        )
        if self._replay.span < 2.0 * proof_window:
            raise ValueError("the replay cache must remember proofs for twice the proof window")
        self._realm = realm
        self._algs = " ".join(crypto.DPOP_ALGORITHMS)
        self._proofs = crypto.EmbeddedKeyVerifier(typ="dpop+jwt")
        self._htu: dict[str, str] = {}
        self._aths: dict[str, str] = {}
        self._certs: dict[str, str] = {}
        self._bindings: dict[str | None, Binding] = {}

    @property
    def issuer(self) -> str:
        return self._issuer

    @property
    def audience(self) -> str:
        return self._audience

    @property
    def realm(self) -> str | None:
        return self._realm

    @property
    def algs(self) -> str:
        """The DPoP proof algorithms accepted, as in the challenge's ``algs``."""
        return self._algs

    @property
    def revocations(self) -> RevocationView:
        return self._revocations

    @property
    def replay_cache(self) -> ReplayCache:
        return self._replay

    # --- entry points -------------------------------------------------------

    def verify(
        self,
        token: str,
        *,
        dpop_proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
        client_cert_pem: str | None = None,
        scheme: str | None = None,
    ) -> VerifiedToken:
        """Check ``token`` as presented in a request; raises a :class:`VerificationError`.

        ``scheme`` is the ``Authorization`` scheme it came with (``Bearer`` or
        ``DPoP``; None when unknown). ``method`` and ``url`` (the request's
        public URL) are needed for a DPoP-bound token. May block on a JWKS
        fetch; in async code use :meth:`averify`.
        """
        try:
            return self._verify(token, dpop_proof, method, url, client_cert_pem, scheme, True)
        except VerificationError as exc:
            self._annotate(exc, scheme, dpop_proof)
            raise

    async def averify(
        self,
        token: str,
        *,
        dpop_proof: str | None = None,
        method: str | None = None,
        url: str | None = None,
        client_cert_pem: str | None = None,
        scheme: str | None = None,
    ) -> VerifiedToken:
        """:meth:`verify` for the event loop: a JWKS fetch, if one is due, runs in a thread."""
        try:
            return self._verify(token, dpop_proof, method, url, client_cert_pem, scheme, False)
        except FetchNeeded:
            pass
        except VerificationError as exc:
            self._annotate(exc, scheme, dpop_proof)
            raise
        return await anyio.to_thread.run_sync(
            functools.partial(
                self.verify,
                token,
                dpop_proof=dpop_proof,
                method=method,
                url=url,
                client_cert_pem=client_cert_pem,
                scheme=scheme,
            )
        )

    def verify_request(
        self,
        *,
        authorization: Sequence[str],
        dpop: Sequence[str] = (),
        method: str,
        url: str,
        client_cert_pem: str | None = None,
    ) -> VerifiedToken:
        """Verify what a request presents: its ``Authorization`` and ``DPoP`` header values."""
        scheme, token, proof = self._parse(authorization, dpop)
        return self.verify(
            token,
            dpop_proof=proof,
            method=method,
            url=url,
            client_cert_pem=client_cert_pem,
            scheme=scheme,
        )

    async def averify_request(
        self,
        *,
        authorization: Sequence[str],
        dpop: Sequence[str] = (),
        method: str,
        url: str,
        client_cert_pem: str | None = None,
    ) -> VerifiedToken:
        """:meth:`verify_request` for the event loop."""
        scheme, token, proof = self._parse(authorization, dpop)
        return await self.averify(
            token,
            dpop_proof=proof,
            method=method,
            url=url,
            client_cert_pem=client_cert_pem,
            scheme=scheme,
        )

    def _parse(
        self, authorization: Sequence[str], dpop: Sequence[str]
    ) -> tuple[str, str, str | None]:
        try:
            return parse_authorization(authorization, dpop)
        except VerificationError as exc:
            self._annotate(exc, None, None)
            raise

    def _annotate(self, exc: VerificationError, scheme: str | None, proof: str | None) -> None:
        exc.realm = self._realm
        exc.algs = self._algs
        if (scheme or "").lower() == "dpop" or (scheme is None and proof is not None):
            exc.scheme = "DPoP"

    # --- the checks ---------------------------------------------------------
    # One function for the hot path: on this path every Python call counts
    # (bench/bench_verifier.py); failures branch off into helpers.

    def _verify(
        self,
        token: str,
        proof: str | None,
        method: str | None,
        url: str | None,
        cert: str | None,
        scheme: str | None,
        block: bool,
    ) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LENGTH:
            raise MalformedToken("the token is too long")
        keys = self._jwks.keys(block=block)
        try:
            claims = keys.at_jwt.verify(token)
        except InvalidToken:
            # Find out which check failed, in RFC 9068 §4 order (off the hot path).
            claims = self._diagnose(token, keys, block)
        # RFC 9068 §4 (3), (4): issuer and audience (typ and signature: above).
        if claims.get("iss") != self._issuer:
            raise WrongIssuer("the token is from another issuer")
        aud = claims.get("aud")
        if aud != self._audience and not (type(aud) is list and self._audience in aud):
            raise WrongAudience("the token is not for this resource")
        sub = claims.get("sub")
        client_id = claims.get("client_id")
        jti = claims.get("jti")
        anc = claims.get("tt_anc")
        exp: Any = claims.get("exp")
        iat: Any = claims.get("iat")
        if type(sub) is not str or type(client_id) is not str or type(jti) is not str:
            raise MalformedToken("sub, client_id or jti missing")
        if type(exp) not in _NUMBER or type(iat) not in _NUMBER:
            raise MalformedToken("exp or iat missing")
        if type(anc) is not list:
            raise MalformedToken("tt_anc (lineage) missing")
        for ancestor in anc:
            if type(ancestor) is not str:
                raise MalformedToken("tt_anc holds a non-string")
        # RFC 9068 §4 (6): time, with leeway.
        now = self._clock.now()
        leeway = self._leeway
        if now - leeway >= exp:
            raise Expired("the token has expired")
        if iat > now + leeway:
            raise NotYetValid("the token was issued in the future (iat)")
        if "nbf" in claims:
            nbf = claims["nbf"]
            if type(nbf) not in _NUMBER:
                raise MalformedToken("nbf is not a number")
            if nbf > now + leeway:
                raise NotYetValid("the token is not valid yet (nbf)")
        raw_scope = claims.get("scope", "")
        if type(raw_scope) is not str:
            raise MalformedToken("scope is not a string")

        # Sender constraint.
        cnf = claims.get("cnf")
        lowered = scheme.lower() if scheme is not None else None
        if cnf is None:
            if lowered == "dpop":
                raise BindingMismatch("the token is not DPoP-bound; present it as Bearer")
            binding = UNBOUND
        else:
            jkt = cnf.get("jkt") if type(cnf) is dict else None
            if type(jkt) is not str or len(cnf) != 1:
                binding = self._other_binding(cnf, lowered, cert)
            else:
                # RFC 9449 §7.2, §4.3.
                if lowered == "bearer":
                    raise BoundTokenAsBearer("the token is DPoP-bound; use the DPoP scheme")
                if proof is None:
                    raise MissingProof("the token is DPoP-bound: send a DPoP proof")
                if method is None or url is None:
                    raise ValueError("method and url are needed to check a DPoP proof")
                if len(proof) > MAX_TOKEN_LENGTH:
                    raise InvalidProof("the DPoP proof is too long")
                try:
                    _header, pc, proof_jkt = self._proofs.verify(proof)
                except InvalidToken as exc:
                    raise InvalidProof(f"invalid DPoP proof: {exc.detail}") from exc
                proof_jti = pc.get("jti")
                proof_iat: Any = pc.get("iat")
                if type(proof_jti) is not str or not 16 <= len(proof_jti) <= 256:
                    raise InvalidProof("DPoP proof jti missing or malformed")
                if type(proof_iat) not in _NUMBER:
                    raise InvalidProof("DPoP proof iat missing")
                if pc.get("htm") != method:
                    raise InvalidProof("DPoP proof htm does not match the request method")
                htus = self._htu
                target = htus.get(url) or self._normalized(url)
                htu = pc.get("htu")
                if type(htu) is not str or (htus.get(htu) or self._normalized(htu)) != target:
                    raise InvalidProof("DPoP proof htu does not match the request URL")
                if abs(now - proof_iat) > self._proof_window:
                    raise InvalidProof("DPoP proof iat is outside the acceptable window")
                if self._nonces is not None:
                    self._check_nonce(pc.get("nonce"))
                ath = pc.get("ath")
                if not (
                    type(ath) is str
                    and ath.isascii()
                    and hmac.compare_digest(ath, self._aths.get(token) or self._ath(token))
                ):
                    raise InvalidProof("DPoP proof ath does not match the access token")
                if not hmac.compare_digest(proof_jkt, jkt):
                    raise ProofKeyMismatch("the DPoP proof is signed by another key")
                if not self._replay.first_use((target, proof_jti), now):
                    raise ProofReplayed("the DPoP proof was already used")
                binding = self._bindings.get(jkt) or self._binding(jkt)

        # Revocation: the token and every ancestor, against a view that is current enough.
        view = self._revocations
        bound = view.bound
        if bound is not None:
            staleness = view.staleness()
            if staleness > bound:
                raise StaleRevocationView(staleness, bound)
        lineage = (jti, *anc)
        revoked = view.is_revoked(lineage)
        if revoked is not None:
            raise Revoked(revoked)

        tt_path = claims.get("tt_path")
        return VerifiedToken(
            claims=MappingProxyType(claims),
            subject=sub,
            client_id=client_id,
            scope=frozenset(raw_scope.split()),
            path=tt_path if type(tt_path) is str else None,
            jti=jti,
            ancestors=lineage[1:],
            binding=binding,
        )

    def _ath(self, token: str) -> str:
        """RFC 9449 §4.2 ``ath`` of a verified token, remembered: a client sends the
        same token with many proofs."""
        if len(self._aths) >= 1024:
            self._aths.clear()
        ath = self._aths[token] = crypto.sha256_b64url(token.encode())
        return ath

    def _binding(self, jkt: str) -> Binding:
        if len(self._bindings) >= 4096:
            self._bindings.clear()
        binding = self._bindings[jkt] = Binding(jkt=jkt)
        return binding

    def _check_nonce(self, nonce: Any) -> None:
        assert self._nonces is not None
        if not (type(nonce) is str and nonce.isascii() and self._nonces.valid(nonce)):
            raise UseDPoPNonce(self._nonces.current())

    def _other_binding(self, cnf: Any, lowered: str | None, cert: str | None) -> Binding:
        """``cnf`` other than a lone ``jkt``: certificate binding (RFC 8705 §3), or refused."""
        if type(cnf) is not dict:
            raise MalformedToken("cnf is not an object")
        if set(cnf) != {"x5t#S256"}:
            raise BindingMismatch("unsupported confirmation method in cnf")
        x5t = cnf["x5t#S256"]
        if type(x5t) is not str:
            raise MalformedToken("cnf.x5t#S256 is not a string")
        if lowered == "dpop":
            raise BindingMismatch("the token is certificate-bound; present it as Bearer")
        self._check_certificate(x5t, cert)
        return Binding(x5t=x5t)

    def _check_issuer_audience(self, claims: dict[str, Any]) -> None:
        if claims.get("iss") != self._issuer:
            raise WrongIssuer("the token is from another issuer")
        aud = claims.get("aud")
        if not (aud == self._audience or (isinstance(aud, list) and self._audience in aud)):
            raise WrongAudience("the token is not for this resource")

    def _diagnose(self, token: str, keys: PublishedKeys, block: bool) -> dict[str, Any]:
        """The claims after a failed fast path (another ``typ`` or a rotated key), or
        the exception naming the first check the token fails."""
        parts = token.split(".")
        if len(parts) != 3:
            raise MalformedToken("not a compact JWS")
        header = _json_object(parts[0], "header")
        typ = header.get("typ")
        if typ not in ACCESS_TOKEN_TYPES:
            raise WrongTokenType("typ must be at+jwt")
        if "crit" in header:
            raise MalformedToken("crit header parameters are not supported")
        self._check_issuer_audience(_json_object(parts[1], "payload"))
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in crypto.SIGNING_ALGORITHMS:
            raise BadSignature("alg is not an algorithm the issuer signs with")
        if not isinstance(kid, str):
            raise UnknownKey("the token names no key (kid)")
        if kid not in keys.algs:
            keys = self._jwks.keys_with(kid, block=block)
            if kid not in keys.algs:
                raise UnknownKey("the issuer publishes no key with this kid")
        if keys.algs[kid] != alg:
            raise BadSignature("alg does not match the published key")
        verifier = keys.at_jwt if typ == "at+jwt" else keys.application_at_jwt
        try:
            return verifier.verify(token)
        except InvalidToken as exc:
            raise BadSignature("the signature does not verify") from exc

    def _normalized(self, url: str) -> str:
        found = self._htu.get(url)
        if found is None:
            try:
                found = normalize_htu(url)
            except ValueError as exc:
                raise InvalidProof("htu is not a usable URL") from exc
            if len(self._htu) >= 4096:
                self._htu.clear()
            self._htu[url] = found
        return found

    def _check_certificate(self, x5t: str, pem: str | None) -> None:
        if pem is None:
            raise MissingCertificate(
                "the token is certificate-bound: present the client certificate"
            )
        thumbprint = self._certs.get(pem)
        if thumbprint is None:
            try:
                thumbprint = crypto.cert_thumbprint(crypto.pem_to_der(pem))
            except ValueError as exc:
                raise BindingMismatch("the client certificate is not a PEM certificate") from exc
            if len(self._certs) >= 1024:
                self._certs.clear()
            self._certs[pem] = thumbprint
        if not hmac.compare_digest(thumbprint, x5t):
            raise BindingMismatch("the token is bound to another client certificate")
