"""``make submit``: upload the compiled pipeline to a Kubeflow Pipelines endpoint and start a run.

The endpoint comes from ``KFP_HOST`` (e.g. ``http://ml-pipeline-ui.kubeflow:80`` or the port-forwarded
``http://127.0.0.1:8080``). The first upload creates the pipeline ``bitpredict``; later ones add a version
(named after the package version and the time), so the UI keeps the history. Then either one run, or with
``--recurring "0 6 * * *"`` a recurring run (KFP's six-field cron is accepted as well), in the experiment
``bitpredict``. Parameters: ``--param name=value`` (as the pipeline declares them).

    KFP_HOST=http://127.0.0.1:8080 python -m pipelines.submit --param epochs=30
    KFP_HOST=... python -m pipelines.submit --recurring "0 0 6 * * *"
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bitpredict import __version__
from pipelines.bitpredict_pipeline import COMPILED, PIPELINE_NAME

EXPERIMENT = "bitpredict"


def parse_params(pairs: list[str], compiled: Path) -> dict[str, Any]:
    """``name=value`` pairs, typed by the compiled pipeline's parameter declarations; unknown names fail."""
    spec = next(yaml.safe_load_all(compiled.read_text()))  # the pipeline spec; a platform spec may follow
    declared = spec["root"]["inputDefinitions"]["parameters"]
    casts = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "STRING": str, "BOOLEAN": lambda v: v.lower() == "true"}
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in declared:
            raise ValueError(f"bad --param {pair!r}: known parameters are {sorted(declared)}")
        params[name] = casts[declared[name]["parameterType"]](value)
    return params


def submit(
    host: str,
    compiled: Path = COMPILED,
    params: dict[str, Any] | None = None,
    recurring: str | None = None,
) -> dict[str, str]:
    """Upload (or add a version), then start a run or a recurring run. Returns the ids it created."""
    import kfp

    client = kfp.Client(host=host)
    pipeline_id = client.get_pipeline_id(PIPELINE_NAME)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(str(compiled), pipeline_name=PIPELINE_NAME).pipeline_id
    version_name = f"{PIPELINE_NAME}-{__version__}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    version = client.upload_pipeline_version(str(compiled), version_name, pipeline_id=pipeline_id)
    experiment = client.create_experiment(EXPERIMENT)
    common = {
        "experiment_id": experiment.experiment_id,
        "job_name": f"{PIPELINE_NAME}-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        "pipeline_id": pipeline_id,
        "version_id": version.pipeline_version_id,
        "params": params or {},
    }
    ids = {"pipeline_id": pipeline_id, "version_id": version.pipeline_version_id}
    if recurring:
        cron = recurring if len(recurring.split()) == 6 else f"0 {recurring}"  # KFP wants seconds first
        job = client.create_recurring_run(**common, cron_expression=cron, max_concurrency=1, no_catchup=True)
        ids["recurring_run_id"] = job.recurring_run_id
    else:
        ids["run_id"] = client.run_pipeline(**common).run_id
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("KFP_HOST"), help="KFP endpoint (default: $KFP_HOST).")
    parser.add_argument("--param", action="append", default=[], help="name=value, repeatable.")
    parser.add_argument("--recurring", help='cron schedule for a recurring run, e.g. "0 6 * * *".')
    args = parser.parse_args(argv)
    if not args.host:
        print("set KFP_HOST (or --host) to the Kubeflow Pipelines endpoint", file=sys.stderr)
        return 2
    if not COMPILED.exists():
        print(f"{COMPILED} is missing: run `make compile`", file=sys.stderr)
        return 2
    try:
        params = parse_params(args.param, COMPILED)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    ids = submit(args.host, COMPILED, params, args.recurring)
    print(" ".join(f"{k}={v}" for k, v in ids.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
