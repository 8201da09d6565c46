"""What every source hands to the ingest engine: pages of rows for a table (market data, by time range) or
batches of new rows (news, tweets, files); and how a source says it cannot run here.

These types live here, not in ``bitpredict.data.ingest``, so the source modules and the engine both import them
and neither imports the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import pandas as pd

from bitpredict.data.schemas import Schema
from bitpredict.errors import BitPredictError

Direction = Literal["forward", "backward"]


@dataclass(frozen=True)
class Page:
    """Rows from one API response and the time range the response settled.

    ``settled`` is what the engine may strike off its to-do list once the rows are stored: for a
    forward pager, everything up to the last bar; for a backward pager, everything from the first.
    ``note``: why a page ends its range early (e.g. "nothing new"), for the run's summary line.
    """

    rows: pd.DataFrame
    settled_from: pd.Timestamp
    settled_to: pd.Timestamp
    note: str | None = None


@dataclass(frozen=True)
class Batch:
    """New rows for one raw table, as a snapshot source (news, tweets, files) hands them over."""

    table: str
    schema: Schema
    rows: pd.DataFrame


class BatchSource(Protocol):
    """A source that hands over what is new since its own cursors (kept in ``state`` between runs)."""

    name: str

    def batches(self, state: dict[str, Any]) -> Iterator[Batch]:
        """Batches of new rows; the source keeps its cursors (ETags, since_id) in ``state``."""
        ...


class SourceUnavailable(BitPredictError):
    """A source that cannot run here, and why: skipped on purpose (``failed=False``: no token, no such
    interval) or a failure the run summary reports (``failed=True``: the exports folder is unreadable)."""

    def __init__(self, message: str, *, table: str = "-", failed: bool = True) -> None:
        super().__init__(message)
        self.table = table
        self.failed = failed


class RangeSource(Protocol):
    """A source that can fetch any time range of one table, page by page (market data)."""

    name: str
    schema: Schema
    direction: Direction

    def table_name(self, interval: str) -> str:
        """File name stem under ``data/raw/`` for this source and interval."""
        ...

    def intervals(self) -> tuple[str, ...]:
        """Intervals this source can serve."""
        ...

    def pages(self, interval: str, start: pd.Timestamp, end: pd.Timestamp) -> Iterator[Page]:
        """Pages covering [start, end] (both UTC, inclusive), in ``direction`` order."""
        ...


def ms(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000)


def seconds(ts: pd.Timestamp) -> int:
    return int(ts.value // 1_000_000_000)


def from_ms(values: object) -> pd.Series:
    return pd.to_datetime(pd.Series(values, dtype="float64"), unit="ms", utc=True)
