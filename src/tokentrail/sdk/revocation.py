"""What the verifier knows about revocations: a :class:`RevocationView`.

A token is dead when its ``jti`` or any id in its ``tt_anc`` lineage claim is
revoked (DESIGN.md, "Lineage in the token"), so the view only needs to answer
"is any of these ids revoked?" from memory. A view also says how old its
knowledge is: a view fed from the issuer's revocation feed (issue 7) reports
the time since it last heard from the feed and sets a ``bound``; the verifier
fails closed (:class:`~tokentrail.sdk.errors.StaleRevocationView`) once the
staleness exceeds it.

Implementations must be safe to call from many threads at once; reads should
not take a lock (the check runs on every request).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

__all__ = ["FollowedRevocations", "RevocationView", "StaticRevocations"]


class RevocationView(Protocol):
    """The verifier's view of revoked lineage ids."""

    @property
    def bound(self) -> float | None:
        """Seconds of staleness after which verification fails closed; None: never."""
        ...

    def staleness(self) -> float:
        """Seconds since the view was last known to be current."""
        ...

    def is_revoked(self, ids: Sequence[str]) -> str | None:
        """The first of ``ids`` that is revoked, or None."""
        ...


class StaticRevocations:
    """A set of revoked ids held in memory; always current (staleness 0, no bound).

    Use it when revocations reach the resource server another way (a deploy,
    an admin hook), and in tests. Adding is thread-safe; lookups take no lock.
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: set[str] = set(ids)
        self._lock = threading.Lock()

    @property
    def bound(self) -> float | None:
        return None

    def staleness(self) -> float:
        return 0.0

    def add(self, *ids: str) -> None:
        with self._lock:
            self._ids.update(ids)

    def discard(self, *ids: str) -> None:
        """Forget ids (once every token below them has expired)."""
        with self._lock:
            self._ids.difference_update(ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._ids

    def is_revoked(self, ids: Sequence[str]) -> str | None:
        revoked = self._ids
        if revoked.isdisjoint(ids):
            return None
        return next((i for i in ids if i in revoked), None)


class FollowedRevocations:
    """What a view that follows a source by sequence number holds: revoked ids with
    the time until which they matter, the highest seq read, and when the view was
    last known to be current. Shared by the SDK's feed follower
    (:class:`~tokentrail.sdk.feed.FeedRevocations`) and each server's own view
    (:class:`tokentrail.revocation_view.NodeRevocationView`); subclasses fill it.
    ``is_revoked`` takes no lock: writers replace entries under their own lock.
    """

    def __init__(self, *, bound: float, monotonic: Callable[[], float]) -> None:
        self._bound = bound
        self._monotonic = monotonic
        self._ids: dict[str, float] = {}
        self._seq = 0
        self._synced_at = -math.inf

    @property
    def bound(self) -> float:
        return self._bound

    def staleness(self) -> float:
        """Seconds since the view was last known current (inf before the first time)."""
        return max(0.0, self._monotonic() - self._synced_at)

    def is_revoked(self, ids: Sequence[str]) -> str | None:
        revoked = self._ids
        if revoked.keys().isdisjoint(ids):
            return None
        return next((i for i in ids if i in revoked), None)

    @property
    def seq(self) -> int:
        """The highest revocation sequence number read."""
        return self._seq

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._ids
