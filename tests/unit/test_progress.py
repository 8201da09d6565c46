"""The `make run` screen: one line per finished stage; a ticking line only on a terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

from pipelines.progress import StageBoard


def _events(path: Path, *events: dict) -> None:
    with path.open("a") as fh:
        for event in events:
            fh.write(json.dumps(event) + "\n")


def test_finished_stages_become_lines_and_partial_lines_wait(tmp_path: Path) -> None:
    progress = tmp_path / "p.jsonl"
    out = io.StringIO()
    board = StageBoard(out, tty=False)
    _events(progress, {"stage": "clean", "event": "start"},
            {"stage": "clean", "event": "end", "cached": True, "seconds": 0.04, "figure": "3710 days"})  # fmt: skip
    with progress.open("a") as fh:
        fh.write('{"stage": "train", "event": "end", "cach')  # still being written
    board.poll(progress)
    board.tick()  # no terminal: nothing drawn
    assert out.getvalue() == "  clean       reused    0.0 s  3710 days\n"
    with progress.open("a") as fh:
        fh.write('ed": false, "seconds": 12.5, "figure": "' + "x" * 200 + '"}\n')
    _events(progress, {"stage": "evaluate", "event": "failed", "seconds": 3.0, "error": "ValueError: bad"})
    board.poll(progress)
    lines = out.getvalue().splitlines()
    assert lines[1].startswith("  train       ran      12.5 s  xxx") and lines[1].endswith("…") and len(lines[1]) < 120
    assert lines[2] == "  evaluate    FAILED    3.0 s  ValueError: bad"
    assert board.failed is not None and board.failed.name == "evaluate" and len(board.finished) == 3


def test_on_a_terminal_the_running_stage_ticks_in_place(tmp_path: Path) -> None:
    progress = tmp_path / "p.jsonl"
    out = io.StringIO()
    board = StageBoard(out, tty=True)
    _events(progress, {"stage": "train", "event": "start"})
    board.poll(progress)
    board.tick()
    assert out.getvalue().startswith("\r\033[K  train") and "running" in out.getvalue()
    _events(progress, {"stage": "train", "event": "end", "seconds": 5.0, "figure": "2 epochs"})
    board.poll(progress)
    assert out.getvalue().endswith("\r\033[K  train       ran       5.0 s  2 epochs\n")  # the ticker line is replaced
