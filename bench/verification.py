"""In-process access-token verification with the lineage revocation check, against raw verify.

What a resource server does per request: verify the RFC 9068 access token
(:class:`tokentrail.crypto.TokenVerifier`: structure, ``typ``/``kid``/``alg``
header, ES256 signature, claims JSON), check ``iss``, ``aud`` and ``exp``, and
check the token's ``jti`` and every ``tt_anc`` ancestor against the revoked ids
it holds in memory (the revocation feed's view). That is compared with the raw
ES256 verify of the same signature by ``cryptography`` in the same run, and
with joserfc and PyJWT decoding the same token followed by the same claim and
lineage checks, and with :class:`tokentrail.sdk.Verifier` (what a resource
server using the SDK runs: every RFC 9068 check, the binding and revocation
checks, a ``VerifiedToken``; docs/verifier.md). Variants run in interleaved
rounds (A B C D E, A B C D E, ...) so machine noise spreads over all of them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bench.harness import Context, Section, Target, fmt_int, interleaved, rate, spread, table
from tokentrail import crypto, ids
from tokentrail.sdk import StaticJwks, StaticRevocations, Verifier

NAME = "verification"
TITLE = "In-process verification with the ancestor revocation check"
SERVER = False

ISSUER = "https://tokentrail.bench"
AUDIENCE = "https://api.example"
#: How many revoked ids the verifier's in-memory view holds.
REVOKED_IDS = 10_000
TARGET_RATIO = 0.80
#: What a resource server using the SDK runs: every check of docs/verifier.md.
SDK_VARIANT = "tokentrail.sdk Verifier.verify (all its checks)"


def make_token(alg: str = "ES256") -> tuple[str, crypto.SigningKey, dict[str, Any]]:
    """A signed access token shaped like an exchanged token (RFC 8693 with ``act``).

    Its lineage is the heaviest the bundled path map yields for a workload:
    subject and actor tokens and both their credentials (four ancestors).
    """
    key = crypto.generate_signing_key(alg)
    now = int(time.time())
    client_id = ids.new_id("cl")
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": ids.new_id("cl"),
        "aud": AUDIENCE,
        "exp": now + 3600,
        "iat": now,
        "jti": ids.new_id("at"),
        "client_id": client_id,
        "scope": "read write",
        "act": {"sub": client_id},
        "tt_path": "workload-token-exchange",
        "tt_anc": [ids.new_id("at"), ids.new_id("at"), ids.new_id("cred"), ids.new_id("cred")],
    }
    token = crypto.TokenSigner(key, typ="at+jwt").sign(claims)
    return token, key, claims


def resource_check(claims: dict[str, Any], revoked: frozenset[str]) -> bool:
    """The checks after the signature: issuer, audience, expiry, and the lineage."""
    aud = claims.get("aud")
    return (
        claims.get("iss") == ISSUER
        and (aud == AUDIENCE or (isinstance(aud, list) and AUDIENCE in aud))
        and claims["exp"] > time.time()
        and claims["jti"] not in revoked
        and revoked.isdisjoint(claims["tt_anc"])
    )


def variants(alg: str = "ES256") -> dict[str, Callable[[], object]]:
    """Name -> a zero-argument call verifying the same token (raw first, ours second)."""
    token, key, claims = make_token(alg)
    jwk = key.public_jwk()
    public = key.private.public_key()
    revoked = frozenset(ids.new_id("at") for _ in range(REVOKED_IDS))
    signing_input, _, sig_b64 = token.rpartition(".")
    data = signing_input.encode("ascii")
    sig = crypto.b64url_decode(sig_b64)

    out: dict[str, Callable[[], object]] = {}
    if isinstance(public, ec.EllipticCurvePublicKey):
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        algorithm = ec.ECDSA(hashes.SHA256())
        ec_public = public

        def raw() -> object:
            ec_public.verify(der, data, algorithm)
            return True
    else:
        ed_public = public

        def raw() -> object:
            ed_public.verify(sig, data)
            return True

    out[f"raw {alg} verify (cryptography)"] = raw

    verifier = crypto.TokenVerifier([jwk], typ="at+jwt")

    def tokentrail_verify() -> object:
        return resource_check(verifier.verify(token), revoked)

    out["tokentrail TokenVerifier + lineage check"] = tokentrail_verify

    sdk = Verifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks=StaticJwks({"keys": [jwk]}),
        revocations=StaticRevocations(revoked),
    )

    def sdk_verify() -> object:
        return sdk.verify(token, scheme="Bearer").jti == claims["jti"]

    out[SDK_VARIANT] = sdk_verify

    from joserfc import jwt as jose_jwt
    from joserfc.jwk import ECKey, OKPKey

    jose_key = ECKey.import_key(jwk) if jwk["kty"] == "EC" else OKPKey.import_key(jwk)

    def joserfc_verify() -> object:
        return resource_check(
            dict(jose_jwt.decode(token, jose_key, algorithms=[alg]).claims), revoked
        )

    out["joserfc jwt.decode + same checks"] = joserfc_verify

    pyjwt: Any
    try:
        import jwt as pyjwt
    except ImportError:  # PyJWT is optional (test extras)
        pyjwt = None
    if pyjwt is not None:
        options: Any = {
            "verify_signature": True,
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_aud": False,
            "verify_iss": False,
        }

        def pyjwt_verify() -> object:
            claims = pyjwt.decode(token, public, algorithms=[alg], options=options)
            return resource_check(claims, revoked)

        out["PyJWT jwt.decode + same checks"] = pyjwt_verify
    return out


def run(ctx: Context, alg: str = "ES256") -> Section:
    opts = ctx.options
    ctx.log(f"[bold]{TITLE}[/bold] ({alg}, {opts.rounds} rounds x {opts.round_seconds:g} s)")
    calls = variants(alg)
    for name, fn in calls.items():
        if fn() is not True:
            raise RuntimeError(f"{name} does not accept the benchmark token")
        rate(fn, min(0.1, opts.round_seconds))  # warm caches and code paths
    rounds: dict[str, list[float]] = {name: [] for name in calls}
    walls: dict[str, list[float]] = {name: [] for name in calls}
    bests: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(opts.rounds):
        for name, sample in interleaved(calls, opts.round_seconds).items():
            rounds[name].append(sample.cpu)
            walls[name].append(sample.wall)
            bests[name].append(sample.best)
        ctx.log(
            f"  round {i + 1}: "
            + ", ".join(f"{n.split(' ')[0]} {v[-1]:,.0f}/s" for n, v in rounds.items())
        )
    names = list(calls)
    raw_name, ours_name = names[0], names[1]

    def ratios(series: dict[str, list[float]], name: str) -> tuple[float, float, float]:
        return spread([v / r for v, r in zip(series[name], series[raw_name], strict=True)])

    rows = []
    for name in names:
        med, lo, hi = spread(rounds[name])
        rmed, rlo, rhi = ratios(rounds, name)
        rows.append(
            (
                name,
                fmt_int(med),
                f"{fmt_int(lo)} - {fmt_int(hi)}",
                f"{1e6 / med:.1f}",
                fmt_int(spread(walls[name])[0]),
                f"{rmed:.2f} ({rlo:.2f} - {rhi:.2f})",
                fmt_int(spread(bests[name])[0]),
                f"{ratios(bests, name)[0]:.2f}",
            )
        )
    ratio_med, ratio_lo, ratio_hi = ratios(rounds, ours_name)
    best_ratio = ratios(bests, ours_name)[0]
    sdk_med, sdk_lo, sdk_hi = ratios(rounds, SDK_VARIANT)
    target = Target(
        name="tokentrail verification + lineage check / raw verify",
        goal=f">= {TARGET_RATIO:.2f}",
        value=f"{ratio_med:.2f} (rounds {ratio_lo:.2f} - {ratio_hi:.2f})",
        met=ratio_med >= TARGET_RATIO,
    )
    md = "\n".join(
        [
            f"### {TITLE}",
            "",
            f"One {alg} RFC 9068 access token shaped like an exchanged token (`act`, four "
            "`tt_anc` ancestors). After the signature every variant makes the same checks a "
            f"resource server makes: `iss`, `aud`, `exp`, and `jti` + `tt_anc` against an "
            f"in-memory set of {REVOKED_IDS:,} revoked ids; the `tokentrail.sdk` row makes "
            "every check of docs/verifier.md against the same set. "
            f"{opts.rounds} round(s) of "
            f"{opts.round_seconds:g} s per variant, each in ten slices alternating between the "
            "variants, one thread. Rates are per second of the "
            "process's CPU time (`time.process_time`), which other work on the machine does not "
            "dilute; the wall-clock median is shown beside them. Ratio = variant / raw verify in "
            "the same round. Best batch: the CPU-time rate of the fastest batch of 20 calls in a "
            "round (median over rounds).",
            "",
            table(
                [
                    "variant",
                    "verifications per CPU-s (median)",
                    "min - max",
                    "us CPU each",
                    "wall-clock /s (median)",
                    "ratio to raw (median, min - max)",
                    "best batch per CPU-s",
                    "ratio, best batches",
                ],
                rows,
            ),
            "",
            target.markdown(),
            f"- {SDK_VARIANT} / raw verify: {sdk_med:.2f} (rounds {sdk_lo:.2f} - {sdk_hi:.2f}); "
            "it also checks `sub`, `client_id`, `iat`, `nbf`, `scope`, `cnf` and the revocation "
            "view's staleness, and builds a `VerifiedToken`.",
            f"- the same ratio from the fastest batch of each variant in each round (the "
            f"`timeit` convention: the batch least disturbed by other work): {best_ratio:.2f}; "
            "not used to judge the target.",
        ]
    )
    return Section(
        NAME,
        TITLE,
        md,
        figures={
            "alg": alg,
            "cpu_rates": {n: spread(v)[0] for n, v in rounds.items()},
            "wall_rates": {n: spread(v)[0] for n, v in walls.items()},
            "ratio": ratio_med,
            "ratio_sdk": sdk_med,
            "ratio_best_batches": best_ratio,
        },
        targets=[target],
    )
