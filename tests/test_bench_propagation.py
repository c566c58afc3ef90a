"""bench/bench_propagation.py keeps working: its in-process parts at tiny sizes.

No timing is asserted; the propagation part needs two servers and PostgreSQL
and is run by hand (docs/scaling.md, "Measured").
"""

from __future__ import annotations

from bench import bench_propagation


def test_memory_per_revoked_id_is_measured() -> None:
    """memory_per_id applies the ids to a verifier view and reports bytes per id."""
    result = bench_propagation.memory_per_id(2_000)
    assert result["ids"] == 2_000
    assert result["bytes_per_id"] > 0


def test_verification_rates_are_compared() -> None:
    """verification_rates times verify() with an empty and a full view and reports the ratio."""
    result = bench_propagation.verification_rates(1_000, rounds=1, per_round=50)
    assert result["revoked_ids"] == 1_000
    assert result["empty_per_cpu_s"] > 0
    assert result["full_per_cpu_s"] > 0
    assert result["ratio"] > 0


def test_percentile_picks_from_the_sorted_values() -> None:
    """The percentile helper returns the nearest-rank value."""
    values = [float(v) for v in range(101)]
    assert bench_propagation._percentile(values, 0.5) == 50.0
    assert bench_propagation._percentile(values, 0.99) == 99.0
