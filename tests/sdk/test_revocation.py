"""The ancestor revocation check and the fail-closed staleness bound."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest

from tests.conftest import ISSUER
from tests.sdk.conftest import AUDIENCE, RS_URL, Minted
from tokentrail.clock import FrozenClock
from tokentrail.sdk import (
    Revoked,
    StaleRevocationView,
    StaticJwks,
    StaticRevocations,
    Verifier,
)
from tokentrail.services import Services


class FeedView:
    """A view as a feed follower (issue 7) would be: it knows how old it is."""

    def __init__(self, staleness: float, bound: float | None) -> None:
        self._staleness = staleness
        self._bound = bound

    @property
    def bound(self) -> float | None:
        return self._bound

    def staleness(self) -> float:
        return self._staleness

    def is_revoked(self, ids: Sequence[str]) -> str | None:
        return None


def _verifier(jwks_doc: dict[str, Any], view: Any, clock: FrozenClock) -> Verifier:
    return Verifier(
        issuer=ISSUER, audience=AUDIENCE, jwks=StaticJwks(jwks_doc), revocations=view, clock=clock
    )


class TestAncestors:
    def test_revoked_token(
        self, verifier: Verifier, bearer: Minted, revocations: StaticRevocations
    ) -> None:
        """A token whose own jti is revoked is refused."""
        jti = verifier.verify(bearer.token).jti
        revocations.add(jti)
        with pytest.raises(Revoked) as caught:
            verifier.verify(bearer.token)
        assert caught.value.revoked_id == jti
        assert caught.value.error == "invalid_token"

    def test_revoked_credential_kills_its_tokens(
        self,
        verifier: Verifier,
        bearer: Minted,
        revocations: StaticRevocations,
        services: Services,
    ) -> None:
        """Revoking the client credential (an ancestor in tt_anc) refuses every token under it."""
        services.admin.revoke(bearer.client.credential_id, reason="leaked", actor="test")
        revocations.add(bearer.client.credential_id)
        with pytest.raises(Revoked) as caught:
            verifier.verify(bearer.token)
        assert caught.value.revoked_id == bearer.client.credential_id

    def test_revoked_ancestor_of_bound_token(
        self,
        verifier: Verifier,
        bound: Minted,
        revocations: StaticRevocations,
        clock: FrozenClock,
    ) -> None:
        """A DPoP-bound token with a valid proof is still refused once an ancestor is revoked."""
        revocations.add(bound.client.credential_id)
        with pytest.raises(Revoked):
            verifier.verify(
                bound.token, dpop_proof=bound.proof(clock), method="GET", url=RS_URL, scheme="DPoP"
            )

    def test_unrelated_revocation(
        self, verifier: Verifier, bearer: Minted, revocations: StaticRevocations
    ) -> None:
        """Revoked ids outside the token's lineage do not affect it."""
        revocations.add("cred_someone_else", "at_other")
        assert verifier.verify(bearer.token)


class TestStaleness:
    def test_stale_view_fails_closed(
        self, jwks_doc: dict[str, Any], bearer: Minted, clock: FrozenClock
    ) -> None:
        """A view older than its bound refuses every token with a distinct 503 error."""
        verifier = _verifier(jwks_doc, FeedView(staleness=31.0, bound=30.0), clock)
        with pytest.raises(StaleRevocationView) as caught:
            verifier.verify(bearer.token)
        assert caught.value.status == 503
        assert caught.value.staleness == 31.0
        assert caught.value.headers()["Retry-After"] == "1"

    def test_view_within_bound(
        self, jwks_doc: dict[str, Any], bearer: Minted, clock: FrozenClock
    ) -> None:
        """A view within its bound answers normally."""
        verifier = _verifier(jwks_doc, FeedView(staleness=5.0, bound=30.0), clock)
        assert verifier.verify(bearer.token)


class TestStaticRevocations:
    def test_add_discard(self) -> None:
        """Ids can be added and forgotten; the view is always current."""
        view = StaticRevocations(["a"])
        view.add("b", "c")
        view.discard("a")
        assert len(view) == 2
        assert "b" in view
        assert "a" not in view
        assert view.is_revoked(["x", "c", "b"]) == "c"
        assert view.is_revoked(["x"]) is None
        assert view.staleness() == 0.0
        assert view.bound is None

    def test_concurrent_adds(self) -> None:
        """Adds from many threads at once all land."""
        view = StaticRevocations()

        def add(n: int) -> None:
            for i in range(200):
                view.add(f"{n}-{i}")

        threads = [threading.Thread(target=add, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(view) == 1600
