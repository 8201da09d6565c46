"""The pipeline's parameters, defined once: name, type, the setting each one sets, and its default.

Why one table: the same parameters appear in the compiled pipeline's signature, the ingest task that turns
them into settings, the local runner that fills them from the settings, and the manifest a rerun replays.
Each of those reads this table (``pipelines/bitpredict_pipeline.py`` builds its signature from it; a test
holds the ingest component, whose parameters KFP must read from its source, to the same list).

Defaults: the model and promotion values are the settings' own defaults (not ``params.yaml``, so the
compiled pipeline does not depend on the machine that compiled it); the storage and tracking defaults are
the cluster's. ``setting`` is where a parameter lands in the settings (``model.window``); parameters
without one steer the run itself (where the data dir is, the stage cache, any other setting as JSON).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bitpredict.config import ModelSettings, PromotionSettings, Settings, load_settings
from bitpredict.data.sources import KEYLESS_SOURCES
from bitpredict.errors import BitPredictError
from bitpredict.pipeline.stage_table import serving_store


@dataclass(frozen=True)
class Parameter:
    """One pipeline parameter: ``type`` is what KFP declares; ``setting`` the dotted setting it sets."""

    name: str
    type: type
    default: Any
    setting: str | None
    help: str


_MODEL, _PROMOTION = ModelSettings(), PromotionSettings()
_SINCE = Settings.model_fields["ingest_since"].default
_INTERVAL = Settings.model_fields["ingest_intervals"].default_factory()[0]  # type: ignore[misc]

PARAMETERS: tuple[Parameter, ...] = (
    Parameter("data_root", str, "gs://bitpredict-data/data", None, "persistent data dir: raw store, published state"),
    Parameter("files_dir", str, "", "files_dir", "folder of CSV/parquet exports (the files source)"),
    Parameter("sources", str, ",".join(KEYLESS_SOURCES), "ingest_sources", "comma-separated source names"),
    Parameter("since", str, _SINCE.isoformat(), "ingest_since", "oldest day the market sources backfill to"),
    Parameter("interval", str, _INTERVAL, "ingest_intervals", "bar interval fetched"),
    Parameter("window", int, _MODEL.window, "model.window", "days of history per sample"),
    Parameter("epochs", int, _MODEL.epochs, "model.epochs", "most epochs per fit (early stopping)"),
    Parameter("test_days", int, _MODEL.test_days, "model.test_days", "walk-forward evaluation span"),
    Parameter(
        "selection_days",
        int,
        _PROMOTION.selection_days,
        "promotion.selection_days",
        "days before the evaluation window the challenger is chosen on",
    ),
    Parameter(
        "switch_pvalue", float, _PROMOTION.switch_pvalue, "promotion.switch_pvalue", "one-sided HAC-DM switching bound"
    ),
    Parameter(
        "mlflow_tracking_uri",
        str,
        "http://mlflow.bitpredict.svc.cluster.local:5000",
        "mlflow_tracking_uri",
        "MLflow server",
    ),
    Parameter("model_store", str, "gs://bitpredict-models/serving", "model_store", "champion export for serving"),
    Parameter("cache_dir", str, "", None, "stage cache (local runs; a cluster uses KFP's step cache)"),
    Parameter("extra_settings", str, "{}", None, "JSON object of any other setting"),
)
NAMES: tuple[str, ...] = tuple(p.name for p in PARAMETERS)
BY_NAME: dict[str, Parameter] = {p.name: p for p in PARAMETERS}
# Settings only the ingest task gets: the other tasks work on artifacts, in a fresh directory each.
INGEST_ONLY = frozenset({"files_dir"})


class ParameterError(BitPredictError, ValueError):
    """A pipeline parameter that is unknown or of the wrong type; the message names it."""


def typed(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` in the table's order, each of its declared type (KFP may hand numbers over as text);
    a missing parameter takes its default."""
    unknown = sorted(set(values) - set(NAMES))
    if unknown:
        raise ParameterError(f"unknown pipeline parameter(s) {unknown}; known: {list(NAMES)}")
    out: dict[str, Any] = {}
    for p in PARAMETERS:
        value = values.get(p.name, p.default)
        try:
            out[p.name] = int(float(value)) if p.type is int else p.type(value)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"pipeline parameter {p.name}={value!r} is not a {p.type.__name__}") from exc
    return out


def _setting_value(p: Parameter, value: Any) -> Any:
    if p.name == "sources":
        return [s.strip() for s in str(value).split(",") if s.strip()]
    if p.name == "interval":
        return [value]
    if p.type is str and value == "":
        return None  # unset: the setting's own default (e.g. MLflow under the data dir)
    return value


def pipeline_settings(values: Mapping[str, Any], *, ingest: bool = False) -> dict[str, Any]:
    """The settings every task of one run shares (``ingest``: plus what only the ingest task needs),
    from the pipeline's parameters; ``extra_settings`` is a JSON object of any other setting.

    Validated here, once, by building the settings object: a bad parameter fails the first task with the
    setting's name instead of the sixth.
    """
    params = typed(values)
    extra = json.loads(params["extra_settings"] or "{}")
    if not isinstance(extra, dict):
        raise ParameterError("extra_settings must be a JSON object")
    overrides: dict[str, Any] = dict(extra)
    for p in PARAMETERS:
        if p.setting is None or (p.name in INGEST_ONLY and not ingest):
            continue
        value = _setting_value(p, params[p.name])
        group, _, field = p.setting.partition(".")
        if field:
            overrides[group] = {**overrides.get(group, {}), field: value}
        elif value is not None or p.name in INGEST_ONLY:  # no exports folder given: none, whatever the env says
            overrides[group] = value
    with tempfile.TemporaryDirectory() as tmp:
        load_settings(data_dir=tmp, **overrides)  # raises ConfigError naming the bad setting
    return json.loads(json.dumps(overrides, default=str))


def local_values(settings: Settings) -> dict[str, Any]:
    """Every parameter as these settings would set it: how a local run fills the ones it is not given."""
    values: dict[str, Any] = {}
    for p in PARAMETERS:
        value: Any = p.default
        if p.setting is not None:
            value = settings
            for part in p.setting.split("."):
                value = getattr(value, part)
            if isinstance(value, list):
                value = ",".join(str(v) for v in value) if p.name == "sources" else value[0]
            value = "" if value is None else value
        values[p.name] = value
    return typed({**values, "data_root": settings.data_dir, "model_store": serving_store(settings)})
