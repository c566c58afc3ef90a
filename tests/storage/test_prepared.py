"""The hot-path statements: same answers as the rest of the store, driver errors as
SQLAlchemy's, and a broken lookup connection replaced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from tests.storage.test_store import T0, node, revoke
from tokentrail.config import Settings
from tokentrail.model import AuthMethod, Client, ClientKind, Credential, CredentialKind
from tokentrail.storage.prepared import Statements
from tokentrail.storage.store import Store


@pytest.fixture
def store(tmp_path: Path, db_url: str | None) -> Iterator[Store]:
    s = Store.open(Settings(data_dir=tmp_path / "data", db_url=db_url).database_url)
    yield s
    s.close()


def _client(store: Store) -> None:
    with store.write() as tx:
        tx.insert_client(
            Client(
                id="cl_1",
                team_id="platform-iam",
                name="worker",
                kind=ClientKind.WORKLOAD,
                auth_method=AuthMethod.CLIENT_SECRET_BASIC,
                paths=("workload-client-credentials",),
                scopes=("read", "write"),
                audiences=("https://api.example",),
                created_at=T0,
            )
        )
        for cred_id, at, not_after in (
            ("cred_old", T0, T0 + 10),  # rotated out at T0 + 10
            ("cred_live", T0 + 1, None),
            ("cred_revoked", T0 + 2, None),
            ("cred_new", T0 + 3, None),
        ):
            tx.insert_credential(
                Credential(
                    id=cred_id,
                    client_id="cl_1",
                    kind=CredentialKind.CLIENT_SECRET,
                    secret_hash="0" * 64,
                    jwks=None,
                    created_at=at,
                    not_after=not_after,
                )
            )
            tx.insert_node(node(cred_id))
        revoke(tx, "cred_revoked")


def test_client_with_live_credentials_and_their_nodes(store: Store) -> None:
    _client(store)
    with store.lookup() as db:
        client, live = db.client_with_credentials("cl_1", now=T0 + 60)
        missing, none = db.client_with_credentials("cl_nobody", now=T0)
    assert client is not None
    assert client.scopes == ("read", "write")
    assert client.audiences == ("https://api.example",)
    # Newest first; the rotated-out and the revoked credentials are left out.
    assert [cred.id for cred, _ in live] == ["cred_new", "cred_live"]
    assert all(n is not None and n.id == cred.id for cred, n in live)
    assert live[0][0].jwks is None
    assert (missing, none) == (None, [])


def test_lineage_and_node_lookups_agree_with_the_store(store: Store) -> None:
    root = node("cred_r")
    child = node("at_c", root)
    with store.write() as tx:
        tx.insert_node(root)
        tx.insert_node(child)
    with store.lookup() as db:
        assert db.first_revoked(["at_c", "cred_r"]) is None
        assert db.first_revoked([]) is None
        assert db.node("at_c") == child
        assert db.node("at_none") is None
    with store.write() as tx:
        revoke(tx, "cred_r")
    with store.lookup() as db:
        assert db.first_revoked(["at_c", "cred_r"]) == "cred_r"


def test_remember_once_refuses_a_live_key_and_reuses_an_expired_one(store: Store) -> None:
    with store.write() as tx:
        assert tx.remember_once("k1", expires_at=T0 + 10, now=T0)
        assert not tx.remember_once("k1", expires_at=T0 + 10, now=T0 + 5)
        assert tx.remember_once("k1", expires_at=T0 + 30, now=T0 + 20)  # the old entry expired


def test_driver_errors_are_sqlalchemy_errors(store: Store) -> None:
    """A constraint violation on the driver's cursor surfaces as SQLAlchemy's IntegrityError
    (what the web layer and the group committer handle), its parameters hidden."""
    with store.write() as tx:
        tx.insert_node(node("at_dup"))
    with pytest.raises(IntegrityError) as caught, store.write() as tx:
        tx.insert_node(node("at_dup"))
    assert "parameters hidden" in str(caught.value)


def test_a_broken_lookup_connection_is_replaced(tmp_path: Path) -> None:
    """On SQLite each thread keeps its lookup connection; one that failed is not reused."""
    store = Store.open(Settings(data_dir=tmp_path / "data").database_url)
    try:
        with store.lookup() as db:
            db._db.close()  # the connection dies under the lookups
            with pytest.raises(DBAPIError):
                db.node("at_x")
            assert db.broken
        with store.lookup() as again:
            assert again is not db
            assert again.node("at_x") is None
    finally:
        store.close()


def test_statements_in_each_drivers_parameter_style() -> None:
    sqlite, pg = Statements("sqlite", Exception), Statements("postgresql", Exception)
    assert ":client_id" in sqlite.client_with_credentials
    assert "%(client_id)s" in pg.client_with_credentials
    assert pg.first_revoked(2).endswith("IN (%(i0)s, %(i1)s) LIMIT 1")


def test_reads_inside_a_write_use_its_transaction(store: Store) -> None:
    """A read or lookup opened inside a write (a signing-key refresh during an issuance)
    goes through the write's own connection: no second connection that could wait for
    ever on a pool held by writers queued behind this one. It sees the write's rows."""
    with store.write() as tx:
        tx.insert_node(node("at_inner"))
        with store.read() as inner:
            assert inner is tx
            assert inner.get_node("at_inner") is not None
        with store.lookup() as db:
            assert db is tx.fast
    with store.read() as outside:
        assert outside is not tx
        assert outside.get_node("at_inner") is not None
