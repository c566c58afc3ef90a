"""The store: every read and write tokentrail makes, on SQLite or PostgreSQL.

Callers open a unit of work with :meth:`Store.write` (one transaction, committed
when the block ends, rolled back if it raises) or :meth:`Store.read`, and call
the typed methods of :class:`Tx`. An issuance writes its node, its edges and
its audit record inside one ``write`` block, so none exists without the others.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import IntegrityError

from tokentrail.audit import GENESIS, canonical_from_row, link_hash
from tokentrail.model import (
    AdminKey,
    AuditRecord,
    AuthMethod,
    Client,
    ClientKind,
    Credential,
    CredentialKind,
    Node,
    NodeKind,
    Revocation,
    Team,
    TrustedIssuer,
)
from tokentrail.storage import tables as t
from tokentrail.storage.engine import canonical_json, migrate, open_engine
from tokentrail.storage.group_commit import GroupCommitter
from tokentrail.storage.prepared import Lookups, Statements
from tokentrail.storage.walsync import WalSyncer
from tokentrail.storage.writer_lock import WriterBusy, WriterLock

#: PostgreSQL advisory-lock key that serialises appends to the audit chain.
AUDIT_LOCK = 7419012
#: PostgreSQL channel on which every committed revocation is announced (payload: its seq).
REVOCATION_CHANNEL = "tokentrail_revocations"


class WriteWouldBlock(BaseException):
    """:meth:`Store.write` was called inside :meth:`Store.no_writes`; nothing was written.

    A ``BaseException``, so that no ``except Exception`` on the way swallows it.
    """


#: Set while code runs on an event loop, where a write (its lock, commit and flush) would block.
_NO_WRITES: ContextVar[bool] = ContextVar("tokentrail_no_writes", default=False)


class Store:
    """A database holding one tokentrail installation."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        # SQLite admits one writer at a time; the others wait in its busy handler,
        # which sleeps in steps of up to 100 ms. Writers queue on a lock instead and
        # start as soon as the previous one commits: a thread lock here, extended
        # across processes by :meth:`open` for a database file (see .writer_lock).
        self._writers: AbstractContextManager[Any] = (
            WriterLock(None) if self.dialect == "sqlite" else nullcontext()
        )
        #: SQLite group commit: set by :meth:`open` when FULL durability is asked for.
        self.syncer: WalSyncer | None = None
        #: Called (after the commit) with every revocation this process commits.
        self.revocation_hooks: list[Callable[[Revocation], None]] = []
        self.statements = Statements(self.dialect, engine.dialect.loaded_dbapi.Error)
        #: Runs request writes in shared transactions (see :mod:`.group_commit`).
        self.committer = GroupCommitter(self)
        self._local = threading.local()
        self._lookups: list[Lookups] = []
        self._lookups_lock = threading.Lock()

    @classmethod
    def open(cls, url: str, *, sqlite_synchronous: str = "FULL") -> Store:
        """Open (and migrate) a database.

        On SQLite, ``FULL`` durability is kept with group commit: connections
        commit with ``synchronous=NORMAL`` and every write waits, before it is
        acknowledged, for a shared fsync of the WAL (see :mod:`.walsync`).
        """
        group = url.startswith("sqlite") and sqlite_synchronous == "FULL"
        engine = open_engine(url, sqlite_synchronous="NORMAL" if group else sqlite_synchronous)
        migrate(engine)
        store = cls(engine)
        db_path = url.split("///", 1)[-1]
        if store.dialect == "sqlite" and db_path and db_path != ":memory:":
            store._writers = WriterLock(Path(db_path + ".writer-lock"))
            if group:
                store.syncer = WalSyncer(Path(db_path))
        return store

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction; SQLite takes the write lock at ``BEGIN``. The block
        is left once the commit is durable and its revocation hooks have run."""
        with self.write_unsettled() as tx:
            yield tx
        self.settle(tx)

    @contextmanager
    def write_unsettled(self, *, blocking: bool = True) -> Iterator[Tx]:
        """A write transaction that ends at its commit: nothing may be acknowledged
        until :meth:`settle` has run for it (the WAL flush, the revocation hooks).

        Without ``blocking``, :class:`WriterBusy` is raised at once, before anything
        is written, when another writer holds the lock (and always on PostgreSQL,
        whose writers are not queued here): how the group committer commits on an
        event loop without ever waiting there (:mod:`.group_commit`).
        """
        if _NO_WRITES.get():
            raise WriteWouldBlock
        with self._writer(blocking), self.engine.connect() as conn:
            if self.dialect == "sqlite":
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            tx = Tx(conn, self.statements)
            with conn.begin():
                open_writes = self._open_writes()
                open_writes.append(tx)
                try:
                    yield tx
                finally:
                    open_writes.pop()

    def settle(self, tx: Tx) -> None:
        """After a commit, before it is acknowledged: wait for the WAL flush that makes
        it durable (SQLite group commit, :mod:`.walsync`), then run the revocation
        hooks. Blocks; safe on any thread."""
        if self.syncer is not None:
            self.syncer.durable()  # acknowledged only once the WAL is on disk
        for rev in tx.revoked:
            for hook in self.revocation_hooks:
                hook(rev)

    @contextmanager
    def _writer(self, blocking: bool) -> Iterator[None]:
        if blocking:
            with self._writers:
                yield
            return
        lock = self._writers
        if not isinstance(lock, WriterLock) or not lock.acquire(blocking=False):
            raise WriterBusy
        try:
            yield
        finally:
            lock.release()

    def _open_writes(self) -> list[Tx]:
        found: list[Tx] | None = getattr(self._local, "writes", None)
        if found is None:
            found = self._local.writes = []
        return found

    @staticmethod
    @contextmanager
    def no_writes() -> Iterator[None]:
        """Within this block :meth:`write` raises :class:`WriteWouldBlock` before it starts."""
        token = _NO_WRITES.set(True)
        try:
            yield
        finally:
            _NO_WRITES.reset(token)

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read transaction; inside a :meth:`write` block of the same thread, that
        write's own transaction (see :meth:`lookup`)."""
        open_writes = self._open_writes()
        if open_writes:
            yield open_writes[-1]
            return
        with self.engine.connect() as conn, conn.begin():
            yield Tx(conn, self.statements)

    @contextmanager
    def lookup(self) -> Iterator[Lookups]:
        """A connection for the hot-path reads of :mod:`.prepared`, in autocommit mode.

        A lookup is one statement, which reads one consistent snapshot on its own
        (use :meth:`read` when several reads must agree). On SQLite each thread
        keeps a connection of its own outside the pool (opening one costs more
        than the lookup); one that raised is replaced at the next call. On
        PostgreSQL, where every connection is a server process, a lookup borrows
        a pooled connection (in autocommit mode while it has it: no transaction
        to end) and gives it back.

        Inside a :meth:`write` block of the same thread, reads and lookups go
        through that write's own transaction instead: a second connection there
        could wait for ever on PostgreSQL, when every pooled connection is held
        by writers queued on the audit lock this write holds (a signing-key
        refresh during an issuance did exactly that).
        """
        open_writes = self._open_writes()
        if open_writes:
            yield open_writes[-1].fast
            return
        if self.dialect == "postgresql":
            raw = self.engine.raw_connection()
            dbapi: Any = raw.driver_connection
            pg = Lookups(dbapi, self.statements)
            try:
                dbapi.autocommit = True
                yield pg
            finally:
                if pg.broken and dbapi.broken:
                    # The server went away (a restart, a dropped connection): every
                    # pooled connection is suspect, so the pool starts afresh, as
                    # SQLAlchemy does when its own statements find a dead connection.
                    raw.invalidate()
                    self.engine.dispose(close=False)
                else:
                    with contextlib.suppress(Exception):  # a broken one is discarded
                        dbapi.autocommit = False
                    raw.close()
            return
        lookups: Lookups | None = getattr(self._local, "lookups", None)
        if lookups is None or lookups.broken:
            if lookups is not None:
                self._forget(lookups)
            raw = self.engine.raw_connection()
            dbapi = raw.driver_connection
            raw.detach()  # ours for the thread's life; the pool keeps its own
            lookups = Lookups(dbapi, self.statements)
            with self._lookups_lock:
                self._lookups.append(lookups)
            self._local.lookups = lookups
        yield lookups

    def _forget(self, lookups: Lookups) -> None:
        with self._lookups_lock:
            if lookups in self._lookups:
                self._lookups.remove(lookups)
        with contextlib.suppress(Exception):  # a broken connection may fail to close
            lookups.close()

    def close(self) -> None:
        self.committer.close()
        if isinstance(self._writers, WriterLock):
            self._writers.close()
        if self.syncer is not None:
            self.syncer.close()
        with self._lookups_lock:
            opened, self._lookups = self._lookups, []
        for lookups in opened:
            with contextlib.suppress(Exception):
                lookups.close()
        self.engine.dispose()


