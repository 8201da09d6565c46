"""Column contracts of every table, and row-level validation that never crashes and never drops silently.

``validate(df, schema)`` splits a frame into the rows that meet the contract (coerced to the contract's
dtypes) and a quarantine table: each rejected row, its original values as text, and every reason it
was rejected. A frame that is missing a required *column* is not a row problem: that raises
``SchemaError`` naming the columns, before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from bitpredict.errors import BitPredictError

Kind = Literal["str", "float", "int", "timestamp", "bool"]
REASON_COLUMN = "reason"
QUARANTINE_META = ("table", REASON_COLUMN, "row_hash", "quarantined_at")
QUARANTINE_KEY = ("table", "row_hash")
#: A reader that already knows a row is bad (e.g. a CSV line it could not split) says why in this
#: column and keeps the raw text in the next one; validate quarantines the row with that reason.
REJECT_COLUMN = "_reject"
RAW_LINE_COLUMN = "_raw_line"
_READER_COLUMNS = (REJECT_COLUMN, RAW_LINE_COLUMN)


class SchemaError(BitPredictError, ValueError):
    """The frame cannot be validated at all (e.g. a required column is missing)."""


@dataclass(frozen=True)
class Column:
    """One column: its kind, whether it may be empty, and bounds for numbers."""

    name: str
    kind: Kind
    nullable: bool = False
    required: bool = True  # must the column be present? (absent optional columns are added as nulls)
    min_value: float | None = None
    min_inclusive: bool = True
    allowed: tuple[str, ...] | None = None


RowCheck = Callable[[pd.DataFrame], pd.Series]


@dataclass(frozen=True)
class Check:
    """A rule across columns: ``bad(df)`` is True where the row breaks it."""

    reason: str
    bad: RowCheck


@dataclass(frozen=True)
class Schema:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    checks: tuple[Check, ...] = ()
    extra_kind: Kind | None = None  # kind of columns not listed (None: extra columns are kept as they are)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)


@dataclass
class ValidationResult:
    valid: pd.DataFrame
    quarantine: pd.DataFrame
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def n_rejected(self) -> int:
        return len(self.quarantine)


# --------------------------------------------------------------------------------------------
# coercion: each returns the coerced series and a mask of values that could not be coerced
# --------------------------------------------------------------------------------------------


def _coerce_timestamp(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """UTC timestamps from datetimes, ISO strings or unix seconds (naive values are taken as UTC)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        out = pd.to_datetime(values, utc=True)
        return out.astype("datetime64[ns, UTC]"), pd.Series(False, index=values.index)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        numeric = pd.to_numeric(values, errors="coerce").astype(float)
        finite = np.isfinite(numeric)
        out = pd.to_datetime(numeric.where(finite), unit="s", utc=True, errors="coerce")
    else:
        # Mixed objects: numbers are unix seconds, datetimes as they are, text is parsed.
        is_number = values.map(lambda v: isinstance(v, int | float | np.number) and not isinstance(v, bool))
        text = values.where(~is_number).astype("string").str.strip()
        out = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        # ISO8601 first (fast, strict); anything else a second, lenient pass.
        retry = out.isna() & text.notna() & (text != "")
        if retry.any():
            out.loc[retry] = pd.to_datetime(text[retry], utc=True, errors="coerce", format="mixed")
        if is_number.any():
            seconds = pd.to_numeric(values[is_number], errors="coerce").astype(float)
            out.loc[is_number] = pd.to_datetime(seconds.where(np.isfinite(seconds)), unit="s", utc=True)
    failed = out.isna() & values.notna()
    return out.astype("datetime64[ns, UTC]"), failed


