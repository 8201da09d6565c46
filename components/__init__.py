"""KFP v2 components: one module per stage, each one call to ``bitpredict.orchestration.stages.run_stage``.

Every component runs on the one image built from ``components/Dockerfile`` (``IMAGE``, from the
``components_image`` setting, so ``make images`` and the compiled pipeline name the same tag). The image
already holds kfp and bitpredict, so nothing is pip-installed when a task starts.
"""

from bitpredict.config import load_settings

IMAGE = load_settings().components_image
