"""Imports point one way (docs: /work/shared/design/architecture.md, section 1):

    config, results -> registry -> data -> models, baselines -> engine -> sweep -> reports -> cli

Checked statically: every module under ``ifdd_bench/`` and ``baselines/`` (and ``cli.py``) is
parsed with :mod:`ast`, nothing is imported. Module-level and function-level imports both count,
as do ``importlib.import_module("literal")`` / ``__import__("literal")`` calls; imports of a name
held in a variable (the registry loading ``MODEL_MODULES``, ``ifdd_bench.data``'s lazy exports)
are invisible here by construction. A module may import its own layer or any lower one.

Violations that exist today are listed in :data:`KNOWN`; the test fails on any new violation and
on a listed one that has gone, so the list only shrinks; import cycles between modules likewise
(:data:`KNOWN_CYCLES`).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: layers, lowest first; a module maps to the first rule its dotted name matches (exact module or
#: package prefix; "=name" matches that module alone, so a new ifdd_bench module must be placed)
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("ifdd_bench.config", "ifdd_bench.results", "ifdd_bench.errors", "ifdd_bench.atomic",
              "ifdd_bench.hashing", "ifdd_bench.events", "ifdd_bench.clipstats", "ifdd_bench.extras",
              "ifdd_bench.cpus")),
    ("registry", ("ifdd_bench.registry", "ifdd_bench.spec", "ifdd_bench.recipe")),
    ("data", ("ifdd_bench.data",)),
    ("models", ("ifdd_bench.models", "baselines")),
    ("engine", ("ifdd_bench.engine", "ifdd_bench.pretext")),
    ("sweep", ("ifdd_bench.sweep",)),
    ("reports", ("ifdd_bench.reports",)),
    # the command line, the display module only it imports, and the package's Python API
    ("cli", ("cli", "ifdd_bench.console", "ifdd_bench.readme_models", "=ifdd_bench", "ifdd_bench.api")),
]
RANK = {name: i for i, (name, _) in enumerate(LAYERS)}

#: (importer, imported) pairs that break the direction today. Remove a line when its import is
#: fixed; the test says so when one disappears.
KNOWN: set[tuple[str, str]] = set()

#: import cycles between modules (any layer) that exist today, each as the set of its modules.
KNOWN_CYCLES: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = [*ROOT.joinpath("ifdd_bench").rglob("*.py"), *ROOT.joinpath("baselines").rglob("*.py"), ROOT / "cli.py"]
    return {_module_name(p): p for p in sorted(files) if p.exists() and "__pycache__" not in p.parts}


def _layer(module: str) -> str | None:
    for name, prefixes in LAYERS:  # "=name": that module only, not the package below it
        if any(module == p.lstrip("=") or (not p.startswith("=") and module.startswith(p + "."))
               for p in prefixes):
            return name
    return None  # third-party or standard library


def _imports(module: str, path: Path, known_modules: set[str]) -> set[tuple[str, int]]:
    """``(imported module, line)`` for every import statement and literal import call in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {(alias.name, node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                package = module.split(".") if is_pkg else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{base}.{alias.name}"
                found.add((sub if sub in known_modules else base, node.lineno))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Name) and node.func.id == "__import__")
                   or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"))):
            found.add((node.args[0].value, node.lineno))
    return found


def _all_imports() -> dict[str, set[tuple[str, int]]]:
    sources = _sources()
    return {mod: _imports(mod, path, set(sources)) for mod, path in sources.items()}


def test_every_module_has_a_layer():
    unmapped = sorted(m for m in _sources() if _layer(m) is None)
    assert not unmapped, f"modules outside every layer (add them to LAYERS): {unmapped}"


def test_imports_point_one_way():
    violations: dict[tuple[str, str], list[str]] = {}
    for module, imports in _all_imports().items():
        mine = _layer(module)
        for target, line in imports:
            theirs = _layer(target)
            if theirs is not None and RANK[theirs] > RANK[mine]:
                violations.setdefault((module, target), []).append(f"{module} ({mine}) line {line} imports "
                                                                  f"{target} ({theirs})")
    new = sorted(set(violations) - KNOWN)
    gone = sorted(KNOWN - set(violations))
    report = [line for pair in new for line in violations[pair]]
    assert not new, "imports against the layer order:\n  " + "\n  ".join(report)
    assert not gone, f"fixed, remove from KNOWN: {gone}"


def _cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.add(frozenset(component))
    return found


def test_no_import_cycles():
    imports = _all_imports()
    graph = {m: {t for t, _ in imps if t in imports and t != m} for m, imps in imports.items()}
    cycles = _cycles(graph)
    new = sorted(sorted(c) for c in cycles - KNOWN_CYCLES)
    gone = sorted(sorted(c) for c in KNOWN_CYCLES - cycles)
    assert not new, f"modules that import each other (directly or in a ring): {new}"
    assert not gone, f"fixed, remove from KNOWN_CYCLES: {gone}"


def test_reports_never_import_torch():
    offenders = sorted(f"{module} line {line} imports {target}"
                       for module, imports in _all_imports().items()
                       if module == "ifdd_bench.reports" or module.startswith("ifdd_bench.reports.")
                       for target, line in imports
                       if target == "torch" or target.startswith("torch."))
    assert not offenders, offenders


def test_rendering_reports_loads_no_torch():
    """Transitively too: importing the renderer pulls in no module that imports torch."""
    code = ("import sys, ifdd_bench.reports.render; "
            "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')); "
            "print(loaded[:5]); sys.exit(1 if loaded else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"torch loaded by import ifdd_bench.reports.render: {proc.stdout}{proc.stderr}"
