"""Replay: the operating loop over real history, one UTC day at a time — what months of operation would do.

For each day *d* from ``start`` to ``end`` (inclusive):

1. **The clock.** The files source imports only the rows known at the end of *d* (``visible_until``: bars that
   opened and texts published before the next midnight); nothing later reaches the replay's tables. The stages
   (clean → indicators → sentiment → merge) then run in-process on what is visible, exactly as a daily run would.
2. **Close** the forecast made on *d − 1* for *d* against *d*'s realised close.
3. **Forecast** *d + 1* with the current champion through the serving code the v2 endpoint runs
   (``bitpredict.forecast.serving``: the request's inputs → ``parse_request`` → ``feature_window`` → the SavedModel's
   ``serving_default`` signature → ``forecast``), from the clean bars and the day's sentiment — the request a
   client (the UI) sends, made in-process instead of over HTTP.
4. **Drift check** (``bitpredict.operations.drift_check.run_drift``) on the served inputs of the recent days and the
   closed forecasts, with the replay's own drift state (episodes, cooldown). On a trigger the replay's rerun — passed
   in as the trigger — retrains on the data visible at *d*: train → evaluate → register, in-process, with the
   replay's recipe. A promoted model serves from *d + 1* on.
5. **Scheduled rerun** (``--retrain-every N``, off by default): when no rerun happened today and N days have
   passed since the champion was trained (the initial run, or the last rerun of either trigger, promoted or
   not), the same rerun runs with the trigger ``schedule`` — production retrains on a calendar as well as on
   drift, and a calm stretch (no drift episode) would otherwise never exercise the champion-change path.
   Both triggers call ``Runner.rerun``: one code path, one promotion rule (the registry's same-window one).

**The initial champion**: the replay's own registry is empty the first time, so before ``start`` it runs the
same recipe on the data visible at ``start − 1`` and promotes the winner (a baseline or the network: the
champion is whichever is best, as in every run). It never uses, reads or overwrites the user's published run.

**Where things live**: everything the replay writes is under ``<data dir>/replay/`` — its raw tables, stages,
MLflow registry (sqlite) and model store (``work/``) and its progress (``state.json``) — and the report goes to
``<data dir>/reports/replay/`` (``forecasts.parquet``, ``drift.parquet``, ``summary.json``, ``replay.png``;
``bitpredict.operations.replay_report``). What a replay is and its saved state are
``bitpredict.operations.replay_state``, which both this loop and the report import (state ← report ← loop).

**Resumable**: the state is saved after each finished day (forecasts, drift checks, reruns, the champion and the
drift state); rerunning the same command continues after the last finished day, restoring the drift state of
that day, so an interruption mid-day replays that day from its start. A different command (other data, dates
or recipe) refuses to continue a replay it did not start: ``--fresh`` starts over.

**The rerun recipe** (``ReplayRecipe``): the network with fewer epochs (5, early stopping on 3) and a shorter
walk-forward (the last 60 days in one block) — about 35 s per rerun here instead of about 4 min — so a
year of days with its reruns fits in an hour on two cores. The baselines are fitted as in every run, so the
champion is never worse than naive; ``--epochs``/``--test-days`` change the recipe.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bitpredict import storage
from bitpredict.config import Settings
from bitpredict.operations.replay_report import write_report
from bitpredict.operations.replay_state import Replay, ReplayError, ReplayState
from bitpredict.pipeline.stage_table import RAW, SENTIMENT_DAILY, data_path

log = logging.getLogger(__name__)

SEND_ROWS = 400  # rows a replayed request carries (the transformer accepts 1,000; the model reads its last 180)


# --------------------------------------------------------------------------------------------
# one day's steps
# --------------------------------------------------------------------------------------------


class Clock:
    """The files source with the replay's clock: each export is parsed once, and each day hands over the rows
    that became known during that day (``visible_rows`` at *d* minus those at *d − 1*) — the first call all rows
    known by then. Parsing a 43,000-line CSV every day cost more than the rest of the day together; what each
    day reads from the tables is the same as a fresh import cut at that day (``import_file(…, visible_until)``),
    which the clock test checks."""

    name = "files"

    def __init__(self, data: Path) -> None:
        self.data = data
        self._parsed: list[Any] | None = None
        self.since: date | None = None  # rows known by the end of this day are already in the tables
        self.until: date | None = None

    def parsed(self) -> list[Any]:
        from bitpredict.data.sources.files import FilesSource

        if self._parsed is None:
            self._parsed = [batch for batch in FilesSource.from_dir(str(self.data)).batches({})]
        return self._parsed

    def batches(self, state: dict[str, Any]) -> Any:
        from bitpredict.data.ingest import Batch
        from bitpredict.data.sources.files import visible_rows

        assert self.until is not None
        for batch in self.parsed():
            frame = batch.rows.assign(_row=np.arange(len(batch.rows)))  # the cut keeps rows in file order
            rows = visible_rows(frame, batch.schema, pd.Timestamp(self.until))
            if self.since is not None:  # only what became known during the days after ``since``
                known = visible_rows(frame, batch.schema, pd.Timestamp(self.since))["_row"]
                rows = rows[~rows["_row"].isin(known)]
            if len(rows):
                yield Batch(batch.table, batch.schema, rows.drop(columns="_row").reset_index(drop=True))

    def ingest(self, settings: Settings, day: date, since: date | None) -> int:
        """Upsert the rows that became known after ``since`` (all when None) up to the end of ``day``."""
        from bitpredict.data.ingest import ingest_batch_source

        self.since, self.until = since, day
        summaries = ingest_batch_source(self, settings)
        failed = [s.error for s in summaries if s.error]
        if failed:
            raise ReplayError(f"{self.data}: the files source failed on {day}: {failed[0]}")
        return sum(int(s.new or 0) for s in summaries)


def ingest_visible(settings: Settings, data: Path, day: date) -> None:
    """The files source cut at the end of ``day``, upserted into the replay's raw tables (a fresh import)."""
    Clock(data).ingest(settings, day, None)


