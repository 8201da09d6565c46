"""KFP component: fit the LSTM with attention; SavedModel + metadata; MLflow run."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train(features: Input[Dataset], model: Output[Model], settings_json: str, cache_dir: str) -> str:
    """Features → the SavedModel, its metadata and the MLflow run id (the model artifact's layout:
    ``bitpredict.forecast.artifact``)."""
    import json

    from bitpredict.orchestration.stages import run_stage

    report = run_stage(
        "train", {"features": features.path}, {"model": model.path}, json.loads(settings_json), cache_dir
    )
    model.metadata.update({"mlflow_run_id": report["run_id"], "framework": "tensorflow", "format": "SavedModel"})
    return json.dumps(report)