#: Per-connection temporary table of one lineage's node ids (see materialize_lineage).
_LINEAGE = Table("tt_lineage", MetaData(), Column("id", String(64), primary_key=True))


def _descendant_ids(node_id: str) -> Any:
    """A recursive CTE (column ``id``) of every node below ``node_id`` in the DAG."""
    tree = (
        select(t.edges.c.child_id.label("id"))
        .where(t.edges.c.parent_id == node_id)
        .cte("tree", recursive=True)
    )
    return tree.union(select(t.edges.c.child_id).join(tree, t.edges.c.parent_id == tree.c.id))


def _insert_ignore(dialect: str, table: Any) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` for the current dialect.

    Callers read ``rowcount`` to learn whether the row was new; SQLAlchemy only
    keeps it for INSERTs when asked (on PostgreSQL it is otherwise -1, which
    would make every duplicate look new: replayed jtis accepted, teams "created"
    twice).
    """
    stmt: Any
    if dialect == "postgresql":
        stmt = pg_dialect.insert(table).on_conflict_do_nothing()

    else:
        stmt = sqlite_dialect.insert(table).on_conflict_do_nothing()
    return stmt.execution_options(preserve_rowcount=True)


class Tx:
    """One unit of work on an open transaction."""

    def __init__(self, conn: Connection, statements: Statements) -> None:
        self.conn = conn
        self.dialect = statements.dialect
        #: The hot-path statements on this transaction's own DB-API connection.
        self.fast = Lookups(conn.connection.driver_connection, statements)
        #: The root whose descendants sit in the ``tt_lineage`` temporary table, and how many.
        self._lineage_root: str | None = None
        self._lineage_count = 0
        #: (seq, hash) of the newest audit record, once this transaction has read it.
        self._audit_tail: tuple[int, str] | None = None
        #: Revocations written in this transaction (for the store's hooks after commit).
        self.revoked: list[Revocation] = []

    # --- teams ------------------------------------------------------------

    def insert_team(self, team: Team) -> bool:
        res = self.conn.execute(
            _insert_ignore(self.dialect, t.teams).values(
                id=team.id, name=team.name, created_at=team.created_at
            )
        )
        return bool(res.rowcount)

    def get_team(self, team_id: str) -> Team | None:
        row = self.conn.execute(select(t.teams).where(t.teams.c.id == team_id)).first()
        return Team(row.id, row.name, row.created_at) if row else None

    def list_teams(self) -> list[Team]:
        rows = self.conn.execute(select(t.teams).order_by(t.teams.c.id))
        return [Team(r.id, r.name, r.created_at) for r in rows]

    # --- clients and credentials --------------------------------------------

    def insert_client(self, client: Client) -> None:
        self.conn.execute(
            insert(t.clients).values(
                id=client.id,
                team_id=client.team_id,
                name=client.name,
                kind=client.kind.value,
                auth_method=client.auth_method.value,
                paths=list(client.paths),
                scopes=list(client.scopes),
                audiences=list(client.audiences),
                created_at=client.created_at,
                disabled_at=client.disabled_at,
            )
        )

    def get_client(self, client_id: str) -> Client | None:
        row = self.conn.execute(select(t.clients).where(t.clients.c.id == client_id)).first()
        return _client(row) if row else None

    def list_clients(self, team_id: str | None = None) -> list[Client]:
        q = select(t.clients).order_by(t.clients.c.created_at)
        if team_id is not None:
            q = q.where(t.clients.c.team_id == team_id)
        return [_client(r) for r in self.conn.execute(q)]

    def insert_credential(self, cred: Credential) -> None:
        self.conn.execute(
            insert(t.credentials).values(
                id=cred.id,
                client_id=cred.client_id,
                kind=cred.kind.value,
                secret_hash=cred.secret_hash,
                jwks=cred.jwks,
                created_at=cred.created_at,
                not_after=cred.not_after,
                tls_subject_dn=cred.tls_subject_dn,
            )
        )

    def get_credential(self, cred_id: str) -> Credential | None:
        row = self.conn.execute(select(t.credentials).where(t.credentials.c.id == cred_id)).first()
        return _credential(row) if row else None

    def client_credentials(self, client_id: str, *, now: float) -> list[Credential]:
        """The client's credentials that have not passed their ``not_after``, newest first."""
        rows = self.conn.execute(
            select(t.credentials)
            .where(
                t.credentials.c.client_id == client_id,
                or_(t.credentials.c.not_after.is_(None), t.credentials.c.not_after > now),
            )
            .order_by(t.credentials.c.created_at.desc())
        )
        return [_credential(r) for r in rows]

    def retired_credentials(self, client_id: str, *, now: float) -> list[Credential]:
        """The client's credentials past their ``not_after`` (rotated out)."""
        rows = self.conn.execute(
            select(t.credentials).where(
                t.credentials.c.client_id == client_id,
                t.credentials.c.not_after.is_not(None),
                t.credentials.c.not_after <= now,
            )
        )
        return [_credential(r) for r in rows]

    def set_credential_not_after(self, cred_id: str, not_after: float) -> None:
        self.conn.execute(
            update(t.credentials)
            .where(
                t.credentials.c.id == cred_id,
                or_(t.credentials.c.not_after.is_(None), t.credentials.c.not_after > not_after),
            )
            .values(not_after=not_after)
        )

    # --- trusted upstream issuers -------------------------------------------

    def put_issuer(self, issuer: TrustedIssuer) -> None:
        self.conn.execute(
            delete(t.trusted_issuers).where(t.trusted_issuers.c.issuer == issuer.issuer)
        )
        self.conn.execute(
            insert(t.trusted_issuers).values(
                issuer=issuer.issuer,
                jwks=issuer.jwks,
                audience=issuer.audience,
                created_at=issuer.created_at,
                jwks_url=issuer.jwks_url,
                max_aal=issuer.max_aal,
                jwks_fetched_at=issuer.jwks_fetched_at,
            )
        )

    def set_issuer_jwks(self, issuer: str, jwks: dict[str, Any], *, at: float) -> None:
        """Store a freshly fetched copy of a provider's JWKS."""
        self.conn.execute(
            update(t.trusted_issuers)
            .where(t.trusted_issuers.c.issuer == issuer)
            .values(jwks=jwks, jwks_fetched_at=at)
        )

    def get_issuer(self, issuer: str) -> TrustedIssuer | None:
        row = self.conn.execute(
            select(t.trusted_issuers).where(t.trusted_issuers.c.issuer == issuer)
        ).first()
        if row is None:
            return None
        return TrustedIssuer(
            issuer=row.issuer,
            jwks=dict(row.jwks),
            audience=row.audience,
            created_at=row.created_at,
            jwks_url=row.jwks_url,
            max_aal=int(row.max_aal),
            jwks_fetched_at=row.jwks_fetched_at,
        )

    # --- lineage nodes -------------------------------------------------------

    def insert_node(self, node: Node, *, token_hash: str | None = None) -> None:
        """Record a node and its edges to its parents (hot path: :mod:`.prepared`)."""
        self.fast.insert_node(node, token_hash)

    def insert_node_if_absent(self, node: Node) -> bool:
        """Record a node with a deterministic id (an upstream login) unless it exists."""
        res = self.conn.execute(
            _insert_ignore(self.dialect, t.nodes).values(
                id=node.id,
                kind=node.kind.value,
                path_id=node.path_id,
                client_id=node.client_id,
                subject=node.subject,
                team_id=node.team_id,
                parents=list(node.parents),
                ancestors=list(node.ancestors),
                created_at=node.created_at,
                expires_at=node.expires_at,
                meta=node.meta,
            )
        )
        return bool(res.rowcount)

    def get_node(self, node_id: str) -> Node | None:
        return self.fast.node(node_id)

    def get_node_by_token_hash(self, token_hash: str) -> Node | None:
        row = self.conn.execute(select(t.nodes).where(t.nodes.c.token_hash == token_hash)).first()
        return _node(row) if row else None

    def mark_used(self, node_id: str, at: float) -> bool:
        """Compare-and-set a refresh token's ``used_at``; False if it was already used."""
        res = self.conn.execute(
            update(t.nodes)
            .where(t.nodes.c.id == node_id, t.nodes.c.used_at.is_(None))
            .values(used_at=at)
        )
        return res.rowcount == 1

    def touch(self, node_id: str, at: float) -> None:
        """Record activity on a session (its ``used_at`` is the last use)."""
        self.conn.execute(update(t.nodes).where(t.nodes.c.id == node_id).values(used_at=at))

    def children(self, node_id: str) -> list[str]:
        rows = self.conn.execute(select(t.edges.c.child_id).where(t.edges.c.parent_id == node_id))
        return [r.child_id for r in rows]

    def descendants(self, node_id: str, *, limit: int) -> list[Node]:
        """Nodes below ``node_id`` in the DAG (each once), breadth-first, at most ``limit``."""
        tree = _descendant_ids(node_id)
        rows = self.conn.execute(
            select(t.nodes)
            .join(tree, t.nodes.c.id == tree.c.id)
            .order_by(t.nodes.c.created_at, t.nodes.c.id)
            .limit(limit)
        )
        return [_node(r) for r in rows]

    def count_descendants(self, node_id: str) -> int:
        tree = _descendant_ids(node_id)
        return int(self.conn.execute(select(func.count()).select_from(tree)).scalar_one())

    def nodes_of_subject(
        self, subject: str, kind: NodeKind, *, live_at: float | None = None
    ) -> list[Node]:
        """A subject's nodes of ``kind``; with ``live_at``, only those not expired then."""
        q = select(t.nodes).where(t.nodes.c.subject == subject, t.nodes.c.kind == kind.value)
        if live_at is not None:
            q = q.where(or_(t.nodes.c.expires_at.is_(None), t.nodes.c.expires_at > live_at))
        rows = self.conn.execute(q.order_by(t.nodes.c.created_at))
        return [_node(r) for r in rows]

    # --- revocations ----------------------------------------------------------

    def revoke(
        self, node_id: str, *, reason: str, actor: str, at: float, matters_until: float
    ) -> Revocation | None:
        """Record one revocation; None when the node was already revoked.

        Followers read revocations "after seq N", so seq order must be commit
        order: on PostgreSQL the audit-chain lock (which the revocation's audit
        record takes anyway) is taken before the sequence hands out a number,
        and the commit announces the seq on :data:`REVOCATION_CHANNEL`. SQLite
        write transactions are serialised already.
        """
        if self.dialect == "postgresql":
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})")
        res = self.conn.execute(
            _insert_ignore(self.dialect, t.revocations).values(
                node_id=node_id,
                reason=reason,
                actor=actor,
                revoked_at=at,
                matters_until=matters_until,
            )
        )
        if not res.rowcount:
            return None
        rev = self.get_revocation(node_id)
        assert rev is not None
        if self.dialect == "postgresql":
            self.conn.execute(select(func.pg_notify(REVOCATION_CHANNEL, str(rev.seq))))
        self.revoked.append(rev)
        return rev

    def get_revocation(self, node_id: str) -> Revocation | None:
        row = self.conn.execute(
            select(t.revocations).where(t.revocations.c.node_id == node_id)
        ).first()
        return _revocation(row) if row else None

    def first_revoked(self, ids: Sequence[str]) -> str | None:
        """One of ``ids`` that is revoked (any one), or None: the whole liveness check."""
        return self.fast.first_revoked(ids)

    def revocations_among(self, ids: Iterable[str]) -> dict[str, Revocation]:
        ids = list(ids)
        out: dict[str, Revocation] = {}
        for start in range(0, len(ids), 500):
            rows = self.conn.execute(
                select(t.revocations).where(t.revocations.c.node_id.in_(ids[start : start + 500]))
            )
            out.update({r.node_id: _revocation(r) for r in rows})
        return out

    def revocations_since(self, seq: int, *, limit: int = 1000) -> list[Revocation]:
        rows = self.conn.execute(
            select(t.revocations)
            .where(t.revocations.c.seq > seq)
            .order_by(t.revocations.c.seq)
            .limit(limit)
        )
        return [_revocation(r) for r in rows]

    def revocation_page(
        self, after: int, *, limit: int, live_at: float
    ) -> tuple[list[Revocation], int]:
        """Revocations after seq ``after`` that still matter at ``live_at``, oldest first,
        and the seq a follower has then read up to.

        The second value is the last returned seq when the page is full, else the
        highest seq committed when the page was read (entries in between had
        stopped mattering): reading from it later misses nothing, because seq
        order is commit order (:meth:`revoke`). It is read before the page, so a
        revocation committed in between is left for the next read.
        """
        high = self.conn.execute(select(func.max(t.revocations.c.seq))).scalar_one()
        high = max(after, int(high or 0))
        rows = self.conn.execute(
            select(t.revocations)
            .where(
                t.revocations.c.seq > after,
                t.revocations.c.seq <= high,
                t.revocations.c.matters_until > live_at,
            )
            .order_by(t.revocations.c.seq)
            .limit(limit)
        )
        page = [_revocation(r) for r in rows]
        return page, (page[-1].seq if len(page) == limit else high)

    def purge_revocations(self, now: float) -> int:
        """Delete revocations nobody needs any more: the node itself has expired and
        nothing below it can still be alive (``matters_until`` passed).

        Revocations of nodes without an expiry (credentials) stay: their row is
        what keeps the credential dead.
        """
        expired = (
            select(t.nodes.c.id)
            .where(
                t.nodes.c.id == t.revocations.c.node_id,
                t.nodes.c.expires_at.is_not(None),
                t.nodes.c.expires_at <= now,
            )
            .exists()
        )
        res = self.conn.execute(
            delete(t.revocations).where(t.revocations.c.matters_until <= now, expired)
        )
        return int(res.rowcount)

    # --- replay protection ----------------------------------------------------

    def remember_once(self, key: str, *, expires_at: float, now: float) -> bool:
        """Record ``key`` until ``expires_at``; False if it is already recorded and live."""
        return self.fast.remember_once(key, expires_at=expires_at, now=now)

    def purge_seen(self, now: float) -> int:
        res = self.conn.execute(delete(t.seen_jtis).where(t.seen_jtis.c.expires_at <= now))
        return int(res.rowcount)

    # --- signing keys ---------------------------------------------------------

    def insert_signing_key(
        self,
        *,
        kid: str,
        alg: str,
        public_jwk: dict[str, Any],
        sealed: bytes,
        at: float,
        purpose: str = "access_token",
    ) -> None:
        self.conn.execute(
            insert(t.signing_keys).values(
                kid=kid,
                alg=alg,
                public_jwk=public_jwk,
                sealed_private=sealed,
                created_at=at,
                purpose=purpose,
            )
        )

    def signing_keys(self, *, now: float, purpose: str = "access_token") -> list[dict[str, Any]]:
        """Keys still published (active or retired but not past ``publish_until``), newest first."""
        rows = self.conn.execute(
            select(t.signing_keys)
            .where(
                t.signing_keys.c.purpose == purpose,
                or_(t.signing_keys.c.publish_until.is_(None), t.signing_keys.c.publish_until > now),
            )
            .order_by(t.signing_keys.c.created_at.desc(), t.signing_keys.c.kid)
        )
        return [dict(r._mapping) for r in rows]

    def retire_signing_keys(
        self, *, except_kid: str, at: float, publish_until: float, purpose: str = "access_token"
    ) -> None:
        self.conn.execute(
            update(t.signing_keys)
            .where(
                t.signing_keys.c.purpose == purpose,
                t.signing_keys.c.kid != except_kid,
                t.signing_keys.c.retired_at.is_(None),
            )
            .values(retired_at=at, publish_until=publish_until)
        )

    # --- incidents ------------------------------------------------------------

    def insert_incident(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(t.incidents).values(**row))

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(t.incidents).where(t.incidents.c.id == incident_id)).first()
        return dict(row._mapping) if row else None

    def update_incident(self, incident_id: str, **values: Any) -> None:
        self.conn.execute(
            update(t.incidents).where(t.incidents.c.id == incident_id).values(**values)
        )

    def list_incidents(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(select(t.incidents).order_by(t.incidents.c.opened_at))
        return [dict(r._mapping) for r in rows]

    def materialize_lineage(self, node_id: str) -> int:
        """Collect the descendants of ``node_id`` once into a temporary table.

        The lineage queries below then join on it instead of re-walking the DAG
        (a million descendants are walked once per report, not once per query).
        Returns how many descendants there are.
        """
        if self._lineage_root == node_id:
            return self._lineage_count
        self.conn.exec_driver_sql(
            "CREATE TEMPORARY TABLE IF NOT EXISTS tt_lineage (id VARCHAR(64) PRIMARY KEY)"
        )
        self.conn.exec_driver_sql("DELETE FROM tt_lineage")
        tree = _descendant_ids(node_id)
        self.conn.execute(insert(_LINEAGE).from_select(["id"], select(tree.c.id)))
        count = self.conn.exec_driver_sql("SELECT count(*) FROM tt_lineage").scalar_one()
        self._lineage_root, self._lineage_count = node_id, int(count)
        return self._lineage_count

    def lineage_summary(self, node_id: str, *, at: float) -> list[dict[str, Any]]:
        """Descendants of ``node_id`` grouped by kind, path and client, counted in SQL.

        ``live`` counts those created before ``at`` and unexpired then; ``longest``
        is the latest expiry among them. Memory stays bounded whatever the count.
        """
        self.materialize_lineage(node_id)
        live = and_(
            t.nodes.c.created_at <= at,
            or_(t.nodes.c.expires_at.is_(None), t.nodes.c.expires_at > at),
        )
        rows = self.conn.execute(
            select(
                t.nodes.c.kind,
                t.nodes.c.path_id,
                t.nodes.c.client_id,
                func.count().label("total"),
                func.sum(case((live, 1), else_=0)).label("live"),
                func.max(case((live, t.nodes.c.expires_at), else_=None)).label("longest"),
                func.min(t.nodes.c.created_at).label("first"),
                func.max(t.nodes.c.created_at).label("last"),
            )
            .join(_LINEAGE, t.nodes.c.id == _LINEAGE.c.id)
            .group_by(t.nodes.c.kind, t.nodes.c.path_id, t.nodes.c.client_id)
        )
        return [dict(r._mapping) for r in rows]

    def lineage_audit(
        self,
        node_id: str,
        *,
        client_id: str | None = None,
        events: Sequence[str] = (),
        since: float | None = None,
        limit: int = 500,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Audit records about ``node_id``, its descendants (or ``client_id``), in order."""
        self.materialize_lineage(node_id)
        about = or_(t.audit.c.node_id == node_id, t.audit.c.node_id.in_(select(_LINEAGE.c.id)))
        if client_id is not None:
            about = or_(about, t.audit.c.client_id == client_id)
        q = select(t.audit).where(about)
        if events:
            exact = [e for e in events if not e.endswith(".")]
            prefixes = [e for e in events if e.endswith(".")]
            q = q.where(
                or_(t.audit.c.event.in_(exact), *(t.audit.c.event.startswith(p) for p in prefixes))
            )
        if since is not None:
            q = q.where(t.audit.c.at >= since)
        order = t.audit.c.seq.desc() if newest_first else t.audit.c.seq
        return [dict(r._mapping) for r in self.conn.execute(q.order_by(order).limit(limit))]

    def lineage_audiences(self, node_id: str) -> dict[str, int]:
        """Audiences of the tokens below ``node_id`` with their counts, grouped in SQL."""
        self.materialize_lineage(node_id)
        if self.dialect == "postgresql":
            sql = (
                "SELECT a, count(*) FROM nodes JOIN tt_lineage l ON nodes.id = l.id "
                "CROSS JOIN LATERAL json_array_elements_text(nodes.meta -> 'aud') AS a GROUP BY a"
            )
        else:
            sql = (
                "SELECT j.value, count(*) FROM nodes JOIN tt_lineage l ON nodes.id = l.id, "
                "json_each(nodes.meta, '$.aud') AS j GROUP BY j.value"
            )
        return {str(aud): int(n) for aud, n in self.conn.exec_driver_sql(sql)}

    # --- notification outbox --------------------------------------------------

    def enqueue(self, *, topic: str, recipient: str, payload: dict[str, Any], at: float) -> int:
        """Queue a notification in this transaction: it exists exactly if the change does."""
        res = self.conn.execute(
            insert(t.outbox).values(
                created_at=at,
                topic=topic,
                recipient=recipient,
                payload=payload,
                attempts=0,
                next_attempt_at=at,
            )
        )
        key = res.inserted_primary_key
        assert key is not None
        return int(key[0])

    def due_notifications(
        self, *, now: float, max_attempts: int, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Undelivered messages due now, oldest first, leaving out the given-up ones."""
        rows = self.conn.execute(
            select(t.outbox)
            .where(
                t.outbox.c.delivered_at.is_(None),
                t.outbox.c.next_attempt_at <= now,
                t.outbox.c.attempts < max_attempts,
            )
            .order_by(t.outbox.c.id)
            .limit(limit)
        )
        return [dict(r._mapping) for r in rows]

    def notifications(self, *, recipient: str | None = None) -> list[dict[str, Any]]:
        q = select(t.outbox).order_by(t.outbox.c.id)
        if recipient is not None:
            q = q.where(t.outbox.c.recipient == recipient)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def mark_delivered(self, notification_id: int, *, at: float) -> None:
        self.conn.execute(
            update(t.outbox).where(t.outbox.c.id == notification_id).values(delivered_at=at)
        )

    def claim_notification(self, notification_id: int, *, now: float, until: float) -> bool:
        """Take a due message for delivery until ``until``; False if another node has it
        (or it was delivered). Several servers drain one outbox without sending twice."""
        res = self.conn.execute(
            update(t.outbox)
            .where(
                t.outbox.c.id == notification_id,
                t.outbox.c.delivered_at.is_(None),
                t.outbox.c.next_attempt_at <= now,
            )
            .values(next_attempt_at=until)
        )
        return res.rowcount == 1

    def mark_failed(self, notification_id: int, *, error: str, retry_at: float) -> None:
        self.conn.execute(
            update(t.outbox)
            .where(t.outbox.c.id == notification_id)
            .values(
                attempts=t.outbox.c.attempts + 1, last_error=error[:500], next_attempt_at=retry_at
            )
        )

    # --- audit checkpoints ----------------------------------------------------

    def audit_tail(self) -> tuple[int, str] | None:
        """(seq, hash) of the newest audit record."""
        row = self.conn.execute(
            select(t.audit.c.seq, t.audit.c.hash).order_by(t.audit.c.seq.desc()).limit(1)
        ).first()
        return (int(row.seq), str(row.hash)) if row else None

    def insert_checkpoint(
        self, *, seq: int, digest: str, at: float, kid: str, signature: str
    ) -> bool:
        res = self.conn.execute(
            _insert_ignore(self.dialect, t.audit_checkpoints).values(
                seq=seq, hash=digest, at=at, kid=kid, signature=signature
            )
        )
        return bool(res.rowcount)

    def checkpoints(self) -> list[dict[str, Any]]:
        rows = self.conn.execute(select(t.audit_checkpoints).order_by(t.audit_checkpoints.c.seq))
        return [dict(r._mapping) for r in rows]

    def audit_query(
        self,
        *,
        subject: str | None = None,
        client_id: str | None = None,
        team_id: str | None = None,
        events: Sequence[str] = (),
        node_ids: Sequence[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Audit records matching every given filter, in ledger order."""
        conds: list[Any] = []
        if subject is not None:
            conds.append(t.audit.c.subject == subject)
        if client_id is not None:
            conds.append(t.audit.c.client_id == client_id)
        if team_id is not None:
            conds.append(t.audit.c.team_id == team_id)
        if events:
            exact = [e for e in events if not e.endswith(".")]
            prefixes = [e for e in events if e.endswith(".")]
            conds.append(
                or_(t.audit.c.event.in_(exact), *(t.audit.c.event.startswith(p) for p in prefixes))
            )
        if since is not None:
            conds.append(t.audit.c.at >= since)
        if until is not None:
            conds.append(t.audit.c.at <= until)
        out: list[dict[str, Any]] = []
        chunks = (
            [None]
            if node_ids is None
            else [list(node_ids[i : i + 500]) for i in range(0, len(node_ids), 500)]
        )
        for chunk in chunks:
            q = select(t.audit).where(and_(*conds)) if conds else select(t.audit)
            if chunk is not None:
                q = q.where(t.audit.c.node_id.in_(chunk))
            rows = self.conn.execute(q.order_by(t.audit.c.seq).limit(limit))
            out.extend(dict(r._mapping) for r in rows)
        out.sort(key=lambda r: int(r["seq"]))
        return out[:limit]

    def audit_raw(self, *, after_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Rows for verification, as plain tuples with ``data`` as its stored JSON text:
        (seq, at, event, actor, node_id, client_id, subject, team_id, data, prev_hash, hash)."""
        a = t.audit.c
        q = (
            select(
                a.seq,
                a.at,
                a.event,
                a.actor,
                a.node_id,
                a.client_id,
                a.subject,
                a.team_id,
                cast(a.data, Text),
                a.prev_hash,
                a.hash,
            )
            .where(a.seq > after_seq)
            .order_by(a.seq)
            .limit(limit)
        )
        return [tuple(r) for r in self.conn.execute(q)]

    def audit_rows(self, *, after_seq: int = 0) -> Iterator[dict[str, Any]]:
        """Every audit record from ``after_seq`` on, in order, streamed in batches."""
        last = after_seq
        while True:
            rows = self.conn.execute(
                select(t.audit).where(t.audit.c.seq > last).order_by(t.audit.c.seq).limit(5000)
            ).all()
            if not rows:
                return
            for r in rows:
                yield dict(r._mapping)
            last = int(rows[-1].seq)

    # --- admin keys -----------------------------------------------------------

    def insert_admin_key(self, key: AdminKey, key_hash: str) -> None:
        self.conn.execute(
            insert(t.admin_keys).values(
                id=key.id,
                team_id=key.team_id,
                roles=list(key.roles),
                name=key.name,
                key_hash=key_hash,
                created_at=key.created_at,
            )
        )

    def admin_key_by_hash(self, key_hash: str) -> AdminKey | None:
        row = self.conn.execute(
            select(t.admin_keys).where(
                t.admin_keys.c.key_hash == key_hash, t.admin_keys.c.revoked_at.is_(None)
            )
        ).first()
        if row is None:
            return None
        return AdminKey(row.id, row.team_id, tuple(row.roles), row.name, row.created_at)

    # --- audit ----------------------------------------------------------------

    def append_audit(
        self,
        event: str,
        *,
        at: float,
        actor: str,
        node_id: str | None = None,
        client_id: str | None = None,
        subject: str | None = None,
        team_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> int:
        """Append one record to the hash chain; returns its sequence number.

        Appends are serialised: SQLite's write transactions already are, and on
        PostgreSQL the first append of a transaction takes a transaction-scoped
        advisory lock, so the chain has one order whatever the number of nodes.
        """
        if self._audit_tail is None:
            if self.dialect == "postgresql":
                self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({AUDIT_LOCK})")
            last = self.fast.audit_tail()
            self._audit_tail = (last[0], last[1] or GENESIS) if last else (0, GENESIS)
        seq, prev = self._audit_tail[0] + 1, self._audit_tail[1]
        event = str(event)
        # One canonical encoding of ``data``: stored as the row's text and hashed in
        # the record's canonical bytes (what the ledger's verification recomputes).
        data_json = canonical_json(data or {})
        body = canonical_from_row(
            seq, at, event, actor, node_id, client_id, subject, team_id, data_json
        )
        digest = link_hash(prev, body)
        self.fast.insert_audit(
            {
                "seq": seq,
                "at": at,
                "event": event,
                "actor": actor,
                "node_id": node_id,
                "client_id": client_id,
                "subject": subject,
                "team_id": team_id,
                "data": data_json,
                "prev_hash": prev,
                "hash": digest,
            }
        )
        self._audit_tail = (seq, digest)
        return seq

    def audit_records(
        self,
        *,
        event: str | None = None,
        node_id: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        conds = [t.audit.c.seq > after_seq]
        if event is not None:
            conds.append(t.audit.c.event == event)
        if node_id is not None:
            conds.append(t.audit.c.node_id == node_id)
        rows = self.conn.execute(
            select(t.audit).where(and_(*conds)).order_by(t.audit.c.seq).limit(limit)
        )
        return [
            AuditRecord(
                r.seq,
                r.at,
                r.event,
                r.actor,
                r.node_id,
                r.client_id,
                r.subject,
                r.team_id,
                dict(r.data),
            )
            for r in rows
        ]

    # --- help-desk recovery (see tokentrail.recovery) -------------------------

    def insert_channel(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(t.subject_channels).values(**row))

    def subject_channels(self, subject: str) -> list[dict[str, Any]]:
        """The subject's registered (not removed) channels, oldest first."""
        rows = self.conn.execute(
            select(t.subject_channels)
            .where(
                t.subject_channels.c.subject == subject,
                t.subject_channels.c.removed_at.is_(None),
            )
            .order_by(t.subject_channels.c.created_at, t.subject_channels.c.id)
        )
        return [dict(r._mapping) for r in rows]

    def get_channel(self, channel_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            select(t.subject_channels).where(t.subject_channels.c.id == channel_id)
        ).first()
        return dict(row._mapping) if row else None

    def remove_channel(self, channel_id: str, *, at: float) -> bool:
        res = self.conn.execute(
            update(t.subject_channels)
            .where(t.subject_channels.c.id == channel_id, t.subject_channels.c.removed_at.is_(None))
            .values(removed_at=at)
        )
        return res.rowcount == 1

    def insert_recovery(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(t.recovery_requests).values(**row))

    def get_recovery(
        self, request_id: str, *, for_update: bool = False, grant_hash: str | None = None
    ) -> dict[str, Any] | None:
        """A recovery request by id (or by its grant's hash), row-locked when ``for_update``."""
        rr = t.recovery_requests
        q = select(rr).where(rr.c.grant_hash == grant_hash if grant_hash else rr.c.id == request_id)
        if for_update:
            q = q.with_for_update()
        row = self.conn.execute(q).first()
        return dict(row._mapping) if row else None

    def update_recovery(self, request_id: str, *, expect: str, **values: Any) -> bool:
        """Compare-and-set: change the request only while its state is ``expect``."""
        rr = t.recovery_requests
        res = self.conn.execute(
            update(rr).where(rr.c.id == request_id, rr.c.state == expect).values(**values)
        )
        return res.rowcount == 1

    def count_recoveries(self, path_id: str, *, since: float, subject: str | None = None) -> int:
        rr = t.recovery_requests
        q = select(func.count()).where(rr.c.path_id == path_id, rr.c.created_at >= since)
        if subject is not None:
            q = q.where(rr.c.subject == subject)
        return int(self.conn.execute(q).scalar_one())

    def list_recoveries(
        self,
        *,
        subject: str | None = None,
        states: Sequence[str] = (),
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Recovery requests, newest first."""
        rr = t.recovery_requests
        q = select(rr)
        if subject is not None:
            q = q.where(rr.c.subject == subject)
        if states:
            q = q.where(rr.c.state.in_(list(states)))
        rows = self.conn.execute(q.order_by(rr.c.created_at.desc(), rr.c.id).limit(limit))
        return [dict(r._mapping) for r in rows]

    def put_freeze(self, scope: str, *, at: float, by: str, reason: str) -> bool:
        """Freeze recovery for ``scope`` (``*`` or a path id); False if already frozen."""
        res = self.conn.execute(
            _insert_ignore(self.dialect, t.recovery_freezes).values(
                scope=scope, frozen_at=at, frozen_by=by, reason=reason
            )
        )
        return bool(res.rowcount)

    def delete_freeze(self, scope: str) -> bool:
        res = self.conn.execute(
            delete(t.recovery_freezes).where(t.recovery_freezes.c.scope == scope)
        )
        return res.rowcount == 1

    def freezes(self, scopes: Sequence[str] | None = None) -> list[dict[str, Any]]:
        q = select(t.recovery_freezes).order_by(t.recovery_freezes.c.scope)
        if scopes is not None:
            q = q.where(t.recovery_freezes.c.scope.in_(list(scopes)))
        return [dict(r._mapping) for r in self.conn.execute(q)]


def _client(row: Any) -> Client:
    return Client(
        id=row.id,
        team_id=row.team_id,
        name=row.name,
        kind=ClientKind(row.kind),
        auth_method=AuthMethod(row.auth_method),
        paths=tuple(row.paths),
        scopes=tuple(row.scopes),
        audiences=tuple(row.audiences),
        created_at=row.created_at,
        disabled_at=row.disabled_at,
    )


def _credential(row: Any) -> Credential:
    return Credential(
        id=row.id,
        client_id=row.client_id,
        kind=CredentialKind(row.kind),
        secret_hash=row.secret_hash,
        jwks=dict(row.jwks) if row.jwks is not None else None,
        created_at=row.created_at,
        not_after=row.not_after,
        tls_subject_dn=row.tls_subject_dn,
    )


def _node(row: Any) -> Node:
    return Node(
        id=row.id,
        kind=NodeKind(row.kind),
        path_id=row.path_id,
        client_id=row.client_id,
        subject=row.subject,
        team_id=row.team_id,
        parents=tuple(row.parents),
        ancestors=tuple(row.ancestors),
        created_at=row.created_at,
        expires_at=row.expires_at,
        meta=dict(row.meta),
        used_at=row.used_at,
    )


def _revocation(row: Any) -> Revocation:
    return Revocation(
        seq=int(row.seq),
        node_id=row.node_id,
        reason=row.reason,
        actor=row.actor,
        revoked_at=row.revoked_at,
        matters_until=row.matters_until,
    )


__all__ = ["IntegrityError", "Store", "Tx", "WriteWouldBlock"]
