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
* ``bench/run.py`` -- the runner ``make bench`` calls.
"""
