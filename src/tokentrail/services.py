"""Composition root: build every part of tokentrail from :class:`Settings`, once."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tokentrail import crypto
from tokentrail.admin import Admin
from tokentrail.clock import Clock, SystemClock
from tokentrail.config import Settings
from tokentrail.incidents import Incidents
from tokentrail.janitor import Janitor
from tokentrail.keys import KeyRing, load_kek
from tokentrail.ledger import Ledger
from tokentrail.metrics import Metrics
from tokentrail.notify import Deliverer, Dispatcher, FileDeliverer, WebhookDeliverer
from tokentrail.oauth.authority import Authority
from tokentrail.oauth.client_auth import ClientAuthenticator
from tokentrail.oauth.dpop import DPoPValidator, Nonces
from tokentrail.oauth.introspection import IntrospectionEndpoint
from tokentrail.oauth.mtls import CertificateAuthority
from tokentrail.oauth.revocation import RevocationEndpoint
from tokentrail.oauth.token_endpoint import TokenEndpoint
from tokentrail.policy.paths import PathMap, load_path_map
from tokentrail.recovery import Recovery
from tokentrail.revocation_view import NodeRevocationView
from tokentrail.sessions import Sessions
from tokentrail.storage.store import Store


@dataclass
class Services:
    settings: Settings
    clock: Clock
    store: Store
    paths: PathMap
    keys: KeyRing
    authority: Authority
    admin: Admin
    token: TokenEndpoint
    introspection: IntrospectionEndpoint
    revocation: RevocationEndpoint
    sessions: Sessions
    dpop: DPoPValidator
    ledger: Ledger
    dispatcher: Dispatcher
    incidents: Incidents
    #: Help-desk recovery: channels, requests, proofing, approvals, freezes.
    recovery: Recovery
    #: RFC 8705 client-certificate checks (and the trust anchors a TLS server loads).
    mtls: CertificateAuthority | None = None
    #: Revocations followed from the table (started by the app's lifespan; docs/scaling.md).
    revocation_view: NodeRevocationView = field(kw_only=True)
    janitor: Janitor = field(kw_only=True)
    metrics: Metrics = field(kw_only=True, default_factory=Metrics)

    def close(self) -> None:
        self.revocation_view.close()
        self.store.close()


def _deliverer(settings: Settings) -> Deliverer:
    """Webhook when configured, else the local file (the embedded default)."""
    if settings.notify_webhook_url:
        secret = os.environ.get("TOKENTRAIL_NOTIFY_SECRET", "")
        if len(secret) < 16:
            raise ValueError("a notification webhook needs TOKENTRAIL_NOTIFY_SECRET (16+ chars)")
        return WebhookDeliverer(settings.notify_webhook_url, secret.encode())
    return FileDeliverer(settings.data_dir / "notifications.jsonl")


def build_services(settings: Settings, *, clock: Clock | None = None) -> Services:
    clock = clock or SystemClock()
    paths = load_path_map(settings.paths_file)
    mtls = CertificateAuthority.from_ca_file(clock, settings.mtls_ca_file)
    store = Store.open(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    kek = load_kek(settings.kek_file or settings.data_dir / "kek")
    keys = KeyRing(
        store, kek, clock, alg=settings.signing_alg, cache_seconds=settings.key_cache_seconds
    )
    keys.ensure_key()
    dpop = DPoPValidator(
        store,
        clock,
        Nonces(crypto.derive_key(kek, b"tokentrail dpop nonce v1"), clock),
        require_nonce=settings.dpop_require_nonce,
    )
    authority = Authority(settings=settings, store=store, clock=clock, keys=keys, paths=paths)
    issuer = settings.issuer
    authenticator = ClientAuthenticator(
        store,
        clock,
        audiences=(
            issuer,
            f"{issuer}/oauth/token",
            f"{issuer}/oauth/introspect",
            f"{issuer}/oauth/revoke",
        ),
        max_lifetime=settings.assertion_max_lifetime,
        mtls=mtls,
        detections=authority.detections,
    )
    recovery = Recovery(authority, key=crypto.derive_key(kek, b"tokentrail recovery v1"))
    return Services(
        settings=settings,
        clock=clock,
        store=store,
        paths=paths,
        keys=keys,
        authority=authority,
        admin=Admin(store, clock, paths, horizon=authority.horizon),
        sessions=Sessions(store, clock, horizon=authority.horizon),
        dpop=dpop,
        ledger=Ledger(store, kek, clock),
        dispatcher=Dispatcher(store, _deliverer(settings), clock, prepare=recovery.unseal_payload),
        incidents=Incidents(store, clock, paths, horizon=authority.horizon),
        recovery=recovery,
        token=TokenEndpoint(authority, authenticator, dpop),
        introspection=IntrospectionEndpoint(authority, authenticator),
        revocation=RevocationEndpoint(authority, authenticator),
        mtls=mtls,
        revocation_view=NodeRevocationView(
            store,
            clock,
            bound=settings.revocation_view_bound,
            poll_interval=settings.revocation_poll_interval,
        ),
        janitor=Janitor(store, clock),
    )
