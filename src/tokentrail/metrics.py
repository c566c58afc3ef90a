"""Prometheus metrics in the text exposition format (version 0.0.4), written by hand.

A handful of counters and gauges do not justify a dependency: :class:`Counter`
is a dict of label values behind a lock, and :func:`render` writes the
exposition. Every process keeps its own numbers (with ``serve --workers N``
each worker answers ``/metrics`` for itself; see docs/scaling.md).

Label values are bounded: grant types outside the served set count as
``other``, paths are declared path ids taken from tokens we minted, outcomes
are OAuth error codes.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tokentrail.errors import OAuthError
from tokentrail.oauth.authority import TokenResponse
from tokentrail.oauth.grants import Pending
from tokentrail.oauth.request import OAuthRequest

if TYPE_CHECKING:
    from tokentrail.services import Services

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    """A counter with a fixed set of label names."""

    def __init__(self, name: str, help_text: str, labels: tuple[str, ...] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labels = labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, *values: str, amount: float = 1.0) -> None:
        assert len(values) == len(self.labels)
        with self._lock:
            self._values[values] = self._values.get(values, 0.0) + amount

    def value(self, *values: str) -> float:
        return self._values.get(values, 0.0)

    def samples(self) -> list[tuple[dict[str, str], float]]:
        with self._lock:
            items = sorted(self._values.items())
        return [(dict(zip(self.labels, key, strict=True)), v) for key, v in items]


class Gauge:
    """An integer gauge moved up and down (feed subscribers)."""

    def __init__(self) -> None:
        self._value = 0
        self._lock = threading.Lock()

    def add(self, delta: int) -> None:
        with self._lock:
            self._value += delta

    @property
    def value(self) -> int:
        return self._value


def _token_path(result: Any) -> str:
    """The declared path a token response issued through."""
    return result.path if isinstance(result, TokenResponse) else "none"


class Metrics:
    """This process's counters."""

    def __init__(self) -> None:
        self.started = time.time()
        self.token_requests = Counter(
            "tokentrail_token_requests_total",
            "Token endpoint requests by grant type, issuance path and outcome "
            "(issued, or the OAuth error code).",
            ("grant_type", "path", "outcome"),
        )
        self.introspections = Counter(
            "tokentrail_introspections_total",
            "Introspection requests by result (active, inactive, or the OAuth error code).",
            ("result",),
        )
        self.verifications = Counter(
            "tokentrail_token_verifications_total",
            "Access tokens presented to tokentrail's own token-protected endpoints "
            "(the revocation feed), by result.",
            ("endpoint", "result"),
        )
        self.feed_events = Counter(
            "tokentrail_feed_events_total", "Revocation events sent on the feed (SSE)."
        )
        self.feed_subscribers = Gauge()

    def instrument_token(
        self, handle: Callable[[OAuthRequest], Any], grants: Iterable[str]
    ) -> Callable[[OAuthRequest], Any]:
        known = frozenset(grants)

        def counted(req: OAuthRequest) -> Any:
            grant = req.get("grant_type") or "none"
            grant = grant if grant in known else "other"
            try:
                result = handle(req)
            except OAuthError as exc:
                self.token_requests.inc(grant, "none", exc.error)
                raise

            def issued(body: dict[str, Any]) -> None:
                self.token_requests.inc(grant, _token_path(body), "issued")

            if isinstance(result, Pending):
                return result.then(issued)  # counted once its write has committed
            issued(result)
            return result

        return counted

    def instrument_introspection(
        self, handle: Callable[[OAuthRequest], Any]
    ) -> Callable[[OAuthRequest], Any]:
        def counted(req: OAuthRequest) -> Any:
            try:
                result = handle(req)
            except OAuthError as exc:
                self.introspections.inc(exc.error)
                raise
            self.introspections.inc("active" if result.get("active") else "inactive")
            return result

        return counted


def _family(
    out: list[str], name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]
) -> None:
    out.append(f"# HELP {name} {help_text}")
    out.append(f"# TYPE {name} {kind}")
    out.extend(f"{series} {_number(value)}" for series, value in samples)


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _pool(services: Services) -> tuple[float, float, float]:
    """(size, checked out, overflow) of the database connection pool."""
    pool: Any = services.store.engine.pool
    try:
        return float(pool.size()), float(pool.checkedout()), float(max(0, pool.overflow()))
    except AttributeError:  # pragma: no cover - a pool class without these counters
        return 0.0, 0.0, 0.0


def render(services: Services) -> str:
    """The exposition of every metric of this process."""
    m = services.metrics
    out: list[str] = []
    for counter in (m.token_requests, m.introspections, m.verifications, m.feed_events):
        _family(
            out,
            counter.name,
            "counter",
            counter.help,
            [(counter.name + _labels(lbl), v) for lbl, v in counter.samples()],
        )
    view = services.revocation_view
    staleness = view.staleness()
    gauges: list[tuple[str, str, float]] = [
        (
            "tokentrail_revocation_view_staleness_seconds",
            "Seconds since this process's revocation view last caught up with the table "
            "(+Inf before the first catch-up).",
            staleness,
        ),
        (
            "tokentrail_revocation_view_bound_seconds",
            "Staleness beyond which the view is not trusted (readiness fails).",
            view.bound,
        ),
        (
            "tokentrail_revocation_view_ready",
            "1 when the view is caught up and current.",
            1.0 if view.ready else 0.0,
        ),
        ("tokentrail_revocation_view_seq", "Highest revocation sequence number read.", view.seq),
        ("tokentrail_revocation_view_entries", "Revoked ids held (still mattering).", len(view)),
        (
            "tokentrail_revocation_listener_connected",
            "1 while the PostgreSQL LISTEN connection is up (always 0 on SQLite).",
            1.0 if view.listening else 0.0,
        ),
        (
            "tokentrail_revocation_lag_last_seconds",
            "Time from the commit of the most recent revocation read to this view applying it.",
            view.lag.last,
        ),
        (
            "tokentrail_feed_subscribers",
            "Open revocation feed (SSE) streams.",
            m.feed_subscribers.value,
        ),
    ]
    size, checked_out, overflow = _pool(services)
    gauges += [
        ("tokentrail_db_pool_size", "Connections the pool keeps.", size),
        ("tokentrail_db_pool_checked_out", "Pool connections in use.", checked_out),
        ("tokentrail_db_pool_overflow", "Connections open beyond the pool size.", overflow),
        ("tokentrail_process_start_time_seconds", "Start of this process (Unix time).", m.started),
        ("tokentrail_process_id", "Process id (with --workers, one per worker).", os.getpid()),
    ]
    for name, help_text, value in gauges:
        _family(out, name, "gauge", help_text, [(name, value)])
    lag = view.lag
    _family(
        out,
        "tokentrail_revocation_lag_seconds",
        "summary",
        "Time from a revocation's commit to this process's view applying it.",
        [
            ("tokentrail_revocation_lag_seconds_sum", lag.total),
            ("tokentrail_revocation_lag_seconds_count", lag.count),
        ],
    )
    janitor = services.janitor
    _family(
        out,
        "tokentrail_janitor_deleted_total",
        "counter",
        "Rows the janitor deleted, by table.",
        [
            ('tokentrail_janitor_deleted_total{table="revocations"}', janitor.deleted_revocations),
            ('tokentrail_janitor_deleted_total{table="seen_jtis"}', janitor.deleted_replay_entries),
        ],
    )
    return "\n".join(out) + "\n"
