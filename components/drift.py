"""KFP component: one drift check; the Evidently report as an ``HTML`` artifact, the figures as ``Metrics``.

Run on its own schedule (or after a run) with the champion's exported folder; on drift it replays the last
published run through ``pipelines.rerun`` (KFP when ``KFP_HOST`` is set), the trigger this entry point passes
into the check — ``bitpredict`` itself never knows about the pipeline.
"""

from kfp import dsl
from kfp.dsl import HTML, Metrics, Output

from components import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def drift(report: Output[HTML], metrics: Output[Metrics], model_dir: str, data_root: str, trigger: bool) -> bool:
    """Returns whether drift was found; ``trigger`` lets it start the rerun."""
    import os
    from pathlib import Path

    from bitpredict import storage
    from bitpredict.config import load_settings
    from bitpredict.operations.drift_check import run_drift
    from pipelines.rerun import rerun

    settings = load_settings(data_dir=data_root)
    host = os.environ.get("KFP_HOST") or None
    summary = run_drift(settings, model_dir, (lambda _reasons: rerun(settings, host)) if trigger else None)
    html = summary["report_html"]
    Path(report.path).write_bytes(storage.read_bytes(html)[0] if html else b"<p>too few current rows</p>")
    if summary["share"] is not None:
        metrics.log_metric("drift_share", summary["share"])
    metrics.log_metric("drifting", float(summary["drifting"]))
    metrics.log_metric("triggered", float(summary["triggered"]))
    return bool(summary["drifting"])
