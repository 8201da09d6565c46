"""KFP component: register the best of the network and its baselines in the MLflow registry; export the champion."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(model: Input[Model], evaluation: Input[Dataset], allow_promotion: bool, settings_json: str) -> str:
    """A new version of ``bitpredict-lstm`` (the policy lives in ``bitpredict.operations.registry``); returns its
    result as JSON: model, version, promoted, reason, champion, kind, why, exported_to."""
    import json

    from bitpredict.orchestration.stages import run_stage

    result = run_stage(
        "register",
        {"model": model.path, "evaluation": evaluation.path},
        {},
        json.loads(settings_json),
        options={"allow_promotion": allow_promotion},
    )
    return json.dumps(result)
