"""The nouns of tokentrail as frozen records.

Nodes are everything tokentrail issues (credentials, sessions, tokens); they
form a DAG through ``parents``. Every node stores its full ``ancestors`` list
(bounded by the delegation depth), so "is this node dead?" is one indexed
lookup of at most a handful of ids in the revocation table, whatever the
number of tokens issued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class NodeKind(StrEnum):
    """What a lineage node is."""

    CREDENTIAL = "credential"  # a client secret, a client JWKS, an upstream login
    SESSION = "session"  # a login session: the root of one refresh-token family
    REFRESH_TOKEN = "refresh_token"
    ACCESS_TOKEN = "access_token"
    #: A help-desk recovery request and the single-use grant it yields (tokentrail.recovery):
    #: the parent of the session the subject redeems the grant for.
    RECOVERY_GRANT = "recovery_grant"


class ClientKind(StrEnum):
    WORKLOAD = "workload"
    APPLICATION = "application"


class AuthMethod(StrEnum):
    """Client authentication methods (RFC 6749 §2.3, RFC 7523 §2.2)."""

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    PRIVATE_KEY_JWT = "private_key_jwt"
    #: RFC 8705 §2.1: a certificate from a trusted CA with the registered subject DN.
    TLS_CLIENT_AUTH = "tls_client_auth"
    #: RFC 8705 §2.2: a self-signed certificate registered in the client's JWKS (``x5c``).
    SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"
    #: A public client (RFC 6749 §2.1): identifies itself, holds no credential.
    NONE = "none"

    @property
    def uses_secret(self) -> bool:
        return self in (AuthMethod.CLIENT_SECRET_BASIC, AuthMethod.CLIENT_SECRET_POST)

    @property
    def uses_tls(self) -> bool:
        return self in (AuthMethod.TLS_CLIENT_AUTH, AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH)


class CredentialKind(StrEnum):
    """Input kinds a path may accept, named as the path map names them."""

    CLIENT_SECRET = "client_secret"
    PRIVATE_KEY_JWT = "private_key_jwt"
    TLS_CLIENT_AUTH = "tls_client_auth"
    SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"
    #: A public client presenting only its client_id.
    PUBLIC_CLIENT = "public_client"
    UPSTREAM_ASSERTION = "upstream_assertion"
    ACCESS_TOKEN = "access_token"
    REFRESH_TOKEN = "refresh_token"


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class Client:
    id: str
    team_id: str
    name: str
    kind: ClientKind
    auth_method: AuthMethod
    paths: tuple[str, ...]
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    created_at: float
    disabled_at: float | None = None


@dataclass(frozen=True, slots=True)
class Credential:
    """A client credential. Its id is also its lineage node id."""

    id: str
    client_id: str
    kind: CredentialKind
    secret_hash: str | None
    jwks: dict[str, Any] | None
    created_at: float
    #: tls_client_auth: the subject DN the client certificate must carry (RFC 4514 string).
    tls_subject_dn: str | None = None

    #: After a rotation, the old credential keeps working until this time.
    not_after: float | None = None


@dataclass(frozen=True, slots=True)
class TrustedIssuer:
    """An upstream identity provider whose assertions the JWT bearer grant accepts."""

    issuer: str
    #: The provider's public keys (for a URL-configured provider, the last fetched copy).
    jwks: dict[str, Any]
    audience: str
    created_at: float
    #: Where to fetch the JWKS (RFC 8414 ``jwks_uri``); None when given as a file.
    jwks_url: str | None = None
    #: The highest SP 800-63B authenticator assurance level (1-3) its assertions may claim.
    max_aal: int = 2
    jwks_fetched_at: float | None = None


@dataclass(frozen=True, slots=True)
class Node:
    """One issued thing in the lineage DAG."""

    id: str
    kind: NodeKind
    path_id: str | None
    client_id: str | None
    subject: str | None
    team_id: str | None
    parents: tuple[str, ...]
    ancestors: tuple[str, ...]
    created_at: float
    expires_at: float | None
    meta: dict[str, Any] = field(default_factory=dict)
    #: Refresh tokens: when the token was rotated out (presenting it again is reuse).
    used_at: float | None = None

    @property
    def lineage(self) -> tuple[str, ...]:
        """This node's id and every ancestor id: the ids whose revocation kills it."""
        return (self.id, *self.ancestors)


@dataclass(frozen=True, slots=True)
class Revocation:
    seq: int
    node_id: str
    reason: str
    actor: str
    revoked_at: float
    #: After this time nothing that descends from the node can still be alive,
    #: so verifiers may forget the entry.
    matters_until: float


@dataclass(frozen=True, slots=True)
class AdminKey:
    id: str
    team_id: str
    roles: tuple[str, ...]
    name: str
    created_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    seq: int
    at: float
    event: str
    actor: str
    node_id: str | None
    client_id: str | None
    subject: str | None
    team_id: str | None
    data: dict[str, Any]
