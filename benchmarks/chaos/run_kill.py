"""A run killed mid-stage: SIGKILL during train, during evaluate, during publish — nothing half-written is visible.

The scenario makes a first run on the embedded sample with a tiny recipe (``TINY_ARGS``: about a minute), takes
a snapshot of what consumers see (every published item's bytes, the manifest, the champion's serving folder)
and of the MLflow registry (versions, their tags, the champion alias). Then a second run with another recipe
(more epochs, so train and evaluate really run) is started three times and its whole process tree is killed
with SIGKILL (``os.killpg``: what the OOM killer, a lost pod or a power cut do) once the stage is under way.
After each kill:

* the published state is the snapshot, byte for byte, once the next run took the lock (``publish.recover``):
  the first two kills come before register, so the registry is unchanged too; the publish kill comes after
  register, so the registry may hold that run's version — whole (its evaluation tags and its ``promoted``
  decision) — and no second one later;
* every published table reads, every published JSON parses, the lock is free.

Then the run completes: it reuses what finished before the kills (the stage cache), the registry ends with one
version per run and one champion, and every version carries its evaluation. A version a run created but never
decided on (a kill inside register) is simulated last by removing a version's ``promoted`` tag — the state such a
kill leaves — and one more run must complete the decision rather than add a version.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.chaos import ScenarioResult

REPO = Path(__file__).resolve().parents[2]
SMALL = {
    "model": {"lstm_units": [8], "dense_units": 4, "validation_days": 60, "refit_every_days": 30},
    "sentiment": {"finbert": "off"},  # no FinBERT weights here (nothing is downloaded)
}
TINY_ARGS = ["--window", "10", "--test-days", "30", "--extra-settings", json.dumps(SMALL)]
RUN_TIMEOUT_S = 600.0


class ScenarioFailed(RuntimeError):
    """A run that should have completed did not; the message carries its output."""


def checkout_copy(target: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) in ``target``: the runs use this frozen code.

    Why a copy: the stage cache keys on the code version (the git commit when run from a checkout), so in a
    working tree where commits land while the scenario runs, "the next run reuses what finished" would fail
    for a reason that is not the kill's; outside a repository the version is the package's, fixed.
    """
    if (target / "pipelines" / "run_local.py").exists():
        return target
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                            check=True).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file() and not name.startswith("data/"):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    shutil.copytree(REPO / "data" / "sample", target / "data" / "sample")
    return target


def code_root(data: Path) -> Path:
    return checkout_copy(data.parent / "checkout")


def run_command(data: Path, epochs: int, lock_timeout_s: float = RUN_TIMEOUT_S) -> list[str]:
    return [sys.executable, "-m", "pipelines.run_local", "--data-root", str(data), "--epochs", str(epochs),
            *TINY_ARGS, "--lock-timeout", str(lock_timeout_s)]  # fmt: skip


