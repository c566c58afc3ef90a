"""In-process verification of a DPoP-bound access token with its proof, against raw verify.

    python bench/bench_verifier.py [--rounds 7] [--per-round 3000]

What a resource server does per request with :class:`tokentrail.sdk.Verifier`:
the RFC 9068 checks and ES256 signature of the access token, the RFC 9449 §4.3
checks and ES256 signature of a fresh DPoP proof (its own ``jti``, ``ath`` of
the token, key thumbprint = ``cnf.jkt``, replay cache), and the ``jti`` +
``tt_anc`` lineage against a revocation view of 10,000 ids. A request needs two
signature verifications, so the reference is half the raw ES256 verify rate
(``cryptography``) measured in the same run, in interleaved rounds. Issue 4's
target: ratio >= 0.70. Proofs are signed before each timed round (a proof is
single-use).
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from tokentrail import crypto, ids
from tokentrail.sdk import StaticJwks, StaticRevocations, Verifier

ISSUER = "https://tokentrail.bench"
AUDIENCE = "https://api.example"
URL = "https://api.example/v1/items"
REVOKED_IDS = 10_000
TARGET = 0.70


def _b64json(obj: dict[str, Any]) -> str:
    return crypto.b64url(json.dumps(obj, separators=(",", ":")).encode())


class ProofSigner:
    """DPoP proofs (ES256) for one client key, as a client library makes them."""

    def __init__(self) -> None:
        self.key = crypto.generate_signing_key("ES256")
        jwk = {k: v for k, v in self.key.public_jwk().items() if k in ("kty", "crv", "x", "y")}
        self.jkt = crypto.jwk_thumbprint(jwk)
        self._header = _b64json({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk})

    def proof(self, token: str, now: int) -> str:
        claims = {
            "jti": secrets.token_urlsafe(16),
            "htm": "GET",
            "htu": URL,
            "iat": now,
            "ath": crypto.sha256_b64url(token.encode()),
        }
        signing_input = f"{self._header}.{_b64json(claims)}"
        private = self.key.private
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{crypto.b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def setup() -> tuple[Verifier, str, ProofSigner, Any]:
    key = crypto.generate_signing_key("ES256")
    client = ProofSigner()
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": ids.new_id("cl"),
        "aud": AUDIENCE,
        "exp": now + 3600,
        "iat": now,
        "jti": ids.new_id("at"),
        "client_id": ids.new_id("cl"),
        "scope": "read write",
        "cnf": {"jkt": client.jkt},
        "tt_path": "workload-dpop",
        "tt_anc": [ids.new_id("cred")],
    }
    token = crypto.TokenSigner(key, typ="at+jwt").sign(claims)
    verifier = Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=StaticJwks({"keys": [key.public_jwk()]}),
        revocations=StaticRevocations(ids.new_id("at") for _ in range(REVOKED_IDS)),
    )
    return verifier, token, client, key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--per-round", type=int, default=3000)
    args = parser.parse_args()

    verifier, token, client, key = setup()
    signing_input, _, sig_b64 = token.rpartition(".")
    data = signing_input.encode()
    sig = crypto.b64url_decode(sig_b64)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    public = key.private.public_key()
    algorithm = ec.ECDSA(hashes.SHA256())

    n = args.per_round
    block = 50
    raw_rates: list[float] = []
    sdk_rates: list[float] = []
    # warm caches and code paths
    verifier.verify(
        token,
        dpop_proof=client.proof(token, int(time.time())),
        method="GET",
        url=URL,
        scheme="DPoP",
    )
    clock = time.thread_time  # CPU time of this thread: other processes' load does not count
    for i in range(args.rounds):
        now = int(time.time())
        proofs = [client.proof(token, now) for _ in range(n)]
        raw_cpu = sdk_cpu = 0.0
        # Alternate small blocks so that both variants see the same machine conditions.
        for start in range(0, n, block):
            t0 = clock()
            for _ in range(2 * block):
                public.verify(der, data, algorithm)
            t1 = clock()
            for p in proofs[start : start + block]:
                verifier.verify(token, dpop_proof=p, method="GET", url=URL, scheme="DPoP")
            t2 = clock()
            raw_cpu += t1 - t0
            sdk_cpu += t2 - t1
        raw_rates.append(2 * n / raw_cpu)
        sdk_rates.append(n / sdk_cpu)
        print(
            f"round {i + 1}: raw ES256 verify {raw_rates[-1]:,.0f}/s, "
            f"token+proof {sdk_rates[-1]:,.0f}/s, "
            f"ratio {sdk_rates[-1] / (raw_rates[-1] / 2):.2f}"
        )

    ratios = [s / (r / 2) for s, r in zip(sdk_rates, raw_rates, strict=True)]
    ratio = statistics.median(ratios)
    print(f"raw ES256 verify (median):          {statistics.median(raw_rates):,.0f}/s")
    print(f"DPoP-bound token + proof (median):  {statistics.median(sdk_rates):,.0f}/s")
    print(
        f"ratio to half the raw rate: {ratio:.2f} (rounds {min(ratios):.2f} - {max(ratios):.2f}); "
        f"target >= {TARGET:.2f}: {'met' if ratio >= TARGET else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
