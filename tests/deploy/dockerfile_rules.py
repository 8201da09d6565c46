"""The Dockerfile rules of this project, as a small parser and one function that lists what a Dockerfile breaks.

A slim Python 3.11 base pinned to a patch release, multi-stage with a final stage that installs no compilers and
keeps no pip cache, a numeric non-root ``USER``, a ``HEALTHCHECK`` (``NONE`` only with a comment saying why), pip
always constrained by the lock, no remote ``ADD``, no secret baked into ``ENV``/``ARG``, exec-form
``CMD``/``ENTRYPOINT``; and a ``.dockerignore`` that keeps ``.git``, ``.venv``, ``data/`` and ``.env`` out of the
build context. ``tests/deploy/test_dockerfiles.py`` runs them on the real files and on broken copies.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from tests.deploy.tools import REPO

DOCKERFILES = {
    "components": REPO / "components" / "Dockerfile",
    "inference": REPO / "inference" / "Dockerfile",
    "ui": REPO / "ui" / "Dockerfile",
}
# KFP starts every task with its own command and the task lives minutes: a HEALTHCHECK has nothing to watch.
HEALTHCHECK_NONE_ALLOWED = {"components"}
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim(?:-[a-z]+)?(?:@sha256:[0-9a-f]{64})?$")
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# a pip install takes the hashed lock (scripts/lock_hashes.sh), or installs the project itself without its deps
HASHED = re.compile(r"--require-hashes\b.*\s-r\s+requirements/lock-[a-z]+\.txt\b", re.S)
PROJECT_ONLY = re.compile(r"--no-deps\b.*\s\.(?:\s|$)", re.S)
PIP_INSTALL = re.compile(r"\bpip3?\s+install\b")
COMPILERS = re.compile(
    r"\b(?:gcc|g\+\+|clang|cc|build-essential|make|cmake|gfortran|cargo|rustc|python3?-dev|libc6?-dev)\b"
)
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
DOCKERIGNORE_REQUIRED = (".git", ".venv", "data", ".env")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, …
    args: str  # continuation lines joined, comment lines dropped
    line: int  # 1-based line of the keyword
    comment: str  # the comment block directly above ("" when none)


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """Instructions grouped by build stage (a new stage at every FROM); ARGs before the first FROM are left out."""
    return _parse(text)[1]


def global_arg_defaults(text: str) -> dict[str, str | None]:
    """The ARGs declared before the first FROM (the only ones a FROM line can use), with their defaults."""
    return dict(pair for ins in _parse(text)[0] for pair in _env_pairs(ins.args))


def _parse(text: str) -> tuple[list[Instruction], list[list[Instruction]]]:
    """(the ARG instructions before the first FROM, the instructions of each stage)."""
    stages: list[list[Instruction]] = []
    global_args: list[Instruction] = []
    comment: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i].strip()
        start = i + 1
        i += 1
        if not raw:
            comment = []
            continue
        if raw.startswith("#"):
            comment.append(raw.lstrip("#").strip())
            continue
        parts = [raw]
        while parts[-1].endswith("\\") and i < len(lines):
            parts[-1] = parts[-1][:-1]
            nxt = lines[i].strip()
            i += 1
            if not nxt.startswith("#"):  # Docker drops comment lines inside a continuation
                parts.append(nxt)
        keyword, _, args = " ".join(p.strip() for p in parts).partition(" ")
        ins = Instruction(keyword.upper(), args.strip(), start, " ".join(comment))
        comment = []
        if ins.keyword == "FROM":
            stages.append([])
        if not stages:
            if ins.keyword == "ARG":  # an ARG before the first FROM is allowed
                global_args.append(ins)
                continue
            raise ValueError(f"line {start}: {ins.keyword} before the first FROM")
        stages[-1].append(ins)
    return global_args, stages


def _expand_args(value: str, defaults: dict[str, str | None]) -> str | None:
    """``value`` with ``$NAME`` / ``${NAME}`` replaced by the ARG defaults; None when one has no default."""
    missing = False

    def default(match: re.Match[str]) -> str:
        nonlocal missing
        found = defaults.get(match.group(1) or match.group(2))
        missing = missing or found is None
        return found or ""

    expanded = re.sub(r"\$\{(\w+)\}|\$(\w+)", default, value)
    return None if missing else expanded


def _from_parts(ins: Instruction) -> tuple[str, str | None]:
    """(image, stage alias) of a FROM instruction, ignoring --platform and the like."""
    words = [w for w in ins.args.split() if not w.startswith("--")]
    alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
    return words[0], alias


def _env_pairs(args: str) -> list[tuple[str, str | None]]:
    """(name, value) of an ENV or ARG instruction; value None when none is given."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = args.split()
    if not words:
        return []
    if "=" not in words[0]:  # legacy `ENV NAME value with spaces` or `ARG NAME`
        return [(words[0], " ".join(words[1:]) or None)]
    pairs: list[tuple[str, str | None]] = []
    for word in words:
        name, sep, value = word.partition("=")
        pairs.append((name, value if sep else None))
    return pairs


