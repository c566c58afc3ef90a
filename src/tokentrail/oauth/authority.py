"""The token authority: path enforcement and minting, shared by every grant.

A grant decides *whether* to issue; the authority decides *through which
declared path*, clamps lifetimes, audiences and scopes to what the path and the
client allow, and mints: it signs the access token and records its lineage node
and audit record in the caller's transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tokentrail import ids
from tokentrail.audit import Event
from tokentrail.clock import Clock
from tokentrail.config import Settings
from tokentrail.detections import Detections
from tokentrail.errors import InvalidRequest, InvalidScope, InvalidTarget, UnauthorizedClient
from tokentrail.keys import KeyRing
from tokentrail.lineage import ancestors_of
from tokentrail.model import Client, CredentialKind, Node, NodeKind
from tokentrail.oauth.access_token import AccessTokens, digest
from tokentrail.oauth.binding import UNBOUND, Binding
from tokentrail.oauth.dpop import InvalidDPoPProof
from tokentrail.oauth.refresh_tokens import mint_refresh_token
from tokentrail.policy.paths import Grant, PathMap, PathSpec
from tokentrail.storage.store import Store, Tx


@dataclass(frozen=True, slots=True)
class Minted:
    token: str
    node: Node
    claims: dict[str, Any] = field(repr=False)


class Authority:
    """Everything a grant needs to issue tokens through declared paths."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        clock: Clock,
        keys: KeyRing,
        paths: PathMap,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.keys = keys
        self.paths = paths
        self.tokens = AccessTokens(keys, issuer=settings.issuer, clock=clock)
        self.detections = Detections(store, clock, paths, horizon=self.horizon)

    @property
    def issuer(self) -> str:
        return self.settings.issuer

    @property
    def horizon(self) -> float:
        """The longest anything minted under the current map may live."""
        return float(max(self.paths.max_lifetime(), self.settings.refresh_token_ttl))

    # --- path enforcement -------------------------------------------------------

    def resolve_path(
        self,
        client: Client,
        grant: Grant,
        input_kind: CredentialKind,
        binding: Binding = UNBOUND,
    ) -> PathSpec:
        """The declared path this issuance goes through, or a refusal that names why.

        Among the client's paths for this grant and input, the first (in map
        order) whose binding the request satisfies wins: a path requiring the
        binding the request proves, else one requiring none. If only paths
        requiring another binding remain, the request is refused: a DPoP path
        answers ``invalid_dpop_proof`` (RFC 9449 §5), an mTLS path
        ``invalid_request``.
        """
        allowed = set(client.paths)
        candidates = [
            p
            for p in self.paths.paths
            if p.id in allowed and p.grant is grant and input_kind in p.inputs
        ]
        if not candidates:
            reason = (
                f"no declared issuance path allows {grant.value} from {input_kind.value} "
                f"for client {client.id}"
            )
            self.refuse(client, reason)
        path = next(
            (p for p in candidates if p.binding == binding.kind),
            next((p for p in candidates if p.binding == "none"), candidates[0]),
        )
        if path.binding != "none" and binding.kind != path.binding:
            proof = "a DPoP proof" if path.binding == "dpop" else "a client certificate"
            self.refuse(
                client,
                f"path {path.id} requires {path.binding}-bound tokens: send {proof}",
                error=InvalidDPoPProof if path.binding == "dpop" else InvalidRequest,
            )
        return path

    def path_for_node(self, client: Client, path_id: str | None) -> PathSpec:
        """The path a token was minted under, if it is still declared and allowed."""
        path = self.paths.get(path_id or "")
        if path is None or path.id not in client.paths:
            self.refuse(client, f"issuance path {path_id} is no longer declared for this client")
        assert path is not None
        return path

    def refuse(
        self, client: Client, reason: str, *, error: type[Exception] = UnauthorizedClient
    ) -> None:
        with self.store.write() as tx:
            tx.append_audit(
                Event.ISSUANCE_REFUSED,
                at=self.clock.now(),
                actor=f"client:{client.id}",
                client_id=client.id,
                team_id=client.team_id,
                data={"reason": reason},
            )
        raise error(reason)

    # --- what the token may say -------------------------------------------------

    @staticmethod
    def grant_scope(requested: str | None, allowed: list[str], *, path: PathSpec) -> list[str]:
        """Scopes for the new token: the request (each one allowed), or all allowed ones."""
        allowed = [s for s in allowed if path.scopes is None or s in path.scopes]
        if requested is None:
            return allowed
        wanted = requested.split(" ")
        if any(not s for s in wanted):
            raise InvalidScope("scope must be space-separated scope tokens")
        refused = [s for s in wanted if s not in allowed]
        if refused:
            raise InvalidScope(f"scope not allowed for this client and path: {' '.join(refused)}")
        return list(dict.fromkeys(wanted))

    @staticmethod
    def grant_audience(requested: list[str], allowed: list[str], *, path: PathSpec) -> list[str]:
        """Audiences for the new token (RFC 9068 §3, RFC 8707, RFC 8693 §2.1)."""
        allowed = [a for a in allowed if path.audiences is None or a in path.audiences]
        if requested:
            refused = [a for a in requested if a not in allowed]
            if refused:
                raise InvalidTarget(f"not allowed to issue tokens for {', '.join(refused)}")
            return list(dict.fromkeys(requested))
        if not allowed:
            raise InvalidTarget("no audience is allowed for this client on this path")
        # Without a request, the client's first registered audience: never several
        # at once, so the token's authorization is not ambiguous (RFC 9068 §3).
        return [allowed[0]]

    def ttl(self, path: PathSpec) -> int:
        return min(self.settings.access_token_ttl, path.max_ttl)

    # --- minting ------------------------------------------------------------------

    def mint_access_token(
        self,
        tx: Tx,
        *,
        path: PathSpec,
        client: Client,
        subject: str,
        parents: list[Node],
        audience: list[str],
        scope: list[str],
        now: float,
        event: Event,
        act: dict[str, Any] | None = None,
        expires_at: float | None = None,
        binding: Binding = UNBOUND,
    ) -> Minted:
        """Sign an access token and record its node and audit record in ``tx``."""
        node_id = ids.new_id("at")
        exp = now + self.ttl(path)
        if expires_at is not None:
            exp = min(exp, expires_at)
        exp_int = math.floor(exp)
        cnf = binding.cnf()
        ancestors = ancestors_of(parents)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": audience[0] if len(audience) == 1 else audience,
            "exp": exp_int,
            "iat": math.floor(now),
            "jti": node_id,
            "client_id": client.id,
        }
        if scope:
            claims["scope"] = " ".join(scope)
        if act:
            claims["act"] = act
        if cnf:
            claims["cnf"] = cnf
        claims["tt_path"] = path.id
        claims["tt_anc"] = list(ancestors)
        token = self.tokens.mint(claims)
        # The digest lets introspection match a presented token against this record
        # instead of checking its signature (oauth/introspection.py).
        meta: dict[str, Any] = {"aud": audience, "scope": scope, "token_sha256": digest(token)}
        if act:
            meta["act"] = act
        if cnf:
            meta["cnf"] = cnf
        node = Node(
            id=node_id,
            kind=NodeKind.ACCESS_TOKEN,
            path_id=path.id,
            client_id=client.id,
            subject=subject,
            team_id=client.team_id,
            parents=tuple(p.id for p in parents),
            ancestors=ancestors,
            created_at=now,
            expires_at=float(exp_int),
            meta=meta,
        )
        tx.insert_node(node)
        tx.append_audit(
            event,
            at=now,
            actor=f"client:{client.id}",
            node_id=node_id,
            client_id=client.id,
            subject=subject,
            team_id=client.team_id,
            data={
                "path": path.id,
                "aud": audience,
                "scope": scope,
                "exp": exp_int,
                "binding": binding.kind,
            },
        )
        return Minted(token, node, claims)

    def mint_session_tokens(
        self,
        tx: Tx,
        *,
        path: PathSpec,
        client: Client,
        session: Node,
        subject: str,
        audience: list[str],
        scope: list[str],
        binding: Binding,
        now: float,
    ) -> tuple[Minted, str | None]:
        """A new session's first tokens: its refresh token (if the path refreshes) and an
        access token under it, both bounded by the session's lifetime."""
        parent = session
        refresh_secret = None
        if path.refresh is not None:
            refresh_secret, parent = mint_refresh_token(
                tx, path=path, client=client, session=session, now=now
            )
        minted = self.mint_access_token(
            tx,
            path=path,
            client=client,
            subject=subject,
            parents=[parent],
            audience=audience,
            scope=scope,
            now=now,
            event=Event.TOKEN_ISSUED,
            binding=binding,
            expires_at=session.expires_at,
        )
        return minted, refresh_secret


class TokenResponse(dict[str, Any]):
    """An RFC 6749 §5.1 success body that also knows the declared path it issued
    through (for metrics; never serialised)."""

    __slots__ = ("path",)

    def __init__(self, body: dict[str, Any], path: str) -> None:
        super().__init__(body)
        self.path = path


def token_response(
    minted: Minted, *, now: float, refresh_token: str | None = None, **extra: str
) -> TokenResponse:
    """The RFC 6749 §5.1 success body."""
    body: dict[str, Any] = {
        "access_token": minted.token,
        "token_type": "DPoP" if "jkt" in minted.claims.get("cnf", {}) else "Bearer",
        "expires_in": max(0, int(minted.claims["exp"] - math.floor(now))),
    }
    if "scope" in minted.claims:
        body["scope"] = minted.claims["scope"]
    if refresh_token is not None:
        body["refresh_token"] = refresh_token
    body.update(extra)
    return TokenResponse(body, str(minted.claims["tt_path"]))
