"""The library's layers: no module imports from a layer above its own, and no two modules import
each other, directly or round a loop.

Why: the layers are what let a newcomer change one part without reading the rest (a loss never
needs the book runner, the runner never needs to know a loss), and they are what keep the cache
keys honest (``cache.WEIGHT_SOURCES`` names the layers below training; a module there that
imported the zoo would make the zoo's code part of every model's weights without anyone
deciding so). ARCHITECTURE.md explains them; :data:`LAYERS` below is their one definition.

Imports are read with :mod:`ast`, not by importing: absolute and relative ones, at module level
and inside functions (a function-level import is still a dependency; it only runs later).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "seatbelt"

# Lowest first. A module may import from its own layer and the layers below it, never above.
# Names are relative to seatbelt; a subpackage's name covers all its modules; "__init__" is
# seatbelt/__init__.py itself. A new module must be placed here (the test says so).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("__init__", "digest", "device", "progress")),
    ("data", ("data",)),
    ("models", ("gaussian", "tc", "nets", "models")),
    ("training", ("training", "cache")),
    ("attacks", ("attacks",)),
    (
        "analysis",
        (
            "metrics",
            "similarity",
            "overlap",
            "heldout",
            "disentanglement",
            "denoising",
            "classifiers",
            "decomposition",
            "defences",
            "claims",
            "plots",
            "style",
        ),
    ),
    ("zoo", ("zoo",)),
    ("chapters", ("chapters", "page")),
    ("book", ("book",)),
)


# --- reading the imports ----------------------------------------------------------------------


def modules(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (``seatbelt.data.images``; a package's
    ``__init__.py`` is the package's own name)."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _known(name: str, known: set[str]) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package, if any."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return None


def imports(module: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module of the package, line) for every import statement of ``path``."""
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package, up level - 1 packages
                here = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            # `from pkg import name` imports the module pkg.name when there is one, else pkg
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names
            ]
        else:
            continue
        targets = (_known(name, known) for name in names)
        found += [(t, node.lineno) for t in targets if t is not None and t != module]
    return sorted(set(found), key=lambda t: (t[1], t[0]))


def graph(package: Path) -> dict[str, dict[str, int]]:
    """module -> {imported module: first line importing it}."""
    found = modules(package)
    edges: dict[str, dict[str, int]] = {}
    for module, path in found.items():
        edges[module] = {}
        for target, line in imports(module, path, set(found)):
            edges[module].setdefault(target, line)
    return edges


# --- the rules --------------------------------------------------------------------------------


def layer_of(module: str, layers=LAYERS) -> int | None:
    """The index in ``layers`` of the entry naming ``module`` (or a package above it)."""
    name = module.partition(".")[2] or "__init__"
    matches = [
        (len(entry), index)
        for index, (_, names) in enumerate(layers)
        for entry in names
        if name == entry or name.startswith(entry + ".")
    ]
    return max(matches)[1] if matches else None  # the most specific entry wins


def where(package: Path, module: str, line: int) -> str:
    return f"{modules(package)[module].relative_to(package.parent)}:{line}"


def unplaced(package: Path, layers=LAYERS) -> list[str]:
    return [m for m in modules(package) if layer_of(m, layers) is None]


def upward_edges(package: Path, layers=LAYERS) -> list[str]:
    """One line per import of a module from a layer above the importer's."""
    problems = []
    for module, targets in graph(package).items():
        own = layer_of(module, layers)
        for target, line in targets.items():
            theirs = layer_of(target, layers)
            if own is not None and theirs is not None and theirs > own:
                problems.append(
                    f"{module} (layer {layers[own][0]}) imports {target} (layer "
                    f"{layers[theirs][0]}, above it) at {where(package, module, line)}"
                )
    return problems


def cycles(package: Path) -> list[str]:
    """One line per import cycle: the modules round the loop, each edge with its file and line."""
    edges = graph(package)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while not component or component[-1] != module:
                component.append(stack.pop())
            if len(component) > 1:
                components.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    problems = []
    for component in components:
        loop = _loop(component, edges)
        hops = [f"{a} -> {b} ({where(package, a, edges[a][b])})" for a, b in zip(loop, loop[1:])]
        problems.append("import cycle: " + "; ".join(hops))
    return problems


