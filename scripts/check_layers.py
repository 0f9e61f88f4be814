"""The import-layering check: cli → api → leakage/robustness/defenses/report → embeddings → models →
frontend → corpus, never backwards, and no import cycle between modules.

Every ``import`` in ``ser_audit`` counts, the ones inside functions included: a lazy import
still makes the lower layer depend on the upper one; imports under ``if TYPE_CHECKING:`` do
not (they never run). ``execution`` (parallel executors) sits
with leakage; ``config``, ``errors``, ``files``, ``hashing``, ``progress``, ``dependencies``, ``devices``,
``plugins`` and ``schemas`` are shared leaves. ``testing`` holds test doubles and may import anything.

    python scripts/check_layers.py        # exit 1 and one line per violation when broken
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ser_audit"
# Lower number = higher layer; a module may import its own layer and those with larger numbers.
LAYERS = {
    "cli": 0, "__main__": 0,
    "api": 1, "runner": 1, "schemas": 1,
    "leakage": 2, "robustness": 2, "defenses": 2, "report": 2, "execution": 2,
    "embeddings": 3,
    "models": 4,
    "frontend": 5,
    "corpus": 6,
}
SHARED = {"errors", "files", "hashing", "progress", "dependencies", "devices", "plugins", "config", "__init__"}
EXEMPT = {"testing"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    type_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node.test)
                 for child in node.body for inner in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("ser_audit"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            if name.startswith("ser_audit"):
                found.add(name)
                found.update(f"{name}.{alias.name}" for alias in node.names)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def main() -> int:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: {target for target in imports(path) if target in modules} for name, path in modules.items()}
    problems = []
    for name, targets in sorted(graph.items()):
        source = top(name)
        if source in EXEMPT or source in SHARED:
            if source in SHARED:
                problems += [f"{name} is a shared leaf but imports {target}" for target in sorted(targets)
                             if top(target) not in SHARED]
            continue
        if source not in LAYERS:
            problems.append(f"{name}: package {source} has no layer; add it to scripts/check_layers.py")
            continue
        for target in sorted(targets):
            layer = top(target)
            if layer in SHARED:
                continue
            if layer in EXEMPT or layer not in LAYERS or LAYERS[layer] < LAYERS[source]:
                problems.append(f"{name} imports {target}: {source} may not depend on {layer}")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in cycles(graph)]
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


if __name__ == "__main__":
    sys.exit(main())