def dockerfile_problems(text: str, *, healthcheck_none_allowed: bool = False) -> list[str]:
    """Every rule this project holds its Dockerfiles to; an empty list when all hold."""
    problems: list[str] = []
    stages = parse_dockerfile(text)
    if not stages:
        return ["no FROM"]
    aliases: list[str] = []
    defaults = global_arg_defaults(text)
    for stage in stages:
        written, alias = _from_parts(stage[0])
        image = _expand_args(written, defaults)
        if image is None:
            problems.append(
                f"line {stage[0].line}: base image {written!r} uses an ARG with no default before the first FROM "
                "(a plain `docker build` would have no base image)"
            )
        elif image not in aliases and not BASE_IMAGE.match(image):
            problems.append(
                f"line {stage[0].line}: base image {image!r} is not a slim python 3.11 pinned to a patch release "
                "(e.g. python:3.11.11-slim-bookworm)"
            )
        elif image not in aliases and not DIGEST.search(image):
            problems.append(f"line {stage[0].line}: base image {image!r} is not pinned by digest (@sha256:…)")
        if alias:
            aliases.append(alias)

    for ins in (ins for stage in stages for ins in stage):
        if ins.keyword == "RUN" and PIP_INSTALL.search(ins.args):
            for command in re.split(r"&&|;", ins.args):
                if PIP_INSTALL.search(command) and not (HASHED.search(command) or PROJECT_ONLY.search(command)):
                    problems.append(
                        f"line {ins.line}: pip install without --require-hashes -r requirements/lock-*.txt "
                        "(the hashed lock), and not the project alone (--no-deps .)"
                    )
        if ins.keyword == "ADD" and re.search(r"(?:https?|ftp)://|git@", ins.args):
            problems.append(f"line {ins.line}: ADD of a remote URL (download in a RUN with a checksum, or COPY)")
        if ins.keyword in ("ENV", "ARG"):
            for name, value in _env_pairs(ins.args):
                if SECRET_NAME.search(name) and value:
                    problems.append(f"line {ins.line}: {ins.keyword} {name} bakes a secret value into the image")

    if len(stages) < 2:
        problems.append("single stage: build in one stage and copy the result into a clean final stage")
    final = stages[-1]
    if len(stages) >= 2 and not any(ins.keyword == "COPY" and re.search(r"--from=(\S+)", ins.args) for ins in final):
        problems.append("the final stage copies nothing from the build stage (COPY --from=…)")
    final_env = " ".join(ins.args for ins in final if ins.keyword == "ENV")
    for ins in final:
        if ins.keyword != "RUN":
            continue
        installs = re.findall(r"(?:apt-get|apt|apk)\s+(?:install|add)\b([^;&|]*)", ins.args)
        if any(COMPILERS.search(pkgs) for pkgs in installs):
            problems.append(f"line {ins.line}: the final stage installs a compiler / build tools")
        if PIP_INSTALL.search(ins.args) and not (
            "--no-cache-dir" in ins.args or re.search(r"PIP_NO_CACHE_DIR=(?:1|true|on)", final_env, re.I)
        ):
            problems.append(f"line {ins.line}: pip install in the final stage keeps pip's cache (--no-cache-dir)")

    users = [ins for ins in final if ins.keyword == "USER"]
    if not users:
        problems.append("the final stage has no USER: the image runs as root")
    else:
        user = users[-1].args.split(":")[0].strip()
        if not user.isdigit():
            problems.append(
                f"line {users[-1].line}: USER {user!r} is not a numeric uid (the kubelet can only verify "
                "runAsNonRoot for numeric users)"
            )
        elif int(user) == 0:
            problems.append(f"line {users[-1].line}: USER 0 is root")

    checks = [ins for ins in final if ins.keyword == "HEALTHCHECK"]
    if not checks:
        problems.append("the final stage has no HEALTHCHECK")
    elif checks[-1].args.upper() == "NONE":
        if not healthcheck_none_allowed:
            problems.append(f"line {checks[-1].line}: HEALTHCHECK NONE in a long-running service image")
        elif not checks[-1].comment:
            problems.append(f"line {checks[-1].line}: HEALTHCHECK NONE needs a comment above it saying why")
    elif not re.search(r"\bCMD\b", checks[-1].args):
        problems.append(f"line {checks[-1].line}: HEALTHCHECK without CMD")

    for ins in final:
        if ins.keyword in ("CMD", "ENTRYPOINT") and not ins.args.startswith("["):
            problems.append(f"line {ins.line}: {ins.keyword} in shell form (use the JSON exec form)")
    return problems


def dockerignore_missing(text: str) -> list[str]:
    """The required exclusions a .dockerignore does not have."""
    patterns = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("!"):
            continue
        patterns.add(line.removeprefix("/").removeprefix("**/").rstrip("/"))
    return [p for p in DOCKERIGNORE_REQUIRED if p not in patterns]
