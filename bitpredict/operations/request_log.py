"""The request log: every served forecast and the rows it was made from, for the drift job.

Writes never block a response: ``append`` puts a record on a queue; a background thread writes batches
(``batch_size`` records or every ``flush_s`` seconds) as new parquet files ``part-<time>-<uuid>.parquet``
under the log directory (local or ``gs://``). Files are only ever added, each written atomically, so the
log survives a restart and a crash loses at most the batch in memory. ``read_log`` reads them back.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from bitpredict import storage

log = logging.getLogger(__name__)


class RequestLog:
    def __init__(self, directory: str, batch_size: int = 64, flush_s: float = 5.0, max_queue: int = 10_000) -> None:
        self.directory = directory
        self.batch_size = batch_size
        self.flush_s = flush_s
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_queue)
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="request-log", daemon=True)
        self._thread.start()

    def append(self, record: dict[str, Any]) -> None:
        """Queue one record; when the queue is full the record is dropped and counted (never blocks)."""
        try:
            self._queue.put_nowait({**record, "logged_at": datetime.now(UTC).isoformat()})
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and stop the writer."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        batch: list[dict[str, Any]] = []
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
                self._write(batch)
                batch = []

    def _write(self, batch: list[dict[str, Any]]) -> None:
        frame = pd.DataFrame(
            [{k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()} for r in batch]
        )
        name = f"part-{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.parquet"
        try:
            storage.write_parquet(frame, storage.join(self.directory, name))
            self.written += len(batch)
        except Exception:  # the log must never take the server down; the loss is logged and counted
            self.dropped += len(batch)
            log.exception("request log write failed", extra={"records": len(batch)})


def read_log(directory: str) -> pd.DataFrame:
    """Every logged record, oldest first (empty frame when there is no log yet)."""
    from pathlib import Path

    if storage.is_gcs(directory):
        from bitpredict.storage import _split_gcs, gcs_client

        bucket, prefix = _split_gcs(directory)
        names = sorted(
            f"gs://{bucket}/{b.name}" for b in gcs_client().list_blobs(bucket, prefix=prefix.rstrip("/") + "/")
        )
    else:
        names = sorted(str(p) for p in Path(directory).glob("part-*.parquet")) if Path(directory).exists() else []
    frames = [storage.read_parquet(n) for n in names if n.endswith(".parquet")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
