"""KFP component: VADER + FinBERT sentiment of news and tweets, aggregated per UTC day."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def sentiment(raw: Input[Dataset], daily: Output[Dataset], meta: Output[Dataset], settings_json: str, cache_dir: str):
    """Raw news/tweets → ``sentiment_daily.parquet`` and ``sentiment_meta.json`` (which scorer ran)."""
    import json

    from bitpredict.stages import run_stage

    run_stage(
        "sentiment",
        {"raw": raw.path},
        {"sentiment": daily.path, "meta": meta.path},
        json.loads(settings_json),
        cache_dir,
    )
