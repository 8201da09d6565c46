"""KFP component: technical indicators on the clean daily bars."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def indicators(bars: Input[Dataset], table: Output[Dataset], settings_json: str, cache_dir: str):
    """The clean daily bars → the indicators table (file names: ``bitpredict.pipeline.stage_table``)."""
    import json

    from bitpredict.orchestration.stages import run_stage

    run_stage("indicators", {"clean": bars.path}, {"indicators": table.path}, json.loads(settings_json), cache_dir)
