"""What a replay is and how far it got: the command's identity (``Replay``), its recipe and its saved state.

Why a module of its own: the loop (``bitpredict.operations.replay``) writes the report after every day and the
report (``bitpredict.operations.replay_report``) reads these types, so both import them from here: the loop imports
the report, and the report never imports the loop.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.errors import BitPredictError
from bitpredict.pipeline.stage_table import SERVING

# The settings a replay's results depend on (the folder paths do not: the same data under another path is the same
# replay): changing one of them between two commands is another replay.
KEY_SETTINGS = ("model", "clean", "sentiment", "drift", "promotion")
STATE_VERSION = 1


class ReplayError(BitPredictError, ValueError):
    """The replay cannot start or continue; the message says what to do."""


@dataclass(frozen=True)
class ReplayRecipe:
    """The model settings of the replay's runs (the initial champion and every rerun): lighter than a full run."""

    epochs: int = 5
    patience: int = 3
    test_days: int = 365  # a year: the switching rule confirms a challenger on no fewer days (promotion.*)
    refit_every_days: int = 92
    extra: dict[str, Any] = field(default_factory=dict)  # any other model setting (tests: a tiny network)

    def model(self) -> dict[str, Any]:
        return {**self.extra, "epochs": self.epochs, "patience": self.patience, "test_days": self.test_days,
                "refit_every_days": self.refit_every_days}  # fmt: skip


@dataclass
class ReplayState:
    """Everything needed to continue after the last finished day."""

    key: str
    last_day: str | None = None
    champion_dir: str | None = None
    champion_version: int | None = None
    drift_state: dict[str, Any] | None = None
    reruns: list[dict[str, Any]] = field(default_factory=list)
    champion_changes: list[dict[str, Any]] = field(default_factory=list)
    initial: dict[str, Any] | None = None
    seconds: float = 0.0
    version: int = STATE_VERSION

    @classmethod
    def load(cls, path: Path) -> ReplayState | None:
        return cls(**json.loads(path.read_text())) if path.exists() else None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        storage.write_text(str(path), json.dumps(asdict(self), indent=2, default=str))


@dataclass(frozen=True)
class Replay:
    """One replay: the exports folder, the inclusive UTC days, the recipe, and where it writes."""

    data: Path
    start: date
    end: date
    settings: Settings  # the user's settings: the replay's own are derived from them (``work_settings``)
    recipe: ReplayRecipe = ReplayRecipe()
    retrain_every: int = 0  # days between scheduled reruns; 0: reruns on drift only

    def __post_init__(self) -> None:
        if self.retrain_every < 0:
            raise ReplayError(f"--retrain-every {self.retrain_every}: expected 0 (off) or a number of days")

    @property
    def root(self) -> Path:
        return Path(self.settings.path("replay"))

    @property
    def report_dir(self) -> Path:
        return Path(self.settings.path("reports", "replay"))

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    def key(self) -> str:
        """What makes two commands the same replay: a different one must not continue this one's state."""
        files = sorted(p for p in self.data.iterdir() if p.suffix in (".csv", ".parquet"))
        groups = {g: getattr(self.settings, g).model_dump(mode="json") for g in KEY_SETTINGS}
        identity: dict[str, Any] = {"data": [(p.name, p.stat().st_size) for p in files], "start": str(self.start),
                                    "recipe": asdict(self.recipe), "settings": groups}  # fmt: skip
        if self.retrain_every:  # named only when on: a replay started before the schedule existed keeps its key
            identity["retrain_every"] = self.retrain_every
        text = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def work_settings(self) -> Settings:
        """The user's settings pointed at the replay's own folder, registry and model store, with the recipe."""
        from bitpredict.config import ModelSettings

        work = (self.root / "work").resolve()
        model = ModelSettings(**{**self.settings.model.model_dump(), **self.recipe.model()})
        return self.settings.model_copy(
            update={
                "data_dir": str(work),
                "files_dir": str(self.data),
                "ingest_sources": ["files"],
                "mlflow_tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
                "model_store": str(work / SERVING),
                "model": model,
            }
        )
