"""Chapter parameters: what a notebook declares, what a profile sets, and the check between them.

A chapter declares its parameters in its one cell tagged ``parameters``, as literal
assignments (``steps = 300  # training steps``) whose values are the smoke-scale defaults.
A profile (``params/<profile>/<chapter>.yaml``) overrides some of them. Papermill only warns
about a key the notebook does not declare; here it is an error, and so is a value whose type
differs from the default's (an int is accepted where a float is declared; a bool is never an
int). Every value must be plain data: strings, finite numbers, booleans, null, and lists and
mappings of those (papermill writes any other type, such as YAML's ``!!binary``, into the
notebook unescaped). A default of ``None`` accepts a plain scalar, ``[]`` a list of scalars of
one type, ``{}`` a mapping of names to scalars. Seeds (``seed``, ``seeds``, ``*_seed``,
``*_seeds``) are non-negative integers.

The runner supplies :data:`RUNNER_KEYS` itself (where the chapter writes, which profile runs),
so a params file may not set them, and every chapter must declare ``results_dir``.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import yaml

from .toc import find_root

PROFILES = ("smoke", "cpu", "paper")
RUNNER_KEYS = ("results_dir", "profile")
REQUIRED_KEYS = ("results_dir",)
SCALARS = (str, int, float, bool, type(None))
SEED = re.compile(r"(.+_)?seeds?")


class ParameterError(ValueError):
    """A parameter set that does not fit what a notebook declares."""


@dataclass(frozen=True)
class Declared:
    name: str
    default: Any
    help: str = ""


def parameters_cell(nb: nbformat.NotebookNode, where: str) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(
            f"{where}: needs exactly one cell tagged 'parameters', found {len(cells)}."
        )
    return cells[0]


def declared_parameters(notebook: str | Path | nbformat.NotebookNode) -> dict[str, Declared]:
    """The parameters a notebook declares, with their literal defaults and inline comments."""
    where = str(notebook) if not isinstance(notebook, nbformat.NotebookNode) else "notebook"
    nb = (
        notebook
        if isinstance(notebook, nbformat.NotebookNode)
        else nbformat.read(notebook, as_version=4)
    )
    source = parameters_cell(nb, where).source
    lines = source.splitlines()
    declared = {}
    for node in ast.parse(source).body:
        target = (
            node.target
            if isinstance(node, ast.AnnAssign)
            else (
                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            )
        )
        if not isinstance(target, ast.Name) or node.value is None:
            raise ParameterError(
                f"{where}: line {node.lineno} of the parameters cell is not `name = literal`."
            )
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise ParameterError(
                f"{where}: parameter {target.id!r} has a default that is not a literal "
                f"(line {node.lineno}); compute derived values in a later cell."
            ) from None
        line = lines[node.end_lineno - 1]
        comment = line[node.end_col_offset :].strip()
        declared[target.id] = Declared(target.id, default, comment.lstrip("#").strip())
    missing = [k for k in REQUIRED_KEYS if k not in declared]
    if missing:
        raise ParameterError(
            f"{where}: the parameters cell must declare {missing} (the runner sets it)."
        )
    return declared


def _plain_problem(value: Any) -> str | None:
    """Why ``value`` is not plain data (see the module's docstring), or None when it is."""
    if type(value) is float and not math.isfinite(value):
        return f"got {value!r}; numbers must be finite"
    if type(value) in SCALARS:
        return None
    if type(value) is list:
        items = ((f"item {i}", v) for i, v in enumerate(value))
    elif type(value) is dict and all(type(k) is str for k in value):
        items = ((f"key {k!r}", v) for k, v in value.items())
    else:
        return (
            f"got {type(value).__name__} {value!r}; a parameter is a string, a number, "
            "a boolean, null, or a list or mapping of those"
        )
    for where, item in items:
        problem = _plain_problem(item)
        if problem:
            return f"{where}: {problem}"
    return None


def _type_problem(value: Any, default: Any) -> str | None:
    """Why ``value`` cannot replace ``default``, or None when it can."""
    plain = _plain_problem(value)
    if plain:
        return plain
    if default is None:  # an option: the chapter decides what None stands for
        if type(value) in SCALARS:
            return None
        return f"got {value!r}, expected a single value (the default is None)"
    expected = type(default)
    if expected is float and type(value) is int:
        return None
    if type(value) is not expected:
        hint = ""
        if expected is float and isinstance(value, str):
            try:
                float(value)
                hint = " (YAML reads 1e-3 as a string: write 1.0e-3)"
            except ValueError:
                pass
        return (
            f"got {type(value).__name__} {value!r}, expected {expected.__name__} like the default "
            f"{default!r}{hint}"
        )
    if expected is list:
        kinds = {type(d) for d in default}
        if len(kinds) == 1:
            for i, v in enumerate(value):
                problem = _type_problem(v, default[0])
                if problem:
                    return f"item {i}: {problem}"
        elif not default:  # no example: scalars of one kind (ints among floats)
            kinds = {float if type(v) is int else type(v) for v in value}
            if len(kinds) > 1 or any(type(v) not in SCALARS for v in value):
                return f"got {value!r}, expected a list of values of one type (the default is [])"
    if expected is dict and not default and any(type(v) not in SCALARS for v in value.values()):
        return f"got {value!r}, expected a mapping of names to single values (the default is {{}})"
    return None


def _seed_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is not a seed (or a list of seeds) for parameter ``name``; None if it is or
    ``name`` names no seed. Caught here, a seed of -1 fails before the training, not after it."""
    if not SEED.fullmatch(name):
        return None
    bad = [v for v in (value if type(value) is list else [value]) if type(v) is not int or v < 0]
    return f"got {bad[0]!r}; seeds are non-negative integers" if bad else None


def check(
    params: dict[str, Any], declared: dict[str, Declared], where: str, *, runner: bool = False
) -> list[str]:
    """Every problem of ``params`` against ``declared`` (empty when they fit).

    ``runner=False`` is a user's parameter set (a params file, a sweep point), which may not
    set the runner's keys; ``runner=True`` is the final set the runner passes to papermill.
    """
    problems = []
    names = ", ".join(declared)
    for key, value in params.items():
        if key not in declared:
            problems.append(f"{where}: unknown parameter {key!r}; the notebook declares: {names}.")
        elif key in RUNNER_KEYS and not runner:
            problems.append(f"{where}: {key!r} is set by the runner, not by a params file or grid.")
        else:
            problem = _type_problem(value, declared[key].default) or _seed_problem(key, value)
            if problem:
                problems.append(f"{where}: parameter {key!r}: {problem}.")
    return problems


def validate(
    params: dict[str, Any], declared: dict[str, Declared], where: str, *, runner: bool = False
) -> None:
    problems = check(params, declared, where, runner=runner)
    if problems:
        raise ParameterError("\n".join(problems))


def normalise(params: dict[str, Any], declared: dict[str, Declared]) -> dict[str, Any]:
    """Validated ``params`` with ints made floats where a float is declared, so that ``beta=2``
    and ``beta=2.0`` run (and cache) the same chapter."""
    return {
        k: float(v) if type(declared[k].default) is float and type(v) is int else v
        for k, v in params.items()
    }


def chapter_name(entry: str) -> str:
    """``book/intro`` -> ``intro``: the name of a chapter's params files."""
    return Path(entry).name


def profile_file(root: Path, profile: str, entry: str) -> Path:
    return root / "params" / profile / f"{chapter_name(entry)}.yaml"


def load_yaml(path: Path) -> dict[str, Any]:
    """A params file as a mapping (an empty file is no overrides)."""
    content = yaml.safe_load(path.read_text())
    if content is None:
        return {}
    if not isinstance(content, dict) or not all(isinstance(k, str) for k in content):
        raise ParameterError(f"{path}: must be a mapping of parameter names to values.")
    return content


def profile_params(
    root: Path, profile: str, entry: str, declared: dict[str, Declared]
) -> dict[str, Any]:
    """The overrides of ``profile`` for one chapter, checked against what it declares.

    smoke runs the notebook's own defaults (a smoke file is optional). Other profiles need a
    file for every chapter with parameters of its own, so a new chapter cannot silently run at
    smoke scale in a cpu or paper build.
    """
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; choose one of {PROFILES}.")
    path = profile_file(root, profile, entry)
    if not path.exists():
        own = [k for k in declared if k not in RUNNER_KEYS]
        if profile == "smoke" or not own:
            return {}
        raise ParameterError(
            f"{entry}: no {path.relative_to(root)} for profile {profile!r}; write one setting "
            f"the {profile} scale of {own} (an empty file keeps the smoke defaults)."
        )
    params = load_yaml(path)
    validate(params, declared, str(path.relative_to(root)))
    return normalise(params, declared)


def notebook_profile_params(
    notebook: Path, profile: str, declared: dict[str, Declared]
) -> dict[str, Any]:
    """:func:`profile_params` for a notebook given by path (a sweep, a single run).

    A notebook outside any book (no ``_toc.yml`` above it) has only its defaults, at smoke.
    """
    try:
        root = find_root(notebook.parent)
    except FileNotFoundError:
        if profile == "smoke":
            return {}
        raise
    entry = str(notebook.resolve().relative_to(root).with_suffix(""))
    return profile_params(root, profile, entry, declared)
