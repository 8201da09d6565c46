"""Which data a local run uses: the embedded sample (default), the live public APIs, or a folder of exports.

Why a default that ships with the repository: a first ``make run`` should work on any machine, offline, the same
every day, so it can be the tested default; the live APIs are one setting away (``SOURCES=live``) and any exports
another (``DATA=<folder>``). A choice that cannot work fails with what to do — never a silent fallback from live
to the sample, which would publish a champion trained on other data than the one asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitpredict.data.sources import KEYLESS_SOURCES
from bitpredict.errors import BitPredictError

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"
SAMPLE_FILE = SAMPLE_DIR / "btc_usd_hourly.parquet"
LIVE_SOURCES = ",".join(KEYLESS_SOURCES)  # the public APIs that need no key
CHOICES = ("sample", "live")


class DataChoiceError(BitPredictError, ValueError):
    """The data asked for cannot be used; the message says what to run instead."""


@dataclass(frozen=True)
class DataChoice:
    """The pipeline's ``files_dir`` and ``sources`` for one choice, and how the run summary names it."""

    files_dir: str
    sources: str
    label: str


def sample_choice() -> DataChoice:
    if not SAMPLE_FILE.is_file():
        raise DataChoiceError(
            f"the embedded sample {SAMPLE_FILE} is missing from this checkout: restore it with `git checkout -- "
            "data/sample`, or choose other data (SOURCES=live, DATA=<folder>)"
        )
    return DataChoice(str(SAMPLE_DIR), "files", describe(str(SAMPLE_DIR), "files"))


def choose(data: str | None, sources: str | None) -> DataChoice:
    """``data`` (a folder of exports) or ``sources`` (``sample`` | ``live``); neither means the sample."""
    if data and sources:
        raise DataChoiceError(f"give DATA or SOURCES, not both (DATA={data}, SOURCES={sources})")
    if data:
        folder = Path(data)
        if not folder.is_dir():
            raise DataChoiceError(f"DATA={data} is not a folder: point it at a folder of CSV or parquet exports")
        return DataChoice(str(folder.resolve()), "files", describe(str(folder.resolve()), "files"))
    if sources in (None, "", "sample"):
        return sample_choice()
    if sources == "live":
        return DataChoice("", LIVE_SOURCES, describe("", LIVE_SOURCES))
    raise DataChoiceError(f"SOURCES={sources} is not one of {', '.join(CHOICES)} (or give DATA=<folder>)")


def describe(files_dir: str, sources: str) -> str:
    """One phrase for the run summary, from the pipeline's parameters (so a replay is named as well)."""
    if sources == "files" and files_dir and Path(files_dir).resolve() == SAMPLE_DIR.resolve():
        return "the embedded sample (data/sample: CryptoCompare hourly BTC/USD 2019-11 → 2024-11, MIT)"
    if sources == "files":
        return f"the exports in {files_dir}"
    return f"the live APIs ({sources.replace(',', ', ')})"


def describe_parameters(parameters: dict[str, Any]) -> str:
    return describe(str(parameters.get("files_dir") or ""), str(parameters.get("sources") or ""))
