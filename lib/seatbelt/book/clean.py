"""Committed notebooks carry no outputs, except the references nbval checks against.

nbval compares a cell marked ``# NBVAL_CHECK_OUTPUT`` with the output stored in the notebook,
and skips cells that were never run: a marked cell without a stored output checks nothing.
So a committed notebook holds exactly one kind of output: what its marked cells print
(deterministic by construction), with an execution count. Everything else is cleared.

    python -m seatbelt.book clean book/*.ipynb               # clear all but the references
    python -m seatbelt.book clean --references book/x.ipynb  # run at smoke, store new references
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import nbformat

from .runner import execute

MARKER = "# NBVAL_CHECK_OUTPUT"


def is_reference(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(MARKER)


def problems(nb: nbformat.NotebookNode, name: str) -> list[str]:
    """Why a notebook is not clean: outputs outside reference cells, references missing or not
    text."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if is_reference(cell):
            if not cell.outputs or cell.execution_count is None:
                found.append(f"{name} cell {i}: marked {MARKER} but has no stored reference output")
            elif any(o.output_type != "stream" for o in cell.outputs):
                found.append(
                    f"{name} cell {i}: a reference output must be printed text (print(...))"
                )
        elif cell.outputs or cell.execution_count is not None:
            found.append(f"{name} cell {i}: has outputs; clear them")
    return found


def clear(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Clear every output but the references; drop execution metadata."""
    for cell in nb.cells:
        if cell.cell_type == "code" and not is_reference(cell):
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nb.metadata.pop("papermill", None)
    return nb


def store_references(path: Path) -> int:
    """Execute ``path`` at its own defaults and store its marked cells' outputs as references."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        executed_path = Path(tmp) / path.name
        execute(path, executed_path, {})
        executed = {c.id: c for c in nbformat.read(executed_path, as_version=4).cells}
    n = 0
    for cell in nb.cells:
        if is_reference(cell):
            cell.outputs = [o for o in executed[cell.id].outputs if o.output_type == "stream"]
            cell.execution_count = 1
            n += 1
    nbformat.write(clear(nb), path)
    return n
