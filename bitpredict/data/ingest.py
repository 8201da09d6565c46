"""The ingest stage: fetch what is missing from each source and upsert it into ``data/raw/``, page by page.

Incremental: for a time-ranged source (market data) the to-do list is the span after the newest stored
bar, the span before the oldest one down to ``since``, and any gap an earlier run left unfinished
(kept in ``raw/_state/<table>.json``). Each page is validated, upserted and struck off the to-do list
before the next is requested, so a failure on page 7 keeps pages 1–6 and the next run resumes where
it stopped. Only closed bars are stored: the bar still forming is left for a later run, so raw rows
never change after they are written.

Snapshot sources (RSS, X, files) hand over batches; their own cursors (ETag, newest tweet id) live
in the same state file.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import requests

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.data.schemas import INTERVAL_SECONDS, QUARANTINE_KEY, Schema, ValidationResult, validate
from bitpredict.data.sources import OpenRequest, source_entry
from bitpredict.data.sources.base import Batch, BatchSource, RangeSource, SourceUnavailable
from bitpredict.data.sources.http import HttpClient
from bitpredict.errors import BitPredictError
from bitpredict.pipeline.stage_table import QUARANTINE, RAW, data_path

log = logging.getLogger(__name__)


@dataclass
class IngestSummary:
    """What one source/interval run did; ``line()`` is the one-line summary the CLI prints."""

    source: str
    table: str
    fetched: int = 0
    new: int = 0
    updated: int = 0
    quarantined: int = 0
    open_bars_skipped: int = 0
    requests: int = 0
    retries: int = 0
    error: str | None = None
    note: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def add(self, result: ValidationResult, upserted: storage.UpsertResult | None, fetched: int) -> None:
        self.fetched += fetched
        self.quarantined += result.n_rejected
        for reason, count in result.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count
        if upserted is not None:
            self.new += upserted.new
            self.updated += upserted.updated

    def line(self) -> str:
        status = "ok" if self.ok else f"FAILED: {self.error}"
        extra = f" ({self.note})" if self.note else ""
        return (
            f"{self.source:<13} {self.table:<28} fetched={self.fetched} new={self.new} updated={self.updated} "
            f"quarantined={self.quarantined} retries={self.retries} {status}{extra}"
        )


class StateStore:
    """Small JSON documents beside the raw tables: unfinished gaps and source cursors."""

    def __init__(self, raw_dir: str) -> None:
        self.raw_dir = raw_dir

    def _uri(self, table: str) -> str:
        return storage.join(self.raw_dir, "_state", f"{table}.json")

    def load(self, table: str) -> dict[str, Any]:
        try:
            return json.loads(storage.read_text(self._uri(table)))
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError:
            log.warning("unreadable state file ignored; the run falls back to the stored table", extra={"table": table})
            return {}

    def save(self, table: str, state: dict[str, Any]) -> None:
        storage.write_text(self._uri(table), json.dumps(state, indent=1, sort_keys=True))


def raw_table_uri(settings: Settings, table: str) -> str:
    return storage.join(data_path(settings, RAW), f"{table}.parquet")


def store_batch(
    settings: Settings, table: str, schema: Schema, rows: pd.DataFrame, summary: IngestSummary
) -> pd.DataFrame:
    """Validate ``rows``, upsert the good ones into ``raw/<table>``, the bad ones into ``quarantine/<table>``."""
    result = validate(rows, schema)
    upserted = None
    if len(result.valid):
        upserted = storage.upsert(raw_table_uri(settings, table), result.valid, key=schema.key)
    if result.n_rejected:
        quarantine_uri = storage.join(data_path(settings, QUARANTINE), f"{table}.parquet")
        storage.upsert(quarantine_uri, result.quarantine, key=QUARANTINE_KEY)
        log.warning("rows quarantined", extra={"table": table, "rows": result.n_rejected, "reasons": result.reasons})
    summary.add(result, upserted, fetched=len(rows))
    return result.valid


# --------------------------------------------------------------------------------------------
# time-ranged sources
# --------------------------------------------------------------------------------------------

Range = tuple[pd.Timestamp, pd.Timestamp]


def _stored_span(uri: str) -> Range | None:
    try:
        stamps = storage.read_parquet(uri)["timestamp"]
    except FileNotFoundError:
        return None
    if stamps.empty:
        return None
    return stamps.min(), stamps.max()


def plan_ranges(
    stored: Range | None, gaps: Iterable[Range], since: pd.Timestamp, last_closed: pd.Timestamp, step: pd.Timedelta
) -> list[Range]:
    """What is missing: unfinished gaps, after the newest stored bar, before the oldest down to ``since``."""
    todo = [(max(a, since), b) for a, b in gaps]
    if stored is None:
        todo.append((since, last_closed))
    else:
        oldest, newest = stored
        todo.append((newest + step, last_closed))
        todo.append((since, oldest - step))
    todo = sorted((a, b) for a, b in todo if a <= b)
    merged: list[Range] = []
    for a, b in todo:  # overlapping ranges would fetch the same pages twice
        if merged and a <= merged[-1][1] + step:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _encode(ranges: Iterable[Range]) -> list[list[str]]:
    return [[a.isoformat(), b.isoformat()] for a, b in ranges]


def _decode(ranges: Iterable[Iterable[str]]) -> list[Range]:
    out = []
    for pair in ranges:
        a, b = (pd.Timestamp(x) for x in pair)
        out.append(
            (
                a.tz_convert("UTC") if a.tzinfo else a.tz_localize("UTC"),
                b.tz_convert("UTC") if b.tzinfo else b.tz_localize("UTC"),
            )
        )
    return out


def ingest_range_source(
    source: RangeSource,
    interval: str,
    settings: Settings,
    *,
    since: pd.Timestamp,
    now: pd.Timestamp | None = None,
    on_page: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Bring ``source``'s table for ``interval`` up to date; never raises for a source failure."""
    table = source.table_name(interval)
    summary = IngestSummary(source=source.name, table=table)
    step = pd.Timedelta(seconds=INTERVAL_SECONDS[interval])
    now = now or pd.Timestamp.now(tz="UTC")
    last_closed = now.floor(step) - step  # the newest bar whose close is already in the past
    states = StateStore(data_path(settings, RAW))
    state = states.load(table)
    uri = raw_table_uri(settings, table)

    # "floor": the oldest bar the source has (learned once), so asking before it is not repeated every run.
    floor = pd.Timestamp(state["floor"]) if state.get("floor") else None
    since = max(since, floor) if floor is not None else since
    pending: list[Range | None] = list(
        plan_ranges(_stored_span(uri), _decode(state.get("gaps", [])), since, last_closed, step)
    )

    def save_pending() -> None:
        state["gaps"] = _encode(r for r in pending if r is not None)
        states.save(table, state)

    save_pending()
    try:
        for index, todo in enumerate(list(pending)):
            assert todo is not None
            for page in source.pages(interval, *todo):
                if page.note:
                    summary.note = page.note
                    log.info(page.note, extra={"source": source.name, "table": table})
                rows = page.rows
                is_open = pd.to_datetime(rows["timestamp"], utc=True) > last_closed
                summary.open_bars_skipped += int(is_open.sum())
                store_batch(settings, table, source.schema, rows[~is_open], summary)
                pending[index] = _shrink(pending[index], page.settled_from, page.settled_to, source.direction, step)
                save_pending()
                if on_page:
                    on_page(len(rows))
            pending[index] = None  # the source had nothing more in this range
            save_pending()
        stored = _stored_span(uri)
        if stored is not None and stored[0] > since:  # every range fetched, yet nothing before this bar
            state["floor"] = stored[0].isoformat()
            save_pending()
    except (BitPredictError, requests.RequestException) as exc:  # a source's failure; a bug is not one
        summary.error = str(exc)
        log.error(
            "source failed; pages already stored are kept",
            extra={"source": source.name, "table": table, "error": str(exc)},
        )
        log.debug("source failure", exc_info=True)
    finally:
        _take_http_stats(source, summary)
    if summary.ok and summary.fetched == 0 and summary.note is None:
        summary.note = "up to date"
    return summary


