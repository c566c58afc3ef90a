"""Operating a node: readiness, metrics, JSON logs, the worker factory, `serve` options,
and the shutdown hook that ends feed streams."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import Factory
from tokentrail.cli import app as cli_app
from tokentrail.config import Settings
from tokentrail.logs import JsonFormatter, log_config, redact
from tokentrail.metrics import CONTENT_TYPE, Counter, render
from tokentrail.services import Services
from tokentrail.web import ops
from tokentrail.web.factory import (
    HTTP_PROTOCOL_NAME,
    create_app_from_environment,
    export_environment,
    settings_from_environment,
    variable,
)

WAIT = 60.0


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TOKENTRAIL_")}


# --- /healthz, /readyz ----------------------------------------------------------------


def test_readyz_is_ready_once_caught_up(http: TestClient) -> None:
    """/readyz answers 200 with every check passing once the revocation view caught up."""
    deadline = WAIT
    while True:
        r = http.get("/readyz")
        if r.status_code == 200 or deadline <= 0:
            break
        deadline -= 0.05
        threading.Event().wait(0.05)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["migrated"] is True
    assert body["signing_keys"] is True
    assert body["revocations"]["caught_up"] is True
    assert http.get("/healthz").json() == {"status": "ok"}


def test_readiness_waits_for_the_first_catch_up(services: Services) -> None:
    """Before the revocation view has caught up, readiness says not ready (staleness null)."""
    result = ops.Readiness(services).check()
    assert result["status"] == "not ready"
    assert result["revocations"]["caught_up"] is False
    assert result["revocations"]["staleness"] is None
    services.revocation_view.catch_up()
    assert ops.Readiness(services).check()["status"] == "ready"


def test_readiness_fails_without_keys_or_schema(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unloadable signing keys or an unreadable schema revision make the node not ready."""
    services.revocation_view.catch_up()
    readiness = ops.Readiness(services)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("database down")

    monkeypatch.setattr(services.keys, "jwks", broken)
    monkeypatch.setattr(readiness, "migrated", broken)
    result = readiness.check()
    assert (result["status"], result["signing_keys"], result["migrated"]) == (
        "not ready",
        False,
        False,
    )


