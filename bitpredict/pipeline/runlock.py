"""One pipeline run at a time per local data dir: an advisory lock that waits, then says who holds it.

Two runs on one data dir (a `make run` while `make drift` replays, two terminals) would interleave their
stage caches, registry versions and publish swaps. The runner holds ``<data dir>/.run.lock`` for the whole
run: a second run waits for it up to a timeout, printing once who it waits for, then stops with a message
naming the holder. ``flock`` is released by the kernel when the holder dies — even by SIGKILL — so a crashed
run never leaves a stale lock behind. (A bucket has no flock: on a ``gs://`` data dir concurrent cluster runs are
kept apart where it matters, at publish — the manifest is a compare-and-swap on its generation, the run that loses
publishes nothing, and pruning never touches another run's prefix; see ``bitpredict.operations.publish``.)
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from bitpredict.errors import BitPredictError

LOCK_FILE = ".run.lock"


class RunLocked(BitPredictError, RuntimeError):
    """Another run holds the data dir for longer than this one would wait."""


def holder(path: Path) -> str:
    """Who holds (or last held) the lock, as written by them: pid, start time, command."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another run"
    return f"pid {info.get('pid', '?')} ({info.get('what', 'a run')}, since {info.get('since', '?')})"


@contextmanager
def run_lock(
    data_dir: str | Path,
    what: str,
    timeout_s: float = 1800.0,
    on_wait: Callable[[str], None] | None = None,
    poll_s: float = 0.2,
) -> Iterator[None]:
    """Hold the data dir's run lock for the ``with`` block; wait at most ``timeout_s`` for it."""
    if str(data_dir).startswith("gs://"):  # a bucket has no flock; publish's compare-and-swap is the guard there
        yield
        return
    folder = Path(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise RunLocked(
                        f"{folder} is in use by {holder(path)}; waited {timeout_s:.0f} s. Wait for it to finish, "
                        "or stop it, then run again"
                    ) from None
                if on_wait is not None and not told:
                    on_wait(f"waiting for {holder(path)} to finish with {folder} (up to {timeout_s:.0f} s)")
                    told = True
                time.sleep(poll_s)
        os.ftruncate(fd, 0)
        since = datetime.now(UTC).isoformat(timespec="seconds")
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "what": what, "since": since}).encode(), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
