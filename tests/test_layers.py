"""The package's layering, enforced: every import (function-local ones too) points down or sideways
within a layer, and no two modules import each other, directly or through others.

Layers, lowest first (README "Layout"):

    common → geometry (incl. geometry.perception) → neural_fields → render → pipelines

``assets`` holds data only; ``headveil`` (the root ``__init__``) and ``headveil.__main__`` sit on top.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("common", "geometry", "neural_fields", "render", "pipelines")
SKIP = {"tests", "benchmarks", "build", "dist"}


def _modules() -> dict[str, Path]:
    mods = {}
    for p in ROOT.rglob("*.py"):
        rel = p.relative_to(ROOT)
        if rel.parts[0] in SKIP or any(x.startswith(".") for x in rel.parts) or rel.name == "setup.py":
            continue
        name = ".".join(("headveil",) + rel.with_suffix("").parts)
        mods[name[: -len(".__init__")] if name.endswith(".__init__") else name] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the package, from every import statement in the file."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        pkg = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                # `from pkg import sub` imports the submodule (and runs pkg's __init__, which is pkg's own business)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != m and t != "headveil":
                    graph[m].add(t)
    return graph


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) < 2 or parts[1] == "__main__":
        return len(LAYERS)
    if parts[1] == "assets":
        return 0
    return LAYERS.index(parts[1])


def test_no_import_points_up():
    up = sorted(f"{a} → {b}" for a, bs in import_graph().items() for b in bs if layer(b) > layer(a))
    assert not up, "imports that point up the layers:\n" + "\n".join(up)


def test_no_import_cycles():
    graph = import_graph()
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_the_checks_see_function_local_imports():
    """The graph must include imports inside functions (where most optional imports live)."""
    graph = import_graph()
    assert "headveil.render.texture" in graph["headveil.pipelines.deid"]  # imported inside _output_mesh()
    assert layer("headveil.render.field") > layer("headveil.neural_fields.head_field")