def _loop(component: list[str], edges: dict[str, dict[str, int]]) -> list[str]:
    """A shortest loop through the component's first module (breadth first), closed."""
    start, inside = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for module in frontier:
            for target in sorted(edges[module]):
                if target == start:
                    return paths[module] + [start]
                if target in inside and target not in paths:
                    paths[target] = paths[module] + [target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no loop through {start}")  # a component of 2+ always has one


# --- the library --------------------------------------------------------------------------------


def test_every_module_has_a_layer():
    missing = unplaced(PACKAGE)
    assert not missing, f"place these modules in a layer of LAYERS (this file): {missing}"


def test_no_module_imports_from_a_layer_above_its_own():
    problems = upward_edges(PACKAGE)
    assert not problems, "imports against the layers (ARCHITECTURE.md):\n" + "\n".join(problems)


def test_no_import_cycle():
    problems = cycles(PACKAGE)
    assert not problems, "\n".join(problems)


def test_the_module_map_names_every_module():
    """seatbelt/__init__.py's docstring is the one module map (README points to it)."""
    import seatbelt

    listed = set(re.findall(r"^    (\w+) ", seatbelt.__doc__, re.M))
    top = {m.split(".")[1] for m in modules(PACKAGE) if m.count(".") >= 1}
    assert top - listed == set(), f"add to the module map in seatbelt/__init__.py: {top - listed}"
    assert listed - top == set(), f"the module map names modules that are gone: {listed - top}"


# --- the checks themselves, on small packages made for them ---------------------------------------

LAYERS_OF_TOY = (("low", ("__init__", "low")), ("mid", ("mid",)), ("high", ("high",)))


def toy(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "seatbelt"
    for name, text in {"__init__.py": "", **files}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_an_upward_import_is_named_with_its_line_even_inside_a_function(tmp_path):
    package = toy(
        tmp_path,
        {
            "low.py": "import os\n\ndef f():\n    from . import high\n",
            "mid.py": "from .low import x\n",
            "high.py": "import seatbelt.mid\n",
        },
    )
    assert upward_edges(package, LAYERS_OF_TOY) == [
        "seatbelt.low (layer low) imports seatbelt.high (layer high, above it) at seatbelt/low.py:4"
    ]


def test_relative_imports_resolve_through_subpackages(tmp_path):
    package = toy(
        tmp_path,
        {
            "mid/__init__.py": "from .inner import y\n",
            "mid/inner.py": "from ..high import z\nfrom .. import low\n",
            "low.py": "",
            "high.py": "",
        },
    )
    assert graph(package)["seatbelt.mid"] == {"seatbelt.mid.inner": 1}
    assert graph(package)["seatbelt.mid.inner"] == {"seatbelt.high": 1, "seatbelt.low": 2}
    assert [p.split(" at ")[1] for p in upward_edges(package, LAYERS_OF_TOY)] == [
        "seatbelt/mid/inner.py:1"
    ]


def test_a_cycle_is_named_edge_by_edge(tmp_path):
    package = toy(
        tmp_path,
        {
            "low.py": "",
            "mid.py": "from . import high\n",
            "high.py": "import os\n\ndef f():\n    from .mid import g\n",
        },
    )
    assert cycles(package) == [
        "import cycle: seatbelt.high -> seatbelt.mid (seatbelt/high.py:4); "
        "seatbelt.mid -> seatbelt.high (seatbelt/mid.py:1)"
    ]
    assert upward_edges(package, LAYERS_OF_TOY) == [
        "seatbelt.mid (layer mid) imports seatbelt.high (layer high, above it) at seatbelt/mid.py:1"
    ]


def test_a_module_outside_every_layer_is_reported(tmp_path):
    package = toy(tmp_path, {"low.py": "", "stray.py": ""})
    assert unplaced(package, LAYERS_OF_TOY) == ["seatbelt.stray"]


@pytest.mark.parametrize(
    "name, layer",
    [
        ("seatbelt", "base"),
        ("seatbelt.book.runner", "book"),
        ("seatbelt.data.images", "data"),
        ("seatbelt.tc", "models"),
    ],
)
def test_layer_of_the_library_modules(name, layer):
    assert LAYERS[layer_of(name)][0] == layer
