"""Authorization Server Metadata — RFC 8414, and the JWKS document.

RFC 8414 §3: the metadata lives at the well-known path inserted between host
and path of the issuer. tokentrail has no authorization endpoint (no
front-channel grants), so ``response_types_supported`` would be empty, and
§2 says empty members are omitted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from tokentrail.crypto import ASSERTION_ALGORITHMS, DPOP_ALGORITHMS
from tokentrail.oauth.client_auth import SUPPORTED_METHODS

WELL_KNOWN = "/.well-known/oauth-authorization-server"


def metadata_path(issuer: str) -> str:
    """Where the metadata is served for ``issuer`` (RFC 8414 §3.1)."""
    path = urlsplit(issuer).path.rstrip("/")
    return WELL_KNOWN + path


def server_metadata(issuer: str, grant_types: list[str], signing_alg: str) -> dict[str, Any]:
    auth_algs = list(ASSERTION_ALGORITHMS)
    # Introspection refuses public clients (RFC 7662 §2.1), so it does not advertise "none".
    confidential = [m for m in SUPPORTED_METHODS if m != "none"]
    metadata: dict[str, Any] = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/oauth/token",
        "jwks_uri": f"{issuer}/jwks.json",
        "introspection_endpoint": f"{issuer}/oauth/introspect",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "grant_types_supported": grant_types,
        "token_endpoint_auth_methods_supported": list(SUPPORTED_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": auth_algs,
        "introspection_endpoint_auth_methods_supported": confidential,
        "introspection_endpoint_auth_signing_alg_values_supported": auth_algs,
        "revocation_endpoint_auth_methods_supported": list(SUPPORTED_METHODS),
        "revocation_endpoint_auth_signing_alg_values_supported": auth_algs,
        "access_token_signing_alg_values_supported": [signing_alg],
        # RFC 8705 §3.3: tokens issued to mTLS-authenticated clients carry cnf.x5t#S256.
        "tls_client_certificate_bound_access_tokens": True,
        # RFC 9449 §5.1: the algorithms accepted for DPoP proofs.
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),
    }
    # RFC 8414 §2: "Claims with zero elements MUST be omitted from the response."
    return {k: v for k, v in metadata.items() if v != []}
