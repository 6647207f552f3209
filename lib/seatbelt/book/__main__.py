"""Command line of the book machine; see :mod:`seatbelt.book`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from functools import partial
from pathlib import Path

import nbformat
import yaml

from . import browser, clean, layout, publish, render, runner, sweep, toc
from . import params as P

log = partial(print, flush=True)
# Paths the library and the kernels read from the environment. Kernels run from their notebook's
# folder (book/), the plan and the zoo from here: a relative path must mean one folder for both.
PATH_VARIABLES = ("SEATBELT_CACHE", "SEATBELT_DATA", "SEATBELT_PARAMS")


def absolute_paths() -> None:
    """Make the :data:`PATH_VARIABLES` that are set absolute (``~`` expanded, relative to the
    current folder), before any kernel starts: the kernels inherit them."""
    for name in PATH_VARIABLES:
        if os.environ.get(name):
            os.environ[name] = os.path.abspath(os.path.expanduser(os.environ[name]))


def zoo_minutes(root: Path, profile: str, todo: list[layout.Job]) -> dict[str, float]:
    """The build's ETA: the plan's minutes for the chapters about to run."""
    from . import plan  # imports the zoo (and torch): only a build with chapters to run pays

    return plan.estimates(root, profile, todo, log)


def workers(args: argparse.Namespace) -> int:
    from .tasks import default_workers  # imports torch: only the commands that need it pay

    return args.workers or default_workers()


def build(root: Path, args: argparse.Namespace) -> Path | None:
    """Execute the changed chapters and render; the HTML folder, or None when a chapter failed.

    With several worker processes, the models of the chapters are trained first and their
    uncached attacks run in those processes before any chapter executes; the chapters then find
    them cached. The caller holds the profile's build lock."""
    start = time.perf_counter()
    processes = workers(args)
    if processes > 1:
        from . import plan

        only = tuple(args.only)
        plan.build_zoo(root, args.profile, log=log, only=only)
        plan.build_attacks(root, args.profile, workers=processes, only=only, log=log)
    outcomes = runner.run(
        root,
        args.profile,
        force=args.force,
        only=tuple(args.only),
        log=log,
        estimate=partial(zoo_minutes, root, args.profile),
    )
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        log(f"{len(failed)} chapter(s) failed; the book was not rendered:")
        for o in failed:
            log(f"  {o.entry}: {o.error}")
        return None
    log(f"chapters done in {time.perf_counter() - start:.1f} s; rendering ...")
    html = render.render(root, args.profile)
    log(f"rendered {html / 'index.html'}")
    return html


def page_check(root: Path, profile: str, html: Path, required: bool) -> int:
    """The Chromium check of the pages in ``html``. Without a browser: an error if ``required``,
    else one line saying how to enable it (the book is built all the same)."""
    if not required and browser.find_chromium() is None:
        where = "" if html == render.html_dir(root, profile) else f" --html {html}"
        log(
            "page check skipped: no Chromium or Chrome found. To enable it, "
            f"{browser.HOW_TO_GET_ONE}, then run `python -m seatbelt.book check --profile "
            f"{profile}{where}`."
        )
        return 0
    problems = browser.check_book(root, layout.site_dir(root, profile), html)
    for p in problems:
        log(f"  {p}")
    verdict = (
        "FAILED"
        if problems
        else "every page loads offline, typesets its maths, shows its figures and no error"
    )
    log(f"chromium check of {html}: {verdict}")
    return 1 if problems else 0


WORKERS_HELP = (
    "processes that run the attacks at once, each on its share of the cores (default: one per "
    "core, at most 4; 1 with a GPU; 1 runs them inside the chapters)"
)


def cmd_build(args: argparse.Namespace) -> int:
    root = toc.find_root(args.root)
    with runner.build_lock(root, args.profile):
        html = build(root, args)
        if html is None:
            return 1
        return page_check(root, args.profile, html, required=False) if args.check else 0


def cmd_publish(args: argparse.Namespace) -> int:
    root = toc.find_root(args.root)
    with runner.build_lock(root, args.profile):
        return _publish(root, args)


