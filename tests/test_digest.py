"""Cache keys follow what code computes, not how it is written down (:mod:`seatbelt.digest`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seatbelt import cache, classifiers, digest, zoo
from seatbelt.book import runner


@pytest.fixture
def package(tmp_path) -> Path:
    copy = tmp_path / "seatbelt"
    shutil.copytree(digest.PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def keys(package: Path) -> dict[str, str]:
    """Every code digest that keys a cache: models, batteries, classifiers and chapters."""
    return {
        "model": cache.code_digest(package=package),
        "battery": cache.code_digest(zoo.ATTACK_SOURCES, package),
        "classifier": cache.code_digest(classifiers.SOURCES, package),
        "chapter": runner.library_digest(package),
    }


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_comments_docstrings_and_layout_keep_every_key(package):
    before = keys(package)
    models = package / "models.py"
    text = models.read_text()
    first_def = text.index("\ndef ")
    models.write_text(
        text[:first_def] + "\n# a new comment\n\n" + text[first_def:] + "\n\n# trailing\n"
    )
    edit(models, '"""', '"""A typo fixed. ')  # the module docstring
    edit(package / "tc.py", '"""', '"""Reworded.\n\n')
    edit(package / "attacks" / "battery.py", '"""', '"""Reworded. ')
    assert keys(package) == before


def test_a_docstring_inside_a_function_keeps_the_key_and_a_constant_changes_it(package):
    source = package / "models.py"
    source.write_text(
        source.read_text() + '\n\ndef _probe():\n    """Said once."""\n    return 1\n'
    )
    before = keys(package)
    edit(source, '"""Said once."""', '"""Said twice, with more words."""')
    assert keys(package) == before
    edit(source, "    return 1\n", "    return 2\n")
    after = keys(package)
    assert after["model"] != before["model"] and after["chapter"] != before["chapter"]


def test_an_expression_in_a_weight_source_changes_the_model_key(package):
    before = keys(package)
    text = (package / "gaussian.py").read_text()
    assert " - " in text
    (package / "gaussian.py").write_text(text.replace(" - ", " + ", 1))
    after = keys(package)
    assert all(after[k] != before[k] for k in ("model", "battery", "classifier", "chapter"))


def test_an_attack_edit_rekeys_batteries_but_not_models(package):
    before = keys(package)
    source = package / "attacks" / "battery.py"
    source.write_text(source.read_text() + "\nPROBE = 1\n")
    after = keys(package)
    assert after["model"] == before["model"] and after["classifier"] == before["classifier"]
    assert after["battery"] != before["battery"] and after["chapter"] != before["chapter"]


def test_the_page_check_and_the_runner_rerun_no_chapter(package):
    before = keys(package)
    for name in ("browser.py", "runner.py", "render.py"):
        path = package / "book" / name
        path.write_text(path.read_text() + "\nPROBE = 1\n")
    (package / "progress.py").write_text((package / "progress.py").read_text() + "\nPROBE = 1\n")
    assert keys(package) == before


def test_a_module_keeps_its_key_when_its_file_becomes_a_package(package):
    before = keys(package)
    (package / "nets").mkdir()
    shutil.move(package / "nets.py", package / "nets" / "__init__.py")
    assert keys(package) == before


def test_a_source_list_naming_a_missing_module_fails_loudly(package):
    with pytest.raises(FileNotFoundError, match="no module 'modles'"):
        cache.code_digest(("modles",), package)


def test_a_loader_edit_keeps_the_model_key_whose_data_is_keyed_by_content(package):
    # the model key hashes every training item (cache.data_identity); only data.base counts as code
    before = keys(package)
    (package / "data" / "images.py").write_text(
        (package / "data" / "images.py").read_text() + "\nPROBE = 1\n"
    )
    assert keys(package)["model"] == before["model"]
    (package / "data" / "base.py").write_text(
        (package / "data" / "base.py").read_text() + "\nPROBE = 1\n"
    )
    assert keys(package)["model"] != before["model"]
