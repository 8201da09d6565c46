"""``notebooks/eda.ipynb``: it runs, offline, on the embedded sample, shows what its text says, and is committed bare.

Why it is executed in the default suite: the notebook calls the package (ingest's file import, clean, indicators,
merge, the baselines, the scores) rather than copying code, so a renamed function or a moved module breaks it
silently — here that is a failing test instead. It takes 10–20 s on two cores, TensorFlow's import included.

The kernel is this interpreter (a kernelspec written into a temporary folder for ``sys.executable``), not whatever
``python3`` kernel the machine has installed, so the notebook sees the same ``bitpredict`` as the tests.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = REPO_ROOT / "notebooks" / "eda.ipynb"
CELL_TIMEOUT_S = 300
SECTIONS = ("1.", "2.", "3.", "4.", "5.")  # the "## N." headings, each with at least one figure
BASELINES = ("ewma", "empirical", "garch", "har")
IDENTITY_MARK = "kernel interpreter:"


def _kernel_manager(folder: Path) -> Any:
    """A kernel manager whose only kernel runs ``sys.executable -m ipykernel_launcher``."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    write_kernel_spec(folder / "kernels" / "bitpredict-tests")
    specs = KernelSpecManager(kernel_dirs=[str(folder / "kernels")], ensure_native_kernel=False)
    return KernelManager(kernel_name="bitpredict-tests", kernel_spec_manager=specs)


def _code_sources(nb: Any) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def _stdout(nb: Any) -> str:
    return "".join(
        output.text
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "stream" and output.name == "stdout"
    )


def _figures_per_section(nb: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    section = None
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            heading = re.match(r"## (\d+\.)", cell.source)
            section = heading.group(1) if heading else section
        elif section is not None:
            images = sum("image/png" in output.get("data", {}) for output in cell.outputs)
            counts[section] = counts.get(section, 0) + images
    return counts


def _number(text: str, label: str) -> float:
    match = re.search(rf"^{re.escape(label)}\s*(-?[\d.]+)", text, re.MULTILINE)
    assert match, f"the notebook printed no line starting {label!r}"
    return float(match.group(1))


@pytest.fixture
def executed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, set[str]]:
    """The notebook executed in memory (the file is not touched), and the files its folder gained meanwhile."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))  # connection files, not in ~
    before = set(NOTEBOOK.parent.iterdir())
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"import sys\nprint({IDENTITY_MARK!r}, sys.executable, sys.prefix)"))
    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # the kernel starts where Jupyter would start it
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on the first failing cell
    return nb, {p.name for p in set(NOTEBOOK.parent.iterdir()) - before}


def test_the_notebook_runs_on_the_sample_and_shows_what_it_says(executed: tuple[Any, set[str]]) -> None:
    nb, new_files = executed
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    text = _stdout(nb)

    # The kernel was this interpreter, so the notebook ran against the package under test.
    assert f"{IDENTITY_MARK} {sys.executable} {sys.prefix}" in text

    # Every section shows a figure.
    figures = _figures_per_section(nb)
    assert all(figures.get(s, 0) >= 1 for s in SECTIONS), figures

    # Section 1: the clean stage's 1,819 complete UTC days of the sample.
    assert "daily: 1,819 complete UTC days (2019-11-21 → 2024-11-12)" in text
    # Section 2: fat tails — positive excess kurtosis.
    assert _number(text, "excess kurtosis:") > 0
    # Section 3: volatility clusters — the size of a move is autocorrelated.
    assert _number(text, "ACF of squared returns at lag 1:") > 0
    assert _number(text, "ACF of absolute returns at lag 1:") > abs(_number(text, "ACF of returns at lag 1:"))
    # Section 4: the range estimators track hourly realised variance better than the squared daily return.
    squared = _number(text, "squared return: corr of logs with log RV")
    assert _number(text, "Garman–Klass: corr of logs with log RV") > squared
    assert _number(text, "Parkinson: corr of logs with log RV") > squared
    # Section 5: every baseline forecast the test year, with a plausible 80 % interval and a positive loss.
    for kind in BASELINES:
        match = re.search(rf"^{kind}: 80 % coverage ([\d.]+)%, mean pinball ([\d.]+) %", text, re.MULTILINE)
        assert match, f"no scores printed for {kind}"
        assert 50 < float(match.group(1)) < 100
        assert float(match.group(2)) > 0

    # It wrote nothing beside itself (no data, no checkpoints): a clean clone stays clean.
    assert not new_files, new_files


def test_the_committed_notebook_has_no_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4
    stale = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not stale, f"cells {stale} carry outputs or execution counts: clear them before committing"


def test_the_notebook_calls_the_package_and_copies_no_code() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # Magics (``%matplotlib inline``) are not Python; everything else must parse.
    trees = [
        ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith("%")))
        for source in _code_sources(nb)
    ]
    nodes = [node for tree in trees for node in ast.walk(tree)]
    imported = {n.module for n in nodes if isinstance(n, ast.ImportFrom) and n.module}
    assert {m for m in imported if m.startswith("bitpredict.")}, "the notebook must use the package"
    defined = [n.name for n in nodes if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    assert not defined, f"the notebook defines {defined}: call bitpredict instead of copying its code"
