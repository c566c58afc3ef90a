"""Administration: teams, clients, credentials, trusted issuers, admin keys, revocation.

Both the CLI and the admin API call these functions; each change and its audit
record commit together. Secrets are returned once, at creation, and stored only
as SHA-256 hashes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tokentrail import crypto, ids
from tokentrail.audit import Event
from tokentrail.clock import Clock
from tokentrail.errors import Conflict, NotFound
from tokentrail.lineage import revoke
from tokentrail.model import (
    AdminKey,
    AuthMethod,
    Client,
    ClientKind,
    Credential,
    CredentialKind,
    Node,
    NodeKind,
    Revocation,
    Team,
    TrustedIssuer,
)
from tokentrail.policy.paths import PathMap
from tokentrail.storage.store import Store, Tx
from tokentrail.upstream import fetch_jwks

ROLES = ("viewer", "operator", "support", "approver", "responder", "admin")
_TEAM_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    client_id: str
    #: None for a public client, which holds no credential.
    credential_id: str | None
    client_secret: str | None


class Admin:
    def __init__(self, store: Store, clock: Clock, paths: PathMap, *, horizon: float) -> None:
        self.store = store
        self.clock = clock
        self.paths = paths
        self.horizon = horizon

    # --- teams ------------------------------------------------------------------

    def create_team(self, name: str, *, actor: str) -> Team:
        if not _TEAM_ID.match(name):
            raise ValueError(
                "team names are lowercase letters, digits, '.', '_' or '-' (at most 128)"
            )
        now = self.clock.now()
        team = Team(id=name, name=name, created_at=now)
        with self.store.write() as tx:
            if not tx.insert_team(team):
                raise Conflict(f"team {name!r} already exists")
            tx.append_audit(Event.TEAM_CREATED, at=now, actor=actor, team_id=team.id)
        return team

    # --- clients and credentials ------------------------------------------------

    def create_client(
        self,
        *,
        team: str,
        name: str,
        kind: ClientKind,
        auth_method: AuthMethod,
        jwks: dict[str, Any] | None,
        paths: list[str],
        scopes: list[str],
        audiences: list[str],
        actor: str,
        tls_subject_dn: str | None = None,
    ) -> IssuedCredential:
        unknown = [p for p in paths if self.paths.get(p) is None]
        if unknown:
            raise ValueError(f"no declared issuance path named {', '.join(unknown)}")
        jwks, tls_subject_dn = _credential_material(auth_method, jwks, tls_subject_dn)
        if auth_method is AuthMethod.NONE and kind is not ClientKind.APPLICATION:
            raise ValueError("only applications can be public clients (auth none)")
        for value in (*scopes, *audiences):
            if not value or " " in value:
                raise ValueError(f"invalid scope or audience {value!r}")
        now = self.clock.now()
        client = Client(
            id=ids.new_id("cl"),
            team_id=team,
            name=name,
            kind=kind,
            auth_method=auth_method,
            paths=tuple(paths),
            scopes=tuple(dict.fromkeys(scopes)),
            audiences=tuple(dict.fromkeys(audiences)),
            created_at=now,
        )
        with self.store.write() as tx:
            if tx.get_team(team) is None:
                raise NotFound(f"no team {team!r}; create it with `tokentrail team create`")
            tx.insert_client(client)
            tx.append_audit(
                Event.CLIENT_CREATED,
                at=now,
                actor=actor,
                client_id=client.id,
                team_id=team,
                data={
                    "name": name,
                    "kind": kind.value,
                    "auth": auth_method.value,
                    "paths": paths,
                    "scopes": list(client.scopes),
                    "audiences": list(client.audiences),
                },
            )
            return self._issue_credential(tx, client, jwks, now, actor, tls_subject_dn)

    def rotate_credential(
        self,
        client_id: str,
        *,
        jwks: dict[str, Any] | None = None,
        grace: float,
        actor: str,
        tls_subject_dn: str | None = None,
    ) -> IssuedCredential:
        """Issue a new credential; the client's older ones stop working after ``grace`` seconds.

        Tokens minted from an old credential stay valid until they expire; to kill
        them at once, revoke the old credential instead (or as well).
        """
        now = self.clock.now()
        with self.store.write() as tx:
            client = tx.get_client(client_id)
            if client is None:
                raise NotFound(f"no client {client_id!r}")
            if client.auth_method is AuthMethod.NONE:
                raise ValueError("a public client has no credential to rotate")
            jwks, tls_subject_dn = _credential_material(client.auth_method, jwks, tls_subject_dn)
            old = tx.client_credentials(client.id, now=now)
            issued = self._issue_credential(tx, client, jwks, now, actor, tls_subject_dn)
            for cred in old:
                tx.set_credential_not_after(cred.id, now + grace)
            tx.append_audit(
                Event.CREDENTIAL_ROTATED,
                at=now,
                actor=actor,
                node_id=issued.credential_id,
                client_id=client.id,
                team_id=client.team_id,
                data={"previous": [c.id for c in old], "grace_seconds": grace},
            )
            return issued

    def _issue_credential(
        self,
        tx: Tx,
        client: Client,
        jwks: dict[str, Any] | None,
        now: float,
        actor: str,
        tls_subject_dn: str | None = None,
    ) -> IssuedCredential:
        if client.auth_method is AuthMethod.NONE:
            return IssuedCredential(client.id, None, None)
        secret = None
        if client.auth_method.uses_secret:
            secret = ids.new_secret("tts")
            kind = CredentialKind.CLIENT_SECRET
        elif client.auth_method.uses_tls:
            kind = CredentialKind(client.auth_method.value)
        else:
            kind = CredentialKind.PRIVATE_KEY_JWT
        cred = Credential(
            id=ids.new_id("cred"),
            client_id=client.id,
            kind=kind,
            secret_hash=crypto.hash_secret(secret) if secret else None,
            jwks=jwks,
            created_at=now,
            tls_subject_dn=tls_subject_dn,
        )
        tx.insert_credential(cred)
        tx.insert_node(
            Node(
                id=cred.id,
                kind=NodeKind.CREDENTIAL,
                path_id=None,
                client_id=client.id,
                subject=client.id,
                team_id=client.team_id,
                parents=(),
                ancestors=(),
                created_at=now,
                expires_at=None,
                meta={"credential_kind": kind.value},
            )
        )
        tx.append_audit(
            Event.CREDENTIAL_ISSUED,
            at=now,
            actor=actor,
            node_id=cred.id,
            client_id=client.id,
            team_id=client.team_id,
            data={"kind": kind.value, **_credential_audit(cred)},
        )
        return IssuedCredential(client.id, cred.id, secret)

    # --- upstream identity providers --------------------------------------------

    def trust_issuer(
        self,
        issuer: str,
        *,
        jwks: dict[str, Any] | None = None,
        jwks_url: str | None = None,
        audience: str,
        max_aal: int = 2,
        actor: str,
    ) -> TrustedIssuer:
        """Trust an upstream provider; its keys come as a document or from a URL."""
        if not issuer or not audience:
            raise ValueError("issuer and audience are required")
        if (jwks is None) == (jwks_url is None):
            raise ValueError("give the provider's keys as a JWKS document or a JWKS URL")
        if max_aal not in (1, 2, 3):
            raise ValueError("max_aal must be 1, 2 or 3")
        now = self.clock.now()
        document = crypto.parse_jwks(jwks) if jwks is not None else fetch_jwks(str(jwks_url))
        trusted = TrustedIssuer(
            issuer=issuer,
            jwks=document,
            audience=audience,
            created_at=now,
            jwks_url=jwks_url,
            max_aal=max_aal,
            jwks_fetched_at=now if jwks_url else None,
        )
        with self.store.write() as tx:
            tx.put_issuer(trusted)
            tx.append_audit(
                Event.ISSUER_TRUSTED,
                at=now,
                actor=actor,
                data={
                    "issuer": issuer,
                    "audience": audience,
                    "jwks_url": jwks_url,
                    "max_aal": max_aal,
                },
            )
        return trusted

    # --- admin keys -----------------------------------------------------------------

    def create_admin_key(
        self, *, team: str, roles: list[str], name: str, actor: str
    ) -> tuple[AdminKey, str]:
        bad = [r for r in roles if r not in ROLES]
        if bad or not roles:
            raise ValueError(f"roles must be among {', '.join(ROLES)}")
        now = self.clock.now()
        secret = ids.new_secret("tta")
        key = AdminKey(ids.new_id("ak"), team, tuple(dict.fromkeys(roles)), name, now)
        with self.store.write() as tx:
            if tx.get_team(team) is None:
                raise NotFound(f"no team {team!r}")
            tx.insert_admin_key(key, crypto.hash_secret(secret))
            tx.append_audit(
                Event.ADMIN_KEY_CREATED,
                at=now,
                actor=actor,
                team_id=team,
                data={"key_id": key.id, "roles": list(key.roles), "name": name},
            )
        return key, secret

    def admin_key(self, secret: str) -> AdminKey | None:
        with self.store.read() as tx:
            return tx.admin_key_by_hash(crypto.hash_secret(secret))

    # --- revocation -------------------------------------------------------------------

    def revoke(self, node_id: str, *, reason: str, actor: str) -> Revocation | None:
        if not reason.strip():
            raise ValueError("a revocation needs a reason")
        with self.store.write() as tx:
            return revoke(
                tx, node_id, reason=reason, actor=actor, now=self.clock.now(), horizon=self.horizon
            )


def _credential_material(
    method: AuthMethod, jwks: dict[str, Any] | None, tls_subject_dn: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """Check what a new credential of ``method`` registers: (JWKS, subject DN), normalised."""
    if method is AuthMethod.PRIVATE_KEY_JWT:
        if jwks is None:
            raise ValueError("private_key_jwt needs the client's public keys (--jwks)")
        jwks = crypto.parse_jwks(jwks)
    elif method is AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH:
        # RFC 8705 §2.2: the self-signed certificates are registered in the JWKS (x5c).
        if jwks is None:
            raise ValueError(
                "self_signed_tls_client_auth needs a JWKS whose keys carry x5c (--jwks)"
            )
        jwks = crypto.parse_certificate_jwks(jwks)
    elif jwks is not None:
        raise ValueError(
            "a JWKS is only for private_key_jwt and self_signed_tls_client_auth clients"
        )
    if method is AuthMethod.TLS_CLIENT_AUTH:
        # RFC 8705 §2.1.2: the certificate's subject DN (tls_client_auth_subject_dn).
        if not tls_subject_dn:
            raise ValueError("tls_client_auth needs the certificate subject DN (--tls-subject-dn)")
        tls_subject_dn = crypto.normalize_dn(tls_subject_dn)
    elif tls_subject_dn is not None:
        raise ValueError("a subject DN is only for tls_client_auth clients")
    return jwks, tls_subject_dn


def _credential_audit(cred: Credential) -> dict[str, Any]:
    """What the ledger records about a certificate credential: DN or certificate thumbprints."""
    if cred.tls_subject_dn is not None:
        return {"tls_subject_dn": cred.tls_subject_dn}
    if cred.kind is CredentialKind.SELF_SIGNED_TLS_CLIENT_AUTH and cred.jwks is not None:
        return {
            "x5t#S256": [
                crypto.cert_thumbprint(der) for der in crypto.registered_certificates(cred.jwks)
            ]
        }
    return {}
