"""A/B: two (or more) ``tokentrail serve`` variants under the same load, in interleaved rounds.

    # before/after a change: a snapshot of the old tree against the working tree
    python bench/ab.py --variant before=/tmp/tt-before/src --variant after=src \\
        --block client-auth-read --rounds 4 --duration 5

    # the same code with one and two workers
    python bench/ab.py --variant "1 worker=src" --variant "2 workers=src --workers 2" \\
        --block workers

    # the same app under uvicorn (tokentrail serve) and under granian (pip install granian)
    python bench/ab.py --variant "uvicorn=src" --variant "granian=src@granian" --block http-server

A variant is ``NAME=SOURCE[ EXTRA SERVE ARGS]``: ``SOURCE`` is a ``src`` folder
put first on the server's ``PYTHONPATH`` (so two versions of the code run side
by side), the rest is appended to ``tokentrail serve``; ``SOURCE@granian`` runs
the app under granian instead (bench/server.py). Every variant gets its
own freshly seeded SQLite data folder (``synchronous=FULL``, group commit).
Rounds run A B, B A, A B ... so machine noise lands on every variant alike; the
table gives each variant's median req/s and p99, and the ratio of each variant
to the first one per round (median, min, max). ``--write`` puts the table in
docs/benchmarks.md, in the generated section ``issue-8`` as the block named by
``--block``; other blocks of that section are kept.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    DOCS,
    REPO,
    Context,
    Options,
    block_ids,
    fmt_int,
    load_average,
    machine,
    previous_section,
    render_section,
    rewrite_doc,
    spread,
    table,
)
from bench.loadgen import LoadResult, measure
from bench.server import ServerProcess

SECTION_ID = "issue-8"
SECTION_TITLE = "Issue 8: hot-path changes and scaling, measured A/B"
SECTION_INTRO = """
Each block compares variants of `tokentrail serve` under the same wrk load in
interleaved rounds (A B, B A, A B ...), in one run on one machine (`bench/ab.py`).
Ratios are per round against the first variant; the machine is shared with
other jobs (see the load average), which is why only same-run ratios are
compared.
"""
REPRODUCE = """
Reproduce: `make bench` runs `python bench/run.py`, `python bench/peer.py --write`
(tokentrail against oidc-provider, and `--workers 1` against `--workers 2`) and
`python bench/bench_memory.py --write` (1,000,000 tokens); a short run:
`python bench/peer.py --rounds 1 --duration 2 --write`. A/B of two code versions:
`python bench/ab.py --help`.
""".strip()
OPERATIONS = ("issuance", "introspection")


@dataclass
class Variant:
    name: str
    source: Path
    args: tuple[str, ...]
    http_server: str = "uvicorn"
    server: ServerProcess | None = None
    results: dict[str, list[LoadResult]] = field(default_factory=dict)
    rss_kb: list[int] = field(default_factory=list)


def parse_variant(text: str) -> Variant:
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise argparse.ArgumentTypeError("a variant is NAME=SOURCE[ SERVE ARGS]")
    source, *args = shlex.split(rest)
    source, _, http_server = source.partition("@")
    if http_server not in ("", "uvicorn", "granian"):
        raise argparse.ArgumentTypeError("SOURCE@SERVER: the server is uvicorn or granian")
    path = Path(source)
    return Variant(
        name, path if path.is_absolute() else REPO / path, tuple(args), http_server or "uvicorn"
    )


def rss_kb(pid: int) -> int:
    """Resident memory of a process and its children (uvicorn workers), in KiB."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def one(ctx: Context, server: ServerProcess, op: str, token: str) -> LoadResult:
    if op == "issuance":
        return measure(
            ctx,
            f"{server.base_url}/oauth/token",
            body="grant_type=client_credentials&scope=read",
            authorization=server.worker.basic,
            expect='"access_token"',
        )
    return measure(
        ctx,
        f"{server.base_url}/oauth/introspect",
        body=urlencode({"token": token}),
        authorization=server.gateway.basic,
        expect='"active":true',
    )


