"""The janitor: keeps live state proportional to live tokens (DESIGN.md, "Storage stays bounded").

Each pass, in one transaction:

* deletes revocation rows nobody needs: the revoked node has expired and its
  ``matters_until`` has passed, so no descendant can be alive either. Rows of
  nodes without an expiry (credentials) stay: they are what keeps those nodes
  dead. The ledger keeps the ``node.revoked`` record either way;
* deletes replay-cache entries (``seen_jtis``: used client assertions, upstream
  assertions, DPoP proofs) whose window has passed.

It compacts nothing else yet: expired nodes, their edges and the audit ledger
stay (see docs/storage.md, "Growth"). Every server runs it; passes on several
nodes at once are harmless (each row is deleted once).
"""

from __future__ import annotations

from dataclasses import dataclass

from tokentrail.clock import Clock
from tokentrail.storage.store import Store


@dataclass(frozen=True, slots=True)
class JanitorPass:
    revocations: int
    replay_entries: int


class Janitor:
    def __init__(self, store: Store, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        #: Totals since the process started (for /metrics).
        self.deleted_revocations = 0
        self.deleted_replay_entries = 0

    def run_once(self) -> JanitorPass:
        now = self._clock.now()
        with self._store.write() as tx:
            done = JanitorPass(tx.purge_revocations(now), tx.purge_seen(now))
        self.deleted_revocations += done.revocations
        self.deleted_replay_entries += done.replay_entries
        return done