def _coerce_float(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    out = pd.to_numeric(values, errors="coerce").astype("float64")
    failed = out.isna() & values.notna()
    return out, failed


def _coerce_int(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    as_float = pd.to_numeric(values, errors="coerce")
    not_integral = as_float.notna() & (as_float != np.round(as_float))
    out = as_float.where(~not_integral).round().astype("Int64")
    failed = (out.isna() & values.notna()) | not_integral
    return out, failed


def _coerce_str(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    out = values.astype("string")
    out = out.where(out.str.strip() != "")  # blank text counts as missing
    return out, pd.Series(False, index=values.index)


def _coerce_bool(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    mapping = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False}
    text = values.astype("string").str.strip().str.lower()
    out = text.map(mapping, na_action="ignore").astype("boolean")
    failed = out.isna() & values.notna()
    return out, failed


_COERCE: dict[Kind, Callable[[pd.Series], tuple[pd.Series, pd.Series]]] = {
    "timestamp": _coerce_timestamp,
    "float": _coerce_float,
    "int": _coerce_int,
    "str": _coerce_str,
    "bool": _coerce_bool,
}

_KIND_WORD = {
    "timestamp": "unparseable timestamp",
    "float": "not a number",
    "int": "not an integer",
    "str": "not text",
    "bool": "not a boolean",
}


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------


def validate(df: pd.DataFrame, schema: Schema) -> ValidationResult:
    """Split ``df`` into rows that meet ``schema`` and a quarantine table with a reason per row.

    Rules per column: coercible to its kind, not null unless nullable, finite, above its minimum,
    in its allowed set. Then the schema's cross-column checks, then the key: rows whose key repeats
    are quarantined except the last (newest) one, matching ``storage.upsert``.
    """
    missing = [c.name for c in schema.columns if c.required and c.name not in df.columns]
    if missing:
        raise SchemaError(f"{schema.name}: missing required column(s) {missing}; got {list(df.columns)}")

    frame = df.reset_index(drop=True)
    reasons = pd.Series("", index=frame.index, dtype="object")

    def flag(mask: pd.Series, reason: str) -> None:
        mask = mask.fillna(False).astype(bool)
        if mask.any():
            reasons.loc[mask] = reasons.loc[mask] + "; " + reason

    coerced: dict[str, pd.Series] = {}
    for col in schema.columns:
        values = frame[col.name] if col.name in frame.columns else pd.Series(pd.NA, index=frame.index, dtype="object")
        out, failed = _COERCE[col.kind](values)
        flag(failed, f"{col.name}: {_KIND_WORD[col.kind]} ({_sample(values, failed)})")
        coerced[col.name] = out
        if not col.nullable:
            flag(out.isna() & ~failed, f"{col.name}: missing")
        if col.kind == "float":
            flag(np.isinf(out), f"{col.name}: not finite")
        if col.min_value is not None and col.kind in ("float", "int"):
            below = out < col.min_value if col.min_inclusive else out <= col.min_value
            op = ">=" if col.min_inclusive else ">"
            flag(below, f"{col.name}: must be {op} {col.min_value:g}")
        if col.allowed is not None:
            flag(out.notna() & ~out.isin(col.allowed), f"{col.name}: not one of {list(col.allowed)}")

    if REJECT_COLUMN in frame.columns:
        rejected = frame[REJECT_COLUMN].notna()
        reasons.loc[rejected] = "; " + frame.loc[rejected, REJECT_COLUMN].astype(str)

    extras = [c for c in frame.columns if c not in coerced and c not in QUARANTINE_META and c not in _READER_COLUMNS]
    for name in extras:
        if schema.extra_kind is None:
            coerced[name] = frame[name]
            continue
        out, failed = _COERCE[schema.extra_kind](frame[name])
        flag(failed, f"{name}: {_KIND_WORD[schema.extra_kind]} ({_sample(frame[name], failed)})")
        if schema.extra_kind == "float":
            flag(np.isinf(out), f"{name}: not finite")
        coerced[name] = out

    typed = pd.DataFrame(coerced, index=frame.index)
    for check in schema.checks:
        flag(check.bad(typed), check.reason)

    # Duplicate keys among the rows that are otherwise good: the last one wins.
    ok = reasons == ""
    dup = typed[ok].duplicated(subset=list(schema.key), keep="last")
    flag(dup.reindex(frame.index, fill_value=False), f"duplicate key {list(schema.key)}: superseded by a later row")

    bad = reasons != ""
    reasons = reasons.str.removeprefix("; ")
    valid = typed[~bad].reset_index(drop=True)
    quarantine = _quarantine_table(frame[bad], reasons[bad], schema.name)
    counts = _count_reasons(reasons[bad])
    return ValidationResult(valid=valid, quarantine=quarantine, reasons=counts)


def _sample(values: pd.Series, mask: pd.Series) -> str:
    bad = values[mask.fillna(False).astype(bool)]
    return repr(bad.iloc[0])[:40] if len(bad) else ""


def _quarantine_table(rows: pd.DataFrame, reasons: pd.Series, table: str) -> pd.DataFrame:
    """Rejected rows with their original values as text (any value survives a parquet round-trip)."""
    out = rows.astype("string").reset_index(drop=True) if len(rows) else rows.astype("string").iloc[0:0]
    out.insert(0, REASON_COLUMN, reasons.reset_index(drop=True).astype("string"))
    out.insert(0, "table", pd.Series([table] * len(out), dtype="string"))
    # A stable id of the rejected input, so quarantining the same bad row twice keeps one copy.
    out["row_hash"] = pd.util.hash_pandas_object(rows.astype("string"), index=False).astype("string").to_numpy()
    out["quarantined_at"] = pd.Timestamp.now(tz="UTC")
    return out


def _count_reasons(reasons: pd.Series) -> dict[str, int]:
    counts: dict[str, int] = {}
    for text in reasons:
        for reason in str(text).split("; "):
            rule = reason.split(" (", 1)[0]
            counts[rule] = counts.get(rule, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------
# the contracts
# --------------------------------------------------------------------------------------------

#: Bar lengths the raw market table accepts: the pipeline uses 1d (and 1h); CoinGecko's free OHLC endpoint
#: only offers 30-minute, 4-hour or 4-day candles depending on the span asked for.
INTERVALS = ("1d", "1h", "30m", "4h", "4d")
INTERVAL_SECONDS = {"1d": 86_400, "1h": 3_600, "30m": 1_800, "4h": 14_400, "4d": 345_600}


def _ohlc_checks() -> tuple[Check, ...]:
    return (
        Check("high < low", lambda d: d["high"] < d["low"]),
        Check("open outside [low, high]", lambda d: (d["open"] < d["low"]) | (d["open"] > d["high"])),
        Check("close outside [low, high]", lambda d: (d["close"] < d["low"]) | (d["close"] > d["high"])),
    )


def _price(name: str) -> Column:
    return Column(name, "float", min_value=0.0, min_inclusive=False)


RAW_MARKET = Schema(
    name="raw_market",
    columns=(
        Column("source", "str"),
        Column("interval", "str", allowed=INTERVALS),
        Column("timestamp", "timestamp"),  # bar open, UTC
        _price("open"),
        _price("high"),
        _price("low"),
        _price("close"),
        Column("volume", "float", nullable=True, min_value=0.0),  # base currency (BTC) where known
        Column("quote_volume", "float", nullable=True, required=False, min_value=0.0),  # USD
        Column("market_cap", "float", nullable=True, required=False, min_value=0.0),
    ),
    key=("source", "interval", "timestamp"),
    checks=_ohlc_checks(),
)

NEWS = Schema(
    name="news",
    columns=(
        Column("source", "str"),
        Column("id", "str"),
        Column("published_at", "timestamp"),
        Column("title", "str"),
        Column("summary", "str", nullable=True),
        Column("url", "str", nullable=True),
        Column("feed", "str", nullable=True, required=False),
    ),
    key=("source", "id"),
)

TWEETS = Schema(
    name="tweets",
    columns=(
        Column("id", "str"),
        Column("created_at", "timestamp"),
        Column("text", "str"),
        Column("author_id", "str", nullable=True, required=False),
        Column("lang", "str", nullable=True, required=False),
        Column("retweet_count", "int", nullable=True, required=False, min_value=0),
        Column("reply_count", "int", nullable=True, required=False, min_value=0),
        Column("like_count", "int", nullable=True, required=False, min_value=0),
        Column("quote_count", "int", nullable=True, required=False, min_value=0),
        Column("author_followers", "int", nullable=True, required=False, min_value=0),
    ),
    key=("id",),
)

MARKET_CHART = Schema(
    name="market_chart",
    columns=(
        Column("source", "str"),
        Column("timestamp", "timestamp"),  # the instant of the snapshot (CoinGecko: 00:00 UTC for daily points)
        Column("price", "float", min_value=0.0, min_inclusive=False),
        Column("market_cap", "float", nullable=True, min_value=0.0),
        Column("total_volume", "float", nullable=True, min_value=0.0),  # 24h volume in USD
    ),
    key=("source", "timestamp"),
)

#: Columns every features row has; the indicator and sentiment columns are extra float columns.
FEATURE_TARGETS = ("target_log_return", "target_close", "target_direction")

FEATURES = Schema(
    name="features",
    columns=(
        Column("timestamp", "timestamp"),  # the day t (UTC midnight); features use data up to t's close
        _price("open"),
        _price("high"),
        _price("low"),
        _price("close"),
        Column("volume", "float", min_value=0.0),
        # Targets are known only after day t+1 closes: the last row has none.
        Column("target_log_return", "float", nullable=True),
        Column("target_close", "float", nullable=True, min_value=0.0, min_inclusive=False),
        Column("target_direction", "int", nullable=True),
    ),
    key=("timestamp",),
    checks=(
        *_ohlc_checks(),
        Check(
            "target_direction: must be 0 or 1",
            lambda d: d["target_direction"].notna() & ~d["target_direction"].isin([0, 1]),
        ),
    ),
    extra_kind="float",
)

SCHEMAS: dict[str, Schema] = {s.name: s for s in (RAW_MARKET, MARKET_CHART, NEWS, TWEETS, FEATURES)}


def require_columns(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    """Raise a ``SchemaError`` naming the missing columns (for stage inputs that must be complete)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SchemaError(f"{what}: missing column(s) {missing}")
