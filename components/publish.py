"""KFP component: publish the run's outputs to the data dir every consumer reads — the pipeline's last task.

It runs only after register succeeded, so a failed run publishes nothing (``bitpredict.operations.publish``).
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def publish(
    bars: Input[Dataset],
    clean_report: Input[Markdown],
    indicators: Input[Dataset],
    sentiment: Input[Dataset],
    sentiment_meta: Input[Dataset],
    sentiment_scores: Input[Dataset],
    features: Input[Dataset],
    evaluation: Input[Dataset],
    model: Input[Model],
    registered: str,
    parameters: str,
    data_root: str,
    run_id: str,
    settings_json: str,
) -> str:
    """Clean bars, indicators, sentiment, features, evaluation and candidate → ``data_root``, atomically;
    the manifest (``bitpredict.operations.publish.MANIFEST``: run id, parameters, champion) last. Returns it as JSON."""
    import json

    from bitpredict.orchestration.stages import publish_stage

    artifacts = {
        "clean": bars.path,
        "clean_report": clean_report.path,
        "indicators": indicators.path,
        "sentiment": sentiment.path,
        "sentiment_meta": sentiment_meta.path,
        "sentiment_scores": sentiment_scores.path,
        "features": features.path,
        "evaluation": evaluation.path,
        "candidate": model.path,
    }
    overrides = {**json.loads(settings_json), "data_dir": data_root}
    manifest = publish_stage(artifacts, overrides, json.loads(registered), json.loads(parameters), run_id)
    return json.dumps(manifest)
