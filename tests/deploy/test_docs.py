"""The documentation: the README is a short front door, everything else is the MkDocs site under ``docs/``.

Checked here: the README stays within 250 lines and links every page of the site; ``mkdocs.yml``'s nav and the
pages in ``docs/`` are the same set; each generated block (results, ablation, replay, serving benchmark, chaos
table) has its markers exactly once, in its own page and nowhere else; and ``mkdocs build --strict`` — what
``make docs`` runs — builds the site, while a copy with a broken link, a missing anchor or a relative link out of
``docs/`` fails it (so the strict build really is the link check).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bitpredict.docs_blocks import markers

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
MKDOCS_YML = REPO / "mkdocs.yml"
README_MAX_LINES = 250

# Each generated block and the one page its command writes it into (`--doc docs/<page>`).
BLOCKS = {
    "results": "forecasting.md",
    "ablation": "forecasting.md",
    "rolling": "forecasting.md",
    "replay": "monitoring.md",
    "chaos": "reliability.md",
    "serving-bench": "serving.md",
}

HAS_MKDOCS = importlib.util.find_spec("mkdocs") is not None and importlib.util.find_spec("material") is not None
needs_mkdocs = pytest.mark.skipif(
    not HAS_MKDOCS, reason="mkdocs / mkdocs-material not installed (make docs needs them)"
)


def config() -> dict[str, Any]:
    return yaml.safe_load(MKDOCS_YML.read_text())


def nav_pages(nav: Any) -> list[str]:
    """The page files named in a nav (entries are `Title: page.md`, bare `page.md` or nested sections)."""
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [page for entry in nav for page in nav_pages(entry)]
    if isinstance(nav, dict):
        return [page for value in nav.values() for page in nav_pages(value)]
    return []


def mkdocs_build(config_file: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config_file)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's end-of-life banner, not a build warning
    return subprocess.run(
        [*command, "--site-dir", str(site_dir)],
        cwd=config_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_readme_is_a_short_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move detail into docs/"


def test_the_readme_links_every_page_of_the_site_and_nothing_missing() -> None:
    readme = README.read_text()
    linked = set(re.findall(r"\]\((docs/[^)#\s]+)", readme))
    for target in linked:
        assert (REPO / target).is_file(), f"README.md links {target}, which does not exist"
    for page in nav_pages(config()["nav"]):
        assert f"docs/{page}" in linked, f"README.md does not link docs/{page}"


def test_the_nav_and_the_pages_are_the_same_set() -> None:
    cfg = config()
    assert cfg["docs_dir"] == "docs" and cfg["theme"]["name"] == "material"
    nav = nav_pages(cfg["nav"])
    assert len(nav) == len(set(nav)), f"a page is in the nav twice: {nav}"
    assert nav[0] == "index.md", "the overview comes first"
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing, f"in mkdocs.yml's nav but not in docs/: {missing}"
    pages = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    left_out = [page for page in pages if page not in nav]
    assert not left_out, f"in docs/ but not in mkdocs.yml's nav: {left_out}"


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_each_generated_block_is_in_its_page_once_and_nowhere_else(name: str) -> None:
    start, end = markers(name)
    text = (DOCS / BLOCKS[name]).read_text()
    assert text.count(start) == 1 and text.count(end) == 1, f"{BLOCKS[name]}: {name} markers not exactly once"
    assert text.index(start) < text.index(end), f"{BLOCKS[name]}: {name} markers out of order"
    assert start not in README.read_text() and end not in README.read_text(), f"README.md still has the {name} block"
    for page in DOCS.rglob("*.md"):
        if page.name != BLOCKS[name]:
            assert start not in page.read_text(), f"docs/{page.name} has the {name} block too"


@needs_mkdocs
def test_the_site_builds_with_strict(tmp_path: Path) -> None:
    done = mkdocs_build(MKDOCS_YML, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    built = {path.relative_to(tmp_path / "site").as_posix() for path in (tmp_path / "site").rglob("*")}
    for page in nav_pages(config()["nav"]):
        html = "index.html" if page == "index.md" else f"{page.removesuffix('.md')}/index.html"
        assert html in built, f"{page} was not built"
    assert {"replay.png", "ui-market.png"} <= built, "the images in docs/ are not in the site"


BREAKAGES = {
    "a missing page": "[broken](no-such-page.md)",
    "a missing anchor": "[broken](forecasting.md#no-such-heading)",
    "a relative link out of docs/": "[broken](../Makefile)",
}


@needs_mkdocs
@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_link_fails_the_strict_build(tmp_path: Path, breakage: str) -> None:
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs")
    shutil.copy2(MKDOCS_YML, copy / "mkdocs.yml")
    page = copy / "docs" / "ui.md"
    page.write_text(page.read_text() + f"\n{BREAKAGES[breakage]}\n")
    done = mkdocs_build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0, f"mkdocs build --strict accepted {breakage}:\n{done.stdout}{done.stderr}"
    assert "ui.md" in done.stdout + done.stderr, "the failure does not name the page with the broken link"
