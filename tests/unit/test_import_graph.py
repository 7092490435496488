"""No import cycles between any two modules of the project (grimp, as import-linter uses).

import-linter's contracts (pyproject.toml, `make lint`) keep the layers and forbid cycles
between the children of each package; this test is the module-level rule over the whole
graph, tests included, and names every cycle it finds with the lines that make it.
Imports under `if TYPE_CHECKING:` count: a type that can only be named by dodging a cycle
sits in the wrong module.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

import grimp
import pytest

PACKAGES = ("core", "serve", "actors", "cli", "tests")

Graph = Mapping[str, frozenset[str]]


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's components of more than one module, each sorted, in sorted order (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def shortest_cycle(graph: Graph, component: Iterable[str]) -> list[str]:
    """The shortest import chain from the component's first module back to itself."""
    members = set(component)
    start = min(members)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    raise ValueError(f"{start} is on no cycle within {sorted(members)}")


def describe(graph: grimp.ImportGraph, chain: list[str]) -> str:
    """`a -> b -> a`, then each step with the line numbers of its imports."""
    steps = []
    for importer, imported in zip(chain, chain[1:], strict=False):
        details = graph.get_import_details(importer=importer, imported=imported)
        lines = ", ".join(str(d["line_number"]) for d in details) or "?"
        steps.append(f"    {importer} (line {lines}) imports {imported}")
    return " -> ".join(chain) + "\n" + "\n".join(steps)


def project_graph() -> tuple[grimp.ImportGraph, Graph]:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    edges = {m: frozenset(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    return graph, edges


def test_the_cycle_finder_names_a_cycle_and_ignores_a_diamond():
    edges = {
        "a": frozenset({"b", "c"}),
        "b": frozenset({"d"}),
        "c": frozenset({"d"}),
        "d": frozenset({"e"}),
        "e": frozenset({"b"}),
        "f": frozenset(),
    }
    assert strongly_connected(edges) == [["b", "d", "e"]]
    assert shortest_cycle(edges, ["b", "d", "e"]) == ["b", "d", "e", "b"]
    diamond = {**edges, "e": frozenset()}
    assert strongly_connected(diamond) == []


def test_no_module_imports_itself_back_through_others():
    graph, edges = project_graph()
    assert len(edges) > 50, f"grimp found only {sorted(edges)}: are the packages importable?"
    cycles = [
        f"{describe(graph, shortest_cycle(edges, c))}\n  (all in this cycle: {', '.join(c)})"
        for c in strongly_connected(edges)
    ]
    if cycles:
        pytest.fail(f"{len(cycles)} import cycle(s):\n" + "\n".join(cycles), pytrace=False)
