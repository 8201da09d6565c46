"""MLflow wiring: one place that picks the tracking store, the experiment and where artifacts go.

With a local sqlite store, artifacts go to ``mlartifacts/`` beside the database file — by default
``<data_dir>/mlartifacts`` (not ``./mlruns`` in whatever directory a command happened to start in). Beside
the database, not under the stage's data dir: a pipeline task works in a temporary data dir that is gone
when the task ends, while the registry must still find the artifacts. With a tracking server
(``MLFLOW_TRACKING_URI`` = http://…), the server decides.

It also answers the one question every layer asks of the registry — which version holds the ``champion`` alias —
so that evaluate (scoring the champion's recipe), the CLI and ``make serve`` need not import the register stage.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


CHAMPION = "champion"  # the registry alias of the served version


def champion_version(mlflow_client: MlflowClient, name: str) -> Any | None:
    """The model version holding the champion alias of registered model ``name``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return mlflow_client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def champion_info(settings: Settings) -> dict[str, Any] | None:
    """The champion's version, source and tags, or None (for evaluate, `make serve` and the UI)."""
    current = champion_version(client(settings), settings.registered_model_name)
    if current is None:
        return None
    return {"version": int(current.version), "source": current.source, "tags": dict(current.tags)}
