"""KFP component: indicators + daily sentiment + next-day targets → the features table."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def merge(
    indicators: Input[Dataset], sentiment: Input[Dataset], features: Output[Dataset], settings_json: str, cache_dir: str
):
    """→ the features table, its CSV copy and its manifest (one Dataset directory; names: the stage table)."""
    import json

    from bitpredict.orchestration.stages import run_stage

    run_stage(
        "merge",
        {"indicators": indicators.path, "sentiment": sentiment.path},
        {"features": features.path},
        json.loads(settings_json),
        cache_dir,
    )
