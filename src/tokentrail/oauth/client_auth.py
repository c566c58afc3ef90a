"""Client authentication — RFC 6749 §2.3.1 (client secrets), RFC 7523 §2.2 (private_key_jwt).

A request authenticates with exactly one method (RFC 6749 §2.3: a client MUST
NOT use more than one), and it must be the method the client registered. A
client may hold several live credentials during a rotation; each is tried with
a constant-time comparison. Every failure is the same ``invalid_client`` to the
caller; the reason goes to the audit ledger.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote_plus

from tokentrail import crypto
from tokentrail.audit import Event
from tokentrail.clock import MAX_CLOCK_SKEW, Clock
from tokentrail.detections import (
    AUTH_FAILURE_BURST,
    AUTH_FAILURE_WINDOW,
    Detections,
    signalled,
)
from tokentrail.errors import InvalidClient, InvalidRequest, InvalidToken
from tokentrail.model import AuthMethod, Client, Credential, CredentialKind, Node
from tokentrail.oauth.request import OAuthRequest
from tokentrail.policy.paths import DetectionKind
from tokentrail.storage.prepared import Lookups
from tokentrail.storage.store import Store, Tx

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SUPPORTED_METHODS = tuple(m.value for m in AuthMethod)
#: RFC 6749 Appendix A.1: a client_id is VSCHARs; tokentrail's fit the 64-character column.
#: Anything else names no client and is refused before it reaches the database.
_CLIENT_ID = re.compile(r"^[\x20-\x7e]{1,64}$")


class CertificateMatcher(Protocol):
    """Decides whether a client certificate authenticates a client (RFC 8705 §2)."""

    def match(self, client: Client, live: list[Credential], pem: str) -> Credential | None: ...


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    client: Client
    #: The credential that authenticated the client; None for a public client.
    credential: Credential | None
    #: What the client presented, in the path map's vocabulary.
    input_kind: CredentialKind
    #: RFC 8705 §3: thumbprint of the certificate an mTLS client authenticated with.
    certificate_thumbprint: str | None = None
    #: The credential's lineage node, as read when the client authenticated.
    credential_node: Node | None = None


class ClientAuthenticator:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        audiences: tuple[str, ...],
        max_lifetime: int,
        mtls: CertificateMatcher | None = None,
        detections: Detections | None = None,
    ) -> None:
        self._detections = detections
        self._mtls = mtls
        self._store = store
        self._clock = clock
        self._audiences = frozenset(audiences)
        self._max_lifetime = max_lifetime

    def authenticate(self, req: OAuthRequest, *, allow_public: bool = True) -> AuthenticatedClient:
        now = self._clock.now()
        method: AuthMethod | None = None
        client_id: str | None = None
        assertion: str | None = None
        try:
            method, client_id, secret, assertion = _presented(req)
            # Only private_key_jwt writes (its jti, for replay protection); secrets and
            # certificates are checked with the hot-path lookups, which on SQLite neither
            # queue on the writer lock nor wait for a WAL flush. Failures are audited
            # in their own write below.
            if method is AuthMethod.PRIVATE_KEY_JWT:
                with self._store.write() as tx:
                    auth = self._check(tx.fast, req, method, client_id, secret, assertion, now, tx)
            else:
                with self._store.lookup() as db:
                    auth = self._check(db, req, method, client_id, secret, assertion, now, None)
            if auth.credential is None and not allow_public:
                raise InvalidClient(
                    "this endpoint needs an authenticated confidential client",
                    detail="public client at a confidential-only endpoint",
                )
            return auth
        except InvalidClient as exc:
            self._audit_failure(req, method, client_id, assertion, exc.detail, now)
            self._detect(exc, client_id)
            raise

    def _detect(self, exc: InvalidClient, client_id: str | None) -> None:
        """Signals in a failed authentication: a rotated-out credential, or a burst."""
        if self._detections is None or client_id is None or not _CLIENT_ID.match(client_id):
            return
        if exc.signal is not None:
            self._detections.fire(
                exc.signal.kind,
                node=exc.signal.node,
                client_id=client_id,
                evidence=exc.signal.evidence,
            )
        elif self._detections.auth_failure_burst(client_id):
            self._detections.fire(
                DetectionKind.CLIENT_AUTH_FAILURES,
                client_id=client_id,
                evidence={"window_seconds": AUTH_FAILURE_WINDOW, "failures": AUTH_FAILURE_BURST},
            )

    def _audit_failure(
        self,
        req: OAuthRequest,
        method: AuthMethod | None,
        client_id: str | None,
        assertion: str | None,
        reason: str,
        now: float,
    ) -> None:
        """Record a failed authentication under the client it claimed to be, never the secret."""
        if client_id is None and assertion is not None:
            client_id = _unverified_sub(assertion)
        named = client_id if client_id is not None and _CLIENT_ID.match(client_id) else None
        data = {"method": method.value if method else _attempted(req), "reason": reason}
        if client_id is not None and named is None:
            data["client_id"] = "malformed"
        with self._store.write() as tx:
            tx.append_audit(
                Event.CLIENT_AUTH_FAILED,
                at=now,
                actor=f"client:{named}" if named else "anonymous",
                client_id=named,
                data=data,
            )

    def _check(
        self,
        db: Lookups,
        req: OAuthRequest,
        method: AuthMethod | None,
        client_id: str | None,
        secret: str | None,
        assertion: str | None,
        now: float,
        tx: Tx | None,
    ) -> AuthenticatedClient:
        if method is AuthMethod.PRIVATE_KEY_JWT:
            assert assertion is not None
            client_id = self._assertion_client_id(assertion, client_id)
        assert client_id is not None
        if not _CLIENT_ID.match(client_id):
            raise InvalidClient("client authentication failed", detail="malformed client_id")
        client, found = db.client_with_credentials(client_id, now=now)
        if client is None or client.disabled_at is not None:
            raise InvalidClient("client authentication failed", detail="unknown or disabled client")
        registered = client.auth_method
        # A bare client_id is how public clients and mTLS clients identify themselves.
        identified_only = method is None and (registered is AuthMethod.NONE or registered.uses_tls)
        if registered is not method and not identified_only:
            raise InvalidClient(
                "client authentication failed",
                detail=f"client registered {registered.value}, "
                f"presented {method.value if method else 'client_id only'}",
            )
        if registered is AuthMethod.NONE:
            return AuthenticatedClient(client, None, CredentialKind.PUBLIC_CLIENT)
        live = [cred for cred, _ in found]
        nodes = {cred.id: node for cred, node in found}
        if registered.uses_tls:
            cred = self._verify_certificate(client, live, req.client_cert)
            x5t = crypto.cert_thumbprint(crypto.pem_to_der(req.client_cert or ""))
            return AuthenticatedClient(
                client, cred, CredentialKind(registered.value), x5t, nodes[cred.id]
            )

        if method is AuthMethod.PRIVATE_KEY_JWT:
            assert assertion is not None
            assert tx is not None
            cred = self._verify_assertion(tx, client, live, assertion, now)
            return AuthenticatedClient(
                client, cred, CredentialKind.PRIVATE_KEY_JWT, credential_node=nodes[cred.id]
            )
        assert secret is not None
        matched = None
        for cred in live:  # try every live secret so timing does not tell which matched
            if cred.secret_hash is not None and crypto.secret_matches(secret, cred.secret_hash):
                matched = matched or cred
        if matched is None:
            raise self._wrong_secret(client.id, secret, now)
        return AuthenticatedClient(
            client, matched, CredentialKind.CLIENT_SECRET, credential_node=nodes[matched.id]
        )

    def _wrong_secret(self, client_id: str, secret: str, now: float) -> Exception:
        """The failure for a secret that matches no live credential; a signal if it
        matches one rotated out (post-rotation use, a detection)."""
        error = InvalidClient("client authentication failed", detail="wrong or revoked secret")
        with self._store.read() as tx:
            for old in tx.retired_credentials(client_id, now=now):
                if old.secret_hash is not None and crypto.secret_matches(secret, old.secret_hash):
                    error.detail = "credential used after its rotation grace period"
                    return signalled(
                        error,
                        DetectionKind.POST_ROTATION_USE,
                        tx.get_node(old.id),
                        rotated_out_at=old.not_after,
                    )
        return error

    def _verify_certificate(
        self, client: Client, live: list[Credential], pem: str | None
    ) -> Credential:
        """RFC 8705 §2: the TLS client certificate matches a live credential of the client."""
        if pem is None:
            raise InvalidClient("client authentication failed", detail="no client certificate")
        cred = self._mtls.match(client, live, pem) if self._mtls is not None else None
        if cred is None:
            raise InvalidClient("client authentication failed", detail="certificate mismatch")
        return cred

    @staticmethod
    def _assertion_client_id(assertion: str, client_id: str | None) -> str:
        sub = _unverified_sub(assertion)
        if sub is None:
            raise InvalidClient(
                "client authentication failed", detail="client_assertion is not a JWT with a sub"
            )
        if client_id is not None and client_id != sub:
            raise InvalidClient(
                "client authentication failed", detail="client_id does not match assertion sub"
            )
        return sub

    def _verify_assertion(
        self, tx: Tx, client: Client, live: list[Credential], assertion: str, now: float
    ) -> Credential:
        claims = None
        used = None
        for cred in live:
            if cred.jwks is None:
                continue
            try:
                _, claims = crypto.verify_foreign_jwt(assertion, cred.jwks)
            except InvalidToken:
                continue
            used = cred
            break
        if claims is None or used is None:
            raise InvalidClient("client authentication failed", detail="assertion signature")
        # RFC 7523 §3: iss and sub are the client_id; aud names this server; exp bounds it.
        problem = _assertion_problem(claims, client.id, self._audiences, now, self._max_lifetime)
        if problem:
            raise InvalidClient("client authentication failed", detail=problem)
        key = crypto.hash_secret(f"client_assertion\x00{client.id}\x00{claims['jti']}")
        if not tx.remember_once(key, expires_at=float(claims["exp"]) + MAX_CLOCK_SKEW, now=now):
            raise InvalidClient("client authentication failed", detail="client_assertion replayed")
        return used


def _assertion_problem(
    claims: dict[str, object],
    client_id: str,
    audiences: frozenset[str],
    now: float,
    max_lifetime: int,
) -> str | None:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return "iss and sub must both be the client_id"
    aud = claims.get("aud")
    aud_list = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not audiences.intersection(a for a in aud_list if isinstance(a, str)):
        return "aud does not name this server"
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return "exp missing"
    if exp <= now - MAX_CLOCK_SKEW:
        return "assertion expired"
    if exp > now + max_lifetime:
        return "exp too far in the future"
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + MAX_CLOCK_SKEW:
        return "assertion not yet valid"
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        return "jti missing (needed for replay protection)"
    return None


def _unverified_sub(assertion: str) -> str | None:
    """The ``sub`` a client assertion claims, before its signature is checked."""
    try:
        payload = assertion.split(".")[1]
        sub = json.loads(crypto.b64url_decode(payload))["sub"]
    except (IndexError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return sub if isinstance(sub, str) else None


def _attempted(req: OAuthRequest) -> str:
    """What a request that failed before naming a method tried, for the audit record."""
    header = req.authorization
    if header:
        return "client_secret_basic" if header[:6].lower() == "basic " else "authorization_header"
    return "client_id" if req.get("client_id") is not None else "none"


def _presented(
    req: OAuthRequest,
) -> tuple[AuthMethod | None, str | None, str | None, str | None]:
    """Which single method the request uses, and what it presents.

    ``None`` as the method means the request only names its ``client_id``: a
    public client, or an mTLS client whose certificate came with the connection.
    """
    methods: list[tuple[AuthMethod, str | None, str | None, str | None]] = []
    header = req.authorization
    if header and header[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            user, sep, password = raw.partition(":")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InvalidClient("malformed Basic credentials", detail="bad base64") from exc
        if not sep or not user:
            raise InvalidClient("malformed Basic credentials", detail="no colon")
        # RFC 6749 §2.3.1: both halves are form-urlencoded before base64.
        methods.append(
            (AuthMethod.CLIENT_SECRET_BASIC, unquote_plus(user), unquote_plus(password), None)
        )
    elif header:
        raise InvalidClient(
            "unsupported Authorization scheme at this endpoint", detail="non-Basic header"
        )
    if req.get("client_secret") is not None:
        methods.append(
            (AuthMethod.CLIENT_SECRET_POST, req.get("client_id"), req.get("client_secret"), None)
        )
    if req.get("client_assertion") is not None or req.get("client_assertion_type") is not None:
        if req.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            raise InvalidRequest(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
        methods.append(
            (
                AuthMethod.PRIVATE_KEY_JWT,
                req.get("client_id"),
                None,
                req.require("client_assertion"),
            )
        )
    if not methods:
        if req.get("client_id") is not None:
            return None, req.get("client_id"), None, None
        raise InvalidClient("client authentication required", detail="no credentials presented")

    if len(methods) > 1:
        raise InvalidRequest("use exactly one client authentication method")
    method, client_id, secret, assertion = methods[0]
    if method is AuthMethod.CLIENT_SECRET_BASIC and req.get("client_id") not in (None, client_id):
        raise InvalidRequest("client_id in the body differs from the Basic credentials")
    if method is AuthMethod.CLIENT_SECRET_POST and client_id is None:
        raise InvalidRequest("client_secret_post needs client_id")
    return method, client_id, secret, assertion
