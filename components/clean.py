"""KFP component: clean → one daily bar series and the cleaning report."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def clean(raw: Input[Dataset], bars: Output[Dataset], report: Output[Markdown], settings_json: str, cache_dir: str):
    """Raw tables → the daily bars (Dataset) + the cleaning report (Markdown); file names: the stage table."""
    import json

    from bitpredict.orchestration.stages import run_stage

    run_stage(
        "clean", {"raw": raw.path}, {"clean": bars.path, "report": report.path}, json.loads(settings_json), cache_dir
    )
