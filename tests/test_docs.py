"""The map stays true: every file docs/architecture.md, CONTRIBUTING.md and the README name exists,
every module.function / Class.method on the architecture's path of a sample is defined, and
nothing in the repository refers to files outside it."""

from __future__ import annotations

import itertools
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = ["README.md", "CONTRIBUTING.md", "docs/architecture.md"]
SOURCES = ["agent", "collector", "proto", "bench", "packaging", "tests"]
# Where a path in the docs may be relative to: the repo, or a package folder the text is inside of.
BASES = ["", "agent/", "collector/", "proto/", "proto/cxpulse/", "proto/cxpulse/v1/"]
PATH = re.compile(r"(?<![\w./-])([\w./-]+\.(?:py|md|proto|toml|sh))(?!\w)")
# Placeholders of the how-to sections (a new kind `foo`) and files a user writes, not files of the tree.
EXAMPLES = re.compile(r"(^|/)((test_)?foo(_windows)?\.py|collector\.toml|agent\.toml|enroll\.toml)$")


@cache
def _files() -> tuple[set[str], set[str]]:
    rels, names = set(), set()
    for top in [REPO / s for s in SOURCES] + [REPO / "docs"]:
        for p in top.rglob("*"):
            if p.is_file() and "__pycache__" not in p.parts:
                rels.add(p.relative_to(REPO).as_posix())
                names.add(p.name)
    for p in REPO.iterdir():
        if p.is_file():
            rels.add(p.name)
            names.add(p.name)
    return rels, names


@cache
def _source() -> str:
    return "\n".join(
        p.read_text(errors="replace") for s in ("agent", "collector", "proto") for p in (REPO / s).rglob("*.py")
    )


def _exists(token: str) -> bool:
    rels, names = _files()
    token = token.removeprefix("./")
    if "/" not in token:
        return token in names
    return any(base + token in rels for base in BASES) or any(r.endswith("/" + token) for r in rels)


@pytest.mark.parametrize("doc", DOCS)
def test_every_file_the_doc_names_exists(doc):
    missing = []
    for n, line in enumerate((REPO / doc).read_text().splitlines(), 1):
        for m in PATH.finditer(line):
            token = m.group(1)
            if token.startswith(("http", "~")) or EXAMPLES.search(token):
                continue
            if not _exists(token):
                missing.append(f"{doc}:{n}: {token}")
    assert not missing, "files named in the docs that are not in the tree:\n" + "\n".join(missing)


def _sample_path() -> str:
    text = (REPO / "docs/architecture.md").read_text()
    start = text.index("## One sample")
    block = text[start:].split("```")[1]
    assert "commit_batches" in block
    return block


def test_every_function_on_the_path_of_a_sample_is_defined():
    src = _source()
    defined = set(re.findall(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", src, re.M))
    defined |= set(re.findall(r"^\s*(\w+)\s*[:=]", src, re.M))  # names and fields (REGISTRY, stored, ...)
    rels, _ = _files()
    modules = {Path(r).stem for r in rels if r.endswith(".py")}
    missing = []
    for chain in re.findall(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", _sample_path()):
        parts = chain.split(".")
        if parts[-1] in {"py", "md", "proto", "js"}:
            continue  # a file name, checked above
        for owner, name in itertools.pairwise(parts):
            if (owner[0].isupper() or owner in modules) and name not in defined:
                missing.append(f"{owner}.{name}")
    assert not missing, "named on the path of a sample in docs/architecture.md, defined nowhere: " + ", ".join(missing)


# The design notes live in docs/architecture.md ("Decisions that shape the code"), not beside the repository.
OUTSIDE = re.compile(r"\.\./shared|/work/|\bDESIGN\.md\b|\bSTYLE\.md\b")
TEXT = {".py", ".md", ".toml", ".spec", ".sh", ".proto", ".txt", ".cfg", ".yml", ".yaml", ".js", ".html", ".css"}
# Files allowed to refer outside the repository: none.
PENDING: set[str] = set()


def test_nothing_refers_to_files_outside_the_repository():
    found = set()
    tops = [REPO / s for s in [*SOURCES, "docs", ".ci"]] + [p for p in REPO.iterdir() if p.is_file()]
    for top in tops:
        for p in [top] if top.is_file() else top.rglob("*"):
            text = p.suffix in TEXT or (p.suffix == "" and p.parent.name == ".ci")  # .ci/run
            if p.is_file() and text and "__pycache__" not in p.parts and p != Path(__file__):
                if OUTSIDE.search(p.read_text(errors="replace")):
                    found.add(p.relative_to(REPO).as_posix())
    assert found <= PENDING, f"references outside the repository in: {sorted(found - PENDING)}"
