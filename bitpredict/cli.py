"""The ``bitpredict`` command: the one entry point for DVC stages, containers and people.

Each pipeline stage is a sub-command that loads the settings, calls one ``bitpredict`` function and
prints a one-line summary. A bad setting or bad input ends with a clear message and exit code 2; any other
failure with one line and exit code 1 — never a traceback (``BITPREDICT_LOG_LEVEL=DEBUG`` shows the
traceback for a developer).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

from bitpredict import __version__, storage
from bitpredict.config import ConfigError, Settings, get_settings
from bitpredict.data.schemas import SCHEMAS, SchemaError, validate
from bitpredict.data.sources import SOURCE_NAMES
from bitpredict.errors import BitPredictError
from bitpredict.log import configure_logging
from bitpredict.pipeline.stage_table import FEATURES, PROCESSED, RAW, data_path, serving_store


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else ""


class _OneLineErrors(typer.Typer):
    """A Typer app whose unexpected failures end with one line (what failed, what to do), not a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except SystemExit:
            raise
        except KeyboardInterrupt:
            typer.secho("interrupted", err=True)
            raise SystemExit(130) from None
        except BitPredictError as exc:  # refused on purpose: its message is the whole story
            logging.getLogger("bitpredict.cli").debug("command failed", exc_info=True)
            typer.secho(f"error: {_first_line(exc)}", fg=typer.colors.RED, err=True)
            raise SystemExit(1) from None
        except Exception as exc:
            logging.getLogger("bitpredict.cli").debug("command failed", exc_info=True)
            typer.secho(
                f"error: {type(exc).__name__}: {_first_line(exc)} (BITPREDICT_LOG_LEVEL=DEBUG shows the details)",
                fg=typer.colors.RED,
                err=True,
            )
            raise SystemExit(1) from None


app = _OneLineErrors(
    name="bitpredict",
    help="BitPredict: Bitcoin price forecasting pipeline (ingest → clean → indicators → sentiment → merge → "
    "train → evaluate → register).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")
stages_app = typer.Typer(help="The stage table (bitpredict/pipeline/stage_table.py) and what is generated from it.")
app.add_typer(stages_app, name="stages", no_args_is_help=True)

log = logging.getLogger("bitpredict.cli")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"bitpredict {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Load and check the settings once, before any sub-command runs."""
    if ctx.resilient_parsing:  # shell completion / --help: do nothing
        return
    settings = _settings_or_exit()
    configure_logging(settings.log_level, settings.log_format)
    ctx.obj = settings


def _settings_or_exit() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


def fail(message: str) -> None:
    """End a command with a one-line error (exit code 2) instead of a traceback."""
    log.debug("command failed", exc_info=True)
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings as JSON (secrets masked)."""
    settings: Settings = ctx.obj
    shown = settings.public_dict()
    shown["derived"] = {
        "raw_dir": data_path(settings, RAW),
        "processed_dir": data_path(settings, PROCESSED),
        "features_path": data_path(settings, FEATURES),
    }
    try:
        shown["derived"]["tracking_uri"] = settings.tracking_uri
    except ConfigError as exc:
        shown["derived"]["tracking_uri"] = f"<error: {exc}>"
    typer.echo(json.dumps(shown, indent=2))


@app.command("validate")
def validate_cmd(
    path: Annotated[str, typer.Argument(help="A CSV or parquet file (local or gs://).")],
    schema: Annotated[str, typer.Option(help=f"One of {sorted(SCHEMAS)}.")] = "raw_market",
    quarantine: Annotated[
        Path | None, typer.Option(help="Write the rejected rows with their reasons here (parquet).")
    ] = None,
) -> None:
    """Check a table against one of BitPredict's column contracts and report every rejected row."""
    if schema not in SCHEMAS:
        fail(f"unknown schema {schema!r}; choose one of {sorted(SCHEMAS)}")
    try:
        df = storage.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
        result = validate(df, SCHEMAS[schema])
    except (FileNotFoundError, storage.StorageError, SchemaError, pd.errors.ParserError) as exc:
        fail(f"{path}: {exc}")
        return
    typer.echo(f"{path}: {len(result.valid)} valid, {result.n_rejected} rejected")
    for reason, count in sorted(result.reasons.items(), key=lambda kv: -kv[1]):
        typer.echo(f"  {count:6d}  {reason}")
    if quarantine is not None and result.n_rejected:
        storage.write_parquet(result.quarantine, quarantine)
        typer.echo(f"rejected rows written to {quarantine}")


