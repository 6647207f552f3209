"""The book machine: parameter validation, the toc, clean notebooks, change detection, rendering."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from seatbelt.book import browser, clean, layout, render, runner, toc
from seatbelt.book import params as P

REPO = Path(__file__).resolve().parents[1]


def write_notebook(path: Path, parameters: str, body: str, title: str = "A page") -> Path:
    """A notebook with a parameters cell and one code cell, as the chapters are built."""
    nb = new_notebook(
        cells=[
            new_markdown_cell(f"# {title}"),
            new_code_cell(parameters, metadata={"tags": ["parameters"]}),
            new_code_cell(
                body, metadata={"mystnb": {"figure": {"caption": "What the figure shows."}}}
            ),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# A chapter that records each execution, writes a tidy CSV and draws a figure.
PARAMS = (
    'results_dir = "results"  # where to write\nprofile = "smoke"\nsteps = 3  # training steps\n'
    'lr = 0.5\nname = "a"\nbetas = [1, 4]\nmaybe = None'
)
BODY = """
import os, pathlib
import matplotlib.pyplot as plt
out = pathlib.Path(results_dir)
out.mkdir(parents=True, exist_ok=True)
with open(out / "executions.log", "a") as f:
    f.write(f"{name} {steps} {profile}\\n")
(out / name).mkdir(exist_ok=True)
(out / name / "table.csv").write_text(f"steps,lr\\n{steps},{lr}\\n")
fig, ax = plt.subplots(figsize=(2, 2))
ax.plot(range(steps))
plt.show()
"""


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A two-chapter book with the repository's config: root book/a, then book/scorecard."""
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/a\nchapters:\n  - file: book/scorecard\n"
    )
    write_notebook(tmp_path / "book" / "a.ipynb", PARAMS, BODY, "Chapter A")
    write_notebook(
        tmp_path / "book" / "scorecard.ipynb",
        'results_dir = "results"',
        "import pathlib\nprint(sorted(p.name for p in pathlib.Path(results_dir).iterdir()))",
        "Scorecard",
    )
    for profile, steps in (("cpu", 4), ("paper", 5)):
        (tmp_path / "params" / profile).mkdir(parents=True)
        (tmp_path / "params" / profile / "a.yaml").write_text(f"steps: {steps}\n")
    return tmp_path


def executions(book: Path, profile: str) -> list[str]:
    log = layout.results_dir(book, profile) / "executions.log"
    return log.read_text().splitlines() if log.exists() else []


# --- declared parameters and validation ------------------------------------------------------


def test_declared_parameters_reads_literal_defaults_and_comments(book):
    declared = P.declared_parameters(book / "book" / "a.ipynb")
    assert list(declared) == ["results_dir", "profile", "steps", "lr", "name", "betas", "maybe"]
    assert declared["steps"].default == 3 and declared["steps"].help == "training steps"
    assert declared["betas"].default == [1, 4] and declared["maybe"].default is None


