"""The request log: every served forecast and the rows it was made from, for the drift job.

Writes never block a response: ``append`` puts a record on a queue; a background thread writes batches
(``batch_size`` records or every ``flush_s`` seconds) as new parquet files
``date=<YYYY-MM-DD>/part-<time>-<uuid>.parquet`` under the log directory (local or ``gs://``), one folder per UTC
day of logging. Files are only ever added, each written atomically, so the log survives a restart and a crash
loses at most the batch in memory.

Why the queue is bounded by bytes, not by count: one record carries the request's bars (up to ``--max_rows`` rows
of a dozen columns), so 10,000 queued records could be gigabytes in a worker limited to 3 GiB. ``max_bytes`` bounds
the records waiting to be written (their estimated size); a record past it is dropped and counted (``dropped``,
and ``on_drop`` for a metric) — the response it belongs to is never delayed.

``read_log(directory, since=..., until=...)`` reads only the day folders in the window (and the flat
``part-*.parquet`` files an older version wrote, filtered by ``logged_at``), so the drift job's cost follows its
window, not the log's age.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from bitpredict import storage

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
PARTITION = "date="
NUMBER_BYTES = 24  # what one logged number costs in memory and JSON, about (a float object and its text)
SCALAR_BYTES = 64


def record_bytes(record: dict[str, Any]) -> int:
    """An estimate of a record's size, cheap enough for the request path: the bars' numbers dominate it."""
    total = 0
    for value in record.values():
        if isinstance(value, dict):
            total += sum(NUMBER_BYTES * len(v) if isinstance(v, list | tuple) else SCALAR_BYTES for v in value.values())
        elif isinstance(value, list | tuple):
            total += NUMBER_BYTES * len(value)
        elif isinstance(value, str):
            total += len(value) + 49
        else:
            total += SCALAR_BYTES
    return total


class RequestLog:
    def __init__(
        self,
        directory: str,
        batch_size: int = 64,
        flush_s: float = 5.0,
        max_bytes: int = DEFAULT_MAX_BYTES,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = directory
        self.batch_size = batch_size
        self.flush_s = flush_s
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self._queue: queue.SimpleQueue[tuple[dict[str, Any], int] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.queued_bytes = 0  # records appended and not yet written (their estimated size)
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> bool:
        """Queue one record; past ``max_bytes`` waiting, the record is dropped and counted. Never blocks.
        Returns whether it was queued."""
        size = record_bytes(record)
        with self._lock:
            if self.queued_bytes + size > self.max_bytes:
                self.dropped += 1
                full = True
            else:
                self.queued_bytes += size
                full = False
        if full:
            if self.on_drop:
                self.on_drop(1)
            return False
        self._queue.put(({**record, "logged_at": datetime.now(UTC).isoformat()}, size))
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        batch: list[tuple[dict[str, Any], int]] = []
        stopping = False
        while not stopping:
            try:
                item = self._queue.get(timeout=self.flush_s)
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
                    if len(batch) < self.batch_size:
                        continue
            except queue.Empty:
                pass
            if batch:
                self._write([record for record, _ in batch])
                with self._lock:
                    self.queued_bytes -= sum(size for _, size in batch)
                batch = []

    def _write(self, batch: list[dict[str, Any]]) -> None:
        frame = pd.DataFrame(
            [{k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()} for r in batch]
        )
        now = datetime.now(UTC)
        name = f"{PARTITION}{now:%Y-%m-%d}/part-{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        try:
            storage.write_parquet(frame, storage.join(self.directory, name))
            self.written += len(batch)
        except Exception:  # the log must never take the server down; the loss is logged and counted
            self.dropped += len(batch)
            if self.on_drop:
                self.on_drop(len(batch))
            log.exception("request log write failed", extra={"records": len(batch)})


def _day(name: str) -> str | None:
    """The ``YYYY-MM-DD`` of a ``date=`` partition in a file's path, None for a flat (older) file."""
    for part in name.replace("\\", "/").split("/"):
        if part.startswith(PARTITION):
            return part.removeprefix(PARTITION)
    return None


def _files(directory: str) -> list[str]:
    """Every part file: in the day folders and (an older layout) directly in the directory."""
    from pathlib import Path

    if storage.is_gcs(directory):
        from bitpredict.storage import _split_gcs, gcs_client

        bucket, prefix = _split_gcs(directory)
        names = [f"gs://{bucket}/{b.name}" for b in gcs_client().list_blobs(bucket, prefix=prefix.rstrip("/") + "/")]
        return sorted(n for n in names if n.rsplit("/", 1)[-1].startswith("part-") and n.endswith(".parquet"))
    root = Path(directory)
    if not root.exists():
        return []
    found = [*root.glob("part-*.parquet"), *root.glob(f"{PARTITION}*/part-*.parquet")]
    return sorted(str(p) for p in found)


def _utc(moment: pd.Timestamp | str | None) -> pd.Timestamp | None:
    if moment is None:
        return None
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")


def read_log(
    directory: str, since: pd.Timestamp | str | None = None, until: pd.Timestamp | str | None = None
) -> pd.DataFrame:
    """The logged records with ``since <= logged_at < until`` (either bound optional; all when neither),
    oldest file first; an empty frame when there is none. Only the day folders that overlap the window are read."""
    low, high = _utc(since), _utc(until)
    chosen = []
    for name in _files(directory):
        day = _day(name)
        if day is not None:
            if low is not None and day < low.strftime("%Y-%m-%d"):
                continue
            if high is not None and day > high.strftime("%Y-%m-%d"):
                continue
        chosen.append(name)
    frames = [storage.read_parquet(n) for n in chosen]
    logged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if logged.empty or (low is None and high is None):
        return logged
    at = pd.to_datetime(logged["logged_at"], utc=True, format="ISO8601")
    keep = pd.Series(True, index=logged.index)
    if low is not None:
        keep &= at >= low
    if high is not None:
        keep &= at < high
    return logged[keep].reset_index(drop=True)
