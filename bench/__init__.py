"""tokentrail benchmarks: one module per measured operation, one runner.

* :mod:`bench.harness` -- the run context, machine description, rate timing and
  the writer that rewrites a generated section of ``docs/benchmarks.md``;
* :mod:`bench.server` -- a real ``tokentrail serve`` process on loopback, seeded;
* :mod:`bench.loadgen` -- ``wrk`` with ``bench/wrk/post.lua`` (installed from
  the system packages when missing), or a Python asyncio/httpx fallback;
* one module per operation (:mod:`bench.issuance`, :mod:`bench.introspection`,
  :mod:`bench.verification`, :mod:`bench.revocation`), each exposing
  ``NAME``, ``TITLE``, ``SERVER`` (whether it needs the server) and
  ``run(ctx) -> Section``;
* ``bench/run.py`` -- the runner ``make bench`` calls first (issue 2 figures);
* ``bench/peer.py`` -- tokentrail (SQLite, PostgreSQL) against oidc-provider, and
  ``serve --workers 1`` against ``--workers 2``, in interleaved rounds, built from
  :mod:`bench.systems` (each server and the call it gets per operation),
  :mod:`bench.pools` (single-use DPoP proofs, login assertions), :mod:`bench.rounds`
  (rounds and tables) and :mod:`bench.plots` (PNG charts in docs/bench/);
* ``bench/bench_memory.py`` -- server RSS idle and after N issued tokens;
* ``bench/ab.py`` -- two versions of the server code, A/B.
"""
