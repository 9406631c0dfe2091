"""The user-facing cost report of `ktext-emu run`: JSON fields (a renamed or
removed field fails here), the plot, and `ktext-emu compare`."""

from __future__ import annotations

import json

import matplotlib.image
import pytest

from emu.cli import main

COST_KEYS = {"model", "parameters", "cpu_cycles", "total_cycles", "node_traffic_bytes",
             "traffic_matrix_bytes", "balance", "balance_max_mean", "balance_cv", "cpus",
             "speedup", "gain", "sanity"}
# Added to the ktext-on run's cost only (issue 12): the band over the ranges
# and the verdict (sanity checked against published ranges, then the gain).
ON_KEYS = {"speedup_band", "band_over", "verdict"}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """One default-machine dbsim comparison (off and on) with JSON and PNG."""
    out = tmp_path_factory.mktemp("cost")
    paths = {"json": out / "r.json", "png": out / "r.png"}
    assert main(["run", "--iterations", "30", "--quiet", "--json", str(paths["json"]),
                 "--plot", str(paths["png"])]) == 0
    return paths


def test_cost_object_shape(reports):
    report = json.loads(reports["json"].read_text())
    off, on = report["runs"]
    for run in (off, on):
        assert run["workload"] == "dbsim"
        assert set(run["cost"]) == (COST_KEYS | ON_KEYS if run["ktext"] else COST_KEYS)
        assert len(run["cost"]["cpu_cycles"]) == len(run["cpus"])
        assert len(run["cost"]["node_traffic_bytes"]) == run["machine"]["nodes"]
        assert {"cpu", "node", "instructions", "cycles", "memory_lines_by_node"} <= set(
            run["cost"]["cpus"][0])
    assert off["cost"]["speedup"] == 1.0 and off["cost"]["gain"] == 0.0
    assert on["cost"]["speedup"] > 1.0, "replication must help a kernel-heavy load on 4 nodes"
    assert on["cost"]["balance"] < off["cost"]["balance"]


def test_plot_is_a_real_png_with_differing_panels(reports):
    image = matplotlib.image.imread(reports["png"])
    height, width = image.shape[:2]
    assert height > 300 and width > 500
    top = image[: height // 2]
    left, right = top[:, : width // 2], top[:, width // 2 :]
    assert left.std() > 0.01 and right.std() > 0.01, "panels are not blank"
    assert abs(left - right).mean() > 0.001, "off and on heat maps differ"


def test_compare_prints_headline_differences(reports, tmp_path, capsys):
    other = tmp_path / "one-node.json"
    assert main(["run", "--nodes", "1", "--iterations", "30", "--quiet",
                 "--json", str(other)]) == 0
    capsys.readouterr()
    assert main(["compare", str(reports["json"]), str(other)]) == 0
    printed = capsys.readouterr().out
    assert "speed-up" in printed and "* machine" in printed


def test_one_node_gains_nothing(tmp_path):
    out = tmp_path / "r.json"
    assert main(["run", "--nodes", "1", "--iterations", "20", "--quiet", "--json", str(out)]) == 0
    off, on = json.loads(out.read_text())["runs"]
    assert off["cost"]["total_cycles"] == on["cost"]["total_cycles"]
    assert on["cost"]["speedup"] == 1.0 and on["cost"]["gain"] == 0.0


def test_compare_rejects_a_non_report(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{\"rows\": []}")
    assert main(["compare", str(bad), str(bad)]) == 3
    assert "not a ktext-emu report" in capsys.readouterr().err


def test_a_single_run_plot_leaves_no_quarter_blank(tmp_path):
    """Defect 5: `run --ktext on --plot` filled three quarters of the figure."""
    png = tmp_path / "on.png"
    assert main(["run", "--ktext", "on", "--iterations", "20", "--quiet",
                 "--plot", str(png)]) == 0
    image = matplotlib.image.imread(png)[..., :3]
    height, width = image.shape[:2]
    for rows in (slice(0, height // 2), slice(height // 2, height)):
        for cols in (slice(0, width // 2), slice(width // 2, width)):
            quarter = image[rows, cols]
            inked = (quarter.min(axis=2) < 0.9).mean()
            assert inked > 0.05, f"a quarter of the figure is blank ({inked:.3f} inked)"


def test_every_plot_names_machine_workload_cost_model_and_quantity(reports):
    from emu.plot import make_figure

    report = json.loads(reports["json"].read_text())
    for runs in (report["runs"], report["runs"][1:]):
        figure = make_figure({**report, "runs": runs})
        title = figure._suptitle.get_text()
        assert "machine default (4 nodes x 2 CPUs" in title
        assert "workload dbsim" in title and "cost model fast" in title
        titles = [axes.get_title() for axes in figure.axes if axes.get_title()]
        assert any("DRAM traffic (fetch and data lines missing the caches)" in t for t in titles)
        assert any("modelled cycles per CPU (fast cost model)" in t for t in titles)
