"""The run lock: a second run waits, then names the holder; a killed holder never leaves a stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitpredict.pipeline.runlock import LOCK_FILE, RunLocked, run_lock

HOLD = """
import sys, time
from bitpredict.pipeline.runlock import run_lock
with run_lock(sys.argv[1], "a test run"):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(data_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(data_dir)], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_waits_then_names_the_holder(tmp_path: Path) -> None:
    process = _holder(tmp_path)
    try:
        waited: list[str] = []
        started = time.monotonic()
        with (
            pytest.raises(RunLocked, match=rf"in use by pid {process.pid} \(a test run"),
            run_lock(tmp_path, "second", timeout_s=1.0, on_wait=waited.append),
        ):
            pytest.fail("the lock was taken twice")
        assert 1.0 <= time.monotonic() - started < 5 and len(waited) == 1 and str(process.pid) in waited[0]
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def test_a_holder_killed_by_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    process = _holder(tmp_path)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert (tmp_path / LOCK_FILE).exists()  # the file stays; the kernel dropped the lock with the process
    started = time.monotonic()
    with run_lock(tmp_path, "next run", timeout_s=5.0):
        assert time.monotonic() - started < 1.0
        assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()


def test_runs_one_after_another_in_one_process(tmp_path: Path) -> None:
    for what in ("first", "second"):
        with run_lock(tmp_path, what, timeout_s=0.5):
            pass
