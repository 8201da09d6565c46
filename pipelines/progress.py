"""The ``make run`` screen: one line per finished stage and, on a terminal, a ticking line for the running one.

The stages report through a JSON-lines file (``bitpredict.orchestration.stages.report_progress``); ``StageBoard`` reads
what is new in it and draws. On a terminal the running stage's line is redrawn in place (``\\r``) with its
elapsed time; elsewhere (CI logs, a pipe) only the finished lines are printed, one per stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
WIDTH = 88  # characters of a stage's figure: a whole line stays within 120


@dataclass
class StageLine:
    name: str
    cached: bool
    seconds: float
    figure: str
    error: str = ""

    def render(self) -> str:
        state = "FAILED" if self.error else ("reused" if self.cached else "ran")
        tail = self.error if self.error else self.figure
        if len(tail) > WIDTH:  # the summary and the log have the whole text
            tail = tail[: WIDTH - 1] + "…"
        return f"  {self.name:<11} {state:<6} {self.seconds:6.1f} s  {tail}".rstrip()


class StageBoard:
    """Reads progress events and draws the stage lines on ``out``."""

    def __init__(self, out: TextIO, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.interval = 0.2 if self.tty else 1.0
        self.finished: list[StageLine] = []
        self.failed: StageLine | None = None
        self.running: dict[str, float] = {}  # stage -> wall-clock start
        self._offset = 0
        self._ticks = 0
        self._drawn = False

    def poll(self, progress: Path) -> None:
        """Take in every complete event line written since the last poll."""
        try:
            with progress.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self._offset += end
        for raw in chunk[:end].splitlines():
            try:
                self.handle(json.loads(raw))
            except (ValueError, KeyError, TypeError):
                continue

    def handle(self, event: dict) -> None:
        name = event["stage"]
        if event["event"] == "start":
            self.running[name] = float(event.get("at", time.time()))
            return
        self.running.pop(name, None)
        line = StageLine(name, bool(event.get("cached")), float(event.get("seconds", 0.0)), event.get("figure", ""))
        if event["event"] == "failed":
            line.error = event.get("error", "failed")
            self.failed = line
        self.finished.append(line)
        self._clear()
        self.out.write(line.render() + "\n")
        self.out.flush()

    def tick(self) -> None:
        """Redraw the running stage's line (terminals only)."""
        if not self.tty:
            return
        self._ticks += 1
        if self.running:
            name, since = next(iter(self.running.items()))
            text = f"  {name:<11} {SPINNER[self._ticks % len(SPINNER)]} running {time.time() - since:5.0f} s"
        else:
            text = f"  {'…':<11} {SPINNER[self._ticks % len(SPINNER)]} starting"
        self.out.write("\r\033[K" + text)
        self.out.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.out.write("\r\033[K")
            self._drawn = False

    def finish(self) -> None:
        self._clear()
        self.out.flush()
