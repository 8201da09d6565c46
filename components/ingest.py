"""KFP component: ingest (incremental, into a persistent raw store) → a snapshot of the raw tables.

As the first task it also resolves the run's settings from the pipeline parameters, validates them once,
and hands them to every later task (``settings``), so a bad parameter fails here, not in the sixth task.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def ingest(
    raw: Output[Dataset],
    data_root: str,
    files_dir: str,
    sources: str,
    since: str,
    interval: str,
    window: int,
    epochs: int,
    test_days: int,
    min_skill: float,
    max_dm_pvalue: float,
    mlflow_tracking_uri: str,
    model_store: str,
    extra_settings: str,
    cache_dir: str,
) -> NamedTuple("IngestOutputs", [("settings", str), ("summary", str), ("parameters", str)]):
    """Fetch what is new into ``data_root`` (kept between runs, so each run is incremental); output ``raw/``.

    ``parameters``: this run's pipeline parameters as given, for the published manifest (a rerun replays them).
    """
    import json
    from collections import namedtuple

    from bitpredict.stages import pipeline_settings, run_stage

    settings = pipeline_settings(
        sources=sources,
        since=since,
        interval=interval,
        window=window,
        epochs=epochs,
        test_days=test_days,
        min_skill=min_skill,
        max_dm_pvalue=max_dm_pvalue,
        mlflow_tracking_uri=mlflow_tracking_uri,
        model_store=model_store,
        extra_settings=extra_settings,
    )
    report = run_stage(
        "ingest", {}, {"raw": raw.path}, {**settings, "data_dir": data_root, "files_dir": files_dir or None}
    )
    parameters = {
        "data_root": data_root, "files_dir": files_dir, "sources": sources, "since": since, "interval": interval,
        "window": window, "epochs": epochs, "test_days": test_days, "min_skill": min_skill,
        "max_dm_pvalue": max_dm_pvalue, "mlflow_tracking_uri": mlflow_tracking_uri, "model_store": model_store,
        "cache_dir": cache_dir, "extra_settings": extra_settings,
    }  # fmt: skip
    outputs = namedtuple("IngestOutputs", ["settings", "summary", "parameters"])
    return outputs(json.dumps(settings), json.dumps(report), json.dumps(parameters))