@app.command("ingest")
def ingest_cmd(
    ctx: typer.Context,
    source: Annotated[
        list[str] | None,
        typer.Option(
            "--source",
            "-s",
            help=f"{'|'.join(SOURCE_NAMES)} (repeatable; default: setting ingest_sources).",
        ),
    ] = None,
    interval: Annotated[list[str] | None, typer.Option("--interval", "-i", help="1d or 1h (repeatable).")] = None,
    since: Annotated[
        str | None, typer.Option(help="Oldest day to backfill to (YYYY-MM-DD); default from settings.")
    ] = None,
    path: Annotated[
        list[str] | None, typer.Option("--path", help="Files to import (files source); default: BITPREDICT_FILES_DIR.")
    ] = None,
    preset: Annotated[str | None, typer.Option(help="Layout of the files (default: detected from the header).")] = None,
) -> None:
    """Fetch what is missing from each source into the raw store (incremental, idempotent, page by page)."""
    from tqdm import tqdm

    from bitpredict.data.ingest import run_ingest

    settings: Settings = ctx.obj
    sources = source or list(settings.ingest_sources)
    unknown = [s for s in sources if s not in SOURCE_NAMES]
    if unknown:
        fail(f"unknown source(s) {unknown}; choose from {list(SOURCE_NAMES)}")
    bad_intervals = [i for i in interval or [] if i not in ("1d", "1h")]
    if bad_intervals:
        fail(f"unknown interval(s) {bad_intervals}; choose 1d or 1h")
    try:
        start = pd.Timestamp(since, tz="UTC") if since else None
    except ValueError:
        fail(f"--since {since!r} is not a date (YYYY-MM-DD)")
        return
    with tqdm(desc="ingest", unit="page", disable=None) as bar:
        summaries = run_ingest(
            settings, sources, intervals=interval or settings.ingest_intervals, since=start, files=path, preset=preset,
            on_page=lambda _rows: bar.update(1),
        )  # fmt: skip
    for summary in summaries:
        typer.echo(summary.line())
    if any(not s.ok for s in summaries):
        raise typer.Exit(code=1)


