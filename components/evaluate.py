"""KFP component: walk-forward evaluation against the baselines; says whether the model beats them."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    features: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Dataset],
    report: Output[Markdown],
    metrics: Output[Metrics],
    settings_json: str,
    cache_dir: str,
) -> bool:
    """→ metrics (KFP Metrics), the Markdown table, plots + predictions; returns "beats the baselines"."""
    import json

    from bitpredict.evaluation.report import flat_metrics
    from bitpredict.orchestration.stages import run_stage

    result = run_stage(
        "evaluate",
        {"features": features.path, "model": model.path},
        {"evaluation": evaluation.path, "report": report.path},
        json.loads(settings_json),
        cache_dir,
    )
    for name, value in flat_metrics(result).items():
        metrics.log_metric(name, value)
    return bool(result["decision"]["beats_baselines"])
