"""`python -m mmnar_lab.import_graph [PACKAGE ...]`: the import graph of the project, in figures anyone can
re-run: modules and imports, import cycles between the library's packages and between any modules, and
imports from the library into the app or the lab (which the layer rule forbids). `lint-imports` checks the
same rules as contracts (pyproject.toml); this prints what is there, so a before/after can be compared.

Static imports only (grimp reads the source, including imports inside functions); the lab's commands join
`mmnar` through entry points, which are not imports.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Iterable

LIBRARY = "mmnar_core"


def unit(module: str, depth: int = 2) -> str:
    """mmnar_core.explain.attributions -> mmnar_core.explain (a package or top-level module of the library)."""
    return ".".join(module.split(".")[:depth])


def strongly_connected(nodes: Iterable[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one node (each is an import cycle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:  # iterative, so deep graphs do not hit the recursion limit
        nonlocal counter
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(found)


def figures(packages: list[str]) -> dict:
    import grimp

    graph = grimp.build_graph(*packages, exclude_type_checking_imports=True)  # they never run
    modules = sorted(graph.modules)
    imports = {m: set(graph.find_modules_directly_imported_by(m)) for m in modules}
    units: dict[str, set[str]] = {}
    for module, targets in imports.items():
        for target in targets:
            a, b = unit(module), unit(target)
            if a != b and a.startswith(LIBRARY) and b.startswith(LIBRARY):
                units.setdefault(a, set()).add(b)
    library_units = {unit(m) for m in modules if m.startswith(LIBRARY + ".")}
    outward = sorted(
        f"{m} -> {t}"
        for m, targets in imports.items()
        if m.startswith(LIBRARY)
        for t in targets
        if not t.startswith(LIBRARY)
    )
    return {
        "packages": packages,
        "modules": len(modules),
        "imports": sum(len(t) for t in imports.values()),
        "library_package_cycles": strongly_connected(library_units, units),
        "module_cycles": strongly_connected(modules, imports),
        "library_to_app_or_lab": outward,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mmnar_lab.import_graph", description=__doc__.split("\n\n")[0])
    parser.add_argument("packages", nargs="*", help="root packages (default: mmnar_core mmnar_app, and mmnar_lab)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    packages = args.packages or [p for p in ("mmnar_core", "mmnar_app", "mmnar_lab") if importlib.util.find_spec(p)]
    result = figures(packages)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"packages: {', '.join(packages)}; {result['modules']} modules, {result['imports']} imports")
    print(f"cycles between the library's packages: {len(result['library_package_cycles'])}")
    for cycle in result["library_package_cycles"]:
        print("  " + " <-> ".join(cycle))
    print(f"cycles between modules: {len(result['module_cycles'])}")
    for cycle in result["module_cycles"]:
        print("  " + " <-> ".join(cycle))
    print(f"library -> app or lab imports: {len(result['library_to_app_or_lab'])}")
    for edge in result["library_to_app_or_lab"]:
        print("  " + edge)
    return 0


if __name__ == "__main__":
    sys.exit(main())
