"""KFP component: one drift check; the Evidently report as an ``HTML`` artifact, the figures as ``Metrics``.

Run on its own schedule (or after a run) with the champion's exported folder; on drift it starts a
pipeline run through ``KFP_HOST`` exactly as the CronJob does.
"""

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def drift(report: Output[HTML], metrics: Output[Metrics], model_dir: str, data_root: str, trigger: bool) -> bool:
    """Returns whether drift was found; ``trigger`` lets it start the rerun."""
    from pathlib import Path

    from bitpredict import storage
    from bitpredict.config import load_settings
    from bitpredict.drift import pipeline_trigger, run_drift

    settings = load_settings(data_dir=data_root)
    summary = run_drift(settings, model_dir, pipeline_trigger(settings) if trigger else None)
    html = summary["report_html"]
    Path(report.path).write_bytes(storage.read_bytes(html)[0] if html else b"<p>too few current rows</p>")
    if summary["share"] is not None:
        metrics.log_metric("drift_share", summary["share"])
    metrics.log_metric("drifting", float(summary["drifting"]))
    metrics.log_metric("triggered", float(summary["triggered"]))
    return bool(summary["drifting"])
