"""Issue 6 figures: audit append and verify rates; incident containment and report times.

    python bench/bench_ledger.py          # 1,000,000 records; 1,000 vs 1,000,000 descendants
    python bench/bench_ledger.py --quick  # 100,000 records; 1,000 vs 100,000 descendants

Prints a Markdown section for docs/benchmarks.md. Everything runs in-process on
a scratch SQLite folder with the default durability (synchronous=FULL through
group commit).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.revocation import _client, build_descendants
from tokentrail.accountability import build_report
from tokentrail.audit import GENESIS, chain_hash
from tokentrail.config import Settings
from tokentrail.services import Services, build_services
from tokentrail.storage import tables as t


def append_rate(services: Services, *, threads: int, per_thread: int) -> float:
    """Audit records per second, one record per durable transaction, ``threads`` writers."""

    def work() -> None:
        for i in range(per_thread):
            with services.store.write() as tx:
                tx.append_audit("bench.append", at=time.time(), actor="bench", data={"i": i})

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return threads * per_thread / (time.perf_counter() - start)


def batched_rate(services: Services, *, batches: int, size: int) -> float:
    start = time.perf_counter()
    for _ in range(batches):
        with services.store.write() as tx:
            for i in range(size):
                tx.append_audit("bench.batch", at=time.time(), actor="bench", data={"i": i})
    return batches * size / (time.perf_counter() - start)


def fill_ledger(services: Services, count: int) -> None:
    """Bulk-append ``count`` correctly chained records (built in Python, inserted in batches)."""
    with services.store.read() as tx:
        tail = tx.audit_tail()
    seq, prev = tail if tail else (0, GENESIS)
    batch: list[dict[str, object]] = []
    for _ in range(count):
        seq += 1
        rec = {
            "seq": seq,
            "at": 1.8e9 + seq,
            "event": "token.issued",
            "actor": "client:bench",
            "node_id": f"at_{seq:020d}",
            "client_id": "cl_bench",
            "subject": "cl_bench",
            "team_id": "platform-iam",
            "data": {"path": "workload-client-credentials"},
        }
        digest = chain_hash(prev, rec)
        batch.append({**rec, "prev_hash": prev, "hash": digest})
        prev = digest
        if len(batch) == 20_000:
            with services.store.write() as tx:
                tx.conn.execute(t.audit.insert(), batch)
            batch = []
    if batch:
        with services.store.write() as tx:
            tx.conn.execute(t.audit.insert(), batch)


def incident_times(folder: Path, descendants: int) -> tuple[float, float, float]:
    """(containment s, report s, report peak MiB) on a credential with ``descendants``."""
    services = build_services(Settings(data_dir=folder))
    try:
        services.admin.create_team("platform-iam", actor="bench")
        client_id, cred = _client(services, f"leaky-{descendants}")
        build_descendants(
            services,
            client_id=client_id,
            credential_id=cred,
            count=descendants,
            batch=20_000,
            progress=None,
        )
        start = time.perf_counter()
        incident = services.incidents.open(credential=cred, reason="bench", actor="bench")
        contain = time.perf_counter() - start
        tracemalloc.start()
        start = time.perf_counter()
        build_report(services.store, services.paths, incident)
        report = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        return contain, report, peak
    finally:
        services.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    records = 100_000 if args.quick else 1_000_000
    big = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="tt-bench-ledger-") as tmp:
        root = Path(tmp)
        services = build_services(Settings(data_dir=root / "ledger"))
        try:
            single = append_rate(services, threads=16, per_thread=100)
            batched = batched_rate(services, batches=50, size=100)
            fill_ledger(services, records)
            start = time.perf_counter()
            result = services.ledger.verify()
            verify_s = time.perf_counter() - start
            assert result.ok, result
        finally:
            services.close()
        small = incident_times(root / "small", 1_000)
        large = incident_times(root / "large", big)
    print("| figure | value |")
    print("| --- | ---: |")
    print(
        f"| audit append, 1 record per durable transaction, 16 writers | {single:,.0f} records/s |"
    )
    print(f"| audit append, 100 records per transaction | {batched:,.0f} records/s |")
    print(
        f"| audit verify ({result.records:,} records) | {verify_s:.1f} s, "
        f"{result.records / verify_s:,.0f} records/s |"
    )
    for label, (contain, report, peak) in (("1,000", small), (f"{big:,}", large)):
        print(
            f"| incident containment, credential with {label} descendants "
            f"| {contain * 1000:.1f} ms |"
        )
        print(
            f"| accountability report, {label} descendants | {report:.2f} s "
            f"(peak Python memory {peak:.1f} MiB) |"
        )


if __name__ == "__main__":
    main()
