"""What every benchmark module shares: options, the run context, timing, machine
description, and the writer that rewrites generated blocks of docs/benchmarks.md.

Generated text lives between HTML comment markers so a run can rewrite its own
section and leave everything else in the file (hand-written notes, sections of
other benchmark suites) as it was::

    <!-- generated:issue-2 -->            the section a run of bench/run.py owns
      <!-- block:machine --> ... <!-- /block:machine -->
      <!-- block:issuance --> ... <!-- /block:issuance -->
      ...
    <!-- /generated:issue-2 -->

A run limited to some modules (``--only``) keeps the blocks of the others as
they were, each block stating when and how it was measured.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import shlex
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from bench.loadgen import LoadGenerator
    from bench.server import ServerProcess

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
SECTION_ID = "issue-2"


# --- options and results -----------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """Every knob of a run; :meth:`full` and :meth:`quick` are the two presets."""

    quick: bool = False
    #: HTTP load: measured seconds per operation, warm-up seconds, wrk -c / -t.
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 50
    threads: int = 1
    #: "auto" (wrk if present or installable, else python), "wrk" or "python".
    loadgen: str = "auto"
    #: May the harness try ``apt-get install -y wrk`` when wrk is missing?
    install: bool = True
    #: Single-use pools (DPoP proofs, tokens to revoke) hold the expected rate x seconds x this.
    pool_factor: float = 2.0
    #: In-process verification: interleaved rounds, seconds per variant per round.
    rounds: int = 7
    round_seconds: float = 2.0
    #: Cascade revocation: descendant counts compared, and timed trials per count.
    sizes: tuple[int, int] = (1_000, 1_000_000)
    trials: int = 41
    batch: int = 20_000
    #: Scratch folder for databases (None: a temporary folder).
    workdir: Path | None = None
    #: Show progress bars (off in tests).
    progress: bool = True

    @classmethod
    def full(cls, **overrides: Any) -> Options:
        return cls(**overrides)

    @classmethod
    def quick_run(cls, **overrides: Any) -> Options:
        base: dict[str, Any] = {
            "quick": True,
            "duration": 2.0,
            "warmup": 0.5,
            "rounds": 2,
            "round_seconds": 0.25,
            "sizes": (1_000, 20_000),
            "trials": 9,
        }
        base.update(overrides)
        return cls(**base)


@dataclass(frozen=True)
class Target:
    """A target from the issue and whether this run met it."""

    name: str
    goal: str
    value: str
    met: bool

    def markdown(self) -> str:
        mark = "met" if self.met else "**missed**"
        return f"- {self.name}: {self.value} (target {self.goal}): {mark}"


@dataclass
class Section:
    """One module's result: its markdown block, raw figures and targets."""

    name: str
    title: str
    markdown: str
    figures: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)


