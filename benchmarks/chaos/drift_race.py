"""Two drift checks racing on one data dir: one rerun per drift episode, never two, never none.

A CronJob's check overlapping a ``make drift`` (or two CronJob pods after a missed schedule) both see the same
drift. ``bitpredict.operations.drift_check`` decides under a lock on the drift folder and writes the episode's marker
before the rerun starts, so the second check sees the episode as already triggered. The scenario runs real checks — the
``bitpredict drift`` command, each its own process, on the embedded sample's features with a model reference
— with a rerun command that records each call and takes a moment (as a real rerun would):

1. **The race**: ``checks`` processes start at the same instant on drifted inputs: exactly one rerun.
2. **The episode ends**: a check on calm inputs (no drift) closes it.
3. **A new episode, raced again** (the cooldown set to 0 so the new episode may trigger): exactly one more.

``lost`` = |reruns − episodes|: a rerun too many or one missing; an error is a check that exited non-zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from benchmarks.chaos import ScenarioResult

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample" / "btc_usd_hourly.parquet"
REFERENCE_END = "2022-12-31"
CHECK_TIMEOUT_S = 300
RERUN_SECONDS = 2.0  # the recorded rerun holds on this long, so a check that did not see the marker would overlap


def _features(data: Path) -> pd.DataFrame:
    """The sample's features table (clean → indicators → features), built with the pipeline's functions."""
    from bitpredict.config import load_settings
    from bitpredict.data.clean import clean_path, run_clean
    from bitpredict.data.ingest import ingest_batch_source
    from bitpredict.data.sources.files import FilesSource
    from bitpredict.features.indicators import WARMUP, compute_indicators
    from bitpredict.features.merge import build_features

    settings = load_settings(data_dir=str(data))
    ingest_batch_source(FilesSource([str(SAMPLE)]), settings)
    run_clean(settings, "1d")
    from bitpredict import storage

    return build_features(compute_indicators(storage.read_parquet(clean_path(settings, "1d"))), None, WARMUP)


def _shifted(after: pd.DataFrame, before: pd.DataFrame) -> pd.DataFrame:
    """Every drift input moved by three of the reference's standard deviations: drift beyond the history."""
    from bitpredict.operations.monitor import drift_columns

    columns = [c for c in drift_columns(after.columns) if before[c].nunique() > 2]
    return after.assign(**{c: after[c] + 3 * before[c].std() for c in columns})


def _setup(workdir: Path) -> tuple[Path, Path, pd.DataFrame, pd.DataFrame]:
    """A data dir, a model folder whose reference ends on ``REFERENCE_END``, the calm and the drifted tables."""
    from bitpredict import storage
    from bitpredict.forecast.artifact import METADATA_FILE, REFERENCE_FILE

    data = workdir / "data"
    features = _features(workdir / "build")
    before = features[features["timestamp"] <= REFERENCE_END]
    after = features[features["timestamp"] > REFERENCE_END]
    model = workdir / "models" / "1"
    model.mkdir(parents=True, exist_ok=True)
    storage.write_parquet(before, model / REFERENCE_FILE)
    span = [str(before["timestamp"].min().date()), REFERENCE_END]
    (model / METADATA_FILE).write_text(json.dumps({"format_version": 1, "train_span": span, "feature_columns": []}))
    drifted = pd.concat([before, _shifted(after, before)], ignore_index=True)
    return data, model, features, drifted


def _publish(data: Path, table: pd.DataFrame) -> None:
    from bitpredict import storage

    storage.write_parquet(table, data / "processed" / "bitcoin_features.parquet")


def _rerun_command(record: Path) -> str:
    """A rerun that appends one line per call and takes ``RERUN_SECONDS``, then prints its outcome."""
    code = (
        "import json, os, time, pathlib; "
        f"p = pathlib.Path({str(record)!r}); "
        "f = open(p, 'a'); f.write(str(os.getpid()) + chr(10)); f.close(); "
        f"time.sleep({RERUN_SECONDS}); "
        "print(json.dumps({'mode': 'recorded', 'run_id': 'rerun-' + str(os.getpid()), 'ok': True, "
        "'new_champion': False}))"
    )
    return f'{sys.executable} -c "{code}"'


def _checks(data: Path, model: Path, record: Path, count: int, cooldown_hours: float) -> list[tuple[int, float]]:
    """``count`` real ``bitpredict drift`` checks started at once; each one's exit code and seconds."""
    env = {**os.environ, "BITPREDICT_DATA_DIR": str(data), "PYTHONPATH": str(REPO),
           "BITPREDICT_DRIFT__COOLDOWN_HOURS": str(cooldown_hours)}  # fmt: skip
    command = [sys.executable, "-m", "bitpredict.cli", "drift", "--model-dir", str(model),
               "--trigger-command", _rerun_command(record)]  # fmt: skip
    started = time.monotonic()
    processes = [
        subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(count)
    ]
    out = []
    try:
        for process in processes:
            process.communicate(timeout=CHECK_TIMEOUT_S)
            out.append((process.returncode, time.monotonic() - started))
    finally:
        for process in processes:  # stop what this scenario started, whatever happened
            if process.poll() is None:
                process.kill()
                process.wait()
    return out


def _reruns(record: Path) -> int:
    return len(record.read_text().splitlines()) if record.exists() else 0


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    """Race ``checks`` drift checks on one episode, end it, race again on a new one; count the reruns."""
    checks = 2 if quick else 4
    workdir.mkdir(parents=True, exist_ok=True)
    data, model, calm, drifted = _setup(workdir)
    record = workdir / "reruns.txt"
    errors: Counter[str] = Counter()
    notes: list[str] = []
    latencies: list[float] = []

    _publish(data, drifted)
    first = _checks(data, model, record, checks, cooldown_hours=24)
    after_first = _reruns(record)
    _publish(data, calm)
    calm_check = _checks(data, model, record, 1, cooldown_hours=0)
    _publish(data, drifted)
    second = _checks(data, model, record, checks, cooldown_hours=0)
    after_second = _reruns(record)

    for code, seconds in [*first, *calm_check, *second]:
        latencies.append(seconds)
        if code != 0:
            errors[f"exit {code}"] += 1
    lost = abs(after_first - 1) + abs(after_second - after_first - 1)
    notes.append(f"{checks} checks raced twice: {after_first} rerun(s) in the first episode, "
                 f"{after_second - after_first} in the second (expected 1 and 1)")  # fmt: skip
    return ScenarioResult(
        scenario=f"two drift checks racing ({checks} at once)",
        requests=2 * checks + 1,
        errors=errors,
        max_latency_s=max(latencies) if latencies else 0.0,
        recovery_s=None,
        lost=lost,
        notes="; ".join(notes),
    )
