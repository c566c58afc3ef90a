"""Run the tokentrail benchmarks and rewrite their section of docs/benchmarks.md.

    make bench                          # full run (what docs/benchmarks.md shows)
    python bench/run.py --quick         # short smoke run; prints, writes nothing
    python bench/run.py --only verification --only revocation

Each operation is one module of this folder (see ``MODULES``); they share the
harness (:mod:`bench.harness`), the server (:mod:`bench.server`) and the load
generator (:mod:`bench.loadgen`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from types import ModuleType

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import introspection, issuance, revocation, verification
from bench.harness import (
    DOCS,
    Context,
    Options,
    Section,
    command_line,
    commit_probe,
    load_average,
    machine,
    previous_section,
    render_section,
    rewrite_doc,
)

#: Every benchmark module, in the order they run and appear in the document.
MODULES: tuple[ModuleType, ...] = (issuance, introspection, verification, revocation)
BY_NAME = {m.NAME: m for m in MODULES}

SECTION_TITLE = "Issue 2: the token authority's core figures"
SECTION_INTRO = """
The four figures issue 2 asks for, measured in one run on one machine: durable
token issuance and introspection through a real `tokentrail serve` process on
loopback, in-process verification with the lineage revocation check against the
raw signature-verify rate, and how long a revocation takes to take effect on a
credential with 1,000 versus 1,000,000 descendants. Targets: in-process
verification at least 0.80 of raw verify; the effect time at 1,000,000
descendants within 2x of that at 1,000.
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short smoke run (seconds, small sizes)")
    p.add_argument(
        "--only",
        action="append",
        choices=list(BY_NAME),
        help="run only this module (repeatable); the others keep their block in the document",
    )
    p.add_argument(
        "--output",
        type=Path,
        help=f"document to rewrite (default: {DOCS.relative_to(DOCS.parent.parent)}; "
        "--quick writes only when this is given)",
    )
    p.add_argument("--no-write", action="store_true", help="print the section, write nothing")
    p.add_argument("--json", type=Path, help="also write the raw figures as JSON here")
    p.add_argument("--duration", type=float, help="measured seconds per HTTP operation")
    p.add_argument("--warmup", type=float, help="warm-up seconds per HTTP operation")
    p.add_argument("--connections", type=int, help="concurrent connections (wrk -c)")
    p.add_argument("--threads", type=int, help="load generator threads (wrk -t)")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], help="HTTP load generator")
    p.add_argument("--no-install", action="store_true", help="never try to apt-get install wrk")
    p.add_argument("--rounds", type=int, help="interleaved rounds of in-process verification")
    p.add_argument("--round-seconds", type=float, help="seconds per variant per round")
    p.add_argument(
        "--sizes",
        type=lambda s: tuple(int(x) for x in s.split(",")),
        help="descendant counts compared by the revocation bench, e.g. 1000,1000000",
    )
    p.add_argument("--trials", type=int, help="revocation trials per size")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary folder)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def options_from(args: argparse.Namespace) -> Options:
    overrides = {
        key: value
        for key, value in {
            "duration": args.duration,
            "warmup": args.warmup,
            "connections": args.connections,
            "threads": args.threads,
            "loadgen": args.loadgen,
            "rounds": args.rounds,
            "round_seconds": args.round_seconds,
            "sizes": args.sizes,
            "trials": args.trials,
        }.items()
        if value is not None
    }
    if args.no_install:
        overrides["install"] = False
    if args.no_progress:
        overrides["progress"] = False
    if args.sizes is not None and len(args.sizes) != 2:
        raise SystemExit("--sizes takes two counts, e.g. 1000,1000000")
    return Options.quick_run(**overrides) if args.quick else Options.full(**overrides)


def run_modules(ctx: Context, modules: list[ModuleType]) -> list[Section]:
    sections = []
    try:
        for module in modules:
            sections.append(module.run(ctx))
    finally:
        ctx.close()
    return sections


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = options_from(args)
    modules = [BY_NAME[n] for n in args.only] if args.only else list(MODULES)
    write_to = None if args.no_write else (args.output or (None if args.quick else DOCS))
    load = load_average()
    with tempfile.TemporaryDirectory(prefix="tokentrail-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        commits = commit_probe(workdir / "probe", 0.3 if options.quick else 1.0)
        ctx = Context(options, workdir)
        sections = run_modules(ctx, modules)
        loadgen = ctx.loadgen().name if any(m.SERVER for m in modules) else None
        info = machine(workdir, loadgen, load, commits)
    section = render_section(
        title=SECTION_TITLE,
        intro=SECTION_INTRO,
        machine_info=info,
        command=command_line(argv),
        order=[m.NAME for m in MODULES],
        fresh={s.name: s.markdown for s in sections},
        previous=previous_section(write_to) if write_to else None,
    )
    missed = [t for s in sections for t in s.targets if not t.met]
    for s in sections:
        for target in s.targets:
            ctx.log(target.markdown().removeprefix("- "))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": info, "sections": {s.name: s.figures for s in sections}},
                indent=2,
            )
            + "\n"
        )
    if write_to is None:
        sys.stdout.write(section + "\n")
    else:
        rewrite_doc(write_to, section)
        ctx.log(f"wrote {write_to}")
    if missed:
        ctx.log(f"[yellow]{len(missed)} target(s) missed: see the notes in the document")
    return 0


if __name__ == "__main__":
    sys.exit(main())
