"""References in the code point into docs/: no document outside the repository is cited, and every
``docs/<file>.md §N`` names a section heading that exists in that file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SCANNED = ("jpq", "conf", "scripts", "tests")
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache"}
SELF = Path(__file__).resolve()

#: names of documents that are not part of the repository (spelled in pieces so this file does not match)
_OUTSIDE = [
    re.compile(r"algorithm" + r"\.md"),
    re.compile(r"design" + r"\.md"),
    re.compile(r"(?<!docs/)benchmarks" + r"\.md"),
    re.compile(r"\bissues?\s*#?\s*\d+", re.IGNORECASE),
]
#: ``docs/method.md §2.2, §11`` or ``docs/benchmarks.md §2.1/§3.1`` or ``docs/method.md §5.1-§5.4``
_REF = re.compile(
    r"docs/(method|benchmarks|architecture)\.md((?:[ \t]*(?:,|/|-|–|and)?[ \t]*§\s?\d+(?:\.\d+)*)+)"
)
_SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)")
_HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?\s", re.MULTILINE)


def _files() -> list[Path]:
    out = [ROOT / "README.md"]
    for top in SCANNED:
        for p in sorted((ROOT / top).rglob("*")):
            if p.is_file() and not SKIP_DIRS.intersection(p.parts) and p.resolve() != SELF:
                out.append(p)
    return out


def _text(p: Path) -> str | None:
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None  # binary files hold no references


def _sections(name: str) -> set[str]:
    return set(_HEADING.findall((DOCS / f"{name}.md").read_text(encoding="utf-8")))


def test_docs_exist_with_numbered_sections() -> None:
    for name in ("method", "benchmarks", "architecture"):
        assert (DOCS / f"{name}.md").is_file(), f"docs/{name}.md is missing"
        assert len(_sections(name)) >= 8, f"docs/{name}.md has too few numbered sections"


def test_no_reference_points_outside_the_repository() -> None:
    bad = []
    for p in _files():
        text = _text(p)
        if text is None:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if any(rx.search(line) for rx in _OUTSIDE):
                bad.append(f"{p.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "references outside the repository:\n" + "\n".join(bad)


def test_every_docs_reference_names_an_existing_section() -> None:
    sections = {name: _sections(name) for name in ("method", "benchmarks", "architecture")}
    bad, seen = [], 0
    for p in _files():
        text = _text(p)
        if text is None:
            continue
        for m in _REF.finditer(text):
            for num in _SECTION.findall(m.group(2)):
                seen += 1
                if num not in sections[m.group(1)]:
                    line = text.count("\n", 0, m.start()) + 1
                    bad.append(f"{p.relative_to(ROOT)}:{line}: docs/{m.group(1)}.md §{num}")
    assert not bad, "references to sections that do not exist:\n" + "\n".join(bad)
    if seen == 0:
        pytest.skip("no docs/ section references in the code yet")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see docs/method.md §2.2, §11 item 10", [("method", "2.2"), ("method", "11")]),
        ("(docs/benchmarks.md §2.1/§3.1/§4.1)", [("benchmarks", b) for b in ("2.1", "3.1", "4.1")]),
        ("docs/method.md §5.1-§5.4, §5.7.", [("method", "5.1"), ("method", "5.4"), ("method", "5.7")]),
        ("docs/architecture.md §5: names carry units", [("architecture", "5")]),
    ],
)
def test_reference_parser(text: str, expected: list[tuple[str, str]]) -> None:
    got = [(m.group(1), n) for m in _REF.finditer(text) for n in _SECTION.findall(m.group(2))]
    assert got == expected
