"""Import CSV or parquet exports into the same raw tables as the live sources, so the pipeline runs offline.

A *preset* maps a known layout to a raw table: the Yahoo Finance daily export, CryptoCompare's
hourly export (unix seconds, ``volumefrom``/``volumeto``), Binance's kline dumps, a generic OHLCV
file, and the ``;``-separated Kaggle "Crypto News" file (day-first dates). The preset is detected
from the header unless named. Lines the CSV parser cannot split into the header's fields are not
dropped: they go to the quarantine with the reason, like any other bad row.

Timestamps without a zone are taken as UTC (all the known exports are UTC).
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.data.schemas import NEWS, RAW_LINE_COLUMN, RAW_MARKET, REJECT_COLUMN, Schema
from bitpredict.data.sources.base import Batch
from bitpredict.errors import BitPredictError

log = logging.getLogger(__name__)

Mapper = Callable[[pd.DataFrame, str], pd.DataFrame]


@dataclass(frozen=True)
class Preset:
    name: str
    table: str
    schema: Schema
    signature: frozenset[str]  # header columns that identify the layout (lower-case)
    mapper: Mapper
    sep: str = ","


def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df.columns else pd.Series(pd.NA, index=df.index, dtype="object")


def _yahoo(df: pd.DataFrame, _origin: str) -> pd.DataFrame:
    # Yahoo's BTC-USD "Volume" is in USD: it is the quote volume; volume in BTC is derived later by clean.
    return pd.DataFrame(
        {
            "source": "yahoo",
            "interval": "1d",
            "timestamp": df["Date"],
            "open": df["Open"],
            "high": df["High"],
            "low": df["Low"],
            "close": df["Close"],
            "volume": pd.NA,
            "quote_volume": df["Volume"],
        }
    )


def _cryptocompare_hourly(df: pd.DataFrame, _origin: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": "cryptocompare",
            "interval": "1h",
            "timestamp": pd.to_numeric(df["time"], errors="coerce").where(lambda s: s.notna(), df["time"]),
            "open": df["open"],
            "high": df["high"],
            "low": df["low"],
            "close": df["close"],
            "volume": df["volumefrom"],
            "quote_volume": df["volumeto"],
        }
    )


def _binance_klines(df: pd.DataFrame, _origin: str) -> pd.DataFrame:
    open_ms = pd.to_numeric(df["open_time"], errors="coerce")
    interval = _infer_interval(open_ms / 1000)
    return pd.DataFrame(
        {
            "source": "binance",
            "interval": interval,
            "timestamp": pd.to_datetime(open_ms, unit="ms", utc=True),
            "open": df["open"],
            "high": df["high"],
            "low": df["low"],
            "close": df["close"],
            "volume": df["volume"],
            "quote_volume": _col(df, "quote_asset_volume"),
        }
    )


def _generic_ohlcv(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    stamps = df["timestamp"]
    numeric = pd.to_numeric(stamps, errors="coerce")
    seconds = (
        numeric if numeric.notna().all() else pd.to_datetime(stamps, utc=True, errors="coerce").astype("int64") / 1e9
    )
    return pd.DataFrame(
        {
            "source": _col(df, "source").fillna(Path(origin).stem),
            "interval": _col(df, "interval").fillna(_infer_interval(seconds)),
            "timestamp": stamps,
            "open": df["open"],
            "high": df["high"],
            "low": df["low"],
            "close": df["close"],
            "volume": df["volume"],
            "quote_volume": _col(df, "quote_volume"),
        }
    )


def _infer_interval(seconds: pd.Series) -> str:
    steps = seconds.dropna().diff().dropna()
    step = steps.median() if len(steps) else 86_400
    return "1h" if step <= 3_600 else "1d"


def _news_id(url: Any, title: Any, date: Any) -> str:
    if isinstance(url, str) and url.strip():
        return url.strip()
    return "sha256:" + hashlib.sha256(f"{title}|{date}".encode()).hexdigest()[:20]


def _crypto_news(df: pd.DataFrame, origin: str) -> pd.DataFrame:
    published = pd.to_datetime(df["date"], format="%d-%m-%Y %H:%M", errors="coerce", utc=True)
    # Keep the original text where the day-first parse failed, so the quarantine says what it was.
    published = published.astype("object").where(published.notna(), df["date"])
    return pd.DataFrame(
        {
            "source": df["source"],
            "id": [_news_id(u, t, d) for u, t, d in zip(df["url"], df["title"], df["date"], strict=True)],
            "published_at": published,
            "title": df["title"],
            "summary": df["text"],
            "url": df["url"],
            "feed": Path(origin).name,
            "subject": df["subject"],
        }
    )


_OHLC = frozenset({"open", "high", "low", "close"})

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("yahoo", "market_yahoo_1d", RAW_MARKET, _OHLC | {"date", "adj close", "volume"}, _yahoo),
        Preset(
            "cryptocompare_hourly",
            "market_cryptocompare_1h",
            RAW_MARKET,
            _OHLC | {"time", "volumefrom", "volumeto"},
            _cryptocompare_hourly,
        ),
        Preset(
            "binance_klines",
            "market_binance_{interval}",
            RAW_MARKET,
            _OHLC | {"open_time", "volume", "close_time"},
            _binance_klines,
        ),
        Preset("ohlcv", "market_{source}_{interval}", RAW_MARKET, _OHLC | {"timestamp", "volume"}, _generic_ohlcv),
        Preset(
            "crypto_news", "news_files", NEWS, frozenset({"date", "source", "text", "title", "url"}), _crypto_news, ";"
        ),
    )
}


class FileImportError(BitPredictError, ValueError):
    """The file cannot be imported as a whole (unknown layout, unreadable); the message says why."""


def _sniff_header(data: bytes) -> list[str]:
    first = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").strip()
    sep = ";" if first.count(";") > first.count(",") else ","
    return [h.strip().strip('"') for h in first.split(sep)]


def detect_preset(columns: list[str]) -> Preset:
    lowered = {c.lower() for c in columns}
    for preset in PRESETS.values():
        if preset.signature <= lowered:
            return preset
    raise FileImportError(
        f"unknown layout with columns {columns}; name a preset ({sorted(PRESETS)}) or rename the columns to "
        "timestamp, open, high, low, close, volume"
    )


@dataclass
class ParsedFile:
    frame: pd.DataFrame
    bad_lines: list[list[str]]


def read_table_file(uri: str, sep: str) -> ParsedFile:
    """CSV (quotes respected) or parquet; CSV lines with the wrong field count are collected, not dropped."""
    data, _ = storage.read_bytes(uri)
    if uri.endswith(".parquet"):
        return ParsedFile(storage.read_parquet(uri), [])
    bad: list[list[str]] = []

    def keep_bad(fields: list[str]) -> None:
        bad.append(fields)
        return None

    frame = pd.read_csv(
        io.BytesIO(data), sep=sep, dtype=str, keep_default_na=False, na_values=[""],
        engine="python", on_bad_lines=keep_bad, encoding="utf-8-sig",
    )  # fmt: skip
    frame.columns = [c.strip() for c in frame.columns]
    return ParsedFile(frame, bad)


def _normalise_columns(frame: pd.DataFrame, preset: Preset) -> pd.DataFrame:
    """Match the preset's column names case-insensitively, so 'Open Time' and 'open_time' both work."""
    wanted = {c.lower(): c for c in frame.columns}
    rename = {}
    for original_lower, original in wanted.items():
        snake = original_lower.replace(" ", "_")
        if snake in preset.signature and snake != original:
            rename[original] = snake
    return frame.rename(columns=rename)


