"""Code size limits: no function over 80 lines, no module over 400; see docs/architecture.md §5.

Covers the modules split so far (and the modules split out of them); the set is meant to grow to all
of jpq/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 80
MAX_MODULE_LINES = 400
CHECKED = sorted(
    {
        ROOT / "jpq" / "search" / "convert.py",
        ROOT / "jpq" / "search" / "groups.py",
        ROOT / "jpq" / "train" / "loop.py",
        ROOT / "jpq" / "train" / "checkpoint.py",
        *(ROOT / "jpq" / "data").glob("synthetic*.py"),
    }
)


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines from the first decorator (or ``def``) to the last line of the body, docstring included."""
    first = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
    return int(fn.end_lineno or fn.lineno) - first + 1


def test_the_checked_modules_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in CHECKED}
    assert {"jpq/search/convert.py", "jpq/train/loop.py", "jpq/data/synthetic.py"} <= names
    assert all(p.is_file() for p in CHECKED)


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_module_and_function_sizes(path: Path) -> None:
    text = path.read_text()
    n_lines = len(text.splitlines())
    assert n_lines <= MAX_MODULE_LINES, f"{path.name} has {n_lines} lines (> {MAX_MODULE_LINES})"
    long = {
        f"{fn.name} (line {fn.lineno})": _lines(fn)
        for fn in _functions(ast.parse(text))
        if _lines(fn) > MAX_FUNCTION_LINES
    }
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines in {path.name}: {long}"


def test_the_measure_counts_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    fn = _functions(ast.parse(f"@staticmethod\ndef f():\n{body}\n"))[0]
    assert _lines(fn) == MAX_FUNCTION_LINES + 2
