"""Local storage: atomic writes that survive a crash, and an upsert that is idempotent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitpredict import storage


def _table(n: int, start: str = "2024-01-01", value: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": "binance",
            "timestamp": pd.date_range(start, periods=n, freq="D", tz="UTC"),
            "close": np.arange(n, dtype=float) + value,
        }
    )


def test_round_trip_keeps_dtypes(tmp_path: Path) -> None:
    path = tmp_path / "raw" / "t.parquet"
    df = _table(5)
    storage.write_parquet(df, path)
    back = storage.read_parquet(path)
    pd.testing.assert_frame_equal(back, df)
    assert not list(path.parent.glob(".*.tmp")), "no temporary file may be left behind"


def test_missing_and_corrupt_tables_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        storage.read_parquet(tmp_path / "absent.parquet")
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(storage.StorageError, match=r"corrupt.parquet: not a readable parquet file"):
        storage.read_parquet(corrupt)


_CRASH_BEFORE_RENAME = textwrap.dedent(
    """
    import os, sys
    import pandas as pd
    from bitpredict import storage
    def crash(*_a, **_k):
        os._exit(137)  # the process dies like a SIGKILL: no cleanup, no exception handlers
    os.replace = crash
    df = pd.DataFrame({"x": range(100_000)})
    storage.write_parquet(df, sys.argv[1])
    """
)


def test_crash_between_write_and_rename_keeps_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "table.parquet"
    previous = _table(3)
    storage.write_parquet(previous, path)
    proc = subprocess.run([sys.executable, "-c", _CRASH_BEFORE_RENAME, str(path)], capture_output=True, timeout=120)
    assert proc.returncode == 137, proc.stderr.decode()
    # The dead writer left its temporary file, fully written but never renamed: the table is the old one.
    assert list(tmp_path.glob(".table.parquet.*.tmp")), "the crash should have happened after the temp write"
    pd.testing.assert_frame_equal(storage.read_parquet(path), previous)


_WRITE_FOREVER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from bitpredict import storage
    big = pd.DataFrame({"version": 1, "x": range(400_000)})
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        big["version"] = i
        storage.write_parquet(big, sys.argv[1])
    """
)


def test_sigkill_during_repeated_writes_never_leaves_a_torn_table(tmp_path: Path) -> None:
    """A real SIGKILL at random moments of a write loop: the table is always whole and readable."""
    path = tmp_path / "table.parquet"
    storage.write_parquet(pd.DataFrame({"version": 0, "x": range(400_000)}), path)
    rng = np.random.default_rng(7)
    seen_versions = set()
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _WRITE_FOREVER, str(path)], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
            time.sleep(float(rng.uniform(0.2, 0.8)))
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        table = storage.read_parquet(path)
        assert len(table) == 400_000 and table["version"].nunique() == 1
        seen_versions.add(int(table["version"].iloc[0]))
    assert max(seen_versions) > 0, "the writer never completed a write: the kills tested nothing"


def test_upsert_creates_then_merges_with_newest_winning(tmp_path: Path) -> None:
    path = tmp_path / "raw.parquet"
    first = storage.upsert(path, _table(5), key=["source", "timestamp"])
    assert (first.new, first.updated, first.total) == (5, 0, 5)

    # Overlap of 2 days with new values, 3 new days, and a duplicate key inside the batch (last wins).
    update = _table(5, start="2024-01-04", value=100.0)
    dup = update.iloc[[0]].assign(close=999.0)
    second = storage.upsert(path, pd.concat([update, dup]), key=["source", "timestamp"])
    assert (second.new, second.updated, second.unchanged, second.total) == (3, 2, 3, 8)

    stored = storage.read_parquet(path)
    assert stored["timestamp"].is_monotonic_increasing
    assert not stored.duplicated(["source", "timestamp"]).any()
    jan4 = stored.loc[stored["timestamp"] == pd.Timestamp("2024-01-04", tz="UTC"), "close"].item()
    assert jan4 == 999.0  # the later duplicate in the batch won over the earlier one and over the stored row
    assert stored["close"].iloc[0] == 1.0  # rows outside the batch untouched


def test_upsert_is_idempotent_and_does_not_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "raw.parquet"
    rows = _table(10)
    storage.upsert(path, rows, key=["source", "timestamp"])
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    again = storage.upsert(path, rows.sample(frac=1.0, random_state=1), key=["source", "timestamp"])
    assert not again.changed and (again.new, again.updated, again.unchanged) == (0, 0, 10)
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


def test_upsert_treats_nan_as_equal_to_nan(tmp_path: Path) -> None:
    path = tmp_path / "raw.parquet"
    rows = _table(3).assign(volume=[1.0, np.nan, 3.0])
    storage.upsert(path, rows, key=["source", "timestamp"])
    assert not storage.upsert(path, rows, key=["source", "timestamp"]).changed


def test_upsert_adds_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "raw.parquet"
    storage.upsert(path, _table(2), key=["source", "timestamp"])
    result = storage.upsert(path, _table(1, start="2024-01-03").assign(volume=5.0), key=["source", "timestamp"])
    stored = storage.read_parquet(path)
    assert result.new == 1 and "volume" in stored.columns
    assert stored["volume"].isna().sum() == 2 and stored["volume"].iloc[-1] == 5.0


def test_upsert_without_key_columns_fails_before_touching_the_table(tmp_path: Path) -> None:
    path = tmp_path / "raw.parquet"
    storage.upsert(path, _table(2), key=["source", "timestamp"])
    before = path.read_bytes()
    with pytest.raises(storage.StorageError, match=r"lack key column\(s\) \['timestamp'\]"):
        storage.upsert(path, pd.DataFrame({"source": ["x"]}), key=["source", "timestamp"])
    assert path.read_bytes() == before


def test_join_handles_local_and_gcs() -> None:
    assert storage.join("gs://b/prefix/", "raw", "/x.parquet") == "gs://b/prefix/raw/x.parquet"
    assert storage.join("data", "raw", "x.parquet") == str(Path("data/raw/x.parquet"))
    assert storage.is_gcs("gs://b/x") and not storage.is_gcs("/tmp/gs:/x")
