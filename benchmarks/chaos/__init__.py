"""Fault scenarios measured as a whole: ``make chaos`` runs each one on this machine and prints one table.

Each scenario module in this package exposes ``run(workdir: Path, quick: bool = False) -> ScenarioResult``: it
starts what it needs on 127.0.0.1 inside ``workdir``, injects its fault, measures, stops everything it started and
returns one row. The same function is what the tests call (``tests/chaos/``), so the figures in the manual's
reliability table and the assertions in the suite come from one code path.

Why a row has these columns: the promise is "a bad client, a dying dependency or a crashed job costs a clear error and
nothing else" — so the table shows what was sent, which errors came back (by code), how long the worst request waited
during the fault, how long recovery took, and what was lost (which must be 0).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ScenarioResult:
    """One row of the chaos table."""

    scenario: str
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # by code: "400", "503", "timeout", "5xx-client-input" …
    max_latency_s: float = 0.0  # the slowest request (or step) while the fault was active
    recovery_s: float | None = None  # fault removed → serving/working again; None when not applicable
    lost: int = 0  # rows, model versions or registry entries lost or half-written — must be 0
    client_input_5xx: int = 0  # 5xx answers to bad client input — must be 0
    notes: str = ""

    @property
    def passed(self) -> bool:
        """The promise: nothing lost, and no 5xx because a client sent something odd."""
        return self.lost == 0 and self.client_input_5xx == 0

    def errors_text(self) -> str:
        return ", ".join(f"{code}×{count}" for code, count in sorted(self.errors.items())) or "none"


def table(rows: list[ScenarioResult]) -> str:
    """The markdown table ``make chaos`` prints and ``docs/reliability.md`` embeds."""
    head = (
        "| scenario | requests | errors by code | max latency during fault | recovery | lost "
        "| 5xx from client input |\n"
        "|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for row in rows:
        recovery = "n/a" if row.recovery_s is None else f"{row.recovery_s:.1f} s"
        lines.append(
            f"| {row.scenario} | {row.requests} | {row.errors_text()} | {row.max_latency_s * 1000:.0f} ms | "
            f"{recovery} | {row.lost} | {row.client_input_5xx} |"
        )
    return "\n".join(lines)