TIME_COLUMNS = {"market": "timestamp", "news": "published_at"}  # the column a row's moment is read from


MAX_UNIX_SECONDS = 1e11  # about the year 5100: a larger number is not a time (NaT), never an overflow


def _moments(values: pd.Series) -> pd.Series:
    """Each row's moment as a UTC timestamp — timestamps, unix seconds or date texts, as the presets hand them
    over; NaT where the value is not a time (such a row goes to the quarantine whatever the cut)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return pd.to_datetime(values, utc=True)
    stamps = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    is_time = values.map(lambda v: isinstance(v, datetime | date)).astype(bool)  # pd.Timestamp is a datetime
    numeric = pd.to_numeric(values.where(~is_time), errors="coerce")
    is_number = numeric.notna() & ~is_time & (numeric.abs() < MAX_UNIX_SECONDS)
    text = values.notna() & ~is_time & ~is_number
    if is_time.any():
        stamps[is_time] = pd.to_datetime(values[is_time], utc=True, errors="coerce", format="mixed")
    if is_number.any():
        with np.errstate(all="ignore"):
            seconds = numeric[is_number].astype("float64")
            stamps[is_number] = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
    if text.any():
        stamps[text] = pd.to_datetime(values[text].astype(str), utc=True, errors="coerce", format="mixed")
    return stamps


def visible_rows(rows: pd.DataFrame, schema: Schema, visible_until: pd.Timestamp) -> pd.DataFrame:
    """The rows known at the end of UTC day ``visible_until``: a bar that opened, or a text published, before
    the next midnight (an hourly bar opened at 23:00 closes at midnight, a daily bar at the end of its day)."""
    column = TIME_COLUMNS["news" if schema is NEWS else "market"]
    if column not in rows.columns:
        return rows
    day = pd.Timestamp(visible_until)
    day = day.tz_localize("UTC") if day.tzinfo is None else day.tz_convert("UTC")
    end = day.normalize() + pd.Timedelta(days=1)
    moments = _moments(rows[column])
    return rows[moments.isna() | (moments < end)].reset_index(drop=True)


def import_file(uri: str, preset_name: str | None = None, visible_until: pd.Timestamp | None = None) -> Iterator[Batch]:
    """Batches of raw rows from one export file (one batch per target table).

    ``visible_until`` (a UTC day): only the rows known at the end of that day — the replay's clock
    (``bitpredict.operations.replay``); rows after it never reach a table.
    """
    if not storage.exists(uri):
        raise FileImportError(f"{uri}: file not found")
    if uri.endswith(".parquet"):
        columns = list(storage.read_parquet(uri).columns)
    else:
        columns = _sniff_header(storage.read_bytes(uri)[0])
    if preset_name:
        if preset_name not in PRESETS:
            raise FileImportError(f"unknown preset {preset_name!r}; choose one of {sorted(PRESETS)}")
        preset = PRESETS[preset_name]
    else:
        preset = detect_preset(columns)
    parsed = read_table_file(uri, preset.sep)
    frame = parsed.frame if preset.name in ("yahoo",) else _normalise_columns(parsed.frame, preset)
    try:
        rows = preset.mapper(frame, uri)
    except KeyError as exc:
        raise FileImportError(f"{uri}: preset {preset.name} needs column {exc}") from exc
    if visible_until is not None:
        rows = visible_rows(rows, preset.schema, visible_until)
    if parsed.bad_lines:
        rows = pd.concat(
            [rows, _bad_line_rows(parsed.bad_lines, rows, preset.sep, len(parsed.frame.columns))], ignore_index=True
        )
    log.info(
        "importing file",
        extra={"path": uri, "preset": preset.name, "rows": len(rows), "bad_lines": len(parsed.bad_lines)},
    )
    if "{" in preset.table:  # one table per (source, interval)
        for (source, interval), part in rows.groupby(["source", "interval"], dropna=False, sort=True):
            yield Batch(
                preset.table.format(source=source, interval=interval), preset.schema, part.reset_index(drop=True)
            )
    else:
        yield Batch(preset.table, preset.schema, rows)


def _bad_line_rows(lines: list[list[str]], template: pd.DataFrame, sep: str, n_fields: int) -> pd.DataFrame:
    """Rows that fail validation on purpose, carrying the raw line so the quarantine keeps it."""
    out = pd.DataFrame({c: pd.Series([pd.NA] * len(lines), dtype="object") for c in template.columns})
    for col in template.columns:  # constant columns (source, interval) route the row to the right table
        values = template[col].dropna().unique()
        if len(values) == 1 and isinstance(values[0], str):
            out[col] = values[0]
    out[RAW_LINE_COLUMN] = [sep.join(fields) for fields in lines]
    out[REJECT_COLUMN] = [
        f"malformed CSV line: {len(fields)} fields where the header has {n_fields}" for fields in lines
    ]
    return out


class FilesSource:
    """Every CSV/parquet file in a folder (or a given list), each with its detected or named preset."""

    name = "files"

    def __init__(self, paths: list[str], preset: str | None = None, visible_until: pd.Timestamp | None = None) -> None:
        self.paths = paths
        self.preset = preset
        self.visible_until = visible_until  # the replay's clock: rows after this UTC day are left out

    @classmethod
    def from_dir(cls, directory: str, visible_until: pd.Timestamp | None = None) -> FilesSource:
        folder = Path(directory)
        if not folder.is_dir():
            raise FileImportError(f"{directory}: not a folder")
        files = sorted(str(p) for p in folder.iterdir() if p.suffix in (".csv", ".parquet"))
        if not files:
            raise FileImportError(f"{directory}: no .csv or .parquet files")
        return cls(files, visible_until=visible_until)

    def batches(self, state: dict[str, Any]) -> Iterator[Batch]:
        for path in self.paths:
            yield from import_file(path, self.preset, self.visible_until)