@pytest.mark.parametrize(
    "source, message",
    [
        ("results_dir = 'r'\nsteps = 2 * 3", "not a literal"),
        ("results_dir = 'r'\na, b = 1, 2", "not `name = literal`"),
        ("steps = 3", "must declare ['results_dir']"),
    ],
)
def test_parameters_cell_must_be_literal_assignments_with_results_dir(tmp_path, source, message):
    with pytest.raises(P.ParameterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        P.declared_parameters(write_notebook(tmp_path / "n.ipynb", source, "pass"))


def test_exactly_one_parameters_cell(tmp_path):
    nb = new_notebook(
        cells=[
            new_code_cell("results_dir = 'r'", metadata={"tags": ["parameters"]}) for _ in range(2)
        ]
    )
    with pytest.raises(P.ParameterError, match="exactly one cell tagged 'parameters', found 2"):
        P.declared_parameters(nb)


def test_right_parameters_pass(book):
    declared = P.declared_parameters(book / "book" / "a.ipynb")
    ok = {"steps": 10, "lr": 1, "name": "b", "betas": [1, 2, 8], "maybe": "thing"}
    assert P.check(ok, declared, "x") == []  # int for float, a single value for a None default


def test_unknown_key_names_the_key_and_the_declared_ones(book):
    declared = P.declared_parameters(book / "book" / "a.ipynb")
    with pytest.raises(P.ParameterError) as e:
        P.validate({"step": 10}, declared, "params/cpu/a.yaml")
    assert "params/cpu/a.yaml: unknown parameter 'step'" in str(e.value)
    assert "results_dir, profile, steps, lr, name, betas, maybe" in str(e.value)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("steps", 3.0, "expected int"),
        ("steps", True, "expected int"),  # a bool is not an int
        ("steps", "3", "expected int"),
        ("lr", "1e-3", "write 1.0e-3"),  # YAML 1.1 reads 1e-3 as a string
        ("name", 1, "expected str"),
        ("betas", 4, "expected list"),
        ("betas", [1, "four"], "item 1"),
    ],
)
def test_wrong_type_is_an_error_naming_the_key(book, key, value, expected):
    declared = P.declared_parameters(book / "book" / "a.ipynb")
    problems = P.check({key: value}, declared, "where")
    assert len(problems) == 1 and f"parameter {key!r}" in problems[0] and expected in problems[0]


@pytest.mark.parametrize(
    "yaml_text, expected",
    [
        ("maybe: !!binary aW1wb3J0IG9z", "got bytes"),  # papermill would inject it unescaped
        ("maybe: 2020-01-01", "got date"),
        ("maybe: {any: thing}", "expected a single value (the default is None)"),
        ("lr: .nan", "numbers must be finite"),
        ("lr: -.inf", "numbers must be finite"),
        ("betas: [1, .inf]", "item 1: got inf"),
    ],
)
def test_only_plain_finite_values_pass_even_for_a_none_default(book, yaml_text, expected):
    (book / "params" / "cpu" / "a.yaml").write_text(yaml_text + "\n")
    with pytest.raises(P.ParameterError, match=re.escape(expected)):
        P.profile_params(book, "cpu", "book/a", P.declared_parameters(book / "book" / "a.ipynb"))


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"seed": -1}, "parameter 'seed': got -1; seeds are non-negative integers"),
        ({"model_seeds": [0, -2]}, "parameter 'model_seeds': got -2; seeds are non-negative"),
        ({"names": ["a", 1]}, "expected a list of values of one type (the default is [])"),
        ({"names": [["a"]]}, "expected a list of values of one type"),
        ({"options": {"a": [1]}}, "expected a mapping of names to single values"),
        ({"options": {1: "a"}}, "got dict {1: 'a'}"),
    ],
)
def test_seeds_and_empty_defaults_are_restricted(tmp_path, params, expected):
    source = 'results_dir = "r"\nseed = 0\nmodel_seeds = [0]\nnames = []\noptions = {}'
    declared = P.declared_parameters(write_notebook(tmp_path / "n.ipynb", source, "pass"))
    ok = {"seed": 3, "model_seeds": [0, 1], "names": ["a", "b"], "options": {"a": 1, "b": "x"}}
    assert P.check(ok, declared, "x") == [] and P.check({"names": [1, 2.5]}, declared, "x") == []
    problems = P.check(params, declared, "x")
    assert len(problems) == 1 and expected in problems[0], problems


def test_ints_become_floats_where_a_float_is_declared(book):
    declared = P.declared_parameters(book / "book" / "a.ipynb")
    normal = P.normalise({"lr": 2, "steps": 2, "maybe": 3}, declared)
    assert (
        normal == {"lr": 2.0, "steps": 2, "maybe": 3}
        and type(normal["lr"]) is float
        and type(normal["steps"]) is int
    )


def test_runner_keys_cannot_come_from_a_params_file(book):
    declared = P.declared_parameters(book / "book" / "a.ipynb")
    assert "set by the runner" in P.check({"results_dir": "/x"}, declared, "f")[0]
    assert P.check({"results_dir": "/x"}, declared, "f", runner=True) == []


