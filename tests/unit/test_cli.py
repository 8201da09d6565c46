"""The ``bitpredict`` command: help, version, settings errors and validate, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bitpredict import __version__, storage

BIN = Path(sys.executable).parent / "bitpredict"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, env=full_env, timeout=120)


def test_help_and_version() -> None:
    assert BIN.exists(), f"the console script is missing: {BIN} (run make setup)"
    helped = run("--help")
    assert helped.returncode == 0 and "validate" in helped.stdout and "config" in helped.stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"bitpredict {__version__}"


def test_config_show_masks_secrets() -> None:
    result = run("config", "show", env={"BITPREDICT_TWITTER_BEARER_TOKEN": "tok-123", "BITPREDICT_DATA_DIR": "/x"})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["data_dir"] == "/x" and shown["derived"]["raw_dir"] == "/x/raw"
    assert "tok-123" not in result.stdout


def test_bad_setting_is_one_line_not_a_traceback() -> None:
    result = run("config", "show", env={"BITPREDICT_HTTP__TIMEOUT_S": "-1"})
    assert result.returncode == 2
    assert "http.timeout_s (BITPREDICT_HTTP__TIMEOUT_S)" in result.stderr
    assert "Traceback" not in result.stderr


def test_validate_reports_and_quarantines(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    pd.DataFrame(
        {
            "source": ["x", "x", "x"],
            "interval": ["1d"] * 3,
            "timestamp": ["2024-01-01", "2024-01-02", "oops"],
            "open": [1.0, -1.0, 1.0],
            "high": [2.0, 2.0, 2.0],
            "low": [0.5, 0.5, 0.5],
            "close": [1.5, 1.5, 1.5],
            "volume": [1.0, 1.0, 1.0],
        }
    ).to_csv(csv, index=False)
    quarantine = tmp_path / "q.parquet"
    result = run("validate", str(csv), "--schema", "raw_market", "--quarantine", str(quarantine))
    assert result.returncode == 0, result.stderr
    assert "1 valid, 2 rejected" in result.stdout
    assert len(storage.read_parquet(quarantine)) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("validate", "missing.csv"), "missing.csv"),
        (("validate", "x.csv", "--schema", "nope"), "unknown schema 'nope'"),
    ],
)
def test_validate_errors_are_clear(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_drift_without_a_champion_is_one_line_with_what_to_do(tmp_path: Path) -> None:
    result = run("drift", env={"BITPREDICT_DATA_DIR": str(tmp_path / "empty")})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no champion yet: run `make run` first, or pass --model-dir"
    )


def test_a_stage_refusing_the_users_data_is_one_line_with_what_to_do(tmp_path: Path) -> None:
    """Nothing ingested yet is the user's data, not a bug: exit 2 with the message, no exception type named."""
    result = run("clean", env={"BITPREDICT_DATA_DIR": str(tmp_path / "empty")})
    assert result.returncode == 2 and "Traceback" not in result.stderr and "Error:" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: clean: no raw 1d market data to clean: run `bitpredict ingest` first"
    )


def test_an_unexpected_failure_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "bitpredict_model.json").write_text("{not json")  # a broken model folder
    result = run("drift", "--model-dir", str(model), "--no-trigger", env={"BITPREDICT_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")


def test_a_bitpredict_error_is_its_message_on_one_line_and_a_bug_names_its_type(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every error BitPredict raises on purpose shares one root, which the CLI shows as its message alone."""
    from bitpredict.cli import _OneLineErrors
    from bitpredict.errors import BitPredictError
    from bitpredict.storage import StorageError

    app = _OneLineErrors(add_completion=False, pretty_exceptions_enable=False)

    @app.command()
    def fails(kind: str) -> None:
        if kind == "refused":
            raise StorageError("gs://bucket/x: permission denied\nsecond line")
        raise KeyError("column")

    assert issubclass(StorageError, BitPredictError) and issubclass(StorageError, RuntimeError)
    with pytest.raises(SystemExit) as refused:
        app(["refused"], prog_name="bitpredict")
    err = capsys.readouterr().err
    assert refused.value.code == 1 and err.strip() == "error: gs://bucket/x: permission denied"
    with pytest.raises(SystemExit) as bug:
        app(["bug"], prog_name="bitpredict")
    err = capsys.readouterr().err
    assert bug.value.code == 1 and err.startswith("error: KeyError: 'column'") and len(err.splitlines()) == 1
