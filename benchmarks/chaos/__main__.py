"""``make chaos``: every fault scenario on this machine (127.0.0.1 only), each bounded in time, then one table.

    python -m benchmarks.chaos                       # all scenarios, full size
    python -m benchmarks.chaos --quick               # smaller (the sizes the tests use)
    python -m benchmarks.chaos --only fuzz run_kill  # some of them
    python -m benchmarks.chaos --doc docs/reliability.md    # also write the table into the page's chaos block

Why each scenario runs in its own process: a bound on time must hold even when a scenario hangs. The runner
gives each one ``--timeout-s``; past it, the scenario gets SIGTERM, which raises in it so its ``with`` blocks
stop the servers and runs it started, and 20 s later everything left in its session gets SIGKILL. A scenario
whose module is not there (another engineer's, not landed yet) is listed as not available, not an error.
Exit status: 0 when every scenario ran and kept the promise (0 lost, 0 5xx from client input), else 1.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path

from benchmarks.chaos import ScenarioResult, table

SCENARIOS = ("fuzz", "predictor_kill", "run_kill", "two_runs", "drift_race", "racing_publish", "rollback",
             "repository_api", "slow_bodies", "oversized_body", "v1_routes")  # fmt: skip
REPO = Path(__file__).resolve().parents[2]
GRACE_S = 20.0


def available(name: str) -> bool:
    return importlib.util.find_spec(f"benchmarks.chaos.{name}") is not None


def _one(module_name: str, workdir: Path, quick: bool, out: Path) -> int:
    """The child's job: run one scenario, write its row as JSON. SIGTERM unwinds it (servers stopped)."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"stopped by the runner (signal {signum})")

    signal.signal(signal.SIGTERM, stop)
    module = importlib.import_module(module_name)
    row: ScenarioResult = module.run(workdir, quick=quick)
    own = {f.name for f in fields(ScenarioResult)}  # a scenario may return a richer row: the table's columns
    out.write_text(json.dumps({k: v for k, v in asdict(row).items() if k in own} | {"errors": dict(row.errors)},
                              default=str))  # fmt: skip
    return 0


def _kill_session(session: int) -> None:
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError):
            if os.getsid(int(proc.name)) == session:
                os.kill(int(proc.name), signal.SIGKILL)


def run_scenario(
    name: str, workdir: Path, quick: bool, timeout_s: float, module: str | None = None
) -> tuple[ScenarioResult, float]:
    """One scenario (``module``, by default ``benchmarks.chaos.<name>``) in a child process under ``timeout_s``;
    a crash or a timeout is a failed row."""
    workdir.mkdir(parents=True, exist_ok=True)
    out, log = workdir / "row.json", workdir / "scenario.log"
    command = [sys.executable, "-m", "benchmarks.chaos", "--one", module or f"benchmarks.chaos.{name}",
               "--workdir", str(workdir),
               "--row", str(out), *(["--quick"] if quick else [])]  # fmt: skip
    started = time.monotonic()
    with log.open("w") as sink:
        child = subprocess.Popen(command, cwd=REPO, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code = child.wait(timeout=timeout_s)
            why = f"exit {code}"
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            code, why = -1, f"stopped after {timeout_s:.0f} s"
        finally:
            _kill_session(child.pid)  # whatever it left in its session (its own servers have their own sessions)
    seconds = time.monotonic() - started
    if code == 0 and out.exists():
        row = json.loads(out.read_text())
        row["errors"] = Counter(row["errors"])
        return ScenarioResult(**row), seconds
    tail = log.read_text()[-1500:] if log.exists() else ""
    failed = ScenarioResult(scenario=name, errors=Counter({"scenario failed": 1}), lost=1,
                            notes=f"FAILED ({why}); log {log}: …{tail[-600:]}")  # fmt: skip
    return failed, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="The smaller sizes the tests use.")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, help="Run only these scenarios.")
    parser.add_argument("--timeout-s", type=float, default=1200.0, help="Bound on each scenario (default 1200).")
    parser.add_argument("--workdir", type=Path, help="Where scenarios work (default: a temporary folder, removed).")
    parser.add_argument("--doc", type=Path, help="Write the table into this page's chaos block (docs/reliability.md).")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child: a scenario module to run
    parser.add_argument("--row", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        return _one(args.one, args.workdir, args.quick, args.row)

    names = list(args.only or SCENARIOS)
    missing = [n for n in names if not available(n)]
    rows: list[ScenarioResult] = []
    with contextlib.ExitStack() as stack:
        root = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bitpredict-chaos-")))
        for name in names:
            if name in missing:
                print(f"{name}: not available (benchmarks/chaos/{name}.py is not there)", flush=True)
                continue
            print(f"{name}: running (at most {args.timeout_s:.0f} s) …", flush=True)
            row, seconds = run_scenario(name, root / name, args.quick, args.timeout_s)
            rows.append(row)
            verdict = "kept the promise" if row.passed else "BROKE THE PROMISE"
            print(f"{name}: {verdict} in {seconds:.0f} s", flush=True)
    text = table(rows)
    notes = "\n".join(f"- {row.scenario}: {row.notes}" for row in rows if row.notes)
    unavailable = "".join(f"\n- {name}: not available" for name in missing)
    print(f"\n{text}\n\n{notes}{unavailable}")
    if args.doc:
        from bitpredict.docs_blocks import replace_block

        size = "quick sizes" if args.quick else "full sizes"
        generated = f"Generated by `make chaos` ({size}), {time.strftime('%Y-%m-%d', time.gmtime())}:\n\n"
        replace_block(args.doc, "chaos", f"{generated}{text}\n\n{notes}{unavailable}\n")
        print(f"table written into {args.doc}")
    return 0 if rows and all(row.passed for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
