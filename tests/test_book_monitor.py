"""Build progress reaches the terminal with the chapter, cell and ETA, and never the executed
notebook."""

from __future__ import annotations

import io
import os
import time

import nbformat

from seatbelt import progress
from seatbelt.book import monitor, runner


def test_kernel_progress_reaches_the_terminal_and_not_the_page(tmp_path, capfd):
    nb = nbformat.v4.new_notebook(
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        }
    )
    nb.cells = [
        nbformat.v4.new_code_cell("results_dir = 'r'", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "from seatbelt.progress import Ticker\n"
            "t = Ticker('training tiny', 3, every=0)\n"
            "for i in range(1, 4): t.update(i, '99 img/s')\n"
            "print('shown on the page')"
        ),
    ]
    source = tmp_path / "chapter.ipynb"
    nbformat.write(nb, source)
    terminal = io.StringIO()
    with monitor.Monitor(
        tmp_path / "progress.log", {"book/chapter": 2.0}, out=terminal, every=0
    ) as watch:
        watch.chapter("book/chapter")
        runner.execute(source, tmp_path / "out" / "chapter.ipynb", {"results_dir": "r"})
        time.sleep(1.2)  # the tail thread reads every half second
    shown = terminal.getvalue()
    assert "training tiny: 3/3, 99 img/s" in shown
    assert "book/chapter · cell 3/3 · ETA" in shown  # papermill adds the injected-parameters cell
    executed = nbformat.read(tmp_path / "out" / "chapter.ipynb", as_version=4)
    page = str([cell.get("outputs", []) for cell in executed.cells])
    assert "shown on the page" in page and "training tiny" not in page
    # the kernel runs on Unix sockets: no warning, at every chapter, that TCP is unencrypted
    assert "without encryption" not in capfd.readouterr().err


def test_a_relative_progress_file_means_the_same_file_to_the_kernel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a kernel runs from its notebook's folder, not from here
    with monitor.Monitor("run/progress.log"):
        assert os.environ[progress.ENV] == str(tmp_path / "run" / "progress.log")


def test_the_eta_counts_this_chapter_and_every_later_one():
    watch = monitor.Monitor("unused", {"a": 3.0, "b": 5.0, "c": 2.0})
    watch.chapter("b")
    assert 6.9 < watch.eta_minutes() <= 7.0
    watch.chapter("unplanned")
    assert watch.eta_minutes() is None


def test_progress_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(progress.ENV, "off")
    assert progress.stream() is None
    progress.Ticker("x", 1, every=0).update(1)  # silently nothing
