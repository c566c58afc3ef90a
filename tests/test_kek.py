"""The key-encryption key must be the one that sealed the installation's signing keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tokentrail import crypto
from tokentrail.clock import FrozenClock
from tokentrail.config import Settings
from tokentrail.keys import KeyRing
from tokentrail.storage.store import Store


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    s = Store.open(Settings(data_dir=tmp_path / "data", db_url=db_url).database_url)
    yield s
    s.close()


def _ring(store: Store, kek: bytes) -> KeyRing:
    return KeyRing(store, kek, FrozenClock(), alg="ES256", cache_seconds=10.0)


def test_wrong_kek_fails_at_start(store: Store) -> None:
    """Opening signing keys with another KEK raises a clear error instead of serving 500s."""
    _ring(store, crypto.new_kek()).ensure_key()
    with pytest.raises(ValueError, match="key-encryption key does not open"):
        _ring(store, crypto.new_kek()).ensure_key()


def test_wrong_kek_adds_no_key(store: Store) -> None:
    """A refused KEK leaves the installation with its one original signing key."""
    _ring(store, crypto.new_kek()).ensure_key()
    with pytest.raises(ValueError, match="does not open"):
        _ring(store, crypto.new_kek()).ensure_key()
    with store.read() as tx:
        assert len(tx.signing_keys(now=FrozenClock().now())) == 1


def test_same_kek_reopens(store: Store) -> None:
    """Reopening with the KEK that sealed the keys keeps the same active key."""
    kek = crypto.new_kek()
    first = _ring(store, kek)
    first.ensure_key()
    again = _ring(store, kek)
    again.ensure_key()
    assert again.signer().kid == first.signer().kid
