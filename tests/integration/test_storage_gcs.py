"""GCS storage against a real emulator (fake-gcs-server on 127.0.0.1): no mocks of the client."""

from __future__ import annotations

import pandas as pd
import pytest

from bitpredict import storage
from bitpredict.config import load_settings
from bitpredict.pipeline.stage_table import FEATURES, data_path

pytestmark = pytest.mark.integration


def _rows(n: int, start: str = "2024-01-01", value: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": "coingecko",
            "timestamp": pd.date_range(start, periods=n, freq="D", tz="UTC"),
            "close": [value + i for i in range(n)],
        }
    )


def test_round_trip_through_the_emulator(gcs_bucket: str) -> None:
    uri = storage.join(gcs_bucket, "raw", "market.parquet")
    assert not storage.exists(uri)
    storage.write_parquet(_rows(4), uri)
    assert storage.exists(uri)
    pd.testing.assert_frame_equal(storage.read_parquet(uri), _rows(4))
    storage.write_text(storage.join(gcs_bucket, "reports", "r.md"), "# report\n")
    assert storage.read_text(storage.join(gcs_bucket, "reports", "r.md")) == "# report\n"


def test_missing_object_is_file_not_found(gcs_bucket: str) -> None:
    with pytest.raises(FileNotFoundError):
        storage.read_parquet(f"{gcs_bucket}/nope.parquet")


def test_upsert_on_gcs_is_idempotent(gcs_bucket: str) -> None:
    uri = f"{gcs_bucket}/raw/market.parquet"
    assert storage.upsert(uri, _rows(5), key=["source", "timestamp"]).new == 5
    _, generation = storage.read_bytes(uri)
    merged = storage.upsert(uri, _rows(3, start="2024-01-04", value=50.0), key=["source", "timestamp"])
    assert (merged.new, merged.updated, merged.total) == (1, 2, 6)
    _, after_merge = storage.read_bytes(uri)
    assert after_merge != generation
    again = storage.upsert(uri, _rows(3, start="2024-01-04", value=50.0), key=["source", "timestamp"])
    assert not again.changed
    _, after_noop = storage.read_bytes(uri)
    assert after_noop == after_merge, "a no-op upsert must not write a new generation"


def test_generation_precondition_refuses_a_lost_update(gcs_bucket: str) -> None:
    uri = f"{gcs_bucket}/raw/market.parquet"
    storage.write_parquet(_rows(2), uri)
    _, generation = storage.read_bytes(uri)
    storage.write_parquet(_rows(3), uri)  # another writer replaces the object meanwhile
    with pytest.raises(storage.ConcurrentWriteError, match="changed by another writer"):
        storage.write_parquet(_rows(1), uri, if_generation_match=generation)
    assert len(storage.read_parquet(uri)) == 3  # the other writer's version survives
    with pytest.raises(storage.ConcurrentWriteError):
        storage.write_parquet(_rows(1), f"{gcs_bucket}/raw/market.parquet", if_generation_match=0)


def test_upsert_retries_when_another_writer_races_it(gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Between our read and our write, a second writer adds a row; the upsert re-reads and keeps both."""
    uri = f"{gcs_bucket}/raw/market.parquet"
    storage.write_parquet(_rows(2), uri)
    real_read = storage.read_bytes
    raced = {"done": False}

    def read_then_race(u: str):  # type: ignore[no-untyped-def]
        data = real_read(u)
        if not raced["done"]:
            raced["done"] = True
            storage.write_parquet(_rows(3, value=1.0), u)  # the competing writer: adds 2024-01-03
        return data

    monkeypatch.setattr(storage, "read_bytes", read_then_race)
    result = storage.upsert(uri, _rows(1, start="2024-01-10"), key=["source", "timestamp"])
    stored = storage.read_parquet(uri)
    assert raced["done"] and result.total == 4 and len(stored) == 4
    assert pd.Timestamp("2024-01-03", tz="UTC") in set(stored["timestamp"])


def test_settings_paths_on_gcs(gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITPREDICT_DATA_DIR", f"{gcs_bucket}/bp")
    settings = load_settings()
    storage.write_parquet(_rows(1), data_path(settings, FEATURES))
    assert data_path(settings, FEATURES) == f"{gcs_bucket}/bp/processed/bitcoin_features.parquet"
    assert storage.exists(data_path(settings, FEATURES))
