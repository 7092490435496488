"""Files that fit on a few screens and functions that do one thing, in core/, serve/, actors/.

A function's length runs from its `def` line to its last line (decorators not counted;
a nested function counts inside its parent and on its own). A module's length is its
number of lines. Each failure lists every offender with its length, longest first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "serve", "actors")
MAX_FUNCTION_LINES = 70
MAX_MODULE_LINES = 450


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def function_lengths(source: str) -> list[tuple[str, int, int]]:
    """(qualified name, first line, length) of every function and method in `source`."""
    found: list[tuple[str, int, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append((name, child.lineno, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def offenders(rows: list[tuple[str, int]], limit: int, what: str) -> str:
    rows = sorted(rows, key=lambda row: (-row[1], row[0]))
    listing = "\n".join(f"  {length:5d}  {name}" for name, length in rows)
    return f"{len(rows)} {what} over {limit} lines:\n{listing}"


def test_the_measure_counts_methods_async_and_nested_functions_from_def_to_last_line():
    source = (
        "class A:\n"
        "    @property\n"
        "    def one(self):\n"
        "        return 1\n"
        "\n"
        "async def two():\n"
        "    def inner():\n"
        "        pass\n"
        "    return inner\n"
    )
    assert function_lengths(source) == [("A.one", 3, 2), ("two", 6, 4), ("two.inner", 7, 2)]


def test_no_function_is_longer_than_70_lines():
    long = [
        (f"{path.relative_to(ROOT)}:{line} {name}", length)
        for path in modules()
        for name, line, length in function_lengths(path.read_text())
        if length > MAX_FUNCTION_LINES
    ]
    if long:
        pytest.fail(offenders(long, MAX_FUNCTION_LINES, "function(s)"), pytrace=False)


def test_no_module_is_longer_than_450_lines():
    long = [
        (str(path.relative_to(ROOT)), length)
        for path in modules()
        if (length := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    if long:
        pytest.fail(offenders(long, MAX_MODULE_LINES, "module(s)"), pytrace=False)