def _publish(root: Path, args: argparse.Namespace) -> int:
    if not args.no_build and build(root, args) is None:
        return 1
    out = publish.publish(root, args.profile, args.out)
    problems = publish.problems(root, out)
    for p in problems:
        log(f"  {p}")
    if problems:
        log(f"published {out}, but it is not self-contained: FAILED")
        return 1
    log(f"published {out}: open {out / 'index.html'}, or serve the folder as it is")
    return page_check(root, args.profile, out, required=False) if args.check else 0


def cmd_run(args: argparse.Namespace) -> int:
    overrides = {key: yaml.safe_load(value) for key, value in args.p}
    out = args.out or Path("_build") / "run" / args.notebook.stem
    log(f"running {args.notebook} at {args.profile} with {overrides or 'no overrides'} ...")
    start = time.perf_counter()
    try:
        output = runner.run_notebook(args.notebook, overrides, out, args.profile)
    except (
        Exception
    ) as e:  # papermill's error names the cell; the partial notebook stays for reading
        log(
            f"FAILED after {time.perf_counter() - start:.1f} s: "
            f"{runner.describe_failure(e, out / args.notebook.name)}"
        )
        return 1
    log(f"ran in {time.perf_counter() - start:.1f} s: {output}, results in {out / 'results'}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    root = toc.find_root(args.root)
    html = args.html or render.html_dir(root, args.profile)
    return page_check(root, args.profile, html, required=True)


def cmd_validate(args: argparse.Namespace) -> int:
    root = toc.find_root(args.root)
    for profile in P.PROFILES if args.profile == "all" else (args.profile,):
        jobs = layout.jobs(root, profile)
        log(f"{profile}: parameters of {len(jobs)} notebook(s) fit their declarations")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    for d in P.declared_parameters(args.notebook).values():
        runner_note = "  [set by the runner]" if d.name in P.RUNNER_KEYS else ""
        log(f"{d.name} = {d.default!r}  # {d.help}{runner_note}")
    return 0


def cmd_toc(args: argparse.Namespace) -> int:
    root = toc.find_root(args.root)
    problems = toc.problems(root)
    if problems:
        raise P.ParameterError("\n".join(problems))
    for _, path in toc.notebooks(root):
        print(
            path.relative_to(Path.cwd().resolve())
            if path.is_relative_to(Path.cwd().resolve())
            else path
        )
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    for path in args.notebooks:
        if args.references:
            log(f"{path}: stored {clean.store_references(path)} reference output(s)")
        else:
            nbformat.write(clean.clear(nbformat.read(path, as_version=4)), path)
            log(f"{path}: cleared")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from . import plan  # imports the zoo (and torch): only the commands that need it pay

    plan.report(toc.find_root(args.root), args.profile, log=log)
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from . import plan

    root = toc.find_root(args.root)
    table = plan.build_zoo(root, args.profile, dask=args.dask, log=log)
    failed = int((table["status"] == "failed").sum()) if len(table) else 0
    log(f"zoo at {args.profile}: {len(table) - failed}/{len(table)} models ready")
    if not args.models_only:
        attacks = plan.build_attacks(
            root, args.profile, workers=workers(args), dask=args.dask, log=log
        )
        bad = int((attacks["status"] == "failed").sum())
        log(f"attacks at {args.profile}: {len(attacks) - bad}/{len(attacks)} run or found")
        failed += bad
    return 1 if failed else 0


def cmd_sweep(args: argparse.Namespace) -> int:
    grid = sweep.merge_grids(args.grid, args.grid_file)
    table = sweep.sweep(
        args.notebook, grid, args.out, profile=args.profile, dask=args.dask, log=log
    )
    failed = int((table["status"] != "ok").sum())
    log(
        f"{len(table) - failed}/{len(table)} points ran; tables in {Path(args.out) / 'tables'}, "
        f"points in {Path(args.out) / 'points.csv'}"
    )
    return 1 if failed else 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m seatbelt.book", description=__doc__)
    top.add_argument("--root", default=".", help="the repository (found upward from here)")
    sub = top.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="execute changed chapters, then render the HTML")
    b.add_argument("--profile", choices=P.PROFILES, default="cpu")
    b.add_argument("--force", action="store_true", help="re-execute even unchanged chapters")
    b.add_argument("--only", nargs="+", default=[], help="execute only these chapters (e.g. intro)")
    b.add_argument(
        "--check",
        action="store_true",
        help="then check the pages in headless Chromium (skipped, with a note, when there is none)",
    )
    b.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    b.set_defaults(func=cmd_build)

    pu = sub.add_parser(
        "publish", help="build, then copy the book into a self-contained static site"
    )
    pu.add_argument("--profile", choices=P.PROFILES, default="cpu")
    pu.add_argument("--out", type=Path, help="the site's folder (default _build/publish)")
    pu.add_argument("--force", action="store_true", help="re-execute even unchanged chapters")
    pu.add_argument(
        "--only", nargs="+", default=[], help="execute only these chapters (e.g. intro)"
    )
    pu.add_argument(
        "--no-build", action="store_true", help="publish the last rendered book as it is"
    )
    pu.add_argument(
        "--check", action="store_true", help="then check the published pages in headless Chromium"
    )
    pu.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    pu.set_defaults(func=cmd_publish)

    r = sub.add_parser("run", help="run one notebook with your own parameters")
    r.add_argument("notebook", type=Path)
    r.add_argument(
        "-p",
        nargs=2,
        action="append",
        default=[],
        metavar=("KEY", "VALUE"),
        help="a parameter (VALUE read as YAML: 8 is an int, 8.0 a float); repeat",
    )
    r.add_argument(
        "--profile", choices=P.PROFILES, default="smoke", help="base parameters under -p"
    )
    r.add_argument(
        "--out",
        type=Path,
        help="where the executed notebook and results go (default _build/run/<name>)",
    )
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="check the rendered pages in headless Chromium")
    c.add_argument("--profile", choices=P.PROFILES, default="cpu")
    c.add_argument(
        "--html",
        type=Path,
        help="the folder to check (default: the profile's rendered book; "
        "_build/publish for the published one)",
    )
    c.set_defaults(func=cmd_check)

    v = sub.add_parser("validate", help="validate every chapter's parameters without executing")
    v.add_argument("--profile", choices=(*P.PROFILES, "all"), default="all")
    v.set_defaults(func=cmd_validate)

    p = sub.add_parser("params", help="list the parameters a notebook declares")
    p.add_argument("notebook", type=Path)
    p.set_defaults(func=cmd_params)

    t = sub.add_parser("toc", help="print the toc's notebooks in order")
    t.set_defaults(func=cmd_toc)

    k = sub.add_parser("clean", help="clear notebooks' outputs except nbval's references")
    k.add_argument("notebooks", type=Path, nargs="+")
    k.add_argument(
        "--references",
        action="store_true",
        help="execute at smoke defaults and store new references",
    )
    k.set_defaults(func=cmd_clean)

    pl = sub.add_parser(
        "plan", help="list every chapter's models and batteries, what is cached, and the minutes"
    )
    pl.add_argument("--profile", choices=P.PROFILES, default="cpu")
    pl.set_defaults(func=cmd_plan)

    z = sub.add_parser(
        "zoo", help="train every model the chapters of a profile need, then run their attacks"
    )
    z.add_argument("--profile", choices=P.PROFILES, default="cpu")
    z.add_argument("--models-only", action="store_true", help="train, but run no attack")
    z.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    z.add_argument("--dask", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://host:8786")
    z.set_defaults(func=cmd_zoo)

    s = sub.add_parser("sweep", help="run one notebook over a grid of parameters")
    s.add_argument("notebook", type=Path)
    s.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2", help="repeat for each key"
    )
    s.add_argument(
        "--grid-file",
        action="append",
        default=[],
        metavar="YAML",
        help="a mapping key -> list of values",
    )
    s.add_argument("--out", type=Path, required=True)
    s.add_argument(
        "--profile", choices=P.PROFILES, default="smoke", help="base parameters under the grid"
    )
    s.add_argument("--dask", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://host:8786")
    s.set_defaults(func=cmd_sweep)
    return top


def user_errors() -> tuple[type[Exception], ...]:
    """The errors that are the user's to fix, shown as one line. The zoo's counts where it was
    imported (importing it costs torch; a zoo that was not imported raised nothing)."""
    zoo = sys.modules.get("seatbelt.zoo")
    return (
        P.ParameterError,
        FileNotFoundError,
        render.RenderError,
        publish.PublishError,
        runner.BuildBusy,
        *((zoo.ZooError,) if zoo else ()),
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    absolute_paths()
    try:
        return args.func(args)
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
