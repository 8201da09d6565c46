"""The drift trigger's launcher: replay the last published run — same sources or files, same settings.

``bitpredict.operations.monitor`` decides *whether* to rerun; this module is *how*, kept outside the core so the
``bitpredict`` package never imports the pipeline code (the drift job starts it as
``python -m pipelines.rerun``). The parameters come from the published manifest (``published.json``), which
the pipeline's publish task writes after every successful run:

* ``KFP_HOST`` set: ``pipelines.submit`` with exactly those parameters (the run id is KFP's; whether it
  brings a new champion is known only when it ends, so ``new_champion`` is ``None``).
* otherwise: the same local runner as ``make run`` (``pipelines.run_local --replay``), waited for; the
  champion before and after tell whether it changed.

It prints one JSON line, the outcome: ``mode``, ``run_id``, ``ok``, ``champion_before``, ``champion_after``,
``new_champion``, ``error``; the exit code is 0 only when ``ok``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from bitpredict.config import Settings, load_settings
from bitpredict.operations.publish import read_manifest
from pipelines.run_local import RunError, replay_arguments

LOCAL_TIMEOUT_S = 3 * 3600


def _champion(manifest: dict[str, Any] | None) -> int | None:
    champion = (manifest or {}).get("champion") or {}
    return champion.get("version")


def kfp_parameters(manifest: dict[str, Any] | None) -> dict[str, Any]:
    """The recorded parameters as the compiled pipeline declares them (cache_dir is a local-only concern)."""
    return {**replay_arguments(manifest), "cache_dir": ""}


def rerun(settings: Settings, host: str | None = None) -> dict[str, Any]:
    """Replay the last published run; never raises for an expected failure (it is in the outcome)."""
    manifest = read_manifest(settings)
    before = _champion(manifest)
    outcome: dict[str, Any] = {"mode": "kfp" if host else "local", "run_id": None, "ok": False,
                               "champion_before": before, "champion_after": None, "new_champion": None,
                               "replayed": (manifest or {}).get("run_id"), "error": None}  # fmt: skip
    try:
        if host:
            from pipelines.bitpredict_pipeline import COMPILED
            from pipelines.submit import submit

            ids = submit(host, COMPILED, kfp_parameters(manifest))
            outcome.update(run_id=ids["run_id"], ok=True)
            return outcome
        replay_arguments(manifest)  # fails early, with the reason, when there is nothing to replay
        command = [sys.executable, "-m", "pipelines.run_local", "--replay", "--data-root", settings.data_dir]
        done = subprocess.run(command, capture_output=True, text=True, timeout=LOCAL_TIMEOUT_S, check=False)
        after = read_manifest(settings)
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            outcome["error"] = next((ln for ln in lines if ln.startswith("error:")), lines[-1] if lines else "failed")
            return outcome
        champion = _champion(after)
        outcome.update(run_id=(after or {}).get("run_id"), ok=True, champion_after=champion,
                       new_champion=champion is not None and champion != before)  # fmt: skip
    except RunError as exc:
        outcome["error"] = str(exc)
    except Exception as exc:  # the KFP endpoint refused or is down: recorded, not raised
        outcome["error"] = f"{type(exc).__name__}: {exc}"[:500]
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="Data dir whose published run is replayed.")
    parser.add_argument("--host", default=os.environ.get("KFP_HOST") or None, help="KFP endpoint (default $KFP_HOST).")
    args = parser.parse_args(argv)
    settings = load_settings(**({"data_dir": args.data_dir} if args.data_dir else {}))
    outcome = rerun(settings, args.host)
    print(json.dumps(outcome))
    return 0 if outcome["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
