"""What every source hands to the ingest engine: pages of rows for a table, and what each page settled."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import pandas as pd

from bitpredict.schemas import Schema

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
