"""One typed settings object for every stage, container and test.

Precedence (lowest to highest): defaults in this file < ``params.yaml`` < environment variables.
Environment variables are ``BITPREDICT_<FIELD>`` (nested groups with ``__``, e.g.
``BITPREDICT_MODEL__WINDOW=30``); the MLflow tracking URI also honours the standard
``MLFLOW_TRACKING_URI`` so MLflow's own tools and ours agree.

Why one object: DVC stages, KFP components, the KServe transformer and the UI must read the same
paths and URLs, and a typo must fail at start-up with the setting's name, not deep in a stage.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.exceptions import SettingsError

from bitpredict import __version__, storage
from bitpredict.errors import BitPredictError
from bitpredict.log import register_secret

ENV_PREFIX = "BITPREDICT_"
PARAMS_ENV = "BITPREDICT_PARAMS"
DEFAULT_PARAMS_FILE = "params.yaml"

DEFAULT_RSS_FEEDS = [
    "https://www.coindesk.com/arc/outboundfeeds/rss/",
    "https://cointelegraph.com/rss",
    "https://bitcoinmagazine.com/.rss/full/",
    "https://decrypt.co/feed",
    "https://www.theblock.co/rss.xml",
]


# The source names a setting may hold. The registry (``bitpredict.data.sources.SOURCES``) has one row per name and
# reads these settings; the settings never import it (a test holds the two lists equal).
SourceName = Literal["binance", "cryptocompare", "coingecko", "rss", "twitter", "files"]
# What `bitpredict ingest` runs when none is named: every public API (twitter skips itself without a token).
DEFAULT_SOURCES: tuple[SourceName, ...] = ("binance", "cryptocompare", "coingecko", "rss", "twitter")


class ConfigError(BitPredictError, ValueError):
    """A setting has a bad value; the message names the setting and where it came from."""


class _Group(BaseModel):
    """Base for nested groups: unknown keys are typos, so they are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSettings(_Group):
    """Hyperparameters of the LSTM-with-attention model (see bitpredict.forecast.network)."""

    window: int = Field(30, ge=2, le=365, description="Days of history per sample (W).")
    lstm_units: list[int] = Field(default_factory=lambda: [64, 32], min_length=1)
    attention: Literal["additive", "dot"] = "additive"
    dense_units: int = Field(32, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    batch_size: int = Field(64, ge=1)
    epochs: int = Field(50, ge=1)
    patience: int = Field(8, ge=1, description="Early-stopping patience on the validation block.")
    validation_days: int = Field(180, ge=7)
    test_days: int = Field(365, ge=30, description="Walk-forward evaluation span (held out).")
    quantiles: list[float] = Field(
        default_factory=lambda: [0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95],
        min_length=3,
        description="Quantile levels every model forecasts; must hold 0.1, 0.5 and 0.9 (the served 80 % interval).",
    )
    horizons: list[int] = Field(
        default_factory=lambda: [1, 7, 30],
        min_length=1,
        description="Days ahead every model forecasts (the quantiles of log(close[t+h] / close[t])); must start "
        "with 1, the next-day forecast old clients read.",
    )
    seed: int = 42
    use_sentiment: bool = Field(True, description="Feed the daily news/tweet aggregates to the model.")
    refit_every_days: int = Field(
        92, ge=7, description="Walk-forward: the model and the baselines are refitted at the start of each block."
    )
    target_scaling: Literal["volatility", "constant"] = Field(
        "volatility",
        description="volatility: train on return / ewma_vol (the day's EWMA volatility) and scale back in the "
        "exported model; constant: divide by the training returns' standard deviation.",
    )
    ensemble: int = Field(1, ge=1, le=10, description="Seeds fitted and averaged (quantile by quantile).")
    exclude_features: list[str] = Field(
        default_factory=list, description="Model input columns left out (ablations); the rest keep their order."
    )
    baselines: list[Literal["ewma", "empirical", "garch", "har"]] = Field(
        default_factory=lambda: ["ewma", "empirical", "garch", "har"],
        description="Probabilistic baselines fitted, evaluated and exported beside the network.",
    )
    combination: list[Literal["ewma", "empirical", "garch", "har"]] = Field(
        default_factory=lambda: ["ewma", "empirical", "garch", "har"],
        description="Members of the `combo` model (equal-weight average of their quantiles), fixed in advance; "
        "empty: no combination. Each must also be in `baselines`.",
    )

    @field_validator("baselines")
    @classmethod
    def _naive_baseline_kept(cls, value: list[str]) -> list[str]:
        # The champion must never be worse than naive: EWMA (persistence + RiskMetrics) is always a contender.
        if "ewma" not in value:
            raise ValueError("must include 'ewma', the naive probabilistic baseline the champion is measured against")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _combination_members_fitted(self) -> ModelSettings:
        missing = [m for m in self.combination if m not in self.baselines]
        if missing:
            raise ValueError(f"combination members {missing} are not in baselines {self.baselines}")
        return self

    @field_validator("horizons")
    @classmethod
    def _horizons_start_at_one(cls, value: list[int]) -> list[int]:
        if value[0] != 1 or any(b <= a for a, b in itertools.pairwise(value)) or value[-1] > 90:
            raise ValueError("horizons must start with 1 and increase, up to 90 days")
        return value

    @field_validator("lstm_units")
    @classmethod
    def _units_positive(cls, value: list[int]) -> list[int]:
        if any(u < 1 for u in value):
            raise ValueError("every LSTM layer needs at least 1 unit")
        return value

    @field_validator("quantiles")
    @classmethod
    def _quantiles_in_range(cls, value: list[float]) -> list[float]:
        if any(not 0 < q < 1 for q in value) or sorted(value) != value:
            raise ValueError("quantiles must be increasing and strictly between 0 and 1")
        missing = [q for q in (0.1, 0.5, 0.9) if q not in value]
        if missing:
            raise ValueError(f"quantiles must include {missing}: the median and the served 80 % interval")
        return value


class CleanSettings(_Group):
    """How raw bars from several sources become one series (see bitpredict.data.clean)."""

    daily_priority: list[str] = Field(
        default_factory=lambda: ["yahoo", "binance", "coingecko", "cryptocompare"],
        min_length=1,
        description="Raw daily sources, most trusted first; a day missing in one is filled from the next. "
        "Hourly sources (e.g. cryptocompare 1h) are aggregated to daily bars and used after these.",
    )
    hourly_priority: list[str] = Field(default_factory=lambda: ["binance", "cryptocompare"], min_length=1)
    max_fill_gap: int = Field(3, ge=0, description="Longest run of missing bars filled (forward fill, flagged).")
    outlier_mad_threshold: float = Field(10.0, gt=0, description="|log return - median| / MAD above this = outlier.")
    drop_outliers: bool = Field(False, description="Remove flagged outlier bars instead of only flagging them.")


class SentimentSettings(_Group):
    """Text scoring (see bitpredict.features.sentiment)."""

    finbert_model: str = Field("ProsusAI/finbert", min_length=1, description="Hub id or local directory.")
    # The commit of huggingface.co/ProsusAI/finbert the hub id is loaded at (a local directory ignores it). Taken
    # from public projects that pin it (2020-12-24, pytorch_model.bin); not checked against the Hub from this sandbox.
    finbert_revision: str | None = Field(
        "4556d13015211d73dccd3fdd39d39232506f3e43",
        pattern=r"^[0-9a-f]{40}$",
        description="Model repository commit for a hub id (a 40-hex sha; null follows main).",
    )
    finbert: Literal["required", "optional", "off"] = Field(
        "required", description="optional: fall back to VADER alone (recorded) when the model cannot load."
    )
    batch_size: int = Field(32, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"


class DriftSettings(_Group):
    """When live inputs have drifted enough from the training reference to retrain (``operations.monitor``)."""

    share_threshold: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of drifted columns that counts as drift when the share cannot be calibrated (another "
        "method, or a reference too short); K-S calibrates it on the reference's own windows.",
    )
    monitor_size: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="Test size of each forecast-monitor check (per-tail exceedances, the pinball CUSUM): its "
        "false-alarm probability per check on a calibrated model (bitpredict.operations.forecast_monitor).",
    )
    calibration_days: int = Field(
        250, ge=30, description="Closed forecasts before the monitored window that calibrate the pinball CUSUM."
    )
    aci_gamma: float = Field(
        0.01,
        gt=0,
        lt=0.5,
        description="Adaptive conformal step per tail (Gibbs & Candès 2021); 0.01 was chosen on 2020-01 → 2024-11 "
        "before any replay window that reports it (issue 28's measurement), not on the evaluation window.",
    )
    reference_days: int = Field(
        365, ge=60, description="Input drift: the window is compared with the features table's days just before it."
    )
    input_window_days: int = Field(
        10,
        ge=5,
        description="Input drift: the last days compared (the calibration's block). A longer window dilutes a "
        "crash: a 60-day window ending 2020-03-31 showed no drifted column against 2019.",
    )
    cooldown_hours: float = Field(24.0, ge=0, description="At most one retraining trigger per cooldown.")
    window_days: int = Field(60, ge=7, description="Recent days (and served requests) compared with the reference.")
    min_rows: int = Field(20, ge=5, description="Fewer current rows than this: no verdict.")
    pushgateway_url: str | None = Field(None, description="Prometheus Pushgateway for the drift gauges (CronJob).")
    method: str = Field(
        "ks",
        description="Evidently stat test per column. K-S: a p-value, sound for a few dozen current rows; "
        "Evidently's default above 1,000 reference rows (normed Wasserstein, 0.1) flags sampling noise at that size.",
    )
    threshold: float = Field(
        0.05,
        gt=0,
        description="K-S: the share of the training history's own windows (same length) allowed to look this "
        "unusual — a column drifts when its p-value is below this quantile of theirs, never above this value "
        "itself (bitpredict.operations.monitor.calibrated_thresholds). Another method: its raw threshold, passed to "
        "Evidently.",
    )


class PromotionSettings(_Group):
    """The switching rule: when a challenger replaces the champion (``bitpredict.evaluation.backtest.decide``).

    The challenger is the best method on the ``selection_days`` before the evaluation window; it replaces the
    incumbent only when it is better on the evaluation window (``test_days``, days not used to choose it) by a
    one-sided HAC Diebold-Mariano test at ``switch_pvalue``. Refits of the incumbent's own recipe need no test.
    """

    selection_days: int = Field(
        365, ge=30, description="Days before the evaluation window on which the challenger is chosen."
    )
    switch_pvalue: float = Field(
        0.05, gt=0, lt=0.5, description="One-sided HAC-DM p-value below which a challenger replaces the incumbent."
    )
    min_confirmation_days: int = Field(
        365, ge=2, description="Fewest evaluation days on which a challenger may be confirmed (fewer: no switch)."
    )
    default_champion: str = Field(
        "combo",
        description="The pre-registered first champion of an empty registry (the combination: averaging beats "
        "picking on noise, Bates & Granger 1969; Timmermann 2006).",
    )


class HttpSettings(_Group):
    """How every source talks to its API (shared HTTP layer), nested as ``http`` (``BITPREDICT_HTTP__TIMEOUT_S``).

    The source modules take this section (and their URL and key), never the whole settings object.
    """

    timeout_s: float = Field(10.0, gt=0, description="Connect+read timeout per request.")
    max_retries: int = Field(5, ge=0, le=20, description="Retries on 5xx/429/connection errors.")
    backoff_base_s: float = Field(0.5, ge=0, description="First backoff; doubles per retry, with jitter.")
    backoff_max_s: float = Field(60.0, gt=0, description="Cap on one backoff and on Retry-After.")
    deadline_s: float = Field(
        60.0, gt=0, description="Overall limit on one request, body included (a server that trickles bytes ends)."
    )
    max_response_bytes: int = Field(
        32 * 1024 * 1024, gt=0, description="Largest response body read; a larger one stops the source."
    )
    max_pages: int = Field(
        1000, gt=0, description="Most pages one source fetches for one range in a run (a pager that never ends)."
    )
    rate_limit_per_s: dict[str, float] = Field(
        default_factory=lambda: {
            "coingecko": 0.2,  # public API: about 10-30 calls/min
            "cryptocompare": 1.0,
            "binance": 5.0,
            "rss": 2.0,
            "twitter": 0.2,
        },
        description="Client-side request rate per source (requests per second).",
    )

    @field_validator("rate_limit_per_s")
    @classmethod
    def _positive_rates(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if v <= 0}
        if bad:
            raise ValueError(f"rates must be > 0, got {bad}")
        return value


class Settings(BaseSettings):
    """Every path, URL, secret reference and hyperparameter BitPredict uses."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    # --- paths (local directory or gs://bucket/prefix) ---
    data_dir: str = Field("data", min_length=1, description="Root of raw/ interim/ processed/ …")

    # --- logging ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["kv", "json"] = "kv"

    # --- data sources ---
    coingecko_url: str = "https://api.coingecko.com/api/v3"
    cryptocompare_url: str = "https://min-api.cryptocompare.com"
    binance_url: str = "https://api.binance.com"
    twitter_url: str = "https://api.twitter.com"
    rss_feeds: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_RSS_FEEDS))
    twitter_query: str = "(bitcoin OR btc) lang:en -is:retweet"
    coingecko_api_key: SecretStr | None = None
    cryptocompare_api_key: SecretStr | None = None
    twitter_bearer_token: SecretStr | None = None
    files_dir: str | None = Field(None, description="Folder of CSV/parquet exports for the files source.")
    ingest_since: date = Field(date(2017, 1, 1), description="Oldest day the market sources backfill to.")
    ingest_sources: list[SourceName] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES),
        min_length=1,
        description="Sources `bitpredict ingest` runs when none is named.",
    )
    ingest_intervals: list[Literal["1d", "1h"]] = Field(default_factory=lambda: ["1d"], min_length=1)

    # --- tracking ---
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "BITPREDICT_MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="Defaults to a sqlite store under the data dir.",
    )
    registered_model_name: str = Field("bitpredict-lstm", pattern=r"^[A-Za-z0-9_.-]+$")
    experiment_name: str = Field("bitpredict", min_length=1, description="MLflow experiment of the runs.")
    transformer_url: str = Field("http://127.0.0.1:8080", description="The serving transformer (v2 REST), for the UI.")
    predictor_url: str = Field("http://127.0.0.1:8085", description="The predictor (v2 REST), for the UI health view.")
    components_image: str = Field(
        f"ghcr.io/bitpredict/bitpredict-components:{__version__}",
        pattern=r"^[a-z0-9.\-/:_@]+$",
        description="Image every KFP component runs on (built by `make images`, written into the compiled pipeline).",
    )
    model_store: str | None = Field(
        None, description="Champion export for serving: <store>/<name>/<version>/ (default data/models/serving)."
    )

    # --- groups ---
    http: HttpSettings = Field(default_factory=HttpSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    clean: CleanSettings = Field(default_factory=CleanSettings)
    sentiment: SentimentSettings = Field(default_factory=SentimentSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @field_validator("coingecko_url", "cryptocompare_url", "binance_url", "twitter_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return source_url(value).rstrip("/")

    @field_validator("rss_feeds", mode="before")
    @classmethod
    def _feeds_from_text(cls, value: Any) -> Any:
        # An env var holds one string: accept a JSON list as well as a comma-separated list.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON list: {exc}") from exc
            return [v.strip() for v in text.split(",") if v.strip()]
        return value

    @field_validator("rss_feeds")
    @classmethod
    def _feed_urls(cls, value: list[str]) -> list[str]:
        # checked here, not per feed at fetch time: a malformed URL (file://, no host) used to raise outside the
        # per-feed error handling and silently skip every feed after it
        return [source_url(v) for v in value]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # First wins: explicit arguments, then env vars, then mounted secret files, then params.yaml, the defaults.
        return (init_settings, env_settings, _SecretFilesSource(settings_cls), _ParamsYamlSource(settings_cls))

    def path(self, *parts: str) -> str:
        """A path (or gs:// URI) under the data dir; which path each stage's data has is the stage table's
        (``bitpredict.pipeline.stage_table.data_path``), not the settings'."""
        return storage.join(self.data_dir, *parts)

    @property
    def tracking_uri(self) -> str:
        """MLflow tracking URI; a local sqlite file under the data dir unless set."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if storage.is_gcs(self.data_dir):
            raise ConfigError(
                "MLFLOW_TRACKING_URI must be set when BITPREDICT_DATA_DIR is on GCS "
                "(a sqlite store cannot live in a bucket)"
            )
        return f"sqlite:///{Path(self.data_dir).resolve() / 'mlflow.db'}"

    def model_post_init(self, context: Any, /) -> None:
        """Every key this process holds is blanked from its log lines (``bitpredict.log.redact``)."""
        for name in SECRET_FIELDS:
            secret = getattr(self, name)
            if secret is not None:
                register_secret(secret.get_secret_value())

    def public_dict(self) -> dict[str, Any]:
        """All settings with secrets masked: safe to print or log."""
        return self.model_dump(mode="json")


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def source_url(value: str) -> str:
    """A data source's URL, refused unless ``https://`` with a host — or ``http://`` to this machine (local servers
    in tests, a local proxy). Why: the sources send API keys and bearer tokens; over plain HTTP any hop reads them.
    ``file://``, a URL without a host, or one carrying ``user:password@`` are refused when the settings load, so a
    typo fails the run at once instead of failing one feed at fetch time."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"{value!r}: expected https://host/…")
    if parts.username or parts.password:
        raise ValueError(f"{value!r}: credentials in a URL end up in logs; use the key settings")
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValueError(f"{value!r}: plain http:// only to 127.0.0.1/localhost; use https://")
    return value.strip()


SECRETS_DIR_ENV = "BITPREDICT_SECRETS_DIR"
DEFAULT_SECRETS_DIR = "/var/run/secrets/bitpredict"  # where the manifests and the KFP ingest task mount the keys
SECRET_FIELDS = ("coingecko_api_key", "cryptocompare_api_key", "twitter_bearer_token")


class _SecretFilesSource(PydanticBaseSettingsSource):
    """API keys from files in ``BITPREDICT_SECRETS_DIR`` (default ``DEFAULT_SECRETS_DIR`` when it exists): a mounted
    Kubernetes Secret, one file per key, named as the setting (``twitter_bearer_token``).

    Why files, not environment variables: a process's environment is inherited by every child (the drift job's
    rerun subprocess), shows in ``/proc/<pid>/environ`` and in crash dumps; a mounted file is read once, here.
    """

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        raise NotImplementedError  # __call__ is overridden

    def __call__(self) -> dict[str, Any]:
        folder = os.environ.get(SECRETS_DIR_ENV)
        if not folder:  # the default mount point, when a pod has it (a KFP task, the drift job)
            folder = DEFAULT_SECRETS_DIR if Path(DEFAULT_SECRETS_DIR).is_dir() else None
        if not folder:
            return {}
        root = Path(folder)
        if not root.is_dir():
            raise ConfigError(f"{SECRETS_DIR_ENV}={folder}: not a folder (mount the API-key Secret there)")
        found = {}
        for name in SECRET_FIELDS:
            path = root / name
            if path.is_file():
                text = path.read_text().strip()
                if text:
                    found[name] = text
        return found


class _ParamsYamlSource(PydanticBaseSettingsSource):
    """Reads ``params.yaml`` (or the file named by ``BITPREDICT_PARAMS``); DVC reads the same file."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        explicit = os.environ.get(PARAMS_ENV)
        self.path = Path(explicit or DEFAULT_PARAMS_FILE)
        self.required = explicit is not None

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        raise NotImplementedError  # __call__ is overridden; pydantic-settings never calls this then

    def __call__(self) -> dict[str, Any]:
        if not self.path.exists():
            if self.required:
                raise ConfigError(f"{PARAMS_ENV}={self.path}: file not found")
            return {}
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{self.path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{self.path}: top level must be a mapping of settings")
        return data


def _setting_name(loc: tuple[Any, ...]) -> str:
    dotted = ".".join(str(p) for p in loc)
    env = ENV_PREFIX + "__".join(str(p).upper() for p in loc[:2] if isinstance(p, str))
    return f"{dotted} ({env})"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one message that names each bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            value = err.get("input")
            shown = "<hidden>" if any("key" in str(p) or "token" in str(p) for p in loc) else repr(value)
            lines.append(f"  {_setting_name(loc)} = {shown}: {err['msg']}")
        raise ConfigError("invalid settings:\n" + "\n".join(lines)) from None
    except SettingsError as exc:  # an env var that should hold JSON (a list, a group) does not parse
        raise ConfigError(_describe_settings_error(exc)) from None


def _describe_settings_error(exc: SettingsError) -> str:
    match = re.search(r'field "(\w+)"', str(exc))
    field = match.group(1) if match else "?"
    suspects = sorted(n for n in os.environ if n.upper().startswith(ENV_PREFIX + field.upper()))
    cause = f": {exc.__cause__}" if exc.__cause__ else ""
    return f"invalid settings: {field} ({', '.join(suspects) or 'environment'}) is not valid JSON{cause}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, built once. Tests call ``get_settings.cache_clear()``."""
    return load_settings()
