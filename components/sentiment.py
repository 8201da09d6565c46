"""KFP component: VADER + FinBERT sentiment of news and tweets, aggregated per UTC day."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sentiment(
    raw: Input[Dataset],
    daily: Output[Dataset],
    meta: Output[Dataset],
    scores: Output[Dataset],
    settings_json: str,
    cache_dir: str,
):
    """Raw news/tweets → the daily aggregates, the scorer record (which scorer ran) and the per-text scores
    (the UI's latest headlines); their file names are the stage table's (``bitpredict.pipeline.stage_table``)."""
    import json

    from bitpredict.orchestration.stages import run_stage

    run_stage(
        "sentiment",
        {"raw": raw.path},
        {"sentiment": daily.path, "meta": meta.path, "scores": scores.path},
        json.loads(settings_json),
        cache_dir,
    )
