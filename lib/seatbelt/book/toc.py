"""The table of contents (``_toc.yml``, jb-book format): which pages the book has, in order.

The toc is the one list of chapters: the runner executes its notebooks, ``make test`` runs
them under nbval, and :func:`problems` keeps it and ``book/`` in step (every entry exists,
every notebook in ``book/`` is listed).
"""

from __future__ import annotations

from pathlib import Path

import yaml

TOC = "_toc.yml"
BOOK_DIR = "book"
PAGE_SUFFIXES = (".ipynb", ".md")


def find_root(start: str | Path = ".") -> Path:
    """The nearest directory at or above ``start`` holding ``_toc.yml``."""
    start = Path(start).resolve()
    for d in (start, *start.parents):
        if (d / TOC).is_file():
            return d
    raise FileNotFoundError(
        f"no {TOC} at or above {start}; run from the repository or pass --root."
    )


def entries(root: Path) -> list[str]:
    """Every ``file`` of the toc (the root first), in reading order, without suffix."""
    toc = yaml.safe_load((root / TOC).read_text())
    if not isinstance(toc, dict) or toc.get("format") != "jb-book" or "root" not in toc:
        raise ValueError(f"{root / TOC}: expected a jb-book toc with a 'root' entry.")
    found = [toc["root"]]

    def walk(items: list[dict]) -> None:
        for item in items or ():
            if "file" in item:
                found.append(item["file"])
            walk(item.get("sections", ()))

    walk(toc.get("chapters", ()))
    for part in toc.get("parts", ()):
        walk(part.get("chapters", ()))
    return [str(Path(e).with_suffix("")) if Path(e).suffix in PAGE_SUFFIXES else e for e in found]


def page(root: Path, entry: str) -> Path | None:
    """The file behind a toc entry, or None when there is none."""
    for suffix in PAGE_SUFFIXES:
        path = root / f"{entry}{suffix}"
        if path.is_file():
            return path
    return None


def notebooks(root: Path) -> list[tuple[str, Path]]:
    """(entry, path) of every notebook page of the toc, in order."""
    pages = [(e, page(root, e)) for e in entries(root)]
    return [(e, p) for e, p in pages if p is not None and p.suffix == ".ipynb"]


def problems(root: Path) -> list[str]:
    """Toc entries without a page and notebooks of ``book/`` missing from the toc."""
    listed = entries(root)
    found = [
        f"{e}: listed in {TOC} but no {e}.ipynb or {e}.md exists"
        for e in listed
        if page(root, e) is None
    ]
    for nb in sorted((root / BOOK_DIR).glob("*.ipynb")):
        entry = str(nb.relative_to(root).with_suffix(""))
        if entry not in listed:
            found.append(f"{entry}.ipynb: not listed in {TOC}")
    return found
