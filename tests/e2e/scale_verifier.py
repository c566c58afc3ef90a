"""A resource server's verifier in a process of its own, driven over stdin/stdout.

It follows one tokentrail node's revocation feed with the SDK's
:class:`~tokentrail.sdk.FeedRevocations` and checks tokens with a
:class:`~tokentrail.sdk.Verifier`, like an API that never calls home. Used by
tests/e2e/test_scale.py and bench/bench_propagation.py.

Commands, one per line; each answer is one JSON line:

``verify <token>``
    ``{"result": "ok"}`` or ``{"result": "<exception class>", "id": <revoked id>}``
``wait-revoked <timeout> <token>...``
    blocks until every token is refused as revoked (or the timeout passes):
    ``{"revoked": [seconds after the command for each token, or null]}``
``status``
    ``{"staleness", "seq", "entries", "connected", "connects"}``
``quit``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.request
from typing import Any

from tokentrail.sdk import FeedRevocations, Revoked, StaticJwks, VerificationError, Verifier


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--issuer", required=True)
    ap.add_argument("--url", required=True, help="the node whose feed to follow")
    ap.add_argument("--audience", required=True)
    ap.add_argument("--client-id", required=True)
    ap.add_argument("--client-secret", required=True)
    ap.add_argument("--bound", type=float, default=30.0)
    ap.add_argument("--mode", choices=("stream", "poll"), default="stream")
    args = ap.parse_args()

    with urllib.request.urlopen(f"{args.url}/jwks.json", timeout=30) as response:
        jwks = json.load(response)
    view = FeedRevocations(
        args.issuer,
        url=args.url,
        client_id=args.client_id,
        client_secret=args.client_secret,
        bound=args.bound,
        mode=args.mode,
        max_backoff=1.0,
    )
    verifier = Verifier(
        issuer=args.issuer, audience=args.audience, jwks=StaticJwks(jwks), revocations=view
    )
    say({"synced": view.wait_synced(60)})
    for line in sys.stdin:
        command, _, rest = line.strip().partition(" ")
        if command == "verify":
            say(verify(verifier, rest))
        elif command == "wait-revoked":
            timeout, *tokens = rest.split()
            say({"revoked": wait_revoked(verifier, tokens, float(timeout))})
        elif command == "status":
            staleness = view.staleness()
            say(
                {
                    "staleness": None if math.isinf(staleness) else staleness,
                    "seq": view.seq,
                    "entries": len(view),
                    "connected": view.connected,
                    "connects": view.connects,
                }
            )
        elif command == "quit":
            break
    view.close()


def say(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def verify(verifier: Verifier, token: str) -> dict[str, Any]:
    try:
        verifier.verify(token)
    except Revoked as exc:
        return {"result": "Revoked", "id": exc.revoked_id}
    except VerificationError as exc:
        return {"result": type(exc).__name__}
    return {"result": "ok"}


def wait_revoked(verifier: Verifier, tokens: list[str], timeout: float) -> list[float | None]:
    started = time.monotonic()
    out: list[float | None] = [None] * len(tokens)
    pending = set(range(len(tokens)))
    while pending and time.monotonic() - started < timeout:
        for i in list(pending):
            if verify(verifier, tokens[i])["result"] == "Revoked":
                out[i] = time.monotonic() - started
                pending.discard(i)
        if pending:
            time.sleep(0.0005)
    return out


if __name__ == "__main__":
    main()