def _shrink(
    remaining: Range | None, settled_from: pd.Timestamp, settled_to: pd.Timestamp, direction: str, step: pd.Timedelta
) -> Range | None:
    if remaining is None:
        return None
    start, end = remaining
    if direction == "forward":
        start = max(start, settled_to + step)
    else:
        end = min(end, settled_from - step)
    return (start, end) if start <= end else None


def _take_http_stats(source: object, summary: IngestSummary) -> None:
    http = getattr(source, "http", None)
    if isinstance(http, HttpClient):
        summary.requests += http.stats.requests
        summary.retries += http.stats.retries


# --------------------------------------------------------------------------------------------
# snapshot sources (news, tweets, files)
# --------------------------------------------------------------------------------------------


# What reading a damaged export raises (the files source reads CSV with pandas, parquet with pyarrow): the file's
# failure, recorded in its summary. Named, not a bare ValueError, so a parsing bug of ours is not hidden.
UNREADABLE_EXPORT: tuple[type[Exception], ...] = (OSError, pd.errors.ParserError, UnicodeDecodeError, pa.ArrowException)


def ingest_batch_source(
    source: BatchSource, settings: Settings, *, state_name: str | None = None
) -> list[IngestSummary]:
    """Upsert every batch of ``source`` as it arrives, saving its cursors after each one."""
    states = StateStore(data_path(settings, RAW))
    name = state_name or source.name
    state = states.load(name)
    summaries: dict[str, IngestSummary] = {}
    current: IngestSummary | None = None
    try:
        for batch in source.batches(state):
            current = summaries.setdefault(batch.table, IngestSummary(source=source.name, table=batch.table))
            store_batch(settings, batch.table, batch.schema, batch.rows, current)
            states.save(name, state)
    except (BitPredictError, requests.RequestException, *UNREADABLE_EXPORT) as exc:
        failed = current or IngestSummary(source=source.name, table=name)
        failed.error = str(exc)
        summaries.setdefault(failed.table, failed)
        log.error("source failed; batches already stored are kept", extra={"source": source.name, "error": str(exc)})
        log.debug("source failure", exc_info=True)
    finally:
        states.save(name, state)  # cursors the source advanced after its last stored batch
    out = list(summaries.values()) or [IngestSummary(source=source.name, table=name, note="nothing new")]
    if out:
        _take_http_stats(source, out[0])
    return out


