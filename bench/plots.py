"""PNG charts of interleaved-round results: throughput and p99 latency per system per operation.

Grouped bars (one group per operation, one bar per system): the bar is the
median over rounds, the whisker spans the rounds' min to max. Log scale, since
the systems compared differ by an order of magnitude. Needs matplotlib (the
``bench`` extra: ``pip install -e '.[bench]'``); without it no chart is drawn.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.loadgen import LoadResult
from bench.rounds import Results

PLOTS = Path(__file__).resolve().parent.parent / "docs" / "bench"


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _chart(
    results: Results,
    labels: dict[str, str],
    value: Callable[[LoadResult], float],
    ylabel: str,
    title: str,
    path: Path,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    ops = [op for op in results if results[op]]
    systems: list[str] = []
    for op in ops:
        systems += [s for s in results[op] if s not in systems]
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.9 * len(ops) + 3.5), 4.2), dpi=110)
    for i, system in enumerate(systems):
        xs, meds, lows, highs = [], [], [], []
        for j, op in enumerate(ops):
            rs = results[op].get(system)
            if not rs:
                continue
            vals = [value(r) for r in rs]
            med = statistics.median(vals)
            xs.append(j - 0.4 + width * (i + 0.5))
            meds.append(med)
            lows.append(med - min(vals))
            highs.append(max(vals) - med)
        bars = ax.bar(xs, meds, width * 0.92, label=system, yerr=[lows, highs], capsize=2)
        ax.bar_label(bars, labels=[f"{m:,.0f}" for m in meds], fontsize=7, padding=2)
    ax.set_xticks(range(len(ops)), [labels.get(op, op) for op in ops], fontsize=8)
    ax.set_yscale("log")
    ax.yaxis.set_minor_locator(ticker.LogLocator(subs=(2.0, 5.0)))
    plain = ticker.FuncFormatter(lambda v, _pos: f"{v:,.0f}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(plain)
    ax.tick_params(axis="y", which="both", labelsize=7)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def charts(results: Results, name: str, labels: dict[str, str], title: str) -> Sequence[Path]:
    """``docs/bench/<name>-throughput.png`` and ``<name>-p99.png``; their paths."""
    return [
        _chart(
            results,
            labels,
            lambda r: r.rps,
            "req/s (median; whiskers: min - max)",
            f"{title}: throughput",
            PLOTS / f"{name}-throughput.png",
        ),
        _chart(
            results,
            labels,
            lambda r: r.p99 * 1e3,
            "p99 latency, ms (median; whiskers: min - max)",
            f"{title}: p99 latency",
            PLOTS / f"{name}-p99.png",
        ),
    ]


def markdown_links(paths: Sequence[Path], doc_dir: Path) -> str:
    return "\n".join(
        f"![{p.stem.replace('-', ' ')}]({p.relative_to(doc_dir).as_posix()})" for p in paths
    )