def _run_stage(what: str, stage: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one stage function; input problems end with one line, not a traceback (exit 2). Any other
    exception — a bug — goes to the one-line handler with its type named (exit 1)."""
    try:
        return stage()
    except (FileNotFoundError, BitPredictError) as exc:
        fail(f"{what}: {exc}")
        raise AssertionError("unreachable") from None


@app.command("clean")
def clean_cmd(
    ctx: typer.Context,
    interval: Annotated[list[str] | None, typer.Option("--interval", "-i", help="1d and/or 1h (default 1d).")] = None,
) -> None:
    """Raw bars from every source → one gap-free UTC series per interval, with a cleaning report."""
    from bitpredict.data.clean import run_clean

    for one in interval or ["1d"]:
        if one not in ("1d", "1h"):
            fail(f"unknown interval {one!r}; choose 1d or 1h")
        report = _run_stage("clean", lambda one=one: run_clean(ctx.obj, one))
        typer.echo(
            f"clean {one}: {report['rows']} bars {report['first'][:10]} → {report['last'][:10]}, "
            f"imputed={report['bars_imputed']} outliers={report['outliers']['flagged']} "
            f"sources={report['bars_per_source']}"
        )


@app.command("indicators")
def indicators_cmd(ctx: typer.Context) -> None:
    """Technical indicators on the clean daily series (no look-ahead)."""
    from bitpredict.features.indicators import run_indicators

    report = _run_stage("indicators", lambda: run_indicators(ctx.obj))
    typer.echo(
        f"indicators: {report['rows']} rows, {len(report['columns'])} indicator columns, warm-up {report['warmup']}"
    )


@app.command("sentiment")
def sentiment_cmd(ctx: typer.Context) -> None:
    """Score news and tweets (VADER + FinBERT, cached) and aggregate them per UTC day."""
    from bitpredict.features.sentiment import SentimentModelError, run_sentiment

    try:
        meta = _run_stage("sentiment", lambda: run_sentiment(ctx.obj))
    except SentimentModelError as exc:
        fail(str(exc))
        return
    typer.echo("sentiment: " + ", ".join(f"{k}={v}" for k, v in meta.items() if not isinstance(v, dict | list)))


@app.command("merge")
def merge_cmd(ctx: typer.Context) -> None:
    """Indicators + daily sentiment + next-day targets → the features table (where: the stage table's FEATURES)."""
    from bitpredict.features.merge import run_merge

    meta = _run_stage("merge", lambda: run_merge(ctx.obj))
    typer.echo(
        f"merge: {meta['rows']} rows ({meta['labelled_rows']} labelled) {meta['first'][:10]} → {meta['last'][:10]}, "
        f"{len(meta['feature_columns'])} features → {data_path(ctx.obj, FEATURES)}"
    )


@app.command("train")
def train_cmd(ctx: typer.Context) -> None:
    """Fit the LSTM with attention on all labelled days; export a SavedModel; log the run to MLflow."""
    from bitpredict.forecast.train import run_train

    report = _run_stage("train", lambda: run_train(ctx.obj))
    typer.echo(
        f"train: {report['rows']} days × {report['features']} features, window {report['window']}, "
        f"{report['epochs_run']} epochs (best {report['best_epoch']}, val loss {report['best_val_loss']:.4f}) → "
        f"{report['model_dir']} (MLflow run {report['run_id']})"
    )


@app.command("evaluate")
def evaluate_cmd(
    ctx: typer.Context,
    doc: Annotated[
        Path | None,
        typer.Option("--doc", help="Also write the results table into this page (docs/forecasting.md)."),
    ] = None,
) -> None:
    """Walk-forward backtest of the network and every baseline (probabilistic and point) on the same days."""
    from bitpredict.evaluation.evaluate import run_evaluate
    from bitpredict.evaluation.report import markdown_table, write_results

    result = _run_stage("evaluate", lambda: run_evaluate(ctx.obj, progress=lambda m: typer.echo(f"evaluate: {m}")))
    table = markdown_table(result, result["decision"])
    typer.echo(table)
    if doc is not None:
        _run_stage("evaluate", lambda: write_results(doc, table) or {})
        typer.echo(f"evaluate: results table written into {doc}")


@app.command("ablation")
def ablation_cmd(
    ctx: typer.Context,
    doc: Annotated[
        Path | None,
        typer.Option("--doc", help="Also write the ablation tables into this page (docs/forecasting.md)."),
    ] = None,
    section: Annotated[
        list[str] | None,
        typer.Option("--section", "-s", help="recipe, year_before, sentiment (default all; others kept from before)"),
    ] = None,
) -> None:
    """What each change to the network recipe is worth, walk-forward (minutes per variant)."""
    from bitpredict.docs_blocks import replace_block
    from bitpredict.evaluation.ablation import SECTIONS, markdown, run_ablation

    chosen = tuple(section or SECTIONS)
    result = _run_stage(
        "ablation", lambda: run_ablation(ctx.obj, progress=lambda m: typer.echo(f"ablation: {m}"), sections=chosen)
    )
    text = markdown(result)
    typer.echo(text)
    if doc is not None:
        _run_stage("ablation", lambda: replace_block(doc, "ablation", text) or {})
        typer.echo(f"ablation: tables written into {doc}")


@app.command("backtest")
def backtest_cmd(
    ctx: typer.Context,
    since: Annotated[str, typer.Option("--since", help="First forecast day (e.g. 2020-05-01).")],
    seeds: Annotated[int, typer.Option("--seeds", min=1, max=10, help="Network seeds (their spread is reported).")] = 3,
    network: Annotated[bool, typer.Option("--network/--no-network", help="Include the network (slow).")] = True,
    doc: Annotated[
        Path | None, typer.Option("--doc", help="Also write the tables into this page (docs/forecasting.md).")
    ] = None,
) -> None:
    """Rolling-origin evaluation from --since to the last day, per year and overall (opt-in; minutes to an hour)."""
    from bitpredict.evaluation.rolling import markdown, run_rolling, write_block

    result = _run_stage(
        "backtest",
        lambda: run_rolling(ctx.obj, since, seeds, network, progress=lambda m: typer.echo(f"backtest: {m}")),
    )
    text = markdown(result)
    typer.echo(text)
    out = ctx.obj.path("reports", "backtest")
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "rolling.json").write_text(json.dumps(result, indent=2, default=str))
    (Path(out) / "rolling.md").write_text(text)
    if doc is not None:
        write_block(str(doc), text)
        typer.echo(f"backtest: tables written into {doc}")


@app.command("register")
def register_cmd(
    ctx: typer.Context,
    rollback: Annotated[
        bool,
        typer.Option(
            "--rollback",
            help="Serve and publish the champion's predecessor again (the store, the alias, the manifest).",
        ),
    ] = False,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (required with --rollback; recorded).")] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who rolls back (default: BITPREDICT_ACTOR, else the login name).")
    ] = None,
) -> None:
    """Register the evaluated candidate in the MLflow registry; promote it to champion if it earns it."""
    from bitpredict.operations.registry import RegistryError, register
    from bitpredict.operations.rollback import rollback as do_rollback

    if rollback and not (reason or "").strip():
        fail("register --rollback: say why with --reason '…' (the registry records who rolled back and why)")
        return
    try:
        result = _run_stage(
            "register", lambda: do_rollback(ctx.obj, reason=reason or "", by=by) if rollback else register(ctx.obj)
        )
    except RegistryError as exc:
        fail(f"register: {exc}")
        return
    if rollback:
        typer.echo(
            f"register: champion of {result['model']} rolled back v{result['from']} → v{result['champion']} "
            f"by {result['by']}: {result['reason']}"
        )
        if result["withdrawn"]:
            typer.echo(f"register: withdrawn from the model store: versions {result['withdrawn']}")
    else:
        state = "promoted to champion" if result["promoted"] else "not promoted"
        kind = result.get("kind", "lstm")
        typer.echo(f"register: {result['model']} v{result['version']} ({kind}) {state}: {result['reason']}")
    if result.get("exported_to"):
        typer.echo(f"register: serving copy at {result['exported_to']}")


