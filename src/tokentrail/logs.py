"""Log output of a serving process: human-readable text, or one JSON object per line.

``tokentrail serve --log-format json`` (or ``TOKENTRAIL_LOG_FORMAT=json``) makes
every record, tokentrail's and uvicorn's, a single-line JSON object::

    {"ts": "2026-11-28T02:23:41.512Z", "level": "warning", "logger": "tokentrail.revocations",
     "message": "revocation listener lost its connection; reconnecting", "pid": 4711,
     "exc_type": "OperationalError", "exc": "Traceback ..."}

for a log pipeline to parse. Nothing tokentrail logs carries a secret: records
name clients, credentials and nodes by id; request bodies, Authorization
headers, tokens and keys are never logged. As a second line of defence the
JSON formatter masks anything shaped like a tokentrail secret (``tts_``,
``ttr_``, ``tta_`` prefixes) or a JWT that reaches a message.
"""

from __future__ import annotations

import json
import logging
import os
import re
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
#: Secrets tokentrail mints carry these prefixes (tokentrail.ids.new_secret), and JWTs
#: start with a base64url JSON header.
_SECRET = re.compile(r"\b(?:tt[a-z]_[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9._-]+)")
#: LogRecord attributes that are not extras.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
            "pid": record.process or os.getpid(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value if isinstance(value, int | float | bool) else redact(str(value))
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def log_config(fmt: str, level: str = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for tokentrail (at ``level``) and uvicorn
    (warnings and errors; ``serve`` passes it to uvicorn as ``log_config``).
    Access logs stay off."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
    formatter: dict[str, Any] = (
        {"()": JsonFormatter}
        if fmt == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "main", "stream": "ext://sys.stderr"}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "loggers": {
            "tokentrail": {"handlers": ["main"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["main"], "level": "WARNING", "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