class Context:
    """A run: its options, console, scratch folder, and the shared server and load generator."""

    def __init__(self, options: Options, workdir: Path, console: Console | None = None) -> None:
        self.options = options
        self.workdir = workdir
        self.console = console or Console(stderr=True)
        self._server: ServerProcess | None = None
        self._loadgen: LoadGenerator | None = None
        #: Good responses per second last seen per URL (sizes the runs of loadgen.chunks).
        self.rates: dict[str, float] = {}

    def log(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def loadgen(self) -> LoadGenerator:
        if self._loadgen is None:
            from bench.loadgen import choose_load_generator

            self._loadgen = choose_load_generator(self)
        return self._loadgen

    def server(self) -> ServerProcess:
        """The seeded ``tokentrail serve`` process, started on first use."""
        if self._server is None:
            from bench.server import ServerProcess

            self._server = ServerProcess.start(self.workdir / "server", log=self.log)
        return self._server

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


# --- timing ------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """Calls measured over CPU time of this process and over wall-clock time.

    On an idle machine the two rates agree. When other work shares the CPUs,
    the wall-clock rate falls with the share this process gets while the
    CPU-time rate does not, so ratios between variants use the CPU-time rate.
    ``best`` is the CPU-time rate of the fastest batch (a few milliseconds): as
    with ``timeit``'s minimum, slower batches differ mostly by interference from
    other processes (caches and cores they share), not by the code measured.
    """

    calls: int
    cpu_seconds: float
    wall_seconds: float
    best: float = 0.0

    @property
    def cpu(self) -> float:
        return self.calls / max(self.cpu_seconds, 1e-9)

    @property
    def wall(self) -> float:
        return self.calls / max(self.wall_seconds, 1e-9)

    def __add__(self, other: Rate) -> Rate:
        return Rate(
            self.calls + other.calls,
            self.cpu_seconds + other.cpu_seconds,
            self.wall_seconds + other.wall_seconds,
            max(self.best, other.best),
        )


def rate(fn: Callable[[], object], seconds: float, *, batch: int = 20) -> Rate:
    """Call ``fn`` in batches for at least ``seconds`` of wall-clock time."""
    perf, cpu = time.perf_counter, time.process_time
    calls = 0
    best = 0.0
    start, cpu_start = perf(), cpu()
    deadline = start + seconds
    batch_cpu = cpu_start
    while True:
        for _ in range(batch):
            fn()
        calls += batch
        now, now_cpu = perf(), cpu()
        if now_cpu > batch_cpu:
            best = max(best, batch / (now_cpu - batch_cpu))
        batch_cpu = now_cpu
        if now >= deadline:
            return Rate(calls, now_cpu - cpu_start, now - start, best)


def interleaved(
    fns: dict[str, Callable[[], object]], seconds: float, *, slices: int = 10
) -> dict[str, Rate]:
    """One round: every variant gets ``seconds`` in total, in ``slices`` alternating slices.

    Alternating in short slices (A B C A B C ...) pairs the variants in time, so
    a burst of other work on the machine lands on all of them alike.
    """
    totals = {name: Rate(0, 0.0, 0.0, 0.0) for name in fns}
    for _ in range(slices):
        for name, fn in fns.items():
            totals[name] = totals[name] + rate(fn, seconds / slices)
    return totals


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of an ascending sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(p / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A GitHub markdown table; columns after the first are right-aligned."""
    head = "| " + " | ".join(headers) + " |"
    rule = "|" + "|".join([" --- "] + [" ---: "] * (len(headers) - 1)) + "|"
    body = ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join([head, rule, *body])


# --- the machine -------------------------------------------------------------------


def _cpuinfo() -> tuple[str, int | None]:
    """CPU model name and physical core count from /proc/cpuinfo (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown", None
    model = "unknown"
    cores: set[tuple[str, str]] = set()
    phys = core = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and model == "unknown":
            model = value
        elif key == "physical id":
            phys = value
        elif key == "core id":
            core = value
        elif not line.strip() and phys is not None and core is not None:
            cores.add((phys, core))
            phys = core = None
    if phys is not None and core is not None:
        cores.add((phys, core))
    return model, (len(cores) or None)


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def filesystem_of(path: Path) -> str:
    """``fstype on device`` for the mount holding ``path`` (fsync cost depends on it)."""
    try:
        mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    target = str(path.resolve())
    best: list[str] | None = None
    for m in mounts:
        if len(m) < 3:
            continue
        mp = m[1]
        if (target == mp or target.startswith(mp.rstrip("/") + "/")) and (
            best is None or len(mp) > len(best[1])
        ):
            best = m
    return f"{best[2]} on {best[0]}" if best else "unknown"


def commit_probe(folder: Path, seconds: float) -> str:
    """One-row SQLite commits per second in ``folder`` (WAL), with synchronous=FULL and NORMAL.

    The durable figures are bounded by how fast this disk makes a commit durable
    (fsync) at the time of the run, which other work on the machine changes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "commit-probe.db"
    conn = sqlite3.connect(path, isolation_level=None)
    out = []
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
        for mode in ("FULL", "NORMAL"):
            conn.execute(f"PRAGMA synchronous={mode}")
            n = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO t VALUES (1)")
                conn.execute("COMMIT")
                n += 1
            out.append(f"{mode} {n / (time.perf_counter() - start):,.0f}/s")
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return ", ".join(out)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:  # not available on this platform
        return None


def machine(
    workdir: Path,
    loadgen: str | None = None,
    load: tuple[float, float, float] | None = None,
    commits: str | None = None,
) -> dict[str, str]:
    model, physical = _cpuinfo()
    logical = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = logical
    cores = f"{logical} logical CPUs ({usable} usable by this process"
    cores += f", {physical} physical cores)" if physical else ")"
    info = {
        "CPU": model,
        "cores": cores,
        "memory": _memory(),
        "OS": platform.platform(),
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "SQLite": sqlite3.sqlite_version,
        "scratch data folder": f"{workdir} ({filesystem_of(workdir)})",
        "libraries": ", ".join(
            f"{d} {_version(d)}"
            for d in (
                "cryptography",
                "joserfc",
                "PyJWT",
                "SQLAlchemy",
                "starlette",
                "uvicorn",
                "httpx",
            )
        ),
    }
    if loadgen:
        info["load generator"] = loadgen
    if commits is not None:
        info["SQLite one-row commits in the scratch folder (WAL)"] = commits
    if load is not None:
        info["load average when the run started"] = (
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min; other work on "
            "the machine shares its CPUs and disk with the benchmark)"
        )
    return info


# --- docs/benchmarks.md ------------------------------------------------------------

_DOC_HEAD = """# Benchmarks

Figures measured on one machine by `bench/run.py` (`make bench`). The blocks
between `generated` markers are rewritten by every run; everything else is
written by hand.
"""


def _markers(kind: str, ident: str) -> tuple[str, str]:
    return f"<!-- {kind}:{ident} -->", f"<!-- /{kind}:{ident} -->"


def extract_block(text: str, kind: str, ident: str) -> str | None:
    """The text between a pair of markers (markers included), or None."""
    start, end = _markers(kind, ident)
    m = re.search(re.escape(start) + r".*?" + re.escape(end), text, flags=re.S)
    return m.group(0) if m else None


def block_ids(text: str, kind: str = "block") -> list[str]:
    """The ids of the ``kind`` blocks in ``text``, in order."""
    return re.findall(r"<!-- " + re.escape(kind) + r":([\w-]+) -->", text)


def block(kind: str, ident: str, body: str) -> str:
    start, end = _markers(kind, ident)
    return f"{start}\n{body.strip()}\n{end}"


def command_line(argv: Sequence[str] | None = None) -> str:
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", "bench/run.py", *map(shlex.quote, args)])


def stamp(command: str) -> str:
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"_Measured {now} with `{command}`._"


def render_section(
    *,
    title: str,
    intro: str,
    machine_info: dict[str, str],
    command: str,
    order: Sequence[str],
    fresh: dict[str, str],
    previous: str | None,
    section_id: str = SECTION_ID,
    reproduce: str | None = None,
) -> str:
    """The whole generated section: machine block, then one block per module.

    ``fresh`` maps module names to blocks measured now; modules in ``order``
    that were not run keep their block from ``previous`` (the old section);
    every block ends with the date and command that measured it. ``reproduce``
    replaces the machine block's closing line (how to rerun bench/run.py).
    """
    machine_rows = [(k, v) for k, v in machine_info.items()]
    machine_md = "\n".join(
        [
            "### Machine and command",
            "",
            stamp(command),
            "",
            *[f"- **{k}**: {v}" for k, v in machine_rows],
            "",
            reproduce
            or "Reproduce: `make bench` (the virtual environment's `python bench/run.py`); "
            "`python bench/run.py --quick` is a short smoke run that writes nothing unless "
            "given `--output`.",
        ]
    )
    parts = [f"## {title}", "", intro.strip(), "", block("block", "machine", machine_md)]
    for name in order:
        if name in fresh:
            parts += ["", block("block", name, f"{fresh[name]}\n\n{stamp(command)}")]
        elif previous and (old := extract_block(previous, "block", name)):
            parts += ["", old]
    return block("generated", section_id, "\n".join(parts))


def rewrite_doc(path: Path, section: str, section_id: str = SECTION_ID) -> None:
    """Replace the generated section in ``path`` (or append it), keeping the rest."""
    text = path.read_text(encoding="utf-8") if path.exists() else _DOC_HEAD
    old = extract_block(text, "generated", section_id)
    if old is not None:
        text = text.replace(old, section)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def previous_section(path: Path, section_id: str = SECTION_ID) -> str | None:
    if not path.exists():
        return None
    return extract_block(path.read_text(encoding="utf-8"), "generated", section_id)