def build_tables(settings: Settings) -> None:
    """clean → indicators → sentiment → merge on the visible raw tables (the pipeline's own stage functions)."""
    from bitpredict.data.clean import run_clean
    from bitpredict.features.indicators import run_indicators
    from bitpredict.features.merge import run_merge
    from bitpredict.features.sentiment import run_sentiment

    run_clean(settings, "1d")
    run_indicators(settings)
    run_sentiment(settings)
    run_merge(settings)


class Champion:
    """The serving model in-process: its spec from the metadata, its SavedModel signature (loaded once)."""

    def __init__(self, directory: str) -> None:
        import tensorflow as tf

        from bitpredict.forecast.artifact import locate
        from bitpredict.forecast.serving import ModelSpec

        located = locate(directory)
        self.directory = directory
        self.spec = ModelSpec.from_metadata(located.metadata, located.version)
        loaded = tf.saved_model.load(located.saved_model_dir)
        self._keep = loaded  # the signature needs its object alive
        self.signature = loaded.signatures["serving_default"]
        self.input_name = next(iter(self.signature.structured_input_signature[1]))

    def request(self, clean: pd.DataFrame, sentiment: pd.DataFrame | None) -> dict[str, tuple[str, np.ndarray]]:
        """The v2 request a client sends for the day after the last clean bar: bars, flags, the days' sentiment."""
        from bitpredict.features.columns import request_sentiment

        bars = clean.tail(min(SEND_ROWS, self.spec.max_rows)).reset_index(drop=True)
        inputs: dict[str, tuple[str, np.ndarray]] = {
            "timestamp": ("INT64", (bars["timestamp"].astype("int64") // 10**9).to_numpy()),
            **{c: ("FP64", bars[c].to_numpy(dtype="float64")) for c in ("open", "high", "low", "close", "volume")},
            "is_imputed": ("FP64", bars["is_imputed"].to_numpy(dtype="float64")),
        }
        for column, values in request_sentiment(sentiment, bars["timestamp"]).items():
            inputs[f"sentiment_{column}"] = ("FP64", values.to_numpy(dtype="float64"))
        return inputs

    def forecast(
        self, inputs: dict[str, tuple[str, np.ndarray]], settings: Settings
    ) -> tuple[dict[str, Any], pd.Series]:
        """The transformer's path: parse → features → predictor → forecast; also the served feature row."""
        import tensorflow as tf

        from bitpredict.forecast.artifact import HORIZON_QUANTILES_OUTPUT
        from bitpredict.forecast.serving import (
            feature_window,
            forecast,
            horizon_forecast,
            horizon_rows,
            parse_request,
            request_features,
        )

        bars = parse_request(inputs, self.spec)
        window = feature_window(bars, self.spec, settings.clean)
        result = self.signature(**{self.input_name: tf.constant(window.astype("float32"))})
        one_day = result["quantiles"].numpy()
        outcome = forecast(one_day, bars, self.spec)
        if HORIZON_QUANTILES_OUTPUT in result:  # every horizon, as the transformer serves it
            rows = horizon_rows(result[HORIZON_QUANTILES_OUTPUT].numpy(), one_day[0].astype("float64"))
            outcome.update(horizon_forecast(rows, bars, self.spec))
        served = request_features(bars, self.spec.min_rows, settings.clean).iloc[-1]
        return outcome, served


def retrain(settings: Settings) -> dict[str, Any]:
    """train → evaluate → register on the replay's tables (the stage functions, in-process)."""
    from bitpredict.evaluation.evaluate import run_evaluate
    from bitpredict.forecast.train import run_train
    from bitpredict.operations.registry import register

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one progress line per day is enough
    started = time.monotonic()
    run_train(settings)
    evaluation = run_evaluate(settings)
    registered = register(settings)
    return {**registered, "best": evaluation.get("best"), "seconds": round(time.monotonic() - started, 1)}


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------


def horizon_row(outcome: dict[str, Any], levels: tuple[float, ...]) -> dict[str, Any]:
    """The served longer horizons of one day's forecast as columns ``as_of_h7``, ``lower_h7``/``upper_h7`` (the 80 %
    interval in USD) and ``actual_close_h7`` (empty until the replay ingests that day)."""
    if "horizons" not in outcome or not {0.1, 0.9} <= set(levels):
        return {}
    lo, hi = levels.index(0.1), levels.index(0.9)
    row: dict[str, Any] = {}
    for j, h in enumerate(int(h) for h in outcome["horizons"]):
        if h == 1:
            continue
        row.update({f"as_of_h{h}": str(outcome["horizon_as_of"][j]),
                    f"lower_h{h}": float(outcome["horizon_close_quantiles"][j, lo]),
                    f"upper_h{h}": float(outcome["horizon_close_quantiles"][j, hi]),
                    f"actual_close_h{h}": np.nan})  # fmt: skip
    return row


def horizon_columns(horizons: dict[str, dict[str, Any]]) -> dict[str, float | int]:
    """The day's per-horizon figures of the forecast monitor as flat columns (h > 1; the next day's are above):
    ``coverage_80_h7`` (the closed 7-day forecasts' 80 % coverage) and ``closed_h7`` (how many have closed)."""
    out: dict[str, float | int] = {}
    for h, figures in horizons.items():
        if h != "1":
            out[f"coverage_80_h{h}"] = float(figures.get("coverage_80", np.nan))
            out[f"closed_h{h}"] = int(figures.get("closed", 0))
    return out


def _end_of(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 23, 59, 59, tzinfo=UTC)


def _scheduled_count(state: ReplayState) -> str:
    """The progress line's note of scheduled reruns (none: nothing, so a drift-only replay reads as before)."""
    scheduled = sum(1 for run in state.reruns if run.get("trigger") == "schedule")
    return f" ({scheduled} scheduled)" if scheduled else ""


def _read(path: Path) -> pd.DataFrame:
    return storage.read_parquet(str(path)) if path.exists() else pd.DataFrame()


class Runner:
    """Runs a ``Replay`` day by day, saving after every day; ``progress`` gets one line per day."""

    def __init__(self, replay: Replay, progress: Callable[[str], None] | None = None) -> None:
        self.replay = replay
        self.progress = progress or (lambda line: None)
        self.settings = replay.work_settings()
        self.forecasts_file = replay.report_dir / "forecasts.parquet"
        self.drift_file = replay.report_dir / "drift.parquet"
        self.served_file = replay.root / "served.parquet"
        self._champion: Champion | None = None
        self.clock = Clock(replay.data)
        self._texts = -1  # size of the text tables at the last sentiment run: rescored only when texts arrive

    # -- state ----------------------------------------------------------------------------------
    def _state(self, fresh: bool) -> ReplayState:
        import shutil

        key = self.replay.key()
        state = None if fresh else ReplayState.load(self.replay.state_file)
        if state is not None and state.key != key:
            raise ReplayError(
                f"{self.replay.root} holds another replay (other data, start day, recipe, retrain schedule or "
                "settings): rerun with --fresh to start this one over"
            )
        if state is None:
            shutil.rmtree(self.replay.root, ignore_errors=True)
            shutil.rmtree(self.replay.report_dir, ignore_errors=True)
            state = ReplayState(key=key)
        return state

    def champion(self, state: ReplayState) -> Champion:
        if state.champion_dir is None:
            raise ReplayError("the replay has no champion")
        if self._champion is None or self._champion.directory != state.champion_dir:
            self._champion = Champion(state.champion_dir)
        return self._champion

    def _initial(self, state: ReplayState) -> None:
        """The first champion: the recipe on the data visible at the day before ``start``."""
        day = self.replay.start - timedelta(days=1)
        self.progress(f"replay: no champion yet — training one on the data visible at {day} (the replay's recipe)")
        self.clock.ingest(self.settings, day, None)
        build_tables(self.settings)
        outcome = retrain(self.settings)
        if not outcome.get("exported_to"):
            raise ReplayError(f"the initial run promoted no champion: {outcome.get('reason')}")
        state.champion_dir, state.champion_version = outcome["exported_to"], int(outcome["version"])
        state.initial = {"visible_until": str(day), **{k: outcome.get(k) for k in ("version", "kind", "seconds")}}
        state.champion_changes.append({"day": str(day), "serves_from": str(self.replay.start),
                                       "version": state.champion_version, "kind": outcome.get("kind"),
                                       "initial": True})  # fmt: skip
        self.progress(f"replay: initial champion v{state.champion_version} ({outcome.get('kind')}), "
                      f"{outcome.get('seconds')} s")  # fmt: skip

    def run(self, fresh: bool = False) -> ReplayState:
        """Replay every day not yet finished; returns the final state (the report is written after each day)."""
        from bitpredict.operations.monitor import DriftState

        if self.replay.end < self.replay.start:
            raise ReplayError(f"--to {self.replay.end} is before --from {self.replay.start}")
        state = self._state(fresh)
        self.replay.report_dir.mkdir(parents=True, exist_ok=True)
        if state.champion_dir is None:
            started = time.monotonic()
            self._initial(state)
            state.seconds += time.monotonic() - started
            state.save(self.replay.state_file)
        day = self.replay.start if state.last_day is None else date.fromisoformat(state.last_day) + timedelta(days=1)
        drift_uri = storage.join(self.settings.path("reports", "drift"), "state.json")
        while day <= self.replay.end:
            started = time.monotonic()
            DriftState(**(state.drift_state or {})).save(drift_uri)  # the finished day's drift state, on a resume too
            line = self.step(day, state)
            state.drift_state = DriftState.load(drift_uri).__dict__
            state.last_day = str(day)
            state.seconds += time.monotonic() - started
            self._write_report(state)
            state.save(self.replay.state_file)
            self.progress(f"{line} ({time.monotonic() - started:.1f} s)")
            day += timedelta(days=1)
        return state

    def step(self, day: date, state: ReplayState) -> str:
        """One day: ingest, close yesterday's forecast, forecast tomorrow, check drift, rerun on a trigger."""
        from bitpredict.data.clean import clean_path

        self.clock.ingest(self.settings, day, day - timedelta(days=1))
        self._tables()
        clean = storage.read_parquet(clean_path(self.settings, "1d"))
        last = clean["timestamp"].iloc[-1].date()
        if last != day:
            raise ReplayError(f"no clean bar for {day} in {self.replay.data} (the last visible day is {last})")
        forecasts = _read(self.forecasts_file)
        if not forecasts.empty:  # close each forecast on its day: yesterday's 1-day one, the 7-day one of a week ago …
            closes = clean.assign(day=clean["timestamp"].dt.date.astype(str)).set_index("day")["close"]
            for suffix in [""] + [c.removeprefix("as_of") for c in forecasts.columns if c.startswith("as_of_h")]:
                open_ = forecasts[f"actual_close{suffix}"].isna() & forecasts[f"as_of{suffix}"].isin(closes.index)
                forecasts.loc[open_, f"actual_close{suffix}"] = forecasts.loc[open_, f"as_of{suffix}"].map(closes)
        sentiment_uri = data_path(self.settings, SENTIMENT_DAILY)
        sentiment = storage.read_parquet(sentiment_uri) if storage.exists(sentiment_uri) else None
        champion = self.champion(state)
        outcome, served = champion.forecast(champion.request(clean, sentiment), self.settings)
        row = {"made_on": str(day), "as_of": outcome["as_of"], "model_version": outcome["model_version"],
               "predicted_close": outcome["predicted_close"], "lower": outcome["lower"], "upper": outcome["upper"],
               "last_close": float(clean["close"].iloc[-1]), "actual_close": np.nan,
               **horizon_row(outcome, champion.spec.quantiles)}  # fmt: skip
        if forecasts.empty:
            forecasts = pd.DataFrame([row])
        else:
            forecasts = pd.concat([forecasts[forecasts["made_on"] != str(day)], pd.DataFrame([row])], ignore_index=True)
        storage.write_parquet(forecasts, str(self.forecasts_file))
        served_rows = _read(self.served_file)
        today = served.to_frame().T
        served_rows = today if served_rows.empty else pd.concat([served_rows, today], ignore_index=True)
        served_rows = served_rows.drop_duplicates("timestamp", keep="last").tail(self.settings.drift.window_days)
        served_rows = served_rows.infer_objects().reset_index(drop=True)
        storage.write_parquet(served_rows, str(self.served_file))

        reruns_before = len(state.reruns)
        check = self._drift(day, state, served_rows, forecasts)
        if len(state.reruns) == reruns_before:  # no drift rerun today: the calendar may ask for one
            self._scheduled(day, state)
        drift = _read(self.drift_file)
        drift = (
            pd.concat([drift[drift["day"] != str(day)], pd.DataFrame([check])], ignore_index=True)
            if not drift.empty
            else pd.DataFrame([check])
        )
        storage.write_parquet(drift, str(self.drift_file))
        unmeasured = check["share"] is None or pd.isna(check["share"])  # e.g. too few served days yet: say so
        share = f"n/a ({check['current_rows']} served days)" if unmeasured else f"{check['share']:.0%}"
        return (f"replay {day}: forecast {outcome['as_of']} {outcome['predicted_close']:,.0f} "
                f"({outcome['model_version']}), drift {share}{' TRIGGERED' if check['triggered'] else ''} | "
                f"forecasts {len(forecasts)}, reruns {len(state.reruns)}{_scheduled_count(state)}")  # fmt: skip

    @staticmethod
    def trained_on(state: ReplayState) -> date | None:
        """The last day whose data trained a model: the last rerun of either trigger, else the initial run."""
        if state.reruns:
            return date.fromisoformat(state.reruns[-1]["day"])
        initial = state.initial or {}
        return date.fromisoformat(initial["visible_until"]) if initial.get("visible_until") else None

    def _scheduled(self, day: date, state: ReplayState) -> None:
        """The calendar's rerun: ``retrain_every`` days after the last training (0: never)."""
        every, trained = self.replay.retrain_every, self.trained_on(state)
        if not every or trained is None or (day - trained).days < every:
            return
        self.rerun(day, state, "schedule", [f"{(day - trained).days} days since the champion was trained on the "
                                             f"data visible at {trained} (--retrain-every {every})"])  # fmt: skip

    def rerun(self, day: date, state: ReplayState, trigger: str, reasons: list[str]) -> dict[str, Any]:
        """Retrain on the data visible at ``day`` (train → evaluate → register, the replay's recipe), for either
        trigger; a version the registry promotes serves from ``day + 1``. Returns the rerun's record."""
        what = "drift" if trigger == "drift" else "scheduled rerun"
        self.progress(f"replay {day}: {what} — {'; '.join(reasons)}: retraining on the data visible at {day}")
        outcome = retrain(self.settings)
        switched = str(outcome.get("reason") or "").startswith("switch")  # a change of recipe, with its test
        record = {"day": str(day), "trigger": trigger, "reasons": reasons, "version": outcome.get("version"),
                  "kind": outcome.get("kind"), "promoted": bool(outcome.get("promoted")), "switched": switched,
                  "seconds": outcome.get("seconds"), "reason": outcome.get("reason")}  # fmt: skip
        state.reruns.append(record)
        if outcome.get("promoted") and outcome.get("exported_to"):
            state.champion_dir, state.champion_version = outcome["exported_to"], int(outcome["version"])
            state.champion_changes.append({"day": str(day), "serves_from": str(day + timedelta(days=1)),
                                           "version": state.champion_version, "kind": outcome.get("kind"),
                                           "initial": False, "trigger": trigger, "switched": switched,
                                           "reason": outcome.get("reason")})  # fmt: skip
        verdict = "promoted" if outcome.get("promoted") else "not promoted"
        label = "rerun" if trigger == "drift" else "scheduled rerun"
        self.progress(f"replay {day}: {label} v{outcome.get('version')} ({outcome.get('kind')}) {verdict}, "
                      f"{outcome.get('seconds')} s")  # fmt: skip
        return record

    def _tables(self) -> None:
        """The day's stages; sentiment only when texts arrived (scoring is a no-op otherwise, but reads them all)."""
        from bitpredict.data.clean import run_clean
        from bitpredict.features.indicators import run_indicators
        from bitpredict.features.merge import run_merge
        from bitpredict.features.sentiment import run_sentiment

        run_clean(self.settings, "1d")
        run_indicators(self.settings)
        raw = Path(data_path(self.settings, RAW))
        texts = sum(p.stat().st_size for p in (*raw.glob("news_*.parquet"), *raw.glob("tweets*.parquet")))
        sentiment = Path(data_path(self.settings, SENTIMENT_DAILY))
        if texts != self._texts or not sentiment.exists():
            run_sentiment(self.settings)
            self._texts = texts
        run_merge(self.settings)

    def _drift(self, day: date, state: ReplayState, served: pd.DataFrame, forecasts: pd.DataFrame) -> dict[str, Any]:
        """The drift check of ``day`` on the served inputs after the champion's training span; reruns on a
        trigger (the replay's own rerun, passed in) and switches the champion for the next day."""
        from bitpredict.operations.drift_check import run_drift

        def rerun(reasons: list[str]) -> dict[str, Any]:
            record = self.rerun(day, state, "drift", reasons)
            return {"mode": "replay", "run_id": f"replay-{day}", "ok": True, "new_champion": record["promoted"]}

        # trusted evidence only: the check reads the ingested table visible on ``day``, never the served bars
        summary = run_drift(
            self.settings, state.champion_dir or "", rerun, now=_end_of(day), forecasts=pd.DataFrame(), html=False
        )
        monitor = summary.get("forecast_monitor") or {}
        calibration = summary.get("live_calibration") or {}
        share = summary["share"]  # NaN, not None: typed columns day after day
        levels = calibration.get("levels") or {}
        cut = summary.get("share_cut")
        return {"day": str(day), "share": np.nan if share is None else float(share),
                "share_cut": np.nan if cut is None else float(cut),
                "drifting": bool(summary["drifting"]), "triggered": bool(summary["triggered"]),
                "current_rows": int(summary["current_rows"]),
                "calibration_broken": bool(monitor.get("calibration_broken")),
                "pinball_worse": bool(monitor.get("pinball_worse_than_naive")),
                "coverage_80": float(calibration.get("coverage_80", np.nan)),
                "coverage_80_aci": float(calibration.get("coverage_80_aci", np.nan)),
                "aci_lower": float(levels.get("0.1", np.nan)), "aci_upper": float(levels.get("0.9", np.nan)),
                **horizon_columns(monitor.get("horizons") or {}),
                "reasons": "; ".join(summary["reasons"]),
                "model_version": state.champion_version}  # fmt: skip

    def report_only(self) -> ReplayState:
        """Rewrite the report from the saved state and tables, replaying nothing (e.g. after an interruption)."""
        state = ReplayState.load(self.replay.state_file)
        if state is None or state.key != self.replay.key() or state.last_day is None:
            raise ReplayError(f"no finished day of this replay in {self.replay.root}: run it first")
        self._write_report(state)
        return state

    def _write_report(self, state: ReplayState) -> None:
        write_report(self.replay, state, _read(self.forecasts_file), _read(self.drift_file))


def parse_day(text: str, option: str) -> date:
    """A UTC day from YYYY-MM-DD; anything else is a clear error naming the option."""
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise ReplayError(f"{option} {text!r}: expected a date as YYYY-MM-DD") from None


def check_data(folder: str) -> Path:
    path = Path(folder)
    if not path.is_dir():
        raise ReplayError(f"--data {folder}: not a folder")
    if not any(p.suffix in (".csv", ".parquet") for p in path.iterdir()):
        raise ReplayError(f"--data {folder}: no .csv or .parquet exports in it")
    return path
