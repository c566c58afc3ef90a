"""The audit ledger: verification of the hash chain, signed checkpoints, export, queries.

Records are chained as they are written (:meth:`Tx.append_audit`). A checkpoint
signs the newest ``(seq, hash)`` with a dedicated Ed25519 key, sealed under the
key-encryption key like the token-signing keys; exported checkpoints let anyone
holding the public key check a copy of the ledger.

:func:`Ledger.verify` walks the chain in order and names the first bad sequence
number: a modified record (its content no longer matches its hash), a deleted
or inserted one (a gap or a broken link), records reordered (broken links), and
a truncated ledger (it ends before the newest checkpoint). A full rewrite of
the chain from some point on is caught by any checkpoint after that point.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tokentrail import crypto
from tokentrail.audit import GENESIS, RECORD_FIELDS, canonical_from_row, chain_hash, link_hash
from tokentrail.clock import Clock
from tokentrail.storage.store import Store

PURPOSE = "audit_checkpoint"
#: Rows read per query while verifying.
BATCH = 20_000
_CONTEXT = b"tokentrail checkpoint key v1:"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    hash: str
    at: float
    kid: str
    signature: str

    def signed_bytes(self) -> bytes:
        return checkpoint_bytes(self.seq, self.hash, self.at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "hash": self.hash,
            "at": self.at,
            "kid": self.kid,
            "signature": self.signature,
        }


def checkpoint_bytes(seq: int, digest: str, at: float) -> bytes:
    return json.dumps(
        {"seq": seq, "hash": digest, "at": at}, sort_keys=True, separators=(",", ":")
    ).encode()


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    records: int
    checkpoints: int
    first_bad_seq: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "checkpoints": self.checkpoints,
            "first_bad_seq": self.first_bad_seq,
            "problem": self.problem,
        }


class Ledger:
    def __init__(self, store: Store, kek: bytes, clock: Clock) -> None:
        self._store = store
        self._kek = kek
        self._clock = clock

    # --- checkpoint key -----------------------------------------------------------

    def _key(self) -> crypto.SigningKey:
        now = self._clock.now()
        with self._store.read() as tx:
            rows = tx.signing_keys(now=now, purpose=PURPOSE)
        if not rows:
            key = crypto.generate_signing_key("EdDSA")
            sealed = crypto.seal(self._kek, key.private_pem(), context=_CONTEXT + key.kid.encode())
            with self._store.write() as tx:
                if not tx.signing_keys(now=now, purpose=PURPOSE):
                    tx.insert_signing_key(
                        kid=key.kid,
                        alg=key.alg,
                        public_jwk=key.public_jwk(),
                        sealed=sealed,
                        at=now,
                        purpose=PURPOSE,
                    )
                rows = tx.signing_keys(now=now, purpose=PURPOSE)
        row = rows[0]
        pem = crypto.unseal(
            self._kek, row["sealed_private"], context=_CONTEXT + row["kid"].encode()
        )
        return crypto.load_signing_key(row["kid"], row["alg"], pem)

    def public_keys(self) -> dict[str, Any]:
        """The JWKS that verifies exported checkpoints."""
        self._key()
        with self._store.read() as tx:
            rows = tx.signing_keys(now=0.0, purpose=PURPOSE)
        return {"keys": [dict(r["public_jwk"]) for r in rows]}

    # --- checkpoints ----------------------------------------------------------------

    def checkpoint(self) -> Checkpoint | None:
        """Sign the newest record; None when the ledger is empty or already checkpointed."""
        key = self._key()
        with self._store.read() as tx:
            tail = tx.audit_tail()
        if tail is None:
            return None
        seq, digest = tail
        at = self._clock.now()
        cp = Checkpoint(
            seq, digest, at, key.kid, crypto.sign_detached(key, checkpoint_bytes(seq, digest, at))
        )
        with self._store.write() as tx:
            if not tx.insert_checkpoint(
                seq=cp.seq, digest=cp.hash, at=cp.at, kid=cp.kid, signature=cp.signature
            ):
                return None
        return cp

    def checkpoints(self) -> list[Checkpoint]:
        with self._store.read() as tx:
            rows = tx.checkpoints()
        return [Checkpoint(r["seq"], r["hash"], r["at"], r["kid"], r["signature"]) for r in rows]

    # --- verification ---------------------------------------------------------------

    def verify(
        self, *, progress: Callable[[int], None] | None = None, from_last_checkpoint: bool = False
    ) -> Verification:
        """Walk the chain (or its part after the newest checkpoint) and check every link.

        Rows are read in batches as plain tuples, and each record's hash is
        recomputed over its stored canonical ``data`` text (re-encoding only a
        row that does not match, to tell tampering from a non-canonical write).
        """
        keys = {k["kid"]: k for k in self.public_keys()["keys"]}
        checkpoints = self.checkpoints()
        total = len(checkpoints)
        for cp in checkpoints:
            jwk = keys.get(cp.kid)
            if jwk is None or not crypto.verify_detached(jwk, cp.signed_bytes(), cp.signature):
                return Verification(False, 0, total, cp.seq, "checkpoint signature invalid")
        by_seq = {cp.seq: cp.hash for cp in checkpoints}
        start = checkpoints[-1].seq - 1 if from_last_checkpoint and checkpoints else 0
        prev = GENESIS
        count = 0
        expected = start + 1
        with self._store.read() as tx:
            if start > 0:
                # The link into the verified part: the record just before it.
                before = tx.audit_raw(after_seq=start - 1, limit=1)
                if not before or before[0][0] != start:
                    return Verification(False, 0, total, start, "record missing")
                prev = str(before[0][10])
            after = start
            while True:
                rows = tx.audit_raw(after_seq=after, limit=BATCH)
                if not rows:
                    break
                for seq, at, event, actor, node, client, subject, team, data, link, digest in rows:
                    if seq != expected:
                        return Verification(
                            False,
                            count,
                            total,
                            expected,
                            "record missing (deleted) or sequence renumbered",
                        )
                    if link != prev:
                        return Verification(
                            False, count, total, seq, "link to the previous record broken"
                        )
                    body = canonical_from_row(
                        seq, at, event, actor, node, client, subject, team, data
                    )
                    if link_hash(prev, body) != digest:
                        record = dict(
                            zip(
                                RECORD_FIELDS,
                                (
                                    seq,
                                    at,
                                    event,
                                    actor,
                                    node,
                                    client,
                                    subject,
                                    team,
                                    json.loads(data) if data is not None else None,
                                ),
                                strict=True,
                            )
                        )
                        if chain_hash(prev, record) != digest:
                            return Verification(
                                False,
                                count,
                                total,
                                seq,
                                "record content does not match its hash",
                            )
                    mark = by_seq.get(seq)
                    if mark is not None and mark != digest:
                        return Verification(
                            False, count, total, seq, "record differs from the signed checkpoint"
                        )
                    prev = digest
                    expected += 1
                    count += 1
                    if progress is not None and count % 10_000 == 0:
                        progress(count)
                after = int(rows[-1][0])
        last_seq = expected - 1
        if checkpoints and checkpoints[-1].seq > last_seq:
            return Verification(
                False,
                count,
                total,
                last_seq + 1,
                f"ledger truncated: it ends at {last_seq}, "
                f"a checkpoint covers {checkpoints[-1].seq}",
            )
        return Verification(True, count, total)
