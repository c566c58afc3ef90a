"""Interleaved rounds over several systems, and the tables that report them.

Every round runs each operation on every system, A B C then C B A, so a burst
of other work on the machine lands on all systems alike. A ratio is taken per
round (a system against its reference in the same round), then summarised as
median, min and max over the rounds.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from bench.harness import Context, fmt_int, spread, table
from bench.loadgen import LoadResult, measure
from bench.systems import System

#: results[op][system name] = one LoadResult per round
Results = dict[str, dict[str, list[LoadResult]]]
#: req/s assumed for a pool's first run when nothing was measured on that system yet.
FIRST_GUESS = 500.0


@dataclass
class Rounds:
    """What interleaved rounds measured, and which (operation, system) pairs failed.

    A pair that fails in any round is dropped from ``results`` and not run again:
    its error is kept in ``failed[op][system]`` and reported instead of figures.
    """

    results: Results
    failed: dict[str, dict[str, str]] = field(default_factory=dict)


def run_rounds(ctx: Context, systems: Sequence[System], ops: Sequence[str], rounds: int) -> Rounds:
    out = Rounds({op: {s.name: [] for s in systems if op in s.calls} for op in ops})
    fastest: dict[str, float] = {}  # per system: the best rate of any operation so far
    for rnd in range(rounds):
        order = list(systems) if rnd % 2 == 0 else list(systems)[::-1]
        for op in ops:
            for system in order:
                call = system.calls.get(op)
                history = out.results[op].get(system.name)
                if call is None or history is None:
                    continue
                if call.pool is not None:
                    # Size single-use pools from this operation's past rounds, else from
                    # the system's fastest operation (an upper bound in the first round),
                    # else a guess (a pool that runs out is remade larger and rerun).
                    call.pool.expected_rps = (
                        max(r.rps for r in history)
                        if history
                        else fastest.get(system.name, FIRST_GUESS)
                    )
                try:
                    r = measure(
                        ctx,
                        call.url,
                        body=call.body() if callable(call.body) else call.body,
                        authorization=call.authorization,
                        expect=call.expect,
                        pool=call.pool,
                    )
                except RuntimeError as exc:
                    tail = system.log_tail()
                    ctx.log(
                        f"[red]round {rnd + 1}: {op} on {system.name} failed: {exc}\n"
                        f"its log ends:\n{tail}"
                    )
                    why = f"round {rnd + 1}: " + re.sub(r"https?://[^/\s]+", "", str(exc))
                    errors = re.findall(r"^[\w.]+(?:Error|Exception): .*$", tail, flags=re.M)
                    if errors:
                        why += f"; server log: {errors[-1]}"
                    out.failed.setdefault(op, {})[system.name] = why
                    del out.results[op][system.name]
                    continue
                history.append(r)
                fastest[system.name] = max(fastest.get(system.name, 0.0), r.rps)
                ctx.log(
                    f"round {rnd + 1}/{rounds} {op:13} {system.name:>26}: {r.rps:8,.0f} req/s "
                    f"p99 {r.p99 * 1e3:7.1f} ms"
                )
    return out


def ratios(results: list[LoadResult], reference: list[LoadResult]) -> list[float]:
    return [a.rps / b.rps for a, b in zip(results, reference, strict=True)]


def op_table(
    per_system: dict[str, list[LoadResult]],
    reference: dict[str, str],
    failed: dict[str, str] | None = None,
) -> str:
    """One operation: a row per system; the ratio column compares with ``reference[system]``.

    Systems in ``failed`` get a row that says why instead of figures.
    """
    rows = []
    for name, rs in per_system.items():
        ref = reference.get(name)
        if ref is not None and ref in per_system:
            med, lo, hi = spread(ratios(rs, per_system[ref]))
            ratio = f"{med:.2f} of {ref} ({lo:.2f} - {hi:.2f})"
        else:
            ratio = ""
        rows.append(
            (
                name,
                fmt_int(statistics.median(r.rps for r in rs)),
                f"{statistics.median(r.p99 for r in rs) * 1e3:.1f}",
                ratio,
                ", ".join(fmt_int(r.rps) for r in rs),
                fmt_int(sum(r.requests for r in rs)),
            )
        )
    for name, why in (failed or {}).items():
        rows.append((name, "failed", "", why.replace("|", "/")[:400], "", ""))
    headers = (
        "system",
        "req/s (median)",
        "p99 ms (median)",
        "req/s ratio per round: median (min - max)",
        "req/s per round",
        "requests",
    )
    return table(headers, rows)


def load_line(ctx: Context, rounds: int, command: str) -> str:
    o = ctx.options
    return (
        f"Load: `{ctx.loadgen().name}` -t{o.threads} -c{o.connections} (bench/wrk/post.lua), "
        f"{o.duration:g} s measured after a {o.warmup:g} s warm-up, per system, operation and "
        f"round; {rounds} rounds (A B C, C B A, ...). Every response is checked (status 200 "
        f"and body). Command: `{command}`."
    )
