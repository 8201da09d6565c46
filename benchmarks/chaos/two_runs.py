"""Two runs at once on one data dir: the second waits for the first, or stops with a message naming the holder.

Two ``make run``s (two terminals, or ``make drift`` replaying while a run is on) would interleave stage caches,
registry versions and publish swaps. ``bitpredict.pipeline.runlock`` serialises them. The scenario starts two identical
runs at the same instant on a fresh data dir: one must wait (it prints who it waits for) and then reuse every
stage the other computed; the registry must hold one version (the second run's register finds the first's),
one champion, and that version with its evaluation. Then a run with another recipe holds the dir while a
second one is started with a 2 s lock timeout: it must exit 3 within a few seconds, naming the holder's pid,
and the holder must complete. At the end: one version per distinct run, each decided and evaluated, one
champion, every published table readable.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from pathlib import Path

from benchmarks.chaos import ScenarioResult
from benchmarks.chaos.run_kill import (
    RUN_TIMEOUT_S,
    ScenarioFailed,
    code_root,
    environment,
    kill_tree,
    registry_problems,
    registry_snapshot,
    run_command,
    start_run,
    unreadable,
)

ALWAYS_RUN = ("ingest", "register", "publish")  # not cached by design: new rows, a registry call, the swap
LOCKED_EXIT = 3  # pipelines.run_local: another run holds the data dir for longer than this one waits


def _finish(process: subprocess.Popen, log: Path) -> tuple[int, str]:
    try:
        code = process.wait(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        kill_tree(process)
        raise ScenarioFailed(f"a run took over {RUN_TIMEOUT_S:.0f} s: {log.read_text()[-3000:]}") from None
    return code, log.read_text()


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    """Two simultaneous runs, then a run that gives up waiting; count what the registry and the data dir hold."""
    data, logs = workdir / "data", workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    lost: list[str] = []
    errors: Counter[str] = Counter()
    started = time.monotonic()
    first = start_run(data, 1, logs / "a.log")
    second = start_run(data, 1, logs / "b.log")
    processes = [first, second]
    try:
        outcomes = [_finish(p, logs / name) for p, name in ((first, "a.log"), (second, "b.log"))]
        both_s = time.monotonic() - started
        for code, output in outcomes:
            if code != 0:
                lost.append(f"a concurrent run failed (exit {code}): {output[-300:]}")
        waited = [output for _, output in outcomes if "waiting for pid" in output]
        if len(waited) != 1:
            lost.append(f"{len(waited)} of the two runs waited for the other (expected exactly one)")
        else:
            redone = [line.split()[0] for line in waited[0].splitlines()
                      if line.startswith("  ") and line.split()[1:2] == ["ran"]]  # fmt: skip
            redone = [stage for stage in redone if stage not in ALWAYS_RUN]
            if redone:
                lost.append(f"the run that waited recomputed {redone}, which the other had just computed")
        after_two = registry_snapshot(data)
        lost += registry_problems(after_two)
        if len(after_two["versions"]) != 1:
            lost.append(f"two identical runs left {len(after_two['versions'])} versions (expected 1)")

        holder = start_run(data, 2, logs / "holder.log")  # another recipe: train and evaluate really run
        processes.append(holder)
        deadline = time.monotonic() + 60
        while not (data / ".run.lock").read_text().count(str(holder.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        asked = time.monotonic()
        impatient = subprocess.run(run_command(data, 1, lock_timeout_s=2), cwd=code_root(data), env=environment(data),
                                   capture_output=True, text=True, timeout=120)  # fmt: skip
        gave_up_s = time.monotonic() - asked
        if impatient.returncode == LOCKED_EXIT:
            errors[f"exit {LOCKED_EXIT} (lock held)"] += 1
        else:
            lost.append(f"the impatient run exited {impatient.returncode}, not {LOCKED_EXIT}")
        if not re.search(rf"in use by pid {holder.pid}\b", impatient.stderr):
            lost.append(f"the lock message does not name the holder: {impatient.stderr[-300:]}")
        code, output = _finish(holder, logs / "holder.log")
        if code != 0:
            lost.append(f"the holder failed (exit {code}): {output[-300:]}")
    finally:
        for process in processes:
            if process.poll() is None:
                kill_tree(process)
    final = registry_snapshot(data)
    lost += registry_problems(final)
    if len(final["versions"]) != 2:
        lost.append(f"two distinct recipes left {len(final['versions'])} versions (expected 2)")
    lost += unreadable(data)
    notes = f"two at once: {both_s:.0f} s in all; the impatient run gave up after {gave_up_s:.1f} s"
    if lost:
        notes += "; LOST: " + "; ".join(lost)
    return ScenarioResult(
        scenario="two runs at once on one data dir",
        requests=4,
        errors=errors,
        max_latency_s=gave_up_s,
        recovery_s=None,
        lost=len(lost),
        client_input_5xx=0,
        notes=notes,
    )
