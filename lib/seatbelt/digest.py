"""Digests of the library's code for cache keys, blind to comments, docstrings and layout.

A cache key must change when the code that produced an entry could compute something else, and
only then: a typo fixed in a docstring must not retrain the zoo (about an hour on 2 cores). So a
module is digested through its syntax tree (:func:`ast.parse`, which drops comments and layout)
with every docstring removed, and named by its dotted module name rather than its file path:
``seatbelt/models.py`` moved to ``seatbelt/models/__init__.py`` keeps its key.

Anything that can change a computed value still changes the digest: a constant, an expression,
a default argument, an import, a decorator. The tree's text depends on the Python version, so a
new Python re-keys the caches, which is the safe direction.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:]
    return tree


def normalised_source(text: str, filename: str = "<source>") -> str:
    """The module's syntax tree as text, without comments, docstrings, line numbers or layout."""
    tree = _strip_docstrings(ast.parse(text, filename=filename))
    return ast.dump(tree, annotate_fields=True, include_attributes=False)


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``data/dsprites.py`` -> ``data.dsprites``; ``data/__init__.py`` -> ``data`` (relative to the
    package)."""
    parts = list(path.relative_to(package).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "."


def modules(names: Iterable[str], package: Path = PACKAGE) -> dict[str, Path]:
    """The modules that ``names`` denote: a module (``models``) or a subpackage with all of its
    modules (``data``).

    Raises FileNotFoundError for a name the package lacks, so a stale list of sources fails loudly
    instead of silently dropping code from a key.
    """
    found: dict[str, Path] = {}
    for name in names:
        base = package.joinpath(*name.split("."))
        if base.is_dir():
            files = sorted(base.rglob("*.py"))
        elif base.with_suffix(".py").exists():
            files = [base.with_suffix(".py")]
        else:
            raise FileNotFoundError(
                f"code digest: the package {package} has no module {name!r}; "
                f"fix the list of sources that names it."
            )
        found.update({module_name(f, package): f for f in files})
    return found


def all_modules(package: Path = PACKAGE, exclude: Iterable[str] = ()) -> dict[str, Path]:
    """Every module of the package except those under the names in ``exclude``."""
    excluded = tuple(exclude)
    found = {module_name(f, package): f for f in sorted(package.rglob("*.py"))}
    return {
        m: f for m, f in found.items() if not any(m == x or m.startswith(x + ".") for x in excluded)
    }


def digest(found: dict[str, Path]) -> str:
    """A hash of the normalised source of each module, keyed by module name."""
    h = hashlib.sha256()
    for name in sorted(found):
        h.update(
            name.encode()
            + b"\0"
            + normalised_source(found[name].read_text(), str(found[name])).encode()
            + b"\0"
        )
    return h.hexdigest()[:20]