def markdown(variants: list[Variant], ops: list[str], ctx: Context, command: str) -> str:
    o = ctx.options
    base = variants[0]
    lines = [
        f"Load: `{ctx.loadgen().name}` -t{o.threads} -c{o.connections}, {o.duration:.0f} s "
        f"measured after {o.warmup:.0f} s warm-up, per variant per round; "
        f"{len(base.results[ops[0]])} rounds. Command: `{command}`.",
        "",
        "Variants:",
        "",
        *[
            f"- **{v.name}**: `{' '.join([_server(v), *v.args])}` from `{_shown(v.source)}`"
            for v in variants
        ],
    ]
    for op in ops:
        rows = []
        for v in variants:
            rs = v.results[op]
            rps = statistics.median(r.rps for r in rs)
            p99 = statistics.median(r.p99 for r in rs) * 1e3
            if v is base:
                ratio = "1 (reference)"
            else:
                per_round = [r.rps / b.rps for r, b in zip(rs, base.results[op], strict=True)]
                med, lo, hi = spread(per_round)
                ratio = f"{med:.2f} (min {lo:.2f}, max {hi:.2f})"
            rows.append(
                (
                    v.name,
                    fmt_int(rps),
                    f"{p99:.1f}",
                    ratio,
                    ", ".join(fmt_int(r.rps) for r in rs),
                )
            )
        lines += [
            "",
            f"**{op}**",
            "",
            table(
                (
                    "variant",
                    "req/s (median)",
                    "p99 ms (median)",
                    f"req/s ratio to {base.name} per round (median, min, max)",
                    "req/s per round",
                ),
                rows,
            ),
        ]
    if all(v.rss_kb for v in variants):
        lines += [
            "",
            "Server RSS after the last round: "
            + ", ".join(f"{v.name} {v.rss_kb[-1] / 1024:.0f} MiB" for v in variants)
            + ".",
        ]
    return "\n".join(lines)


def _server(v: Variant) -> str:
    if v.http_server == "granian":
        return "granian --factory tokentrail.web.factory:create_app_from_environment"
    return "tokentrail serve"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--variant", type=parse_variant, action="append", required=True)
    p.add_argument("--op", action="append", choices=OPERATIONS)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--block", default="ab", help="block id in docs/benchmarks.md")
    p.add_argument("--title", help="heading of the block")
    p.add_argument("--note", default="", help="markdown after the table (what it shows)")
    p.add_argument("--write", action="store_true", help="write the block to docs/benchmarks.md")
    args = p.parse_args(argv)
    variants: list[Variant] = args.variant
    if len(variants) < 2:
        p.error("give at least two --variant")
    ops = args.op or list(OPERATIONS)
    command = " ".join(["python", "bench/ab.py", *map(shlex.quote, sys.argv[1:])])
    options = Options.full(duration=args.duration, warmup=args.warmup, connections=args.connections)
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="tokentrail-ab-") as tmp:
        ctx = Context(options, Path(tmp))
        try:
            tokens = {}
            for i, v in enumerate(variants):
                v.server = ServerProcess.start(
                    Path(tmp) / f"v{i}",
                    log=ctx.log,
                    source=v.source,
                    extra_args=v.args,
                    http_server=v.http_server,
                )
                tokens[v.name] = v.server.issue_token()
                v.results = {op: [] for op in ops}
            for rnd in range(args.rounds):
                # A B, then B A: neither variant always runs first (ABBA order).
                order = variants if rnd % 2 == 0 else variants[::-1]
                for op in ops:
                    for v in order:
                        assert v.server is not None
                        r = one(ctx, v.server, op, tokens[v.name])
                        v.results[op].append(r)
                        ctx.log(
                            f"round {rnd + 1} {op:13} {v.name:>12}: {r.rps:8,.0f} req/s "
                            f"p99 {r.p99 * 1e3:6.1f} ms"
                        )
                for v in variants:
                    assert v.server is not None
                    v.rss_kb.append(rss_kb(v.server.pid))
            info = machine(Path(tmp), ctx.loadgen().name, load)
        finally:
            for v in variants:
                if v.server is not None:
                    v.server.stop()
    title = args.title or args.block
    body = f"### {title}\n\n{markdown(variants, ops, ctx, command)}"
    if args.note:
        body += f"\n\n{args.note.strip()}"
    print(body)
    if args.write:
        write_section(info, command, {args.block: body})
    return 0


def _order(*ids: str) -> list[str]:
    """Known blocks first, in reading order; other ids after them, in the order given."""
    known = ["client-auth-read", "hot-path", "peer", "workers", "memory"]
    return known + [b for b in dict.fromkeys(ids) if b not in known]


def write_section(info: dict[str, str], command: str, fresh: dict[str, str]) -> None:
    """Rewrite this section of docs/benchmarks.md with ``fresh`` blocks; keep the others."""
    previous = previous_section(DOCS, SECTION_ID)
    # Blocks an earlier run wrote under ids of its own (ab.py --block) are kept too.
    earlier = block_ids(previous) if previous else []
    section = render_section(
        title=SECTION_TITLE,
        intro=SECTION_INTRO,
        machine_info=info,
        command=command,
        order=_order(*earlier, *fresh),
        fresh=fresh,
        previous=previous,
        section_id=SECTION_ID,
        reproduce=REPRODUCE,
    )
    rewrite_doc(DOCS, section, SECTION_ID)


if __name__ == "__main__":
    sys.exit(main())
