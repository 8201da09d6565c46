"""One root: every exception class BitPredict defines derives from ``BitPredictError`` (read from the source)."""

from __future__ import annotations

import ast
from pathlib import Path

from bitpredict.errors import BitPredictError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("bitpredict", "pipelines")
BUILTIN_ERRORS = {"Exception", "ValueError", "RuntimeError", "KeyError", "OSError", "TypeError", "LookupError"}


def exception_classes() -> dict[str, list[str]]:
    """Every public class whose bases include an exception, with its bases (by name), across the packages."""
    classes: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
                    classes[f"{path.relative_to(REPO)}:{node.name}"] = bases
    errors: dict[str, list[str]] = {}
    names = set(BUILTIN_ERRORS) | {"BitPredictError"}
    changed = True
    while changed:  # subclasses of our own errors are errors too
        changed = False
        for where, bases in classes.items():
            if where not in errors and set(bases) & names:
                errors[where] = bases
                names.add(where.rsplit(":", 1)[1])
                changed = True
    return errors


def test_every_error_we_define_has_the_one_root() -> None:
    errors = exception_classes()
    assert len(errors) >= 14, sorted(errors)  # the scan sees them
    own = {where.rsplit(":", 1)[1] for where in errors}
    rootless = [w for w, bases in errors.items() if not ({"BitPredictError"} | own) & set(bases)]
    rootless.remove("bitpredict/errors.py:BitPredictError")  # the root itself
    assert not rootless, f"exception classes without BitPredictError among their bases: {rootless}"


def test_the_root_keeps_the_second_base_callers_catch() -> None:
    from bitpredict.config import ConfigError
    from bitpredict.data.sources.http import SourceError

    assert issubclass(ConfigError, BitPredictError) and issubclass(ConfigError, ValueError)
    assert issubclass(SourceError, BitPredictError) and issubclass(SourceError, RuntimeError)