def environment(data: Path) -> dict[str, str]:
    """The run's environment: no inherited BITPREDICT_*/MLflow settings; no ../shared data (the sample only)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITPREDICT_") and k != "MLFLOW_TRACKING_URI"}
    env["BITPREDICT_SHARED_DATA"] = str(data.parent / "no-shared-data")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(code_root(data))  # the frozen copy's code, also in the pipeline's task processes
    return env


def start_run(data: Path, epochs: int, log: Path) -> subprocess.Popen:
    """A run in its own session, so a kill can take its whole process tree."""
    return subprocess.Popen(run_command(data, epochs), cwd=code_root(data), env=environment(data), stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def complete_run(data: Path, epochs: int, log: Path) -> tuple[float, str]:
    """Run to the end; returns (seconds, its output). Raises ``ScenarioFailed`` when it did not succeed."""
    started = time.monotonic()
    process = start_run(data, epochs, log)
    try:
        code = process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        raise ScenarioFailed(f"the run took over {RUN_TIMEOUT_S:.0f} s: {log.read_text()[-3000:]}") from None
    except BaseException:  # stopped from outside (the runner's time bound): stop the run too
        kill_tree(process)
        raise
    if code != 0:
        raise ScenarioFailed(f"the run exited {code}: {log.read_text()[-3000:]}")
    return time.monotonic() - started, log.read_text()


def session_members(session: int) -> list[int]:
    """Every process of a session (the run and its pipeline child's own process group)."""
    members = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            zombie = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"  # dead, not yet reaped
            if os.getsid(int(proc.name)) == session and not zombie:
                members.append(int(proc.name))
    return members


def kill_tree(process: subprocess.Popen) -> float:
    """SIGKILL every process of the run's session at once; returns how long until all of them were gone."""
    started = time.monotonic()
    for pid in session_members(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)
    while session_members(process.pid) and time.monotonic() - started < 60:
        time.sleep(0.05)
    return time.monotonic() - started


def progress_file(process: subprocess.Popen) -> Path | None:
    """The run's progress file (``BITPREDICT_PROGRESS``): named by its pipeline child's ``--child`` argument."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getsid(int(proc.name)) != process.pid:
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if b"--child" in argv:
            return Path(argv[argv.index(b"--child") + 1].decode()).with_name("progress.jsonl")
    return None


def stage_started(progress: Path | None, task: str) -> bool:
    """Whether the stage function itself is running (its ``start`` event), not just its process."""
    if progress is None or not progress.exists():
        return False
    events = [json.loads(line) for line in progress.read_text().splitlines() if line.strip()]
    return any(e.get("stage") == task and e.get("event") == "start" for e in events)


def kill_during(data: Path, epochs: int, task: str, delay_s: float, log: Path, after: set[str]) -> float:
    """Start a run, SIGKILL its whole tree ``delay_s`` after stage ``task`` began; returns the kill's latency (s)."""
    process = start_run(data, epochs, log)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    progress = None
    try:
        while time.monotonic() < deadline:
            progress = progress or progress_file(process)
            if stage_started(progress, task):
                break
            if process.poll() is not None:
                raise ScenarioFailed(f"the run ended before {task} started: {log.read_text()[-3000:]}")
            time.sleep(0.02)
        else:
            raise ScenarioFailed(f"{task} did not start within {RUN_TIMEOUT_S:.0f} s")
        time.sleep(delay_s)
        if process.poll() is not None:
            raise ScenarioFailed(f"the run ended before the kill during {task}: {log.read_text()[-3000:]}")
        after.add(task)
    finally:
        latency = kill_tree(process)
    return latency


# --------------------------------------------------------------------------------------------
# what consumers see
# --------------------------------------------------------------------------------------------


def published_snapshot(data: Path) -> dict[str, str]:
    """Digest of every published file (the items, the manifest, the champion's serving folder), by path."""
    from bitpredict.operations.publish import ITEMS, MANIFEST

    roots = [data / relative for relative in ITEMS.values()] + [data / MANIFEST]
    manifest = json.loads((data / MANIFEST).read_text()) if (data / MANIFEST).exists() else {}
    exported = ((manifest.get("champion") or {}).get("exported_to")) or ""
    if exported:
        roots.append(Path(exported))
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            out[str(path.relative_to(data) if path.is_relative_to(data) else path)] = hashlib.sha256(
                path.read_bytes()
            ).hexdigest()
    return out


def unreadable(data: Path) -> list[str]:
    """Published tables and JSON documents that do not read (a half-written file would be one)."""
    import pyarrow.parquet as pq

    from bitpredict.operations.publish import ITEMS, MANIFEST

    bad = []
    for relative in [*ITEMS.values(), MANIFEST]:
        root = data / relative
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            try:
                if path.suffix == ".parquet":
                    pq.read_table(path)
                elif path.suffix == ".json":
                    json.loads(path.read_text())
            except Exception as exc:  # any failure to read is what we count
                bad.append(f"{path}: {type(exc).__name__}")
    return bad


def registry_snapshot(data: Path) -> dict[str, Any]:
    """The registry as a consumer sees it: every version's tags, and which version is champion."""
    from bitpredict.config import load_settings
    from bitpredict.pipeline import tracking
    from bitpredict.pipeline.tracking import CHAMPION

    settings = load_settings(data_dir=str(data))
    client = tracking.client(settings)
    name = settings.registered_model_name
    versions = {int(v.version): dict(v.tags) for v in client.search_model_versions(f"name = '{name}'")}
    try:
        champion = int(client.get_model_version_by_alias(name, CHAMPION).version)
    except Exception:  # no model or no alias yet (MlflowException)
        champion = None
    return {"versions": versions, "champion": champion}


def registry_problems(registry: dict[str, Any]) -> list[str]:
    """A version without its evaluation (``eval_window``, the primary score) or without a decision; a champion
    that is no version; a champion whose ``promoted`` tag says otherwise."""
    problems = []
    for version, tags in registry["versions"].items():
        if "eval_window" not in tags or tags.get("primary") not in tags:
            problems.append(f"v{version} has no evaluation")
        if tags.get("promoted") not in ("true", "false"):
            problems.append(f"v{version} has no promotion decision")
    champion = registry["champion"]
    if champion is not None and registry["versions"].get(champion, {}).get("promoted") != "true":
        problems.append(f"champion v{champion} was never promoted")
    return problems


def _reused(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines() if line.startswith("  ") and " reused " in line]


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    """Kill a run during train, evaluate and publish; then check nothing is lost and the next run completes."""
    from bitpredict.operations.publish import STAGING, recover

    data = workdir / "data"
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lost: list[str] = []
    errors: Counter[str] = Counter()
    first_s, _ = complete_run(data, 1, logs / "first.log")
    published, registry = published_snapshot(data), registry_snapshot(data)
    lost += [f"after the first run: {p}" for p in registry_problems(registry)]
    killed: set[str] = set()
    latencies = []
    plan = [("train", 2.0), ("evaluate", 3.0), ("publish", 0.0)]
    for task, delay in plan:
        latencies.append(kill_during(data, 2, task, delay, logs / f"killed-in-{task}.log", killed))
        errors[f"SIGKILL in {task}"] += 1
        recover(data)  # what the next run does first, once it holds the lock
        now = published_snapshot(data)
        if now != published:  # a kill after the manifest would be the whole new state: check it is whole
            manifest = json.loads((data / "published.json").read_text())
            if task != "publish" or manifest.get("parameters", {}).get("epochs") != 2:
                lost.append(f"published state changed by the run killed in {task}")
            published = now
        lost += [f"after the kill in {task}: {p}" for p in unreadable(data)]
        if (data / STAGING).exists():
            lost.append(f"after the kill in {task}: a staging folder left behind")
        current = registry_snapshot(data)
        if task != "publish" and current != registry:
            lost.append(f"registry changed by the run killed in {task}")
        lost += [f"after the kill in {task}: {p}" for p in registry_problems(current)]
    recovery_s, output = complete_run(data, 2, logs / "completed.log")
    reused = _reused(output)
    final = registry_snapshot(data)
    lost += registry_problems(final)
    if len(final["versions"]) != len(registry["versions"]) + 1:
        lost.append(f"{len(final['versions'])} versions after two runs that each registered one")
    lost += unreadable(data)
    if not quick:  # a version whose decision a kill interrupted: the next run decides it, adds no version
        lost += _interrupted_register(data, logs)
    notes = f"first run {first_s:.0f} s; the completing run reused {', '.join(reused) or 'nothing'}"
    missing = {task for task, _ in plan} - killed
    if missing:
        lost.append(f"no kill landed in {sorted(missing)}")
    if lost:
        notes += "; LOST: " + "; ".join(lost)
    return ScenarioResult(
        scenario="run killed (SIGKILL) in train, evaluate, publish",
        requests=len(plan) + 2 + (0 if quick else 1),
        errors=errors,
        max_latency_s=max(latencies),
        recovery_s=recovery_s,
        lost=len(lost),
        client_input_5xx=0,
        notes=notes,
    )


def _interrupted_register(data: Path, logs: Path) -> list[str]:
    """Leave the newest version as a kill inside register leaves it (no ``promoted`` tag), run again, check."""
    from bitpredict.config import load_settings
    from bitpredict.pipeline import tracking

    settings = load_settings(data_dir=str(data))
    client = tracking.client(settings)
    name = settings.registered_model_name
    before = registry_snapshot(data)
    newest = max(before["versions"])
    client.delete_model_version_tag(name, str(newest), "promoted")
    complete_run(data, 2, logs / "after-interrupted-register.log")
    after = registry_snapshot(data)
    problems = [f"after an interrupted register: {p}" for p in registry_problems(after)]
    if set(after["versions"]) != set(before["versions"]):
        problems.append("an interrupted register added or lost a version")
    if after["champion"] != before["champion"]:
        problems.append(f"the champion moved from v{before['champion']} to v{after['champion']}")
    return problems
