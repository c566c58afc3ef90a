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
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bench.harness import percentile

if TYPE_CHECKING:
    from bench.harness import Context

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

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


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
    ) -> LoadResult:
        env = {
            **os.environ,
            "BENCH_BODY": body,
            "BENCH_AUTH": authorization,
            "BENCH_EXPECT": expect,
        }
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
    ) -> LoadResult:
        return asyncio.run(self._run(url, body, authorization, expect, duration, connections))

    async def _run(
        self,
        url: str,
        body: str,
        authorization: str,
        expect: str,
        duration: float,
        connections: int,
    ) -> LoadResult:
        import httpx

        headers = {
            "Authorization": authorization,
            "Content-Type": "application/x-www-form-urlencoded",
        }
        content = body.encode()
        latencies: list[float] = []
        counts = {"ok": 0, "bad": 0, "errors": 0}
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        perf = time.perf_counter
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            start = perf()
            deadline = start + duration

            async def worker() -> None:
                while perf() < deadline:
                    t0 = perf()
                    try:
                        r = await client.post(url, content=content, headers=headers)
                    except httpx.HTTPError:
                        counts["errors"] += 1
                        continue
                    latencies.append(perf() - t0)
                    good = r.status_code == 200 and (not expect or expect in r.text)
                    counts["ok" if good else "bad"] += 1

            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = perf() - start
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


def measure(ctx: Context, url: str, *, body: str, authorization: str, expect: str) -> LoadResult:
    """A warm-up run, then the measured run, with the run's load settings.

    Raises when any response was wrong (not 200, or missing ``expect``): a
    throughput figure built on errors is worse than none.
    """
    opts = ctx.options
    gen = ctx.loadgen()

    def once(seconds: float) -> LoadResult:
        return gen.run(
            url,
            body=body,
            authorization=authorization,
            expect=expect,
            duration=seconds,
            connections=opts.connections,
            threads=opts.threads,
        )

    if opts.warmup > 0:
        once(opts.warmup)
    result = once(opts.duration)
    if result.bad or result.socket_errors or not result.ok:
        raise RuntimeError(
            f"{url}: {result.bad} wrong responses and {result.socket_errors} socket errors "
            f"out of {result.requests}"
        )
    return result


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