def test_readyz_answers_503_when_not_ready(
    http: TestClient, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/readyz answers 503 while a check fails."""
    monkeypatch.setattr(services.revocation_view, "staleness", lambda: float("inf"))
    r = http.get("/readyz")
    assert r.status_code == 503
    assert r.json()["status"] == "not ready"


# --- /metrics ------------------------------------------------------------------------


def test_metrics_count_issuance_and_introspection(http: TestClient, make: Factory) -> None:
    """/metrics counts issued tokens by grant and path, refusals by error, introspections
    by result, and shows the revocation view and the pool."""
    client = make.client()
    auth = (client.client_id, client.secret or "")
    token = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=auth)
    http.post("/oauth/token", data={"grant_type": "password"}, auth=auth)
    http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=("x", "y"))
    http.post("/oauth/introspect", data={"token": token.json()["access_token"]}, auth=auth)
    http.post("/oauth/introspect", data={"token": "nope"}, auth=auth)
    http.post("/oauth/introspect", data={"token": "nope"})
    r = http.get("/metrics")
    assert r.headers["content-type"] == CONTENT_TYPE
    text = r.text
    for line in (
        'tokentrail_token_requests_total{grant_type="client_credentials",'
        'path="workload-client-credentials",outcome="issued"} 1',
        'tokentrail_token_requests_total{grant_type="other",path="none",'
        'outcome="unsupported_grant_type"} 1',
        'tokentrail_token_requests_total{grant_type="client_credentials",path="none",'
        'outcome="invalid_client"} 1',
        'tokentrail_introspections_total{result="active"} 1',
        'tokentrail_introspections_total{result="inactive"} 1',
        'tokentrail_introspections_total{result="invalid_client"} 1',
        "# TYPE tokentrail_revocation_lag_seconds summary",
        "# TYPE tokentrail_db_pool_checked_out gauge",
        "tokentrail_feed_subscribers 0",
    ):
        assert line in text, line


def test_metrics_exposition_escapes_labels(services: Services) -> None:
    """Label values are escaped and infinite or fractional values written as Prometheus does."""
    counter = Counter("x_total", "help", ("a",))
    counter.inc('q"\\\n')
    counter.inc('q"\\\n', amount=0.5)
    services.metrics.token_requests = counter
    text = render(services)
    assert 'x_total{a="q\\"\\\\\\n"} 1.5' in text
    assert "tokentrail_revocation_view_staleness_seconds +Inf" in text
    assert counter.value('q"\\\n') == 1.5


# --- logs ------------------------------------------------------------------------------


def _record(msg: str, *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom ttr_" + "a" * 30)
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    record = logging.LogRecord("tokentrail.x", logging.WARNING, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


def test_json_logs_are_one_object_per_line() -> None:
    """A record becomes one line of JSON with time, level, logger, message, extras and the
    exception."""
    line = JsonFormatter().format(_record("hello %s", "world", exc=True, client="cl_1", n=3))
    assert "\n" not in line
    out = json.loads(line)
    assert out["message"] == "hello world"
    assert out["level"] == "warning"
    assert out["logger"] == "tokentrail.x"
    assert out["ts"].endswith("Z")
    assert (out["client"], out["n"]) == ("cl_1", 3)
    assert out["exc_type"] == "ValueError"
    assert out["exc"].endswith("ValueError: boom [redacted]")


def test_json_logs_mask_secrets() -> None:
    """Anything shaped like a tokentrail secret or a JWT is masked, even in a message."""
    secret = "tts_" + "A" * 43
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
    out = json.loads(JsonFormatter().format(_record(f"got {secret} and {jwt}")))
    assert out["message"] == "got [redacted] and [redacted]"
    assert redact("cl_abc cred_def") == "cl_abc cred_def"


def test_log_config_configures_json_output() -> None:
    """log_config('json') makes tokentrail's records JSON lines; unknown formats are refused."""
    config = log_config("json")
    stream = io.StringIO()
    config["handlers"]["main"]["stream"] = stream
    logger = logging.getLogger("tokentrail")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    try:
        logging.config.dictConfig(config)
        logging.getLogger("tokentrail.test").warning("ready on %d", 8080)
        assert json.loads(stream.getvalue())["message"] == "ready on 8080"
    finally:
        logger.handlers[:], logger.level, logger.propagate = saved
    assert log_config("text")["formatters"]["main"]["format"]
    with pytest.raises(ValueError, match="log format"):
        log_config("xml")


# --- the worker factory -------------------------------------------------------------------


def test_settings_round_trip_through_the_environment(tmp_path: Path) -> None:
    """export_environment and settings_from_environment rebuild the same settings."""
    settings = Settings(
        data_dir=tmp_path,
        db_url="postgresql://db/tt",
        issuer="https://auth.example.com",
        dpop_require_nonce=True,
        mtls_trusted_proxies=("10.0.0.0/8", "192.0.2.1"),
        feed_keepalive=2.5,
    )
    env = export_environment(settings)
    assert env["TOKENTRAIL_DATA"] == str(tmp_path)
    assert env["TOKENTRAIL_DPOP_REQUIRE_NONCE"] == "true"
    assert env["TOKENTRAIL_MTLS_TRUSTED_PROXIES"] == "10.0.0.0/8 192.0.2.1"
    assert "TOKENTRAIL_KEK_FILE" not in env
    assert settings_from_environment(env) == settings
    assert variable("janitor_interval") == "TOKENTRAIL_JANITOR_INTERVAL"


def test_factory_builds_an_app_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """create_app_from_environment builds a working app from TOKENTRAIL_* variables."""
    for key in _clean_env().keys() ^ os.environ.keys():
        monkeypatch.delenv(key)
    monkeypatch.setenv("TOKENTRAIL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("TOKENTRAIL_ISSUER", "http://worker.test")
    registered: list[Any] = []
    monkeypatch.setattr("atexit.register", registered.append)
    app = create_app_from_environment()
    with TestClient(app, base_url="http://worker.test") as client:
        meta = client.get("/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == "http://worker.test"
    for close in registered:
        close()


# --- serve -----------------------------------------------------------------------------------


@pytest.fixture
def fake_uvicorn(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[Any, dict[str, Any]]]]:
    import uvicorn

    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    logger = logging.getLogger("tokentrail")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield calls
    logger.handlers[:], logger.level, logger.propagate = saved


def test_serve_with_workers_runs_the_factory(
    tmp_path: Path, fake_uvicorn: list[tuple[Any, dict[str, Any]]]
) -> None:
    """`serve --workers 3` hands uvicorn the factory by name, with the settings exported to
    the workers' environment, JSON logs and a graceful-shutdown timeout."""
    saved = dict(os.environ)
    try:
        result = CliRunner().invoke(
            cli_app,
            [
                "serve",
                "--data",
                str(tmp_path / "data"),
                "--port",
                "8099",
                "--workers",
                "3",
                "--log-format",
                "json",
                "--graceful-timeout",
                "7",
                "--mtls-proxy-header",
                "x-client-cert",
            ],
            env=_clean_env(),
        )
        exported = {k: os.environ.get(k) for k in ("TOKENTRAIL_ISSUER", "TOKENTRAIL_DATA")}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert result.exit_code == 0, result.output
    (app, kw) = fake_uvicorn[0]
    assert app == "tokentrail.web.factory:create_app_from_environment"
    assert (kw["factory"], kw["workers"], kw["timeout_graceful_shutdown"]) == (True, 3, 7)
    assert kw["http"] == HTTP_PROTOCOL_NAME
    assert kw["log_config"]["formatters"]["main"]["()"] is JsonFormatter
    assert exported == {
        "TOKENTRAIL_ISSUER": "http://127.0.0.1:8099",
        "TOKENTRAIL_DATA": str(tmp_path / "data"),
    }


def test_serve_refuses_an_unknown_log_format(tmp_path: Path) -> None:
    """`serve --log-format xml` fails with a clear message."""
    result = CliRunner().invoke(
        cli_app, ["serve", "--data", str(tmp_path), "--log-format", "xml"], env=_clean_env()
    )
    assert result.exit_code == 1
    assert "--log-format" in result.stderr


def test_serve_single_process_keeps_the_app_object(
    tmp_path: Path, fake_uvicorn: list[tuple[Any, dict[str, Any]]]
) -> None:
    """With one worker, serve runs the app it built, with text logs."""
    result = CliRunner().invoke(
        cli_app, ["serve", "--data", str(tmp_path / "data")], env=_clean_env()
    )
    assert result.exit_code == 0, result.output
    app, kw = fake_uvicorn[0]
    assert not isinstance(app, str)
    assert "workers" not in kw
    assert kw["timeout_graceful_shutdown"] == 10


# --- shutdown --------------------------------------------------------------------------------


def test_shutdown_signal_ends_feed_streams_and_chains_the_server_handler() -> None:
    """In the main thread, SIGTERM sets the feed's closing event and still reaches the
    handler that was installed before (the server's), which is restored afterwards."""
    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: seen.append(signum))
    try:

        async def run() -> bool:
            closing = asyncio.Event()
            restore = ops._hook_signals(asyncio.get_running_loop(), closing)
            signal.raise_signal(signal.SIGTERM)
            await asyncio.wait_for(closing.wait(), WAIT)
            restore()
            return closing.is_set()

        assert asyncio.run(run())
        assert seen == [signal.SIGTERM]
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        assert getattr(handler, "__name__", "") == "<lambda>"
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signals_are_not_hooked_outside_the_main_thread() -> None:
    """From another thread (a test client's loop) nothing is hooked."""
    out: list[Any] = []

    def run() -> None:
        loop = asyncio.new_event_loop()
        try:
            restore = ops._hook_signals(loop, asyncio.Event())
            out.append(signal.getsignal(signal.SIGTERM))
            restore()
        finally:
            loop.close()

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(WAIT)
    assert out == [before]


def test_janitor_runs_while_serving(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lifespan runs janitor passes on its interval (and survives a failing one)."""
    settings = services.settings.model_copy(update={"janitor_interval": 0.01})
    monkeypatch.setattr(services, "settings", settings)
    passes: list[int] = []
    real = services.janitor.run_once

    def counted() -> Any:
        passes.append(1)
        if len(passes) == 1:
            raise RuntimeError("database down")
        return real()

    monkeypatch.setattr(services.janitor, "run_once", counted)
    now = services.clock.now()
    with services.store.write() as tx:
        tx.remember_once("expired", expires_at=now - 1, now=now)
    from tokentrail.web.app import create_app

    with TestClient(create_app(services)):
        deadline = WAIT
        while len(passes) < 3 and deadline > 0:
            threading.Event().wait(0.05)
            deadline -= 0.05
    assert len(passes) >= 3


# --- several nodes, one outbox -------------------------------------------------------------


def test_two_nodes_deliver_each_notification_once(services: Services) -> None:
    """Dispatchers of two nodes draining one outbox deliver every message exactly once."""
    from tokentrail.notify import Dispatcher

    delivered: list[str] = []

    class Recorder:
        def deliver(self, recipient: str, topic: str, payload: dict[str, Any]) -> None:
            delivered.append(payload["n"])

    now = services.clock.now()
    with services.store.write() as tx:
        for n in range(20):
            tx.enqueue(topic="t", recipient="team:x", payload={"n": str(n)}, at=now)
    nodes = [Dispatcher(services.store, Recorder(), services.clock) for _ in range(2)]
    barrier = threading.Barrier(2)

    def drain(d: Dispatcher) -> None:
        barrier.wait()
        d.run_once()

    threads = [threading.Thread(target=drain, args=(d,)) for d in nodes]
    for th in threads:
        th.start()
    for th in threads:
        th.join(WAIT)
    assert sorted(delivered, key=int) == [str(n) for n in range(20)]