def test_profiles_need_a_file_except_smoke(book):
    declared = P.declared_parameters(book / "book" / "a.ipynb")
    assert P.profile_params(book, "smoke", "book/a", declared) == {}
    assert P.profile_params(book, "cpu", "book/a", declared) == {"steps": 4}
    (book / "params" / "cpu" / "a.yaml").unlink()
    with pytest.raises(P.ParameterError, match="no params/cpu/a.yaml for profile 'cpu'"):
        P.profile_params(book, "cpu", "book/a", declared)
    scorecard = P.declared_parameters(book / "book" / "scorecard.ipynb")
    assert P.profile_params(book, "paper", "book/scorecard", scorecard) == {}  # only runner keys
    with pytest.raises(P.ParameterError, match="unknown profile"):
        P.profile_params(book, "gpu", "book/a", declared)


def test_every_chapter_is_validated_before_any_runs(book):
    (book / "params" / "cpu" / "a.yaml").write_text("steps: 4\nbeta: 2\n")
    (book / "params" / "cpu" / "scorecard.yaml").write_text("lr: 1\n")
    with pytest.raises(P.ParameterError) as e:
        runner.run(book, "cpu", log=lambda _: None)
    assert "unknown parameter 'beta'" in str(
        e.value
    ) and "scorecard.yaml: unknown parameter 'lr'" in str(e.value)
    assert executions(book, "cpu") == []


def test_the_repository_params_fit_every_chapter_at_every_profile():
    for profile in P.PROFILES:
        jobs = layout.jobs(REPO, profile)
        assert [j.entry for j in jobs][-1] == layout.SCORECARD


# --- toc and notebooks ----------------------------------------------------------------------------


def test_toc_entries_exist_and_every_book_notebook_is_listed():
    assert toc.problems(REPO) == []
    listed = toc.entries(REPO)
    assert listed[0] == "book/intro" and listed[-1] == "book/scorecard"


def test_toc_problems_are_found(book):
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: book/a\nparts:\n  - caption: P\n    chapters:\n      - file: "
        "book/missing\n        sections:\n          - file: book/scorecard\n"
    )
    write_notebook(book / "book" / "orphan.ipynb", "results_dir = 'r'", "pass")
    assert toc.entries(book) == ["book/a", "book/missing", "book/scorecard"]
    assert toc.problems(book) == [
        "book/missing: listed in _toc.yml but no book/missing.ipynb or book/missing.md exists",
        "book/orphan.ipynb: not listed in _toc.yml",
    ]


@pytest.mark.parametrize("path", sorted((REPO / "book").glob("*.ipynb")), ids=lambda p: p.name)
def test_committed_notebooks_are_clean_and_declare_a_harmless_results_dir(path):
    nb = nbformat.read(path, as_version=4)
    assert clean.problems(nb, path.name) == [], (
        "run `python -m seatbelt.book clean --references` on it"
    )
    assert "papermill" not in nb.metadata
    default = P.declared_parameters(path)["results_dir"].default
    assert default.startswith("../_build/"), (
        "the smoke default must write under _build/ (ignored by git)"
    )


def test_clean_keeps_only_the_references_that_nbval_checks(tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", "results_dir = 'r'\nx = 2", "print(x * 21)")
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(x + 1)"))
    nbformat.write(nb, path)
    assert clean.problems(nbformat.read(path, as_version=4), "n") == [
        "n cell 3: marked # NBVAL_CHECK_OUTPUT but has no stored reference output"
    ]
    assert clean.store_references(path) == 1
    nb = nbformat.read(path, as_version=4)
    assert clean.problems(nb, "n") == []
    assert [c.get("outputs") for c in nb.cells if c.cell_type == "code"] == [
        [],
        [],
        [nbformat.v4.new_output("stream", name="stdout", text="3\n")],
    ]
    # nbval passes with the stored reference and fails once the reference is wrong
    nbval = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        str(path),
    ]
    assert subprocess.run(nbval, capture_output=True, cwd=tmp_path).returncode == 0
    nb.cells[3].outputs[0].text = "4\n"
    nbformat.write(nb, path)
    failed = subprocess.run(nbval, capture_output=True, text=True, cwd=tmp_path)
    assert failed.returncode == 1 and "Cell outputs differ" in failed.stdout
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    assert clean.problems(nb, "n") == ["n cell 2: has outputs; clear them"]
    assert clean.problems(clean.clear(nb), "n") == []


