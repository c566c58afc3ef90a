"""Identifiers and secrets minted by tokentrail.

Node ids carry a short prefix naming their kind (``cred_``, ``at_``...) so a
human reading a ledger or a token can tell what they look at; the rest is 128
random bits. Secrets (client secrets, refresh tokens, admin keys) carry 256
random bits, far above the 64 bits SP 800-63B-4 §5.1 asks of session secrets.
"""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    """A fresh identifier: ``prefix`` + ``_`` + 128 random bits, URL-safe."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def new_secret(prefix: str) -> str:
    """A fresh secret with 256 bits of entropy, prefixed so scanners can spot leaks."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"
