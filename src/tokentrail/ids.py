"""Identifiers and secrets minted by tokentrail.

Node ids carry a short prefix naming their kind (``cred_``, ``at_``...) so a
human reading a ledger or a token can tell what they look at, then the time of
creation (milliseconds since the epoch, 12 hex digits), then 128 random bits.
The time part makes ids of one kind sort by creation: every index keyed by an
id (the nodes' primary key, the edges, the audit records' node ids) grows at
its right edge, so a batch of issuances touches a few pages instead of one
random page per token per index (docs/benchmarks.md, "Time-ordered ids").
Uniqueness and unguessability still rest on the random bits alone; the time
an id reveals is no secret (an access token carries it as ``iat`` anyway).
Secrets (client secrets, refresh tokens, admin keys) carry 256 random bits, far
above the 64 bits SP 800-63B-4 §5.1 asks of session secrets, and no time.
"""

from __future__ import annotations

import secrets
import time


def new_id(prefix: str) -> str:
    """A fresh identifier: ``prefix`` + ``_`` + creation time + 128 random bits, URL-safe."""
    return f"{prefix}_{time.time_ns() // 1_000_000:012x}{secrets.token_urlsafe(16)}"


def new_secret(prefix: str) -> str:
    """A fresh secret with 256 bits of entropy, prefixed so scanners can spot leaks."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"
