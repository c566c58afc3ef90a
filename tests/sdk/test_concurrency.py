"""One Verifier shared by many threads and asyncio tasks at once."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.sdk.conftest import RS_URL, Minted
from tokentrail.clock import FrozenClock
from tokentrail.sdk import ProofReplayed, VerificationError, Verifier


def _verify(verifier: Verifier, bound: Minted, p: str) -> Any:
    return verifier.verify(bound.token, dpop_proof=p, method="GET", url=RS_URL, scheme="DPoP")


def test_many_threads_verify_at_once(
    verifier: Verifier, bound: Minted, bearer: Minted, clock: FrozenClock
) -> None:
    """16 threads verifying bearer and DPoP-bound tokens concurrently all succeed."""
    proofs = [bound.proof(clock) for _ in range(160)]
    start = threading.Barrier(16)

    def work(n: int) -> int:
        start.wait()
        ok = 0
        for p in proofs[n * 10 : (n + 1) * 10]:
            ok += bool(_verify(verifier, bound, p))
            ok += bool(verifier.verify(bearer.token))
        return ok

    with ThreadPoolExecutor(16) as pool:
        assert sum(pool.map(work, range(16))) == 320


def test_concurrent_replay_accepted_once(
    verifier: Verifier, bound: Minted, clock: FrozenClock
) -> None:
    """The same proof sent from 12 threads at once is accepted exactly once."""
    p = bound.proof(clock)
    start = threading.Barrier(12)

    def attempt(_: int) -> str:
        start.wait()
        try:
            _verify(verifier, bound, p)
        except ProofReplayed:
            return "replay"
        return "ok"

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(attempt, range(12)))
    assert results.count("ok") == 1
    assert results.count("replay") == 11


def test_asyncio_tasks(verifier: Verifier, bound: Minted, clock: FrozenClock) -> None:
    """Many tasks on one event loop verify through averify; failures stay per task."""
    proofs = [bound.proof(clock) for _ in range(50)]

    async def one(p: str) -> Any:
        return await verifier.averify(
            bound.token, dpop_proof=p, method="GET", url=RS_URL, scheme="DPoP"
        )

    async def main() -> list[Any]:
        return await asyncio.gather(*(one(p) for p in [*proofs, proofs[0]]), return_exceptions=True)

    results = asyncio.run(main())
    assert sum(not isinstance(r, Exception) for r in results) == 50
    assert isinstance(results[-1], ProofReplayed)
    assert isinstance(results[-1], VerificationError)