# --- change detection -----------------------------------------------------------------------------


def test_unchanged_chapters_are_not_re_executed(book):
    lines: list[str] = []
    estimated: list[list[str]] = []  # the caller's ETA is asked only about chapters with zoo work

    def estimate(jobs: list[layout.Job]) -> dict[str, float]:
        estimated.append([job.entry for job in jobs])
        return {}

    first = runner.run(book, "cpu", log=lines.append, estimate=estimate)
    assert [o.status for o in first] == ["ran", "ran"]
    assert executions(book, "cpu") == ["a 4 cpu"]  # the cpu file's steps, the runner's profile
    assert (layout.site_dir(book, "cpu") / "book" / "a.ipynb").exists()

    second = runner.run(book, "cpu", log=lines.append, estimate=estimate)
    assert [o.status for o in second] == ["unchanged", "unchanged"]
    assert executions(book, "cpu") == ["a 4 cpu"]
    assert any("[1/2] book/a: unchanged, kept (ran in" in line for line in lines)

    (book / "params" / "cpu" / "a.yaml").write_text("steps: 6\n")
    third = runner.run(book, "cpu", log=lines.append, estimate=estimate)
    # a's parameters changed; the scorecard's inputs (its source, parameters, claim checks) did not
    assert [o.status for o in third] == ["ran", "unchanged"]
    assert executions(book, "cpu") == ["a 4 cpu", "a 6 cpu"]
    assert estimated == [["book/a"], ["book/a"]]


def test_the_key_covers_source_params_profile_library_and_extra(book):
    source = book / "book" / "a.ipynb"
    key = runner.chapter_key(source, {"steps": 1}, "cpu", "lib", "")
    assert key == runner.chapter_key(source, {"steps": 1}, "cpu", "lib", "")
    others = [
        runner.chapter_key(source, {"steps": 2}, "cpu", "lib", ""),
        runner.chapter_key(source, {"steps": 1}, "paper", "lib", ""),
        runner.chapter_key(source, {"steps": 1}, "cpu", "lib2", ""),
        runner.chapter_key(source, {"steps": 1}, "cpu", "lib", "claims"),
    ]
    assert key not in others
    write_notebook(source, PARAMS, BODY + "\n# edited")
    assert runner.chapter_key(source, {"steps": 1}, "cpu", "lib", "") != key


def test_the_scorecard_reruns_when_a_claim_check_changes(book):
    results = layout.results_dir(book, "cpu")
    before = runner.claims_digest(results)
    (results / "claims").mkdir(parents=True)
    (results / "claims" / "C3.json").write_text("{}")
    assert runner.claims_digest(results) != before


def test_a_failed_chapter_is_reported_and_the_others_still_run(book):
    write_notebook(book / "book" / "a.ipynb", PARAMS, "raise ValueError('broken on purpose')")
    outcomes = runner.run(book, "smoke", log=lambda _: None)
    assert [o.status for o in outcomes] == ["failed", "ran"]
    attempt = layout.build_dir(book, "smoke") / "attempts" / "book" / "a.ipynb"
    assert (
        "ValueError: broken on purpose" in outcomes[0].error and str(attempt) in outcomes[0].error
    )
    assert not (layout.build_dir(book, "smoke") / "stamps" / "book__a.json").exists()
    # the failed run stays for reading, and never becomes a page
    assert "broken on purpose" in attempt.read_text()
    assert not (layout.site_dir(book, "smoke") / "book" / "a.ipynb").exists()
    with pytest.raises(render.RenderError, match="not rendered: book/a never ran successfully"):
        render.render(book, "smoke")


