"""Rebuild ``data/sample/btc_usd_hourly.parquet``, the embedded sample, from the MIT-licensed hourly CSV.

Why parquet with text columns: the ``files`` source already imports parquet (no change to it), zstd makes
the 3.4 MB CSV about 1.5 MB, and keeping every value as the CSV's own text means the sample *is* the
published file — writing its rows back as CSV gives the upstream bytes (the checksum test proves it), so
the sample imports exactly as the CSV would, quirks included (the one inconsistent bar of 2021-01-04 05:00).

    .venv/bin/python scripts/build_sample.py [../shared/data/btc_usd_hourly.csv]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared" / "data" / "btc_usd_hourly.csv"
TARGET = REPO / "data" / "sample" / "btc_usd_hourly.parquet"
UPSTREAM_SHA256 = "13d00e99e837224ece6573de9e0cf1fde88983e4cda10dfabbc4d5c2ba6f7c49"


def as_csv_bytes(frame: pd.DataFrame) -> bytes:
    """The table written back as the upstream CSV (comma, ``\\n`` line ends, no index)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue().encode()


def build(source: Path, target: Path) -> str:
    """Write the sample; refuse a source that is not the published file. Returns the sample's sha256."""
    raw = source.read_bytes()
    if hashlib.sha256(raw).hexdigest() != UPSTREAM_SHA256:
        raise SystemExit(f"{source} is not the published hourly file (sha256 differs from {UPSTREAM_SHA256[:12]})")
    frame = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    if as_csv_bytes(frame) != raw:
        raise SystemExit("the CSV does not round-trip through a text table: the sample would not be the same file")
    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    target.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, target, compression="zstd", compression_level=19)
    return hashlib.sha256(target.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", nargs="?", type=Path, default=SOURCE)
    parser.add_argument("--target", type=Path, default=TARGET)
    args = parser.parse_args(argv)
    digest = build(args.source, args.target)
    print(f"{args.target}: {args.target.stat().st_size:,} bytes, sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
