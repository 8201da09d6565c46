"""Each image installs the core plus one extra (``pipeline``, ``serve``, ``ui``): that extra must cover what the
image's code imports, and the slim ones must stay slim.

What an image's code imports is read from the code, not listed by hand: every import statement in the files the
image runs (at the top or inside a function: a lazy import still runs there), plus the top-level imports of every
module of ours that importing those loads in a fresh interpreter. Each third-party module found that way must come
from a distribution in the installed requirement closure of ``bitpredict[<extra>]``. What third-party packages
import in turn is theirs to declare (``pip check`` in each image build). Dropping ``plotly`` from ``ui``, or
moving ``kserve`` out of ``serve``, fails here before an image build would.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
OWN = ("bitpredict", "inference", "ui", "components", "pipelines")

# image → (its extra, the files it runs whole, modules of ours it uses only at their top level)
IMAGES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "inference": (
        "serve",
        (
            "inference/transformer.py",
            "inference/predictor.py",
            "inference/server.py",
            "inference/guard.py",
            "inference/triton_layout.py",
        ),  # not serve_local.py: the one-machine launcher, which reads the MLflow registry
        (),
    ),
    # the UI calls inference.client's HTTP v2 request, not its gRPC one (which needs kserve's protobufs)
    "ui": ("ui", ("ui/app.py", "ui/data.py", "bitpredict/pipeline/tracking.py"), ("inference.client",)),
    "components": ("pipeline", ("components/*.py", "pipelines/*.py", "bitpredict/**/*.py"), ()),
}

# What the slim images must never pull in (each adds hundreds of MB to a pod's cold start).
NEVER: dict[str, set[str]] = {
    "serve": {"torch", "transformers", "mlflow", "evidently", "streamlit", "dvc", "kfp"},
    "ui": {"tensorflow", "torch", "transformers", "kserve", "mlflow", "evidently", "dvc", "kfp"},
}

PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    for name, attribute_ok in json.loads(sys.argv[1]):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:  # `from package import name` where name is not a module
            if not (attribute_ok and exc.name == name):
                raise
    own = tuple(json.loads(sys.argv[2]))
    print(json.dumps(sorted(m.__file__ for n, m in list(sys.modules.items())
                            if n.split(".")[0] in own and getattr(m, "__file__", None))))
    """
)


def _is_third_party(module: str) -> bool:
    top = module.split(".")[0]
    return top not in OWN and top not in sys.stdlib_module_names


def _imports(statements: list[ast.stmt]) -> set[tuple[str, bool]]:
    """(module, may-be-an-attribute) for each absolute import among ``statements``."""
    found: set[tuple[str, bool]] = set()
    for node in statements:
        if isinstance(node, ast.Import):
            found |= {(alias.name, False) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add((node.module, False))
            found |= {(f"{node.module}.{alias.name}", True) for alias in node.names if alias.name != "*"}
    return found


def every_import(path: Path) -> set[tuple[str, bool]]:
    """Every import in ``path``, at any depth (a function's lazy import included)."""
    return _imports(list(ast.walk(ast.parse(path.read_text()))))


def top_level_imports(path: Path) -> set[tuple[str, bool]]:
    """The imports that run when ``path`` is imported: the module body's, and those in its top-level try blocks."""
    body = ast.parse(path.read_text()).body
    statements = [*body, *(s for node in body if isinstance(node, ast.Try) for s in node.body)]
    return _imports(statements)


def files(patterns: tuple[str, ...]) -> list[Path]:
    return sorted({f for pattern in patterns for f in REPO.glob(pattern)})


def loaded_own_files(modules: list[tuple[str, bool]]) -> list[Path]:
    """The files of our modules that importing ``modules`` loads, in a fresh interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules), json.dumps(OWN)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, f"importing {modules} failed:\n{proc.stderr[-3000:]}"
    return [Path(f) for f in json.loads(proc.stdout.strip().splitlines()[-1])]


def third_party_imports(image: str) -> set[str]:
    """Top-level names of the third-party modules the image's code imports."""
    _, whole, reached = IMAGES[image]
    run_whole = files(whole)
    assert run_whole, f"no files match {whole}: the image's file list is stale"
    statements = set().union(*(every_import(f) for f in run_whole))
    loaded = loaded_own_files(sorted(statements | {(m, False) for m in reached}))
    statements |= set().union(*(top_level_imports(f) for f in loaded))
    return {name.split(".")[0] for name, _ in statements if _is_third_party(name)}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _applies(req: Requirement, extras: frozenset[str]) -> bool:
    return req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in (extras or {""}))