def test_a_failed_run_keeps_the_last_good_notebook_which_the_book_shows(book):
    assert [o.status for o in runner.run(book, "smoke", log=lambda _: None)] == ["ran", "ran"]
    page, source = layout.site_dir(book, "smoke") / "book" / "a.ipynb", book / "book" / "a.ipynb"
    good, original = page.read_text(), source.read_bytes()
    write_notebook(source, PARAMS, "raise ValueError('broken on purpose')")
    assert [o.status for o in runner.run(book, "smoke", only=("a",), log=lambda _: None)] == [
        "failed"
    ]
    assert page.read_text() == good  # not overwritten when the re-run started, nor when it failed
    lines: list[str] = []
    assert [o.status for o in runner.run(book, "smoke", only=("scorecard",), log=lines.append)] == [
        "unchanged"
    ]
    assert "[1/2] book/a: not selected; its last run failed" in lines[0]
    assert lines[0].endswith("its page shows its last good run")
    source.write_bytes(original)  # the stamp still describes the good notebook: its inputs keep it
    assert [o.status for o in runner.run(book, "smoke", only=("a",), log=lambda _: None)] == [
        "unchanged"
    ]


def test_a_second_build_of_a_profile_is_refused_naming_the_lock_and_its_holder(book, capsys):
    from seatbelt.book.__main__ import main

    hold = (
        f"import time\nfrom pathlib import Path\nfrom seatbelt.book import runner\n"
        f"with runner.build_lock(Path({str(book)!r}), 'smoke'):\n"
        f"    print('held', flush=True)\n    time.sleep(120)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", hold], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        assert main(["--root", str(book), "build", "--profile", "smoke"]) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and str(layout.lock_path(book, "smoke")) in err
        assert executions(book, "smoke") == []
    finally:
        holder.kill()
        holder.wait()
    with runner.build_lock(book, "smoke"):  # a holder that dies releases it
        assert layout.lock_path(book, "smoke").read_text() == f"{os.getpid()}\n"


def test_relative_and_home_paths_are_made_absolute_before_any_kernel_starts(
    book, tmp_path, monkeypatch
):
    from seatbelt.book.__main__ import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SEATBELT_CACHE", "cache")  # the zoo reads it from here, a kernel from book/
    monkeypatch.setenv("SEATBELT_DATA", "~/data")
    assert main(["--root", str(book), "validate"]) == 0
    assert os.environ["SEATBELT_CACHE"] == str(tmp_path / "cache")
    assert os.environ["SEATBELT_DATA"] == str(tmp_path / "home" / "data")


# --- rendering ------------------------------------------------------------------------------------


def test_a_tiny_book_renders_and_passes_the_page_check(book):
    assert [o.status for o in runner.run(book, "smoke", log=lambda _: None)] == ["ran", "ran"]
    html = render.render(book, "smoke")
    assert (html / "book" / "a.html").is_file() and (html / "book" / "scorecard.html").is_file()
    if shutil.which("chromium") is None:
        pytest.skip("chromium not installed (make book installs it); rendering was checked")
    assert browser.check_book(book, layout.site_dir(book, "smoke"), html) == []


# --- one chapter with your own parameters, and the command line -----------------------------------


def test_run_notebook_applies_overrides_on_the_profile(book, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(P.ParameterError, match="the command line: unknown parameter 'stepz'"):
        runner.run_notebook(book / "book" / "a.ipynb", {"stepz": 9}, out, "cpu")
    assert not out.exists()
    executed = runner.run_notebook(book / "book" / "a.ipynb", {"lr": 2}, out, "cpu")
    assert executed == out / "a.ipynb" and executed.is_file()
    assert (out / "results" / "executions.log").read_text() == "a 4 cpu\n"  # cpu's steps, our lr
    assert (out / "results" / "a" / "table.csv").read_text() == "steps,lr\n4,2.0\n"  # lr is a float


def test_the_command_line_validates_and_reports_errors(book, capsys):
    from seatbelt.book.__main__ import main

    assert main(["--root", str(book), "validate"]) == 0
    assert "cpu: parameters of 2 notebook(s) fit" in capsys.readouterr().out
    (book / "params" / "paper" / "a.yaml").write_text("steps: many\n")
    assert main(["--root", str(book), "validate", "--profile", "paper"]) == 2
    assert "parameter 'steps': got str 'many', expected int" in capsys.readouterr().err
