"""One logging configuration for the CLI, components, servers and tests: structured, one line per event.

Fields go in ``extra=``: ``log.info("upsert", extra={"path": p, "new": 3})`` prints
``ts=… level=INFO logger=bitpredict.storage msg=upsert path=data/raw/x.parquet new=3``
(``BITPREDICT_LOG_FORMAT=kv``, the default) or one JSON object per line (``json``), which log
collectors in a cluster parse without a regex.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_HANDLER_NAME = "bitpredict"


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
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = _payload(record)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


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
    for noisy in ("urllib3", "google", "matplotlib", "absl", "h5py", "git"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
