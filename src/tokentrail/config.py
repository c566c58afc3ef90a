"""Every setting and its default, in one place.

:class:`Settings` is frozen: reading configuration never changes it. The CLI
builds one from its options (each option also reads a ``TOKENTRAIL_*``
environment variable); tests build them directly.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The issuance-path map bundled with the package, used when none is given.
BUNDLED_PATHS = Path(__file__).parent / "data" / "paths.yaml"


class Settings(BaseModel):
    """Configuration of one tokentrail installation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(
        default=Path("tokentrail-data"),
        description="Folder for the embedded SQLite database and the key-encryption key.",
    )
    db_url: str | None = Field(
        default=None,
        description=(
            "Database URL. Unset: SQLite in data_dir. `postgresql://...` selects PostgreSQL "
            "(several nodes may share one database)."
        ),
    )
    paths_file: Path = Field(
        default=BUNDLED_PATHS,
        description="The issuance-path map (YAML). Every token is minted through one of its paths.",
    )
    issuer: str = Field(
        default="http://127.0.0.1:8080",
        description=(
            "Issuer identifier (RFC 8414 §2): the URL the metadata's `issuer` carries and "
            "access tokens' `iss`. `serve` defaults it to the URL it listens on."
        ),
    )
    kek_file: Path | None = Field(
        default=None,
        description=(
            "File holding the 32-byte key-encryption key that seals signing keys. Default: "
            "data_dir/kek, created on first start. TOKENTRAIL_KEK (base64url) overrides both."
        ),
    )
    signing_alg: str = Field(
        default="ES256",
        description="Algorithm for new signing keys: ES256 or EdDSA (Ed25519).",
    )
    access_token_ttl: int = Field(
        default=300,
        gt=0,
        description="Default access-token lifetime in seconds; a path's max TTL caps it.",
    )
    refresh_token_ttl: int = Field(
        default=86_400,
        gt=0,
        description=(
            "Floor of the retention horizon, in seconds: revocation entries and retired "
            "signing keys are kept at least this long (longer when a path allows longer "
            "lifetimes). A refresh-token family lives as long as its path's "
            "`refresh.absolute_lifetime`."
        ),
    )
    assertion_max_lifetime: int = Field(
        default=600,
        gt=0,
        description=(
            "Longest `exp - now` accepted on client and upstream assertions "
            "(RFC 7523 §3 allows the server to bound it)."
        ),
    )
    max_body_bytes: int = Field(
        default=16_384,
        gt=0,
        description="Largest request body accepted on OAuth endpoints; larger bodies get 413.",
    )
    key_cache_seconds: float = Field(
        default=10.0,
        ge=0,
        description="How often a server re-reads signing keys (to see rotations by other nodes).",
    )
    credential_grace_seconds: int = Field(
        default=3_600,
        ge=0,
        description="How long a rotated-out client credential keeps working after rotation.",
    )
    checkpoint_interval: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Seconds between signed checkpoints of the audit ledger while serving "
            "(a checkpoint is only written when new records arrived)."
        ),
    )
    notify_webhook_url: str | None = Field(
        default=None,
        description=(
            "Deliver notifications (detections, incidents, recovery) by POSTing them here, "
            "signed with HMAC-SHA256 (secret: TOKENTRAIL_NOTIFY_SECRET). Unset: append them "
            "to data_dir/notifications.jsonl."
        ),
    )
    notify_interval: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between passes of the notification dispatcher while serving.",
    )
    dpop_require_nonce: bool = Field(
        default=False,
        description=(
            "Require a server-issued nonce in every DPoP proof (RFC 9449 §8); clients "
            "first get `use_dpop_nonce` with a `DPoP-Nonce` header."
        ),
    )
    sqlite_synchronous: str = Field(
        default="FULL",
        description=(
            "SQLite `synchronous` pragma. FULL makes every acknowledged write survive power "
            "loss; NORMAL survives a process crash only."
        ),
    )
    mtls_ca_file: Path | None = Field(
        default=None,
        description=(
            "PEM bundle of the CAs whose client certificates `tls_client_auth` accepts "
            "(RFC 8705 §2.1). When tokentrail terminates TLS, the TLS layer requests client "
            "certificates from these CAs too. Unset: only `self_signed_tls_client_auth`."
        ),
    )
    mtls_proxy_header: str | None = Field(
        default=None,
        description=(
            "Request header in which a TLS-terminating proxy forwards the client certificate "
            "(URL-encoded PEM, as nginx's `$ssl_client_escaped_cert`, or base64 DER), e.g. "
            "`x-client-cert`. Believed only from `mtls_trusted_proxies`; from any other address "
            "it is ignored and audited."
        ),
    )
    mtls_trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description=(
            "Addresses (IPs or CIDR ranges) of the proxies whose `mtls_proxy_header` is "
            "believed. From these peers the header is the only certificate source."
        ),
    )

    revocation_poll_interval: float = Field(
        default=0.5,
        gt=0,
        description=(
            "Seconds between a server's catch-up reads of the revocations table by sequence "
            "number: on PostgreSQL a safety net under LISTEN/NOTIFY, on SQLite the only way "
            "a server learns of revocations made by another process (the CLI)."
        ),
    )
    revocation_view_bound: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds after its last successful catch-up read beyond which a server's "
            "revocation view is stale: /readyz answers 503 and the revocation feed stops "
            "sending keep-alives (so verifiers following it fail closed)."
        ),
    )
    feed_keepalive: float = Field(
        default=5.0,
        gt=0,
        description=(
            "Seconds between keep-alive comments on the revocation feed; each tells "
            "verifiers their view is current (see docs/scaling.md)."
        ),
    )
    janitor_interval: float = Field(
        default=300.0,
        gt=0,
        description=(
            "Seconds between janitor passes while serving: revocations that no longer "
            "matter and expired replay-cache entries are deleted."
        ),
    )

    @field_validator("mtls_proxy_header")
    @classmethod
    def _proxy_header(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name = value.strip().lower()
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ValueError("mtls_proxy_header must be an HTTP header name")
        return name

    @field_validator("mtls_trusted_proxies")
    @classmethod
    def _proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"mtls_trusted_proxies: {entry!r} is not an IP or CIDR") from exc
        return value

    @field_validator("signing_alg")
    @classmethod
    def _alg(cls, value: str) -> str:
        if value not in ("ES256", "EdDSA"):
            raise ValueError("signing_alg must be ES256 or EdDSA")
        return value

    @field_validator("sqlite_synchronous")
    @classmethod
    def _sync(cls, value: str) -> str:
        if value.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("sqlite_synchronous must be FULL, NORMAL or EXTRA")
        return value.upper()

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        # RFC 8414 §2: a URL with no query or fragment.
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError("issuer must be an http(s) URL without query or fragment")
        return value.rstrip("/")

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL: PostgreSQL through psycopg 3, else SQLite in data_dir."""
        if self.db_url:
            url = self.db_url
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    return "postgresql+psycopg://" + url[len(prefix) :]
            return url
        return f"sqlite:///{(self.data_dir / 'tokentrail.db').resolve()}"