def _champion_dir(settings: Settings) -> str:
    """The published champion's serving folder, else the registry's champion; one line when there is none."""
    from bitpredict.forecast.artifact import METADATA_FILE
    from bitpredict.operations.publish import champion_dir

    published = champion_dir(settings)
    if published and storage.exists(storage.join(published, METADATA_FILE)):
        return published
    from bitpredict.pipeline.tracking import champion_info

    try:
        champion = champion_info(settings)
    except Exception as exc:  # the registry is unreachable or empty: say so in one line
        fail(f"no published champion and the registry at {settings.tracking_uri} cannot be read ({exc})")
        raise AssertionError("unreachable") from None
    if champion is None:
        fail("no champion yet: run `make run` first, or pass --model-dir")
    return storage.join(serving_store(settings), settings.registered_model_name, str(champion["version"]))


@app.command("drift")
def drift_cmd(
    ctx: typer.Context,
    model_dir: Annotated[
        str | None, typer.Option("--model-dir", help="Model to check (default: the published champion).")
    ] = None,
    trigger_command: Annotated[
        str | None,
        typer.Option(
            "--trigger-command",
            help="Command that reruns on drift, e.g. 'python -m pipelines.rerun' (what `make drift` passes); "
            "without it the check reports and decides only.",
        ),
    ] = None,
    no_trigger: Annotated[bool, typer.Option("--no-trigger", help="Report and decide, never rerun.")] = False,
) -> None:
    """Compare recent inputs with the training reference (Evidently); on drift run the caller's rerun command."""
    from bitpredict.forecast.serving import ModelMismatch
    from bitpredict.operations.drift_check import command_trigger, run_drift

    settings = ctx.obj
    model_dir = model_dir or _champion_dir(settings)
    trigger = None if no_trigger or not trigger_command else command_trigger(trigger_command, settings)
    try:
        with warnings.catch_warnings():  # Evidently's statistics warn on constant columns; the report says it
            warnings.simplefilter("ignore", RuntimeWarning)
            result = _run_stage("drift", lambda: run_drift(settings, model_dir, trigger))
    except ModelMismatch as exc:
        fail(f"drift: {exc}")
        return
    for line in drift_lines(result):
        typer.echo(line)
    rerun = result.get("rerun")
    if rerun is not None:
        if rerun.get("ok"):
            changed = {True: "a new champion", False: "the same champion", None: "champion decided when it ends"}
            typer.echo(f"drift: TRIGGERED {rerun.get('mode')} rerun run_id={rerun.get('run_id')} "
                       f"({changed[rerun.get('new_champion')]})")  # fmt: skip
        else:
            typer.echo(f"drift: TRIGGERED a rerun, which failed: {rerun.get('error')}", err=True)
            raise typer.Exit(code=1)


