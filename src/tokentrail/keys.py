"""Signing keys: creation, sealing under the key-encryption key, rotation, JWKS.

Private keys are stored sealed (AES-256-GCM) under a key-encryption key that
lives outside the database: ``TOKENTRAIL_KEK`` (base64url) or a file, by default
``<data>/kek`` created with mode 0600. All nodes sharing a database share the
keys. Rotation makes a new key active and keeps the retired ones in the JWKS
until every token they signed has expired.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from tokentrail import crypto
from tokentrail.clock import Clock
from tokentrail.storage.store import Store

_CONTEXT = b"tokentrail signing key v1:"


def load_kek(path: Path, *, create: bool = True) -> bytes:
    """The key-encryption key: ``TOKENTRAIL_KEK`` if set, else the file (created if absent)."""
    env = os.environ.get("TOKENTRAIL_KEK")
    if env:
        kek = crypto.b64url_decode(env.strip())
        if len(kek) != 32:
            raise ValueError("TOKENTRAIL_KEK must be 32 bytes, base64url encoded")
        return kek
    if path.exists():
        kek = crypto.b64url_decode(path.read_text().strip())
        if len(kek) != 32:
            raise ValueError(f"{path} does not hold a 32-byte key")
        return kek
    if not create:
        raise FileNotFoundError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kek = crypto.new_kek()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(crypto.b64url(kek) + "\n")
    return kek


class KeyRing:
    """The installation's signing keys, cached and refreshed from the store."""

    def __init__(
        self, store: Store, kek: bytes, clock: Clock, *, alg: str, cache_seconds: float
    ) -> None:
        self._store = store
        self._kek = kek
        self._clock = clock
        self._alg = alg
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._signer: crypto.TokenSigner | None = None
        self._verifier: crypto.TokenVerifier | None = None
        self._jwks: list[dict[str, Any]] = []

    def ensure_key(self) -> None:
        """Create the first signing key if the installation has none, else check the KEK.

        A key-encryption key that does not open the active key fails here, at
        start, rather than on the first request (and before ``rotate`` could
        seal a new key under the wrong KEK).
        """
        now = self._clock.now()
        with self._store.write() as tx:
            active = next((r for r in tx.signing_keys(now=now) if r["retired_at"] is None), None)
            if active is None:
                self._insert(tx, crypto.generate_signing_key(self._alg), now)
                return
        try:
            crypto.unseal(
                self._kek, active["sealed_private"], context=_CONTEXT + active["kid"].encode()
            )
        except ValueError as exc:
            raise ValueError(
                "the key-encryption key does not open this installation's signing keys "
                "(check TOKENTRAIL_KEK or the kek file)"
            ) from exc

    def rotate(self, *, publish_for: float) -> str:
        """Make a new key active; retired keys stay published for ``publish_for`` seconds."""
        now = self._clock.now()
        key = crypto.generate_signing_key(self._alg)
        with self._store.write() as tx:
            self._insert(tx, key, now)
            tx.retire_signing_keys(except_kid=key.kid, at=now, publish_until=now + publish_for)
        self.refresh(force=True)
        return key.kid

    def _insert(self, tx: Any, key: crypto.SigningKey, now: float) -> None:
        sealed = crypto.seal(self._kek, key.private_pem(), context=_CONTEXT + key.kid.encode())
        tx.insert_signing_key(
            kid=key.kid, alg=key.alg, public_jwk=key.public_jwk(), sealed=sealed, at=now
        )

    def refresh(self, *, force: bool = False) -> None:
        now = self._clock.now()
        if not force and now - self._loaded_at < self._cache_seconds:
            return
        with self._lock:
            if not force and now - self._loaded_at < self._cache_seconds:
                return
            with self._store.read() as tx:
                rows = tx.signing_keys(now=now)
            active = next((r for r in rows if r["retired_at"] is None), None)
            if active is None:
                raise RuntimeError("no active signing key; run ensure_key() first")
            pem = crypto.unseal(
                self._kek, active["sealed_private"], context=_CONTEXT + active["kid"].encode()
            )
            key = crypto.load_signing_key(active["kid"], active["alg"], pem)
            self._jwks = [dict(r["public_jwk"]) for r in rows]
            if self._signer is None or self._signer.kid != key.kid:
                self._signer = crypto.TokenSigner(key, typ="at+jwt")
            if self._verifier is None or self._verifier.kids() != {j["kid"] for j in self._jwks}:
                self._verifier = crypto.TokenVerifier(self._jwks, typ="at+jwt")
            self._loaded_at = now

    def signer(self) -> crypto.TokenSigner:
        self.refresh()
        assert self._signer is not None
        return self._signer

    def verifier(self) -> crypto.TokenVerifier:
        self.refresh()
        assert self._verifier is not None
        return self._verifier

    def jwks(self) -> dict[str, Any]:
        self.refresh()
        return {"keys": list(self._jwks)}
