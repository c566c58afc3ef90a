"""Operating a node: readiness, metrics, and what runs beside the requests while serving.

``GET /healthz`` (in :mod:`tokentrail.web.app`) says the process answers.
``GET /readyz`` says it should receive traffic: the schema is at the newest
migration, the signing keys load, and the revocation view has caught up with
the table and is not stale (503 with the failing checks otherwise; a load
balancer takes the node out until it recovers). ``GET /metrics`` is the
Prometheus exposition of :mod:`tokentrail.metrics`; it carries counts and
timings, no secrets, but restrict it to the monitoring network like any
admin surface.

:func:`start_operations` (called from the app's lifespan) starts the
revocation view's follower thread, the janitor loop, and a shutdown hook: on
SIGTERM/SIGINT the revocation feed's streams end, so uvicorn's graceful
shutdown only waits for ordinary in-flight requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from alembic.runtime.migration import MigrationContext
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokentrail.metrics import CONTENT_TYPE, render
from tokentrail.services import Services
from tokentrail.storage.engine import head_revision
from tokentrail.web.feed import Broadcaster
from tokentrail.web.responses import json_response

log = logging.getLogger("tokentrail")


class Readiness:
    """The checks behind ``/readyz``."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._migrated = False

    def migrated(self) -> bool:
        if not self._migrated:
            with self._services.store.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
            self._migrated = current == head_revision()
        return self._migrated

    def keys_loaded(self) -> bool:
        try:
            return bool(self._services.keys.jwks()["keys"])
        except Exception:  # the database or the KEK: either way, not ready
            log.warning("signing keys cannot be loaded", exc_info=True)
            return False

    def check(self) -> dict[str, Any]:
        view = self._services.revocation_view
        try:
            migrated = self.migrated()
        except Exception:
            log.warning("schema revision cannot be read", exc_info=True)
            migrated = False
        keys = self.keys_loaded()
        staleness = view.staleness()
        ready = migrated and keys and view.ready
        return {
            "status": "ready" if ready else "not ready",
            "migrated": migrated,
            "signing_keys": keys,
            "revocations": {
                "caught_up": view.ready,
                "seq": view.seq,
                "staleness": None if math.isinf(staleness) else round(staleness, 3),
                "bound": view.bound,
                "listening": view.listening,
            },
        }


def ops_routes(services: Services) -> list[Route]:
    readiness = Readiness(services)

    async def readyz(_: Request) -> Response:
        result = await run_in_threadpool(readiness.check)
        status = 200 if result["status"] == "ready" else 503
        return json_response(result, status=status, headers={"Cache-Control": "no-store"})

    async def metrics(_: Request) -> Response:
        return Response(render(services), media_type=CONTENT_TYPE)

    return [
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def _hook_signals(loop: asyncio.AbstractEventLoop, closing: asyncio.Event) -> Callable[[], None]:
    """Chain SIGTERM/SIGINT so that feed streams end when the server starts shutting down.

    The server's own handlers (uvicorn's) still run. Signals can only be hooked
    from the main thread; elsewhere (a test client) nothing is hooked.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    installed: dict[int, Any] = {}

    def chain(previous: Any) -> Callable[[int, Any], None]:
        def handler(signum: int, frame: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(closing.set)
            if callable(previous):
                previous(signum, frame)
            else:  # no handler of the server's: do what the signal would have done
                signal.signal(signum, previous)
                signal.raise_signal(signum)

        return handler

    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        installed[sig] = (previous, chain(previous))
        signal.signal(sig, installed[sig][1])

    def restore() -> None:
        for sig, (previous, ours) in installed.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)

    return restore


async def start_operations(
    services: Services, broadcaster: Broadcaster
) -> Callable[[], Awaitable[None]]:
    """Start what runs beside the requests; returns the coroutine function that stops it."""
    loop = asyncio.get_running_loop()
    view = services.revocation_view
    broadcaster.reset()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed
            loop.call_soon_threadsafe(broadcaster.wake)

    view.wakers.append(wake)
    view.start()
    restore = _hook_signals(loop, broadcaster.closing)

    async def janitor() -> None:
        while True:
            await asyncio.sleep(services.settings.janitor_interval)
            try:
                done = await run_in_threadpool(services.janitor.run_once)
            except Exception:  # keep serving; the next pass retries
                log.exception("janitor pass failed")
            else:
                if done.revocations or done.replay_entries:
                    log.info(
                        "janitor deleted %d revocations and %d replay-cache entries",
                        done.revocations,
                        done.replay_entries,
                    )

    task = asyncio.create_task(janitor())

    async def stop() -> None:
        broadcaster.closing.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        restore()
        with contextlib.suppress(ValueError):
            view.wakers.remove(wake)
        await run_in_threadpool(view.stop)

    return stop
