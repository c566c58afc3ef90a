"""Trusted upstream identity providers: their keys and the assurance they may claim.

A provider's JWKS is given either as a document (a file, read once) or as a URL
fetched when the provider is trusted and again when an assertion names a key
the cached copy lacks (the provider rotated), at most once a minute.

Assurance: an assertion claims its authenticator assurance level in ``acr``
(``aal1``/``aal2``/``aal3``, or a URI ending in one of them, or NIST's
``.../aal/2`` form); the level a session gets is the lower of that claim and the
provider's ``max_aal``. Without a recognisable claim the session is AAL1.
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any

from tokentrail import crypto

#: Largest JWKS document fetched, in bytes.
MAX_JWKS_BYTES = 256 * 1024
#: Shortest time between two fetches of one provider's JWKS, in seconds.
REFETCH_INTERVAL = 60.0

_AAL = re.compile(r"aal[/_-]?([123])\b", re.IGNORECASE)


def fetch_jwks(url: str, *, timeout: float = 5.0) -> dict[str, Any]:
    """GET a JWKS over HTTP(S) and validate it; ``ValueError`` with the reason otherwise."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("a JWKS URL must be http(s)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310
            body = resp.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot fetch {url}: {exc}") from exc
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError(f"the JWKS at {url} is larger than {MAX_JWKS_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the JWKS at {url} is not JSON") from exc
    return crypto.parse_jwks(document)


def claimed_aal(claims: dict[str, Any]) -> int:
    """The assurance level an assertion claims (1 when it claims none we recognise)."""
    acr = claims.get("acr")
    if isinstance(acr, str):
        m = _AAL.search(acr)
        if m:
            return int(m.group(1))
    return 1
