"""KFP component: ingest (incremental, into a persistent raw store) → a snapshot of the raw tables.

As the first task it also resolves the run's settings from the pipeline parameters, validates them once,
and hands them to every later task (``settings``), so a bad parameter fails here, not in the sixth task.

Its parameters are the pipeline's (``bitpredict.orchestration.parameters.PARAMETERS``). They are spelled out
because KFP reads a component's inputs from its source; a test holds them equal to the table.
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
    selection_days: int,
    switch_pvalue: float,
    mlflow_tracking_uri: str,
    model_store: str,
    cache_dir: str,
    extra_settings: str,
) -> NamedTuple("IngestOutputs", [("settings", str), ("summary", str), ("parameters", str)]):
    """Fetch what is new into ``data_root`` (kept between runs, so each run is incremental); output ``raw/``.

    ``parameters``: this run's pipeline parameters as given, for the published manifest (a rerun replays them).
    """
    given = {name: value for name, value in locals().items() if name != "raw"}  # the parameters, first
    import json
    from collections import namedtuple

    from bitpredict.orchestration.parameters import pipeline_settings, typed
    from bitpredict.orchestration.stages import run_stage

    parameters = typed(given)
    settings = pipeline_settings(parameters)
    own = {**pipeline_settings(parameters, ingest=True), "data_dir": parameters["data_root"]}
    report = run_stage("ingest", {}, {"raw": raw.path}, own)
    outputs = namedtuple("IngestOutputs", ["settings", "summary", "parameters"])
    return outputs(json.dumps(settings), json.dumps(report), json.dumps(parameters))
