"""KFP component: register the evaluated model in the MLflow registry (champion only if allowed and earned)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def register(model: Input[Model], evaluation: Input[Dataset], allow_promotion: bool, settings_json: str) -> str:
    """Always a new version of ``bitpredict-lstm``; the ``champion`` alias moves only when promotion is allowed."""
    import json

    from bitpredict.stages import run_stage

    result = run_stage(
        "register",
        {"model": model.path, "evaluation": evaluation.path},
        {},
        json.loads(settings_json),
        options={"allow_promotion": allow_promotion},
    )
    return json.dumps(result)