def drift_lines(result: dict[str, Any]) -> list[str]:
    """What ``bitpredict drift`` prints: the forecast monitor, the live calibration, the input drift, the decision."""
    monitor = result.get("forecast_monitor") or {}
    calibration = result.get("live_calibration") or {}
    lines = []
    if monitor.get("days"):
        tails = ", ".join(f"{name} {t['observed']:.0%} (lowest Kupiec p {t['min_kupiec_p']:.2g}, cut {t['cut']:.2g})"
                          for name, t in (monitor.get("tails") or {}).items())  # fmt: skip
        cusum = monitor.get("cusum") or {}
        cusum_text = (f"CUSUM {cusum['max']:.2f} / {cusum['threshold']:.2f}" if "max" in cusum
                      else cusum.get("skipped", "no CUSUM"))  # fmt: skip
        lines.append(
            f"monitor: {monitor['days']} closed forecasts {monitor['first_day']} → {monitor['last_day']}: "
            f"misses {tails}; pinball vs persistence + EWMA {cusum_text} (size {monitor['size']})"
        )
    if "coverage_80" in calibration:
        levels = ", ".join(f"{k}→{float(v):.3f}" for k, v in (calibration.get("levels") or {}).items())
        lines.append(
            f"calibration: 80 % coverage {calibration['coverage_80']:.1%} "
            f"(with ACI {calibration['coverage_80_aci']:.1%}) over the last {calibration['days']} days; "
            f"served levels {levels}"
        )
    horizons = (result.get("forecast_monitor") or {}).get("horizons") or {}
    if horizons:
        lines.append(
            "horizons: 80 % coverage of the closed forecasts "
            + "; ".join(
                f"{h} d {f['coverage_80']:.1%} of {f['closed']} (Kupiec p {f['kupiec_p']:.2f} on {f['independent']} "
                "independent)"
                if f.get("closed")
                else f"{h} d none closed yet"
                for h, f in horizons.items()
            )
        )
    share = "n/a" if result["share"] is None else f"{result['share']:.0%}"
    cut = "" if result.get("share_cut") is None else f" (cut {result['share_cut']:.0%})"
    lines.append(
        f"drift: model v{result['model_version']}, input drift {share}{cut} of columns over {result['current_rows']} "
        f"days against {result.get('input_reference')}: " + "; ".join(result["reasons"])
    )
    return lines


@app.command("alert-receiver")
def alert_receiver_cmd(
    ctx: typer.Context,
    rerun_command: Annotated[
        str,
        typer.Option("--rerun-command", help="The rerun to start, e.g. 'python -m pipelines.rerun' (as for drift)."),
    ],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 in a pod).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 9095,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir", help="Local folder for state.json and decisions.jsonl (default: <data dir>/reports/alerts)."
        ),
    ] = None,
    cooldown_hours: Annotated[
        float | None,
        typer.Option("--cooldown-hours", min=0, help="No two reruns within this (default: drift.cooldown_hours)."),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File with the bearer token Alertmanager sends "
            "(or $BITPREDICT_ALERT_RECEIVER_TOKEN); without one, any caller is accepted.",
        ),
    ] = None,
) -> None:
    """Alertmanager's webhook: a firing action="rerun" alert group starts one rerun (cooldown shared with drift)."""
    import os
    from datetime import timedelta

    from bitpredict.operations.alert_receiver import AlertReceiver, serve
    from bitpredict.operations.drift_check import command_trigger
    from bitpredict.operations.monitor_report import drift_dir

    settings: Settings = ctx.obj
    folder = str(state_dir) if state_dir else settings.path("reports", "alerts")
    if storage.is_gcs(folder):
        fail(f"the receiver's state dir must be a local folder, not {folder}: pass --state-dir")
    token = token_file.read_text().strip() if token_file else os.environ.get("BITPREDICT_ALERT_RECEIVER_TOKEN")
    hours = settings.drift.cooldown_hours if cooldown_hours is None else cooldown_hours
    receiver = AlertReceiver(
        command_trigger(rerun_command, settings), folder, timedelta(hours=hours),
        drift_state_uri=storage.join(drift_dir(settings), "state.json"),
    )  # fmt: skip
    typer.echo(f"alert receiver on http://{host}:{port}/alerts (cooldown {hours:g} h, state in {folder})")
    serve(receiver, host, port, token or None)


