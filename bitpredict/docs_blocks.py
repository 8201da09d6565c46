"""Generated blocks of the documentation: the text between ``<!-- name:start -->`` and ``<!-- name:end -->``.

Why: every figure the manual quotes (results, ablation, replay, serving benchmark, chaos table) is written by the
command that measured it, never typed. Each command takes ``--doc <page>`` and replaces its block in that page
(``docs/forecasting.md``, ``docs/monitoring.md``, ``docs/serving.md``, ``docs/reliability.md``); a page without the
block's markers is an error that names them, and the rest of the page is left as it was.
"""

from __future__ import annotations

from pathlib import Path

from bitpredict.errors import InputError


def markers(name: str) -> tuple[str, str]:
    """The start and end marker lines of block ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_block(page: Path, name: str, text: str) -> None:
    """Replace what lies between block ``name``'s markers in ``page`` with ``text`` (one newline kept around it)."""
    start, end = markers(name)
    content = page.read_text(encoding="utf-8")
    if content.count(start) != 1 or content.count(end) != 1:
        raise InputError(f"{page}: expected one '{start}' … '{end}' pair of markers to replace")
    head, rest = content.split(start, 1)
    body = text if text.endswith("\n") else text + "\n"
    page.write_text(f"{head}{start}\n{body}{end}{rest.split(end, 1)[1]}", encoding="utf-8")
