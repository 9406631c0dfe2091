"""`ktext-emu sweep` on the local executor: rows against `ktext-emu run`, the
JSON and CSV reports, failing and crashing points, grid errors, point ids,
and --resume after a sweep killed with SIGKILL."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu import sweep_executors
from emu.cli import main
from emu.jsonfmt import dense
from emu.sweep import SweepReport, flatten, journal_path, load_done_rows, load_grid

# A user workload whose first load faults: a guest fault at EL0 on every node.
CRASH_S = """\
\t.section .user.text, "ax"
\t.globl\tworkload_crash
\t.type\tworkload_crash, %function
workload_crash:
\tmov\tx0, #0
\tldr\tx1, [x0]
\tb\tworkload_crash
\t.size\tworkload_crash, . - workload_crash
"""

SMALL_GRID = """\
[grid]
nodes = [1, 2]
workload = ["syscall", "crash"]

[fixed]
cpus-per-node = 1
iterations = 5
add = "crash.S"
"""


def write_grid(directory: Path, text: str, name: str = "grid.toml") -> Path:
    (directory / "crash.S").write_text(CRASH_S)
    path = directory / name
    path.write_text(text)
    return path


def sweep(grid: Path, out: Path, *extra: str) -> tuple[int, dict, list[dict]]:
    json_path, csv_path = out / "sweep.json", out / "sweep.csv"
    status = main(["sweep", str(grid), "--json", str(json_path), "--csv", str(csv_path),
                   "--quiet", *extra])
    doc = json.loads(json_path.read_text())
    with csv_path.open(newline="") as handle:
        return status, doc, list(csv.DictReader(handle))


def without_timing(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key != "timing"} for row in rows]


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> tuple[Path, int, dict, list[dict]]:
    directory = tmp_path_factory.mktemp("sweep")
    grid = write_grid(directory, SMALL_GRID)
    return (directory, *sweep(grid, directory, "--jobs", "2"))


def test_small_grid_gives_one_row_per_point_in_grid_order(small_sweep):
    _, status, doc, _ = small_sweep
    assert status == 0
    assert doc["complete"] is True and doc["points"] == 4
    rows = doc["rows"]
    assert [row["index"] for row in rows] == [0, 1, 2, 3]
    # the last [grid] key varies fastest; [fixed] options are part of every point
    assert [(row["options"]["nodes"], row["options"]["workload"]) for row in rows] == [
        (1, "syscall"), (1, "crash"), (2, "syscall"), (2, "crash")]
    assert all(row["options"]["iterations"] == 5 and row["options"]["add"] == "crash.S"
               for row in rows)
    ids = [row["id"] for row in rows]
    assert len(set(ids)) == 4
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize("nodes", [1, 2])
def test_ok_row_holds_what_ktext_emu_run_reports(small_sweep, nodes):
    directory, _, doc, _ = small_sweep
    row = next(r for r in doc["rows"]
               if r["options"] == {"nodes": nodes, "workload": "syscall", "cpus_per_node": 1,
                                   "iterations": 5, "add": "crash.S"})
    assert row["status"] == "ok" and row["error"] is None
    assert row["machine"]["nodes"] == nodes and row["machine"]["cpus_per_node"] == 1
    report_path = directory / f"run{nodes}.json"
    assert main(["run", "--nodes", str(nodes), "--cpus-per-node", "1", "--workload", "syscall",
                 "--iterations", "5", "--add", str(directory / "crash.S"), "--quiet",
                 "--json", str(report_path)]) == 0
    runs = json.loads(report_path.read_text())["runs"]
    assert set(row["runs"]) == {"off", "on"}
    for run in runs:
        summary = row["runs"]["on" if run["ktext_requested"] else "off"]
        assert summary["instructions"] == run["instructions"]
        assert summary["ktext"] == run["ktext"]
        assert summary["checks"] == run["checks"]
        assert summary["cost"]["total_cycles"] == run["cost"]["total_cycles"]
        by_node = [[0, 0] for _ in range(nodes)]
        for cpu in run["cpus"]:
            fetches = dense(cpu["kernel_fetches_by_node"], nodes)
            by_node[cpu["node"]][0] += fetches[cpu["node"]]
            by_node[cpu["node"]][1] += sum(fetches)
        assert summary["local_kernel_share_by_node"] == [local / total for local, total in by_node]
    if nodes == 2:  # replication is what makes node 1's kernel fetches local
        assert row["runs"]["off"]["local_kernel_share_by_node"][1] == 0.0
        assert row["runs"]["on"]["local_kernel_share_by_node"] == [1.0, 1.0]
        assert row["runs"]["on"]["ktext"] is True


def test_failing_point_is_recorded_and_the_sweep_goes_on(small_sweep):
    _, _, doc, _ = small_sweep
    failed = [row for row in doc["rows"] if row["options"]["workload"] == "crash"]
    assert len(failed) == 2
    for row in failed:
        assert row["status"] == "error" and row["error_type"] == "GuestFault"
        assert "workload_crash" in row["error"] and "\n" not in row["error"]
        assert row["runs"]["off"]["fault"]["symbol"].startswith("workload_crash")
        assert "on" not in row["runs"]  # the first run faulted: there was no second


def test_csv_has_the_json_rows_flattened(small_sweep):
    _, _, doc, csv_rows = small_sweep
    assert [r["id"] for r in csv_rows] == [row["id"] for row in doc["rows"]]
    columns = list(csv_rows[0])
    assert columns[:5] == ["id", "index", "status", "error", "error_type"]
    timing = [c for c in columns if c.startswith("timing.")]
    assert timing and columns[-len(timing):] == timing
    for row, flat_csv in zip(doc["rows"], csv_rows, strict=True):
        flat = flatten(row)
        assert set(flat) <= set(columns)
        for column, value in flat.items():
            expected = ("" if value is None else "true" if value is True else
                        "false" if value is False else repr(value) if isinstance(value, float)
                        else str(value))
            assert flat_csv[column] == expected, column
        assert all(flat_csv[c] == "" for c in columns if c not in flat)
    assert "runs.on.local_kernel_share_by_node.1" in columns
    assert "options.cpus_per_node" in columns


def test_same_grid_gives_same_rows_except_timing(small_sweep, tmp_path):
    _, _, doc, _ = small_sweep
    grid = write_grid(tmp_path, SMALL_GRID)
    status, again, _ = sweep(grid, tmp_path, "--jobs", "1")
    assert status == 0
    assert without_timing(again["rows"]) == without_timing(doc["rows"])
    assert not journal_path(tmp_path / "sweep.json").exists()


def test_crashed_point_process_is_a_crash_row_and_resume_reruns_it(tmp_path, monkeypatch,
                                                                   capsys):
    grid = write_grid(tmp_path, "[grid]\nnodes = [1, 2]\n[fixed]\nworkload = 'syscall'\n"
                      "cpus_per_node = 1\niterations = 5\n")
    real_run_point = sweep_executors.run_point

    def dies_on_two_nodes(point):
        if point.options["nodes"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_run_point(point)

    # The point's process is a fork of this one, so it runs the patched function.
    monkeypatch.setattr(sweep_executors, "run_point", dies_on_two_nodes)
    status, doc, _ = sweep(grid, tmp_path, "--jobs", "2")
    assert status == 1
    assert "1 point(s) crashed" in capsys.readouterr().err
    crashed = [row for row in doc["rows"] if row["status"] == "crash"]
    assert [row["options"]["nodes"] for row in crashed] == [2]
    assert "killed by SIGKILL" in crashed[0]["error"]
    assert [row["status"] for row in doc["rows"]] == ["ok", "crash"]
    monkeypatch.setattr(sweep_executors, "run_point", real_run_point)
    first = doc["rows"][0]
    status, doc, _ = sweep(grid, tmp_path, "--resume")
    assert status == 0
    assert [row["status"] for row in doc["rows"]] == ["ok", "ok"]
    assert doc["rows"][0] == first  # kept, timing and all: not run again


KILL_GRID = """\
[grid]
nodes = [1, 2]
iterations = [5, 6, 7, 8, 9, 10]

