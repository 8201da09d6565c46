"""One logging configuration for the CLI, components, servers and tests: structured, one line per event.

Fields go in ``extra=``: ``log.info("upsert", extra={"path": p, "new": 3})`` prints
``ts=… level=INFO logger=bitpredict.storage msg=upsert path=data/raw/x.parquet new=3``
(``BITPREDICT_LOG_FORMAT=kv``, the default) or one JSON object per line (``json``), which log
collectors in a cluster parse without a regex.

Secrets never leave through a log line, at any level: the HTTP client libraries (tweepy logs every request's
headers — the X bearer token — at DEBUG) stay at WARNING even when the root logger is at DEBUG, and every line our
handler writes is redacted on the way out: the values of the key settings (``register_secret``) and anything shaped
like a credential (``Bearer …``, ``Apikey …``, ``x-cg-demo-api-key: …``, ``api_key=…``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_HANDLER_NAME = "bitpredict"
REDACTED = "[REDACTED]"
# Client libraries whose DEBUG lines carry request headers or URLs with keys: never below WARNING.
QUIET_ALWAYS = ("tweepy", "requests", "urllib3", "oauthlib", "requests_oauthlib", "httpx", "httpcore", "http.client")
_CREDENTIAL_PATTERNS = (
    re.compile(r"(?i)\b(bearer|apikey|token)(\s+)[A-Za-z0-9._~+/=%-]{8,}"),
    re.compile(
        r"(?i)(x-cg-(?:demo|pro)-api-key|authorization|api[_-]?key|access[_-]?token|bearer[_-]?token|secret)"
        r"(['\"]?\s*[:=]\s*['\"]?)(?!\[REDACTED\])(?:(?:bearer|apikey)\s+)?[^'\"&\s,}]+"
    ),
)
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """A credential's value, to be blanked from every line our handler writes (the settings register the keys)."""
    if value and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    """``text`` without any registered secret or anything shaped like a credential."""
    for value in sorted(_secrets, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _CREDENTIAL_PATTERNS[0].sub(rf"\1\2{REDACTED}", text)
    return _CREDENTIAL_PATTERNS[1].sub(rf"\1\2{REDACTED}", text)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds")


def _kv_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(ch in text for ch in ' ="\n'):
        return json.dumps(text)
    return text


def _payload(record: logging.LogRecord) -> dict[str, Any]:
    return {
        "ts": _timestamp(record),
        "level": record.levelname,
        "logger": record.name,
        "msg": record.getMessage(),
        **_fields(record),
    }


class KeyValueFormatter(logging.Formatter):
    """``key=value`` pairs; values with spaces or quotes are JSON-quoted so the line stays parseable."""

    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{k}={_kv_value(v)}" for k, v in _payload(record).items())
        if record.exc_info:
            line += " exc=" + json.dumps(self.formatException(record.exc_info))
        return redact(line)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = _payload(record)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


def configure_logging(level: str = "INFO", fmt: str = "kv") -> None:
    """Install our handler on the root logger once (calling again only changes level and format)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root.setLevel(level)
    # Libraries that chat at INFO would drown the pipeline's own lines.
    for noisy in ("google", "matplotlib", "absl", "h5py", "git"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    for client in QUIET_ALWAYS:  # their DEBUG lines hold request headers: quiet even when we debug
        logging.getLogger(client).setLevel(max(logging.WARNING, root.level))
