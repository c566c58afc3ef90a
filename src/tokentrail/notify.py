"""Notifications: a durable outbox and pluggable deliverers.

Whatever needs telling — a subject whose account was recovered, the owning
team of a path whose detection fired, the teams of an incident — is written to
the ``outbox`` table in the same transaction as the change that causes it, so
nothing acknowledged is lost on a crash or a restart. A :class:`Dispatcher`
drains the outbox through a :class:`Deliverer`, retrying failures with
exponential backoff.

Deliverers:

* :class:`FileDeliverer` (the embedded default): one JSON line per message in
  ``<data>/notifications.jsonl``; a person or a log shipper reads it;
* :class:`WebhookDeliverer`: POSTs the JSON payload to a URL with an
  ``Tokentrail-Signature: t=<unix time>,v1=<hex HMAC-SHA256>`` header over
  ``"<t>.<body>"`` so the receiver can check origin and freshness.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from tokentrail import crypto
from tokentrail.clock import Clock
from tokentrail.storage.store import Store

#: Backoff after the n-th failure: base * 2**n seconds, capped.
BACKOFF_BASE = 5.0
BACKOFF_CAP = 3600.0
#: After this many failures a message stays undelivered (and visible) for an operator.
MAX_ATTEMPTS = 12
#: A node that claimed a message and died is replaced after this long (at-least-once).
CLAIM_SECONDS = 120.0


class Deliverer(Protocol):
    def deliver(self, recipient: str, topic: str, payload: dict[str, Any]) -> None:
        """Deliver one message or raise."""


class FileDeliverer:
    """Appends each message as a JSON line to a file (the embedded default)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def deliver(self, recipient: str, topic: str, payload: dict[str, Any]) -> None:
        line = json.dumps({"recipient": recipient, "topic": topic, "payload": payload})
        with self._lock:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            with self._path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")


def signature_header(secret: bytes, body: bytes, timestamp: int) -> str:
    digest = crypto.hmac_sha256(secret, str(timestamp).encode() + b"." + body).hex()
    return f"t={timestamp},v1={digest}"


class WebhookDeliverer:
    """POSTs messages to a URL, signed with a shared secret."""

    def __init__(self, url: str, secret: bytes, *, timeout: float = 5.0) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("webhook URL must be http(s)")
        self._url = url
        self._secret = secret
        self._timeout = timeout

    def deliver(self, recipient: str, topic: str, payload: dict[str, Any]) -> None:
        body = json.dumps({"recipient": recipient, "topic": topic, "payload": payload}).encode()
        request = urllib.request.Request(  # noqa: S310 - the URL is operator configuration
            self._url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Tokentrail-Signature": signature_header(self._secret, body, int(time.time())),
            },
        )
        with urllib.request.urlopen(request, timeout=self._timeout) as resp:  # noqa: S310
            if not 200 <= resp.status < 300:
                raise OSError(f"webhook answered {resp.status}")


class Dispatcher:
    """Delivers due outbox messages; safe to run in several processes at once."""

    def __init__(
        self,
        store: Store,
        deliverer: Deliverer,
        clock: Clock,
        *,
        prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        self._store = store
        self._deliverer = deliverer
        self._clock = clock
        #: Opens sealed values (recovery codes and grants) just before delivery.
        self._prepare = prepare

    def run_once(self, *, limit: int = 100) -> int:
        """Try every due message once; returns how many were delivered."""
        now = self._clock.now()
        with self._store.read() as tx:
            # Given-up messages stay visible but must not fill the batch: they would
            # starve every newer message once there are ``limit`` of them.
            due = tx.due_notifications(now=now, limit=limit, max_attempts=MAX_ATTEMPTS)
        delivered = 0
        for msg in due:
            with self._store.write() as tx:  # one node delivers it; others skip it
                if not tx.claim_notification(msg["id"], now=now, until=now + CLAIM_SECONDS):
                    continue
            try:
                payload = dict(msg["payload"])
                if self._prepare is not None:
                    payload = self._prepare(payload)
                self._deliverer.deliver(msg["recipient"], msg["topic"], payload)
            except (OSError, ValueError) as exc:
                delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** int(msg["attempts"]))
                with self._store.write() as tx:
                    tx.mark_failed(msg["id"], error=str(exc), retry_at=now + delay)
                continue
            with self._store.write() as tx:
                tx.mark_delivered(msg["id"], at=self._clock.now())
            delivered += 1
        return delivered