# --------------------------------------------------------------------------------------------
# the stage
# --------------------------------------------------------------------------------------------

DEFAULT_INTERVALS = ("1d",)
__all__ = ["Batch", "BatchSource", "IngestSummary", "StateStore", "raw_table_uri", "run_ingest"]


def run_ingest(
    settings: Settings,
    sources: Iterable[str],
    *,
    intervals: Iterable[str] = DEFAULT_INTERVALS,
    since: pd.Timestamp | None = None,
    files: list[str] | None = None,
    preset: str | None = None,
    now: pd.Timestamp | None = None,
    on_page: Callable[[int], None] | None = None,
) -> list[IngestSummary]:
    """The ``ingest`` stage: each named source in turn; one failing source never stops the others.

    Sources are looked up in the registry (``bitpredict.data.sources.SOURCES``): a ``range`` source yields
    (source, interval) jobs for the time-range engine, a ``batch`` source hands over what is new.
    """
    start = since if since is not None else pd.Timestamp(settings.ingest_since, tz="UTC")
    request = OpenRequest(settings, tuple(intervals), files, preset)
    entries = [source_entry(name) for name in sources]  # every name checked before anything is fetched
    summaries: list[IngestSummary] = []
    for entry in entries:
        try:
            opened = entry.open(request)
        except SourceUnavailable as exc:
            message = str(exc)
            summaries.append(
                IngestSummary(
                    source=entry.name,
                    table=exc.table,
                    error=message if exc.failed else None,
                    note=None if exc.failed else message,
                )
            )
            continue
        if isinstance(opened, list):
            for range_source, interval in opened:
                summaries.append(
                    ingest_range_source(range_source, interval, settings, since=start, now=now, on_page=on_page)
                )
        else:
            summaries.extend(ingest_batch_source(opened, settings))
    return summaries