@functools.cache
def requirement_closure(dist: str, extras: frozenset[str] = frozenset()) -> frozenset[str]:
    """Canonical names of ``dist[extras]`` and everything it requires, transitively, as installed here."""
    todo: list[tuple[str, frozenset[str]]] = [(dist, extras)]
    visited: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (canonical(name), wanted) in visited:
            continue
        visited.add((canonical(name), wanted))
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # required only under a marker that does not hold here
        for line in requires:
            req = Requirement(line)
            if _applies(req, wanted):
                todo.append((req.name, frozenset(req.extras)))
    return frozenset(name for name, _ in visited)


def uncovered(tops: set[str], closure: frozenset[str]) -> list[str]:
    """The modules in ``tops`` that no distribution in ``closure`` supplies."""
    supplied_by = metadata.packages_distributions()
    missing = []
    for top in sorted(tops):
        dists = supplied_by.get(top)
        assert dists, f"no installed distribution supplies `{top}`"
        if not any(canonical(d) in closure for d in dists):
            missing.append(f"{top} (from {', '.join(dists)})")
    return missing


def test_every_image_extra_is_declared() -> None:
    extras = metadata.metadata("bitpredict").get_all("Provides-Extra") or []
    for extra, _, _ in IMAGES.values():
        assert extra in extras, f"pyproject.toml has no `{extra}` extra (installed metadata: {extras})"
    assert {"all", "dev"} <= set(extras)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_extra_covers_what_the_image_imports(image: str) -> None:
    extra = IMAGES[image][0]
    tops = third_party_imports(image)
    assert {"pandas", "numpy"} <= tops, f"the {image} import scan found too little: {sorted(tops)}"
    missing = uncovered(tops, requirement_closure("bitpredict", frozenset({extra})))
    assert not missing, f"the {image} image imports what bitpredict[{extra}] does not install: {missing}"


def test_the_scan_sees_lazy_imports() -> None:
    """TensorFlow is imported only inside the predictor's load(); streamlit's components only inside a function."""
    assert {"tensorflow", "kserve", "prometheus_client"} <= third_party_imports("inference")
    assert {"streamlit", "plotly", "mlflow", "httpx"} <= third_party_imports("ui")


@pytest.mark.parametrize("extra", sorted(NEVER))
def test_the_slim_extras_stay_slim(extra: str) -> None:
    heavy = requirement_closure("bitpredict", frozenset({extra})) & NEVER[extra]
    assert not heavy, f"bitpredict[{extra}] pulls in {sorted(heavy)}"


def test_all_is_the_union_of_the_image_extras() -> None:
    union = set().union(*(requirement_closure("bitpredict", frozenset({e})) for e, _, _ in IMAGES.values()))
    assert requirement_closure("bitpredict", frozenset({"all"})) == union


def test_the_check_catches_an_undeclared_import() -> None:
    """plotly is only in the ui extra, kserve only in serve: each other's extra must be found not to cover it."""
    assert uncovered({"plotly"}, requirement_closure("bitpredict", frozenset({"serve"})))
    assert uncovered({"kserve"}, requirement_closure("bitpredict", frozenset({"ui"})))
    assert not uncovered({"plotly"}, requirement_closure("bitpredict", frozenset({"ui"})))


def test_every_dockerfile_installs_the_core_and_its_images_extra() -> None:
    for image, (extra, _, _) in IMAGES.items():
        text = (REPO / image / "Dockerfile").read_text()
        # the core + the extra, through the extra's hashed lock (scripts/lock_hashes.sh compiles pyproject.toml's
        # core dependencies with that one extra into it)
        locks = set(re.findall(r"-r requirements/(lock-[a-z]+)\.txt", text))
        assert locks == {f"lock-{extra}"}, f"{image}/Dockerfile installs {locks}, not the {extra} extra's lock"
        assert f'compile "$out/lock-{extra}.txt" {extra}\n' in (REPO / "scripts" / "lock_hashes.sh").read_text()
