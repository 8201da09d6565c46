"""bitpredict.operations.publish: one published state, swapped in whole or not at all; readers follow the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bitpredict.config import load_settings
from bitpredict.operations.publish import PublishError, champion_dir, publish, published_path, read_manifest, resolve
from bitpredict.pipeline.stage_table import CLEAN, FEATURES_META
from tests.published_items import fake_artifacts, published_state


def test_a_run_is_published_whole_with_its_manifest(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"))
    (tmp_path / "data" / "interim").mkdir(parents=True)
    (tmp_path / "data" / "interim" / "sentiment_cache.parquet").write_text("kept")  # not ours: never touched
    champion = {"model": "bitpredict-lstm", "version": 3, "kind": "ewma", "exported_to": "/store/bitpredict-lstm/3"}
    manifest = publish(settings, fake_artifacts(tmp_path, "one"), run_id="run-1", parameters={"epochs": 2},
                       champion=champion)  # fmt: skip
    data = tmp_path / "data"
    assert (data / "interim" / "clean_1d.parquet").read_text() == "one:clean"
    assert (data / "models" / "candidate" / "sub" / "deep.txt").read_text() == "one:candidate:deep"
    assert (data / "interim" / "sentiment_cache.parquet").read_text() == "kept"
    stored = json.loads((data / "published.json").read_text())
    assert stored == manifest == read_manifest(settings)
    assert stored["run_id"] == "run-1" and stored["parameters"] == {"epochs": 2} and stored["champion"] == champion
    assert champion_dir(settings) == "/store/bitpredict-lstm/3"
    assert resolve(settings, "processed", "features.json") == str(data / "processed" / "features.json")
    assert published_path(settings, FEATURES_META) == str(data / "processed" / "features.json")
    assert not (data / ".publishing").exists()  # no staging left behind

    first = published_state(data)
    publish(settings, fake_artifacts(tmp_path, "two"), run_id="run-2")  # the next run replaces every item
    assert published_state(data) == {k: v.replace("one:", "two:") for k, v in first.items()}
    assert read_manifest(settings)["run_id"] == "run-2"


def test_a_failure_while_staging_publishes_nothing(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"))
    publish(settings, fake_artifacts(tmp_path, "one"), run_id="run-1")
    before = published_state(tmp_path / "data")
    broken = fake_artifacts(tmp_path, "two")
    Path(broken["evaluation"], "part.txt").unlink()
    (Path(broken["evaluation"]) / "part.txt").symlink_to(tmp_path / "nowhere")  # a dangling link: copytree fails
    with pytest.raises(PublishError, match="nothing published"):
        publish(settings, broken, run_id="run-2")
    assert published_state(tmp_path / "data") == before and read_manifest(settings)["run_id"] == "run-1"
    missing = {**fake_artifacts(tmp_path, "three"), "features": str(tmp_path / "gone")}
    with pytest.raises(PublishError, match="features"):
        publish(settings, missing, run_id="run-3")
    assert published_state(tmp_path / "data") == before and read_manifest(settings)["run_id"] == "run-1"


def test_a_failure_while_swapping_puts_the_previous_state_back(tmp_path: Path) -> None:
    """Swapping fails after some items were already replaced: every replaced item is restored."""
    settings = load_settings(data_dir=str(tmp_path / "data"))
    first = {k: v for k, v in fake_artifacts(tmp_path, "one").items() if k != "candidate"}
    publish(settings, first, run_id="run-1")
    before = published_state(tmp_path / "data")
    (tmp_path / "data" / "models").write_text("a file where the models folder should be")  # the last item fails
    with pytest.raises(PublishError, match="previous state kept"):
        publish(settings, fake_artifacts(tmp_path, "two"), run_id="run-2")
    assert published_state(tmp_path / "data") == before  # interim/, processed/, reports/ are the first run's again
    assert read_manifest(settings)["run_id"] == "run-1"
    assert not list((tmp_path / "data").glob(".publishing/*"))


def test_unknown_items_are_refused(tmp_path: Path) -> None:
    settings = load_settings(data_dir=str(tmp_path / "data"))
    with pytest.raises(PublishError, match="unknown items"):
        publish(settings, {"weights": str(tmp_path)})
    assert read_manifest(settings) is None and champion_dir(settings) is None


def test_on_gcs_readers_follow_the_manifest_to_the_newest_run(tmp_path: Path, gcs_bucket: str) -> None:
    """Each run under its own prefix, the manifest last; the previous prefix stays, older ones go."""
    from bitpredict import storage

    settings = load_settings(data_dir=f"{gcs_bucket}/data", mlflow_tracking_uri="http://127.0.0.1:9")
    assert resolve(settings, "interim", "clean_1d.parquet") == f"{gcs_bucket}/data/interim/clean_1d.parquet"
    for run in ("run-1", "run-2", "run-3"):
        publish(settings, fake_artifacts(tmp_path, run), run_id=run)
        uri = resolve(settings, "interim", "clean_1d.parquet")
        assert uri == f"{gcs_bucket}/data/published/{run}/interim/clean_1d.parquet"
        assert published_path(settings, CLEAN) == uri  # a stage constant resolves like its parts
        assert storage.read_text(uri) == f"{run}:clean"
        deep = resolve(settings, "models", "candidate", "sub", "deep.txt")
        assert storage.read_text(deep) == f"{run}:candidate:deep"
    assert storage.exists(f"{gcs_bucket}/data/published/run-2/interim/clean_1d.parquet")  # a reader may be on it
    assert not storage.exists(f"{gcs_bucket}/data/published/run-1/interim/clean_1d.parquet")
