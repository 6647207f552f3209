"""Sweeps: grid parsing and expansion, validation before running, collection, and the Dask path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from seatbelt.book import params as P
from seatbelt.book import sweep as S
from test_book import write_notebook

# Writes a tidy table whose values are known functions of the point, and a claim check.
PARAMS = 'results_dir = "results"\nbeta = 1.0\nseed = 0\ntag = "t"'
BODY = """
import pathlib
from seatbelt import claims
out = pathlib.Path(results_dir) / "toy"
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.csv").write_text("metric,value\\nsquare,%s\\nsum,%s\\n" % (beta ** 2, beta + seed))
effect = claims.Effect("beta - 2", beta - 2, beta - 2.5, beta - 1.5, null=0, \
direction="greater", n=10)
claims.ClaimCheck("C3", effect, chapter="toy").save(results_dir)
"""


@pytest.fixture
def notebook(tmp_path: Path) -> Path:
    return write_notebook(tmp_path / "toy.ipynb", PARAMS, BODY)


def test_grid_values_are_read_as_yaml_scalars():
    assert S.parse_grid_arg("beta=1,4.5,8") == ("beta", [1, 4.5, 8])
    assert S.parse_grid_arg("tag=a,true") == ("tag", ["a", True])
    for bad in ("beta", "beta=", "=1,2"):
        with pytest.raises(P.ParameterError, match="KEY=V1,V2"):
            S.parse_grid_arg(bad)


def test_grids_merge_from_arguments_and_files(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("seed: [0, 1, 2]\n")
    assert S.merge_grids(["beta=1,4"], [grid_file]) == {"beta": [1, 4], "seed": [0, 1, 2]}
    with pytest.raises(P.ParameterError, match="'beta' is given twice"):
        S.merge_grids(["beta=1", "beta=2"], [])
    grid_file.write_text("seed: 3\n")
    with pytest.raises(P.ParameterError, match="non-empty list"):
        S.merge_grids([], [grid_file])


def test_expansion_is_the_cartesian_product_first_key_slowest():
    points = S.expand({"beta": [1, 4, 8], "seed": [0, 1]})
    assert len(points) == 6
    assert points[:3] == [{"beta": 1, "seed": 0}, {"beta": 1, "seed": 1}, {"beta": 4, "seed": 0}]


def test_every_point_is_validated_before_any_runs(notebook, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(P.ParameterError) as e:
        S.sweep(notebook, {"beta": [1, "x"], "seeds": [0]}, out, log=lambda _: None)
    assert "unknown parameter 'seeds'" in str(e.value) and "parameter 'beta': got str 'x'" in str(
        e.value
    )
    with pytest.raises(P.ParameterError, match="set by the runner"):
        S.sweep(notebook, {"results_dir": ["a"]}, out, log=lambda _: None)
    assert not out.exists()


def check_collected(out: Path, table: pd.DataFrame, grid: dict) -> None:
    points = S.expand(grid)
    assert list(table["status"]) == ["ok"] * len(points)
    metrics = pd.read_csv(out / "tables" / "toy__metrics.csv")
    assert list(metrics.columns) == ["point", *(f"param_{k}" for k in grid), "metric", "value"]
    for i, point in enumerate(points):
        rows = metrics[metrics["point"] == i].set_index("metric")["value"]
        assert rows["square"] == point["beta"] ** 2 and rows["sum"] == point["beta"] + point.get(
            "seed", 0
        )
    checks = pd.read_csv(out / "claims.csv")
    assert list(checks["status"]) == [
        "held" if p["beta"] - 2.5 > 0 else "contradicted" if p["beta"] - 1.5 < 0 else "inconclusive"
        for p in points
    ]
    assert (out / "points.csv").is_file() and all(Path(n).is_file() for n in table["notebook"])


def test_a_sequential_sweep_collects_every_point(notebook, tmp_path):
    grid = {"beta": [1, 3]}
    lines: list[str] = []
    table = S.sweep(notebook, grid, tmp_path / "out", log=lines.append)
    check_collected(tmp_path / "out", table, grid)
    assert lines[0].startswith("[1/2] beta=1.0: ok in")  # beta is declared a float


def test_a_sweep_on_a_dask_cluster(notebook, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    grid = {"beta": [1, 4], "seed": [2]}
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        table = S.sweep(
            notebook, grid, tmp_path / "out", dask=cluster.scheduler_address, log=lambda _: None
        )
    check_collected(tmp_path / "out", table, grid)


def test_a_failed_point_is_recorded_and_the_others_collected(tmp_path):
    body = "if beta > 2:\n    raise RuntimeError('too big')\n" + BODY
    notebook = write_notebook(tmp_path / "toy.ipynb", PARAMS, body)
    table = S.sweep(notebook, {"beta": [1, 3]}, tmp_path / "out", log=lambda _: None)
    assert (
        list(table["status"]) == ["ok", "failed"] and "RuntimeError: too big" in table["error"][1]
    )
    assert list(
        pd.read_csv(tmp_path / "out" / "tables" / "toy__metrics.csv")["point"].unique()
    ) == [0]
