"""HTTP load generators: ``wrk`` with ``bench/wrk/post.lua``, or a Python fallback.

``wrk`` (C, epoll) costs the machine far less per request than any Python
client, so the server, not the generator, is what gets measured. When it is
missing the harness tries the system package once (``apt-get install -y wrk``,
as root only), and otherwise falls back to an asyncio/httpx generator and says
so loudly: its figures are bounded by the generator and not comparable.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bench.harness import Context, Section, percentile

if TYPE_CHECKING:
    from bench.harness import Context
    from bench.pools import Maker

LUA_SCRIPT = Path(__file__).resolve().parent / "wrk" / "post.lua"


@dataclass(frozen=True)
class LoadResult:
    generator: str
    requests: int
    seconds: float
    ok: int
    bad: int
    socket_errors: int
    p50: float
    p90: float
    p99: float
    max: float
    #: With a pool: items sent (all threads), the fewest one thread sent, and whether a
    #: thread ran out of items (then the run's rate is void).
    used: int = 0
    used_min: int = 0
    exhausted: bool = False
    #: Status and start of the body of the first wrong response, if any.
    first_bad: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Spend:
    """Per-request material of one run (see bench/wrk/post.lua).

    ``pool``: a file of single-use items, one per request, in order; the item goes
    in the ``header`` named and replaces ``{item}`` in the body. ``collect``: append
    the string field ``field`` of every good response to this file. ``limit``:
    stop after that many good responses.
    """

    pool: Path | None = None
    header: str | None = None
    collect: Path | None = None
    field: str = "access_token"
    limit: int | None = None


class LoadGenerator(Protocol):
    name: str

    def run(
        self,
        url: str,
        *,
        body: str,
        authorization: str,
        expect: str,
        duration: float,
        connections: int,
        threads: int,
        spend: Spend | None = None,
    ) -> LoadResult: ...


class Wrk:
    """wrk driven by the Lua script; figures come back as one JSON line."""

    def __init__(self, path: str) -> None:
        self.path = path
        proc = subprocess.run([path, "-v"], capture_output=True, text=True, check=False)
        first = (proc.stdout or proc.stderr).strip().splitlines()
        self.name = first[0].split(" [")[0] if first else "wrk"

    def command(self, url: str, *, duration: float, connections: int, threads: int) -> list[str]:
        return [
            self.path,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_SCRIPT),
            url,
        ]

    def run(
        self,
        url: str,
        *,
        body: str,
        authorization: str,
        expect: str,
        duration: float,
        connections: int,
        threads: int,
        spend: Spend | None = None,
    ) -> LoadResult:
        env = {
            **os.environ,
            "BENCH_BODY": body,
            "BENCH_AUTH": authorization,
            "BENCH_EXPECT": expect,
            "BENCH_THREADS": str(threads),
        }
        if spend is not None:
            env.update(
                {
                    "BENCH_POOL": str(spend.pool or ""),
                    "BENCH_POOL_HEADER": spend.header or "",
                    "BENCH_COLLECT": str(spend.collect or ""),
                    "BENCH_COLLECT_FIELD": spend.field,
                    "BENCH_LIMIT": str(spend.limit or ""),
                }
            )
        cmd = self.command(url, duration=duration, connections=connections, threads=threads)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        line = next(
            (ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")),
            None,
        )
        if proc.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
        return parse_wrk_json(line.removeprefix("BENCH_JSON "), self.name)


def parse_wrk_json(text: str, name: str = "wrk") -> LoadResult:
    d = json.loads(text)
    return LoadResult(
        generator=name,
        requests=int(d["requests"]),
        seconds=d["duration_us"] / 1e6,
        ok=int(d["ok"]),
        bad=int(d["bad"]),
        socket_errors=int(
            d["errors_connect"] + d["errors_read"] + d["errors_write"] + d["errors_timeout"]
        ),
        p50=d["p50_us"] / 1e6,
        p90=d["p90_us"] / 1e6,
        p99=d["p99_us"] / 1e6,
        max=d["max_us"] / 1e6,
        used=int(d.get("used", 0)),
        used_min=int(d.get("used_min", 0)),
        exhausted=bool(d.get("exhausted", 0)),
        first_bad=str(d.get("first_bad", "")),
    )


class PythonLoad:
    """Fallback: ``connections`` asyncio workers on one httpx client, closed loop."""

    name = "python asyncio/httpx fallback (generator-bound: not comparable with wrk)"

    def run(
        self,
        url: str,
        *,
        body: str,
        authorization: str,
        expect: str,
        duration: float,
        connections: int,
        threads: int,
        spend: Spend | None = None,
    ) -> LoadResult:
        return asyncio.run(
            self._run(url, body, authorization, expect, duration, connections, spend or Spend())
        )

    async def _run(
        self,
        url: str,
        body: str,
        authorization: str,
        expect: str,
        duration: float,
        connections: int,
        spend: Spend,
    ) -> LoadResult:
        import httpx

        base_headers = {
            "Authorization": authorization,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        items = spend.pool.read_text().splitlines() if spend.pool else None
        latencies: list[float] = []
        collected: list[str] = []
        counts = {"ok": 0, "bad": 0, "errors": 0, "used": 0, "exhausted": 0}
        first_bad: list[str] = []
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        perf = time.perf_counter
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            start = perf()
            deadline = start + duration

            def done() -> bool:
                return perf() >= deadline or bool(spend.limit and counts["ok"] >= spend.limit)

            async def worker() -> None:
                while not done():
                    headers, content = base_headers, body
                    if items is not None:
                        if counts["used"] >= len(items):
                            counts["exhausted"] = 1
                            return
                        item = items[counts["used"]]
                        counts["used"] += 1
                        content = body.replace("{item}", item)
                        if spend.header:
                            headers = {**base_headers, spend.header: item}
                    t0 = perf()
                    try:
                        r = await client.post(url, content=content.encode(), headers=headers)
                    except httpx.HTTPError:
                        counts["errors"] += 1
                        continue
                    latencies.append(perf() - t0)
                    good = r.status_code == 200 and (not expect or expect in r.text)
                    if good and spend.collect is not None:
                        value = r.json().get(spend.field)
                        good = isinstance(value, str)
                        if good:
                            collected.append(value)
                    counts["ok" if good else "bad"] += 1
                    if not good and not first_bad:
                        first_bad.append(f"{r.status_code} {r.text[:300]}")

            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = perf() - start
        if spend.collect is not None:
            with spend.collect.open("a") as out:
                out.writelines(f"{v}\n" for v in collected)
        latencies.sort()
        return LoadResult(
            generator=self.name,
            requests=len(latencies),
            seconds=elapsed,
            ok=counts["ok"],
            bad=counts["bad"],
            socket_errors=counts["errors"],
            p50=percentile(latencies, 50),
            p90=percentile(latencies, 90),
            p99=percentile(latencies, 99),
            max=latencies[-1] if latencies else float("nan"),
            used=counts["used"],
            used_min=counts["used"],
            exhausted=bool(counts["exhausted"]),
            first_bad="".join(first_bad),
        )


def _try_install_wrk(ctx: Context) -> str | None:
    """One attempt at the system package (root with apt-get only); wrk's path or None."""
    if not ctx.options.install:
        return None
    apt = shutil.which("apt-get")
    if apt is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        ctx.log("[yellow]wrk is missing and cannot be installed here (needs root and apt-get)")
        return None
    ctx.log("wrk is missing: trying `apt-get install -y wrk` (Debian package) ...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def install() -> bool:
        r = subprocess.run(
            [apt, "install", "-y", "-q", "wrk"], capture_output=True, env=env, check=False
        )
        return r.returncode == 0

    # On a fresh machine the package lists may be empty: refresh them once, then retry.
    if not install():
        subprocess.run([apt, "update", "-q"], capture_output=True, env=env, check=False)
        install()
    return shutil.which("wrk")


def choose_load_generator(ctx: Context) -> LoadGenerator:
    wanted = ctx.options.loadgen
    if wanted == "python":
        return PythonLoad()
    path = shutil.which("wrk") or _try_install_wrk(ctx)
    if path is not None:
        return Wrk(path)
    if wanted == "wrk":
        raise RuntimeError("--loadgen wrk was asked for, but wrk is not installed")
    ctx.log(
        "[bold yellow]wrk is not available: falling back to the Python asyncio/httpx load "
        "generator. Its figures are limited by the generator itself (it shares the CPU with "
        "the server) and are NOT comparable with wrk figures.[/bold yellow]"
    )
    return PythonLoad()


def failure(url: str, result: LoadResult) -> str:
    text = (
        f"{url}: {result.bad} wrong responses and {result.socket_errors} socket errors "
        f"out of {result.requests} in {result.seconds:.1f} s"
    )
    return text + (f"; the first wrong one: {result.first_bad}" if result.first_bad else "")


@dataclass
class Pool:
    """Single-use items for a measured operation: one per request, made right before each run.

    ``make(n)`` returns ``n`` fresh items (DPoP proofs, tokens to revoke, ...);
    ``header`` names the header that carries the item (else ``{item}`` in the body).
    A run gets ``expected_rps x seconds x pool_factor`` items (plus two per
    connection); a run that runs out is void and redone with more. ``check(items,
    spent)`` runs after the measured run with the items and how many of the
    first ones were surely answered: it asks the server whether they took effect.
    """

    make: Maker
    header: str | None = None
    expected_rps: float = 0.0
    check: Callable[[list[str], int], None] | None = None

    def size(self, seconds: float, ctx: Context) -> int:
        opts = ctx.options
        rate = max(self.expected_rps, 10.0)
        return math.ceil(rate * seconds * opts.pool_factor) + 2 * opts.connections


def _run_once(
    ctx: Context,
    url: str,
    seconds: float,
    *,
    body: str,
    authorization: str,
    expect: str,
    pool: Pool | None,
    warmup: bool = False,
) -> tuple[LoadResult, list[str]]:
    """One run; with a pool, fresh items, and a rerun with more if they ran out.

    A warm-up may end before any response came back (a cold server); a measured
    run may not.
    """
    opts = ctx.options
    for attempt in range(4):
        items: list[str] = []
        spend = None
        if pool is not None:
            items = pool.make(pool.size(seconds, ctx))
            path = ctx.workdir / "pool.txt"
            path.write_text("\n".join(items) + "\n")
            spend = Spend(pool=path, header=pool.header)
        result = ctx.loadgen().run(
            url,
            body=body,
            authorization=authorization,
            expect=expect,
            duration=seconds,
            connections=opts.connections,
            threads=opts.threads,
            spend=spend,
        )
        if result.bad or result.socket_errors or not (result.ok or warmup):
            raise RuntimeError(failure(url, result))
        if not result.exhausted:
            return result, items
        assert pool is not None
        ctx.log(
            f"[yellow]{url}: the pool of {len(items):,} single-use items ran out within "
            f"{seconds:g} s; run discarded, retrying with three times as many "
            f"(attempt {attempt + 2})"
        )
        pool.expected_rps = 3 * max(pool.expected_rps, 10.0)
    raise RuntimeError(f"{url}: single-use pools kept running out; raise --pool-factor")


def measure(
    ctx: Context,
    url: str,
    *,
    body: str,
    authorization: str,
    expect: str,
    pool: Pool | None = None,
) -> LoadResult:
    """A warm-up run, then the measured run, with the run's load settings.

    Raises when any response was wrong (not 200, or missing ``expect``): a
    throughput figure built on errors is worse than none. With a ``pool``, each
    run spends its own fresh items, and ``pool.check`` confirms afterwards that
    the measured run's requests took effect.
    """
    opts = ctx.options

    def once(seconds: float, warmup: bool) -> tuple[LoadResult, list[str]]:
        return _run_once(
            ctx,
            url,
            seconds,
            body=body,
            authorization=authorization,
            expect=expect,
            pool=pool,
            warmup=warmup,
        )

    if opts.warmup > 0:
        once(opts.warmup, warmup=True)
    result, items = once(opts.duration, warmup=False)
    if pool is not None and pool.check is not None:
        # wrk calls request() once before the run to check what it returns (its
        # script_verify_request): the first item is taken but never sent, so it is skipped.
        threads = max(1, opts.threads)
        spent = max(0, min(result.used_min * threads, result.requests) - 2 * opts.connections)
        pool.check(items[1:], spent - 1)
    return result


def chunks(
    ctx: Context,
    url: str,
    *,
    body: str,
    authorization: str,
    expect: str,
    count: int,
    field: str | None = None,
    make: Maker | None = None,
    header: str | None = None,
    seconds: float = 5.0,
    connections: int | None = None,
) -> Iterator[tuple[LoadResult, list[str]]]:
    """Send requests until ``count`` good responses, in wrk runs of at most ``seconds``.

    Yields each run's result and the values of ``field`` it collected (empty when
    ``field`` is None). ``make(n)`` gives each run ``n`` fresh single-use items
    (``header`` / ``{item}`` as for :class:`Pool`). Every response is checked.
    ``connections`` defaults to the run's (wrk -c).
    """
    opts = ctx.options
    conns = connections or opts.connections
    scratch = ctx.workdir / "chunk"
    key = f"{url} {body}"
    done = 0
    rate = ctx.rates.get(key, 0.0)
    shortest = 1.0
    while done < count:
        remaining = count - done
        # wrk sleeps its whole duration even when the limit stops it early: aim close.
        guess = rate if rate > 0 else 200.0
        run_for = min(seconds, max(shortest, 1.2 * remaining / guess))
        collect = scratch.with_suffix(".out") if field else None
        if collect is not None:
            collect.unlink(missing_ok=True)
        pool = None
        if make is not None:
            pool = scratch.with_suffix(".pool")
            budget = remaining if rate <= 0 else min(remaining, math.ceil(2 * rate * run_for))
            pool.write_text("\n".join(make(budget + 2 * conns)) + "\n")
        spend = Spend(pool=pool, header=header, collect=collect, field=field or "", limit=remaining)
        result = ctx.loadgen().run(
            url,
            body=body,
            authorization=authorization,
            expect=expect,
            duration=run_for,
            connections=conns,
            threads=1,
            spend=spend,
        )
        if result.bad or result.socket_errors or (not result.ok and run_for >= seconds):
            raise RuntimeError(failure(url, result))
        values = collect.read_text().split() if collect is not None else []
        if field and len(values) < result.ok:
            raise RuntimeError(f"{url}: {result.ok} good responses but {len(values)} {field}s")
        if not result.ok:  # a slow start: nothing came back in time; run longer
            shortest = min(seconds, 2 * run_for)
            continue
        done += result.ok
        if result.ok < remaining and not result.exhausted:  # ran its full time: a true rate
            rate = ctx.rates[key] = result.ok / max(result.seconds, 1e-3)
        yield result, values[:remaining]


def collect(
    ctx: Context,
    url: str,
    *,
    body: str,
    authorization: str,
    expect: str,
    field: str,
    count: int,
    make: Maker | None = None,
    header: str | None = None,
    connections: int = 16,
) -> list[str]:
    """``count`` values of ``field`` from good responses: pre-issuing a pool of tokens.

    Not measured, so on few connections (16 by default): tokentrail on PostgreSQL
    stalls under 50 concurrent JWT bearer logins (see docs/benchmarks.md).
    """
    out: list[str] = []
    for _result, values in chunks(
        ctx,
        url,
        body=body,
        authorization=authorization,
        expect=expect,
        count=count,
        field=field,
        make=make,
        header=header,
        connections=connections,
    ):
        out += values
    return out[:count]


def load_markdown(what: str, result: LoadResult, ctx: Context) -> str:
    from bench.harness import fmt_int, fmt_ms, table

    opts = ctx.options
    if isinstance(ctx.loadgen(), Wrk):
        how = (
            f"`wrk -t{opts.threads} -c{opts.connections} -d{max(1, round(opts.duration))}s "
            f"-s bench/wrk/post.lua` after a {opts.warmup:g} s warm-up"
        )
    else:
        how = (
            f"the Python fallback load generator ({opts.connections} connections, "
            f"{opts.duration:g} s) after a {opts.warmup:g} s warm-up: **generator-bound, "
            "not comparable with wrk**"
        )
    rows = [
        (
            what,
            fmt_int(result.rps),
            fmt_ms(result.p50),
            fmt_ms(result.p90),
            fmt_ms(result.p99),
            fmt_ms(result.max),
            fmt_int(result.requests),
        )
    ]
    return f"Driven by {how}; every response checked (status 200 and body).\n\n" + table(
        ["operation", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "requests"],
        rows,
    )


def http_section(
    name: str, title: str, what: str, label: str, result: LoadResult, ctx: Context
) -> Section:
    """The document block and figures of one HTTP operation measured by :func:`measure`."""
    ctx.log(
        f"  {result.rps:,.0f} req/s, p50 {result.p50 * 1e3:.2f} ms, p99 {result.p99 * 1e3:.2f} ms"
    )
    md = "\n".join([f"### {title}", "", what, "", load_markdown(label, result, ctx)])
    return Section(
        name,
        title,
        md,
        figures={
            "rps": result.rps,
            "p50_ms": result.p50 * 1e3,
            "p90_ms": result.p90 * 1e3,
            "p99_ms": result.p99 * 1e3,
            "requests": result.requests,
            "generator": result.generator,
        },
    )
