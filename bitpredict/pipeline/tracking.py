"""MLflow wiring: one place that picks the tracking store, the experiment and where artifacts go.

With a local sqlite store, artifacts go to ``mlartifacts/`` beside the database file — by default
``<data_dir>/mlartifacts`` (not ``./mlruns`` in whatever directory a command happened to start in). Beside
the database, not under the stage's data dir: a pipeline task works in a temporary data dir that is gone
when the task ends, while the registry must still find the artifacts. With a tracking server
(``MLFLOW_TRACKING_URI`` = http://…), the server decides.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from bitpredict.config import Settings

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def client(settings: Settings) -> MlflowClient:
    from mlflow.tracking import MlflowClient  # here: mlflow is slow to import

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri)


def experiment_id(settings: Settings) -> str:
    """The experiment's id, created on first use."""
    mlflow_client = client(settings)
    found = mlflow_client.get_experiment_by_name(settings.experiment_name)
    if found is not None:
        return found.experiment_id
    location = None
    if settings.tracking_uri.startswith("sqlite:///"):
        database = Path(settings.tracking_uri.removeprefix("sqlite:///")).resolve()
        location = (database.parent / "mlartifacts").as_uri()
    return mlflow_client.create_experiment(settings.experiment_name, artifact_location=location)