@app.command("replay")
def replay_cmd(
    ctx: typer.Context,
    data: Annotated[str, typer.Option("--data", help="Folder of CSV/parquet exports (e.g. ../shared/data).")],
    start: Annotated[str, typer.Option("--from", help="First replayed UTC day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last replayed UTC day, YYYY-MM-DD (inclusive).")],
    fresh: Annotated[bool, typer.Option("--fresh", help="Start over instead of continuing.")] = False,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Network epochs per rerun (recipe).")] = 5,
    test_days: Annotated[
        int, typer.Option("--test-days", min=30, help="Walk-forward days per rerun (365: the switching rule's year).")
    ] = 365,
    retrain_every: Annotated[
        int,
        typer.Option("--retrain-every", min=0, help="Also rerun every N days since the last training (0: drift only)."),
    ] = 0,
    doc: Annotated[
        Path | None,
        typer.Option("--doc", help="Fill this page's replay block (docs/monitoring.md; plot beside it)."),
    ] = None,
    report_only: Annotated[
        bool,
        typer.Option("--report-only", help="Rewrite the report (and --doc) from the days already replayed."),
    ] = False,
) -> None:
    """Replay the operating loop day by day over history: forecast, close, drift check, rerun.

    (``bitpredict.operations.replay``)
    """
    import warnings as _warnings

    from bitpredict.operations.replay import Runner, check_data, parse_day
    from bitpredict.operations.replay_report import PLOT, write_block
    from bitpredict.operations.replay_state import Replay, ReplayError, ReplayRecipe
    from bitpredict.runtime import quiet_tensorflow

    quiet_tensorflow()  # the replay trains in-process: TensorFlow's import-time screenful would bury the progress

    settings = ctx.obj
    try:
        replay = Replay(
            check_data(data), parse_day(start, "--from"), parse_day(end, "--to"), settings,
            ReplayRecipe(epochs=epochs, test_days=test_days), retrain_every,
        )  # fmt: skip
        # The stages' INFO lines every day (and Keras's "Assets written to" at each rerun's export) would bury
        # the progress: at the default level only their errors pass while the replay runs.
        chatty = [logging.getLogger(name) for name in ("bitpredict", "tensorflow")]
        quiet = chatty[0].getEffectiveLevel() == logging.INFO
        levels = [logger.level for logger in chatty]
        if quiet:
            for logger in chatty:
                logger.setLevel(logging.ERROR)
        try:
            with _warnings.catch_warnings():  # Evidently's statistics warn on constant columns; the report says it
                _warnings.simplefilter("ignore", RuntimeWarning)
                runner = Runner(replay, lambda line: typer.echo(line))
                runner.report_only() if report_only else runner.run(fresh=fresh)
        finally:
            for logger, level in zip(chatty, levels, strict=True):
                logger.setLevel(level)
    except ReplayError as exc:
        fail(f"replay: {exc}")
        return
    summary = json.loads((replay.report_dir / "summary.json").read_text())
    skill = "n/a" if summary["live_skill"] is None else f"{summary['live_skill']:+.4f}"
    by_trigger = summary["reruns"].get("by_trigger", {})
    typer.echo(
        f"replay: {summary['days']} days, {summary['forecasts']} forecasts, live skill {skill}, "
        f"{summary['drift_episodes']['count']} drift episodes, {summary['reruns']['count']} reruns "
        f"({by_trigger.get('drift', summary['reruns']['count'])} on drift, {by_trigger.get('schedule', 0)} scheduled), "
        f"{len([c for c in summary['champion_changes'] if not c.get('initial') and c.get('switched', True)])} champion "
        f"changes → "
        f"{replay.report_dir}"
    )
    if doc is not None:
        command = f"make replay DATA={data} FROM={start} TO={end}"
        command += f' REPLAY_ARGS="--retrain-every {retrain_every}"' if retrain_every else ""
        image = write_block(doc, summary, replay.report_dir / PLOT, command)
        typer.echo(f"replay: {doc} updated (plot {image})")


if __name__ == "__main__":  # pragma: no cover
    app()


@stages_app.command("dvc")
def stages_dvc_cmd(
    check: Annotated[bool, typer.Option("--check", help="Only say whether dvc.yaml is stale (exit 2 if so).")] = False,
) -> None:
    """Generate dvc.yaml from the stage table (the file is never edited by hand)."""
    from bitpredict.pipeline.stage_table import DVC_YAML, write_dvc_yaml

    stale = write_dvc_yaml(DVC_YAML, check=check)
    if check and stale:
        fail(f"{DVC_YAML} is stale: run `bitpredict stages dvc` and commit it")
    typer.echo(f"{DVC_YAML}: {'written' if stale else 'up to date'}")
