"""The notification outbox and its deliverers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tokentrail import crypto
from tokentrail.clock import FrozenClock
from tokentrail.notify import (
    BACKOFF_BASE,
    MAX_ATTEMPTS,
    Dispatcher,
    FileDeliverer,
    WebhookDeliverer,
    signature_header,
)
from tokentrail.services import Services


class Hook:
    """A real loopback HTTP endpoint that fails the first ``fail`` requests."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.received: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append((dict(self.headers), body))
                self.send_response(500 if outer.fail > 0 else 204)
                outer.fail -= 1
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook(fail=2)
    yield h
    h.close()


def _enqueue(services: Services, n: int = 1) -> None:
    with services.store.write() as tx:
        for i in range(n):
            tx.enqueue(topic="test", recipient="soc@example.com", payload={"i": i}, at=1.0)


def test_file_deliverer_writes_json_lines(services: Services, tmp_path: Path) -> None:
    """Each queued message becomes one JSON line and is marked delivered."""
    path = tmp_path / "n.jsonl"
    _enqueue(services, 2)
    dispatcher = Dispatcher(services.store, FileDeliverer(path), services.clock)
    assert dispatcher.run_once() == 2
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [x["payload"]["i"] for x in lines] == [0, 1]
    assert dispatcher.run_once() == 0
    with services.store.read() as tx:
        assert all(m["delivered_at"] is not None for m in tx.notifications())


def test_webhook_signed_and_retried_with_backoff(
    services: Services, clock: FrozenClock, hook: Hook
) -> None:
    """Failures are retried after an exponential backoff; the payload carries a valid HMAC."""
    secret = b"s" * 32
    _enqueue(services)
    d = Dispatcher(services.store, WebhookDeliverer(hook.url, secret), clock)
    assert d.run_once() == 0
    assert d.run_once() == 0  # not due yet
    clock.advance(BACKOFF_BASE)
    assert d.run_once() == 0
    clock.advance(BACKOFF_BASE * 2)
    assert d.run_once() == 1
    assert len(hook.received) == 3
    headers, body = hook.received[-1]
    t = int(headers["Tokentrail-Signature"].split(",")[0][2:])
    assert headers["Tokentrail-Signature"] == signature_header(secret, body, t)
    assert json.loads(body)["recipient"] == "soc@example.com"
    with services.store.read() as tx:
        (msg,) = tx.notifications()
    assert msg["attempts"] == 2
    assert "500" in (msg["last_error"] or "")


def test_gives_up_after_max_attempts(services: Services, clock: FrozenClock) -> None:
    """A message that never goes through stops being retried but stays visible."""
    _enqueue(services)
    d = Dispatcher(services.store, WebhookDeliverer("http://127.0.0.1:9/x", b"k" * 32), clock)
    for _ in range(MAX_ATTEMPTS + 2):
        d.run_once()
        clock.advance(10_000)
    with services.store.read() as tx:
        (msg,) = tx.notifications()
    assert msg["attempts"] == MAX_ATTEMPTS
    assert msg["delivered_at"] is None


def test_given_up_messages_do_not_starve_newer_ones(services: Services, tmp_path: Path) -> None:
    """Messages past MAX_ATTEMPTS are skipped by the query, so a small batch still delivers."""
    _enqueue(services, 3)
    with services.store.write() as tx:
        dead = [m["id"] for m in tx.notifications()][:2]
        for _ in range(MAX_ATTEMPTS):
            for i in dead:
                tx.mark_failed(i, error="down", retry_at=0.0)
    path = tmp_path / "n.jsonl"
    dispatcher = Dispatcher(services.store, FileDeliverer(path), services.clock)
    assert dispatcher.run_once(limit=1) == 1
    assert [json.loads(x)["payload"]["i"] for x in path.read_text().splitlines()] == [2]


def test_webhook_url_must_be_http() -> None:
    """Only http(s) webhook URLs are accepted."""
    with pytest.raises(ValueError, match="http"):
        WebhookDeliverer("ftp://x", b"k")


def test_hmac_helper_is_hmac_sha256() -> None:
    """The signature is HMAC-SHA256 over '<t>.<body>'."""
    import hashlib
    import hmac

    expected = hmac.new(b"k", b"5.{}", hashlib.sha256).hexdigest()
    assert signature_header(b"k", b"{}", 5) == f"t=5,v1={expected}"
    assert crypto.hmac_sha256(b"k", b"5.{}").hex() == expected