[fixed]
workload = "syscall"
cpus_per_node = 1
"""


def test_resume_after_sigkill_runs_only_the_missing_points(tmp_path):
    grid = write_grid(tmp_path, KILL_GRID)
    json_path, csv_path = tmp_path / "sweep.json", tmp_path / "sweep.csv"
    command = [sys.executable, "-m", "emu", "sweep", str(grid), "--jobs", "1",
               "--json", str(json_path), "--csv", str(csv_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done: dict = {}
    try:
        deadline = time.monotonic() + 120
        while len(done) < 2:
            assert process.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no rows written"
            time.sleep(0.02)
            if json_path.exists():
                done = load_done_rows(json_path)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    done = load_done_rows(json_path)  # the report (always valid JSON) plus the journal
    assert 2 <= len(done) < 12
    killed_doc = json.loads(json_path.read_text())
    assert killed_doc["complete"] is False

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(done)} already done; running {12 - len(done)} on" in resumed.stderr
    assert resumed.stderr.count("] ") == 12 - len(done)  # one progress line per point run
    doc = json.loads(json_path.read_text())
    assert doc["complete"] is True and len(doc["rows"]) == 12
    by_id = {row["id"]: row for row in doc["rows"]}
    for point_id, row in done.items():
        assert by_id[point_id]["timing"] == row["timing"]  # not run again
    assert not journal_path(json_path).exists()
    # what the interrupted and resumed sweep computed is what a single sweep computes
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    status, single, _ = sweep(grid, fresh, "--jobs", "2")
    assert status == 0
    assert without_timing(single["rows"]) == without_timing(doc["rows"])


def test_resume_reads_the_journal_and_ignores_a_cut_line(tmp_path):
    json_path = tmp_path / "sweep.json"
    json_path.write_text(json.dumps({"rows": [{"id": "a", "index": 0, "status": "ok"}]}))
    rows = [{"id": "b", "index": 1, "status": "error"}, {"id": "c", "index": 2, "status": "crash"}]
    journal_path(json_path).write_text(
        "".join(json.dumps(row) + "\n" for row in rows) + '{"id": "d", "ind')
    assert sorted(load_done_rows(json_path)) == ["a", "b"]  # crash rows are run again


@pytest.mark.parametrize("text", ["not json", '{"runs": []}', "[1, 2]"])
def test_resume_refuses_a_file_that_is_not_a_sweep_report(tmp_path, capsys, text):
    grid = write_grid(tmp_path, "[grid]\nnodes = [1]\n")
    (tmp_path / "sweep.json").write_text(text)
    assert main(["sweep", str(grid), "--json", str(tmp_path / "sweep.json"), "--resume",
                 "--quiet"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume" in err


GRID_ERRORS = [
    ("nodes = [1", "invalid TOML"),
    ("[fixed]\nnodes = 1\n", "no [grid] table"),
    ("[grid]\n", "[grid]: is empty"),
    ("[grid]\nnodez = [1]\n", "grid.toml:2: [grid] nodez: not a `ktext-emu run` option"),
    ("[grid]\nnodes = 2\n", "[grid] values are lists"),
    ("[grid]\nnodes = []\n", "empty list"),
    ("[grid]\nnodes = ['two']\n", "invalid int value"),
    ("[grid]\nnodes = [true]\n", "is a boolean"),
    ("[grid]\nnodes = [{ a = 1 }]\n", "is a table"),
    ("[grid]\niterations = [-1]\n", "must not be negative"),
    ("[grid]\ngranule = ['8k']\n", "invalid choice"),
    ("[grid]\nnodes = [1, 1]\n", "1 repeats 1"),
    ("[grid]\ngranule = [4096, '4k']\n", "\"4k\" repeats 4096"),
    ("[grid]\njson = ['x.json']\n", "about the run's output"),
    ("[grid]\nnodes = [1]\n[fixed]\nnodes = 2\n", "also set in [fixed]"),
    ("[grid]\nnodes = [1]\n[fixed]\niterations = [5, 6]\n", "[fixed] takes a single value"),
    ("[grid]\nnodes = [1]\n[extra]\nx = 1\n", "grid.toml:3: unknown table 'extra'"),
    ("[grid]\nnodes = [1, 2, 3]\niterations = [1, 2, 3, 4]\n", "12 points"),
]


@pytest.mark.parametrize(("text", "expected"), GRID_ERRORS)
def test_bad_grid_is_one_clear_line(tmp_path, capsys, monkeypatch, text, expected):
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path, text)
    assert main(["sweep", "grid.toml", "--max-points", "10", "--quiet"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ktext-emu: error: ") and err.count("\n") == 1
    assert expected in err
    assert not (tmp_path / "grid.sweep.json").exists()
    assert grid.exists()


def test_max_points_can_be_raised(tmp_path):
    grid = write_grid(tmp_path, "[grid]\nnodes = [1, 2, 3]\niterations = [1, 2, 3, 4]\n")
    assert len(load_grid(grid, max_points=12)[1]) == 12


def test_ray_executor_without_ray_says_how_to_install(tmp_path, capsys, monkeypatch):
    grid = write_grid(tmp_path, "[grid]\nnodes = [1]\n")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["sweep", str(grid), "--executor", "ray", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install '.[cluster]'" in err


def test_address_needs_the_ray_executor(tmp_path, capsys):
    grid = write_grid(tmp_path, "[grid]\nnodes = [1]\n")
    assert main(["sweep", str(grid), "--address", "auto", "--quiet"]) == 2
    assert "--executor ray" in capsys.readouterr().err


def test_point_ids_depend_on_the_options_only(tmp_path):
    one = tmp_path / "one"
    other = tmp_path / "other"
    one.mkdir()
    other.mkdir()
    _, points = load_grid(write_grid(one, "[grid]\ngranule = [4096, 16384]\nnodes = [2]\n"
                                     "[fixed]\nadd = 'crash.S'\n"))
    # other spelling, other key order, [fixed] and [grid] swapped, another directory
    _, same = load_grid(write_grid(other, "[grid]\ngranule = ['16k', '4k']\n"
                                   "[fixed]\nadd = 'crash.S'\nnodes = 2\n"))
    assert {p.point_id for p in points} == {p.point_id for p in same}
    assert len({p.point_id for p in points}) == 2
    # a relative path in the grid is relative to the grid file
    assert f"--add={one / 'crash.S'}" in points[0].argv


@settings(max_examples=40, deadline=None)
@given(axes=st.dictionaries(
    st.sampled_from(["nodes", "iterations", "quantum", "migrate_every"]),
    st.lists(st.integers(1, 50), min_size=1, max_size=4, unique=True),
    min_size=1, max_size=3))
def test_points_are_the_product_of_the_lists(tmp_path_factory, axes):
    directory = tmp_path_factory.mktemp("grid")
    text = "[grid]\n" + "".join(f"{key} = {values}\n" for key, values in axes.items())
    _, points = load_grid(write_grid(directory, text))
    expected = 1
    for values in axes.values():
        expected *= len(values)
    assert len(points) == expected == len({p.point_id for p in points})
    assert [p.index for p in points] == list(range(expected))
    combos = {tuple(p.options[key] for key in axes) for p in points}
    assert len(combos) == expected
    for point in points:
        assert sorted(point.argv) == sorted(
            f"--{key.replace('_', '-')}={point.options[key]}" for key in axes)


def test_resume_with_a_changed_grid_runs_only_the_new_points(tmp_path, capsys):
    fixed = "[fixed]\nworkload = 'syscall'\ncpus_per_node = 1\niterations = 5\n"
    grid = write_grid(tmp_path, "[grid]\nnodes = [1, 2]\n" + fixed)
    status, first, _ = sweep(grid, tmp_path)
    assert status == 0
    grid.write_text("[grid]\nnodes = [2, 3]\n" + fixed)
    capsys.readouterr()
    assert main(["sweep", str(grid), "--json", str(tmp_path / "sweep.json"), "--csv",
                 str(tmp_path / "sweep.csv"), "--resume"]) == 0
    err = capsys.readouterr().err
    assert "1 row(s) of" in err  # the nodes = 1 row, said to be left out
    assert "1 already done; running 1 on" in err
    doc = json.loads((tmp_path / "sweep.json").read_text())
    with (tmp_path / "sweep.csv").open(newline="") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert [row["options"]["nodes"] for row in doc["rows"]] == [2, 3]
    assert [row["index"] for row in doc["rows"]] == [0, 1]  # the new grid's order
    kept = next(row for row in first["rows"] if row["options"]["nodes"] == 2)
    assert doc["rows"][0] == {**kept, "index": 0}
    assert [r["options.nodes"] for r in csv_rows] == ["2", "3"]


def test_interrupted_sweep_keeps_its_rows_and_stops_its_points(tmp_path, monkeypatch):
    grid = write_grid(tmp_path, "[grid]\niterations = [5, 6, 7, 8]\n[fixed]\n"
                      "workload = 'syscall'\nnodes = 1\n")
    real_add = SweepReport.add

    def interrupt_after_first(self, row):
        real_add(self, row)
        raise KeyboardInterrupt

    monkeypatch.setattr(SweepReport, "add", interrupt_after_first)
    json_path = tmp_path / "sweep.json"
    assert main(["sweep", str(grid), "--jobs", "2", "--json", str(json_path), "--quiet"]) == 130
    doc = json.loads(json_path.read_text())
    assert doc["complete"] is False and len(doc["rows"]) == 1
    assert not journal_path(json_path).exists()  # everything it held is in the report
    assert multiprocessing.active_children() == []


def test_default_report_paths(tmp_path, monkeypatch):
    grid = write_grid(tmp_path, "[grid]\nworkload = ['syscall']\n[fixed]\nnodes = 1\n"
                      "iterations = 5\n", name="study.toml")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["sweep", str(grid), "--quiet"]) == 0
    assert sorted(p.name for p in work.iterdir()) == ["study.sweep.csv", "study.sweep.json"]
    assert main(["sweep", str(grid), "--quiet", "--json", "out.json"]) == 0
    assert (work / "out.csv").read_text().splitlines()[0].startswith("id,index,status")


def test_a_million_point_grid_gives_its_first_point_without_building_the_rest(tmp_path):
    """Issue 17 item 8: points are built one at a time, so a 10^6-point grid
    costs no more before its first point than a small one."""
    values = ", ".join(str(n) for n in range(1, 1001))
    grid = write_grid(tmp_path, f"[grid]\niterations = [{values}]\nmigrate-every = [{values}]\n"
                                "\n[fixed]\nworkload = \"syscall\"\n")
    tracemalloc.start()
    try:
        _, points = load_grid(grid, max_points=10**6)
        first = next(iter(points))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(points) == 10**6
    assert (first.index, first.run.iterations, first.run.migrate_every) == (0, 1, 1)
    assert peak < 64 << 20  # 10^6 built points take over 1 GiB
    last = points[-1]
    assert (last.index, last.run.iterations, last.run.migrate_every) == (10**6 - 1, 1000, 1000)
    assert points[1234].options == {"iterations": 2, "migrate_every": 235,
                                    "workload": "syscall"}


def test_points_by_index_are_the_points_in_order(tmp_path):
    grid = write_grid(tmp_path, "[grid]\nnodes = [1, 2, 3]\niterations = [1, 2]\n"
                                "granule = ['4k', '16k']\n")
    _, points = load_grid(grid)
    in_order = list(points)
    assert [points[i] for i in range(len(points))] == in_order
    assert [p.index for p in in_order] == list(range(12))
    with pytest.raises(IndexError):
        points[12]
