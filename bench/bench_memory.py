"""Server memory: RSS of ``tokentrail serve`` when idle and after issuing N tokens over HTTP.

    python bench/bench_memory.py [--tokens 1000000] [--workers 1] [--postgres URL] [--write]

Issue 8's target: the server's RSS after 1,000,000 issued tokens is no more than
50 MB above its idle RSS. The server (bench/server.py: seeded, SQLite durable by
default, or a scratch PostgreSQL database with ``--postgres``) starts, settles,
and its idle RSS is read from /proc (the process and its worker children). Then
wrk (bench/wrk/post.lua, ``--connections`` keep-alive connections) issues
client_credentials tokens in runs of ``--chunk-seconds`` until N good responses
came back; every response is checked (200 and ``"token_type":"Bearer"``), and
RSS is sampled after every run (the peak is reported too). ``--write`` puts the
result in docs/benchmarks.md (section ``issue-8``, block ``memory``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bench.ab import rss_kb, write_section
from bench.harness import (
    Context,
    Options,
    fmt_int,
    load_average,
    machine,
    table,
)
from bench.loadgen import chunks
from bench.server import ServerProcess, scratch_database

BLOCK = "memory"
TARGET_MB = 50.0


def mb(kib: int) -> float:
    """KiB (as /proc reports) to MB (10^6 bytes, as the issue states the target)."""
    return kib * 1024 / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tokens", type=int, default=1_000_000, help="tokens to issue")
    p.add_argument("--connections", type=int, default=50, help="wrk -c")
    p.add_argument("--chunk-seconds", type=float, default=10.0, help="seconds per wrk run")
    p.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each RSS")
    p.add_argument("--workers", type=int, default=1, help="tokentrail serve --workers")
    p.add_argument("--postgres", default="", help="PostgreSQL server for a scratch database")
    p.add_argument("--write", action="store_true", help="write the block to docs/benchmarks.md")
    args = p.parse_args(argv)
    command = " ".join(["python", "bench/bench_memory.py", *map(shlex.quote, sys.argv[1:])])
    load = load_average()
    extra = ("--workers", str(args.workers)) if args.workers > 1 else ()
    with tempfile.TemporaryDirectory(prefix="tokentrail-memory-") as tmp, ExitStack() as stack:
        ctx = Context(Options.full(connections=args.connections), Path(tmp))
        db_url = None
        if args.postgres:
            db_url = stack.enter_context(scratch_database(args.postgres, "tt_bench_memory"))
        server = ServerProcess.start(
            Path(tmp) / "data", log=ctx.log, db_url=db_url, extra_args=extra
        )
        stack.callback(server.stop)
        time.sleep(args.settle)
        idle = rss_kb(server.pid)
        ctx.log(f"idle RSS {mb(idle):.1f} MB")
        peak, issued, started = idle, 0, time.perf_counter()
        with Progress(
            TextColumn("issuing tokens"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8} req/s  RSS {task.fields[rss]:>7} MB"),
            TimeRemainingColumn(),
            console=ctx.console,
        ) as progress:
            task = progress.add_task("issue", total=args.tokens, rate="", rss=f"{mb(idle):.1f}")
            for result, _ in chunks(
                ctx,
                f"{server.base_url}/oauth/token",
                body="grant_type=client_credentials&scope=read",
                authorization=server.worker.basic,
                expect='"token_type":"Bearer"',
                count=args.tokens,
                seconds=args.chunk_seconds,
            ):
                issued += result.ok
                rss = rss_kb(server.pid)
                peak = max(peak, rss)
                progress.update(
                    task, completed=issued, rate=fmt_int(result.rps), rss=f"{mb(rss):.1f}"
                )
        elapsed = time.perf_counter() - started
        time.sleep(args.settle)
        after = rss_kb(server.pid)
        info = machine(Path(tmp), ctx.loadgen().name, load)
    growth = mb(after) - mb(idle)
    if issued < 1_000_000:
        verdict = "not judged: a shorter run than the 1,000,000 tokens the target names"
    else:
        verdict = "met" if growth <= TARGET_MB else "**missed**"
    database = "PostgreSQL" if args.postgres else "SQLite (WAL, synchronous=FULL)"
    serve = " ".join(["tokentrail serve", *extra])
    rows = [
        ("idle (after start and a settle)", f"{mb(idle):.1f}"),
        (f"after {fmt_int(issued)} tokens", f"{mb(after):.1f}"),
        ("peak sampled between runs", f"{mb(peak):.1f}"),
        ("growth (after - idle)", f"**{growth:.1f}**"),
    ]
    body = "\n".join(
        [
            "### Server memory after issuing tokens",
            "",
            f"`{serve}` on {database}: RSS of the server process and its worker children "
            "(from /proc, in MB of 10^6 bytes) when idle, then after client_credentials "
            f"issuance of {fmt_int(issued)} tokens over HTTP (`{ctx.loadgen().name}` "
            f"-c{args.connections}, every response checked) in {elapsed:,.0f} s "
            f"({issued / elapsed:,.0f} tokens/s). Command: `{command}`.",
            "",
            table(("server RSS", "MB"), rows),
            "",
            f"- growth after {fmt_int(issued)} tokens: {growth:.1f} MB "
            f"(target <= {TARGET_MB:.0f} MB after 1,000,000): {verdict}",
        ]
    )
    print(body)
    if args.write:
        write_section(info, command, {BLOCK: body})
    return 0


if __name__ == "__main__":
    sys.exit(main())
