"""The in-process run API (emu/api.py): the runs ``run_comparison`` returns
are the ones ``ktext-emu run --json`` writes, its options default as the
command's do, a failure leaves the partial report, and a sweep point runs
through it in this process."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import fields

import pytest

from emu import cli, sweep_executors
from emu.api import Report, run_comparison
from emu.cli import build_parser, main
from emu.errors import ConfigError, UsageError
from emu.run_options import RunOptions, parse_run_options
from emu.sweep import load_grid

SMALL = ["--nodes", "2", "--cpus-per-node", "1", "--workload", "syscall", "--iterations", "30"]


def _timeless(document: dict) -> dict:
    return {key: value for key, value in document.items() if key != "timings"}


@pytest.mark.parametrize("ktext", [None, "on", "off"])
def test_run_comparison_gives_the_runs_of_the_command(tmp_path, ktext):
    argv = SMALL + ([] if ktext is None else ["--ktext", ktext])
    path = tmp_path / "run.json"
    assert main(["run", *argv, "--json", str(path), "--quiet"]) == 0
    written = json.loads(path.read_text())

    report = run_comparison(parse_run_options(argv))
    assert report.complete
    assert len(report.runs) == len(report.timings) == (2 if ktext is None else 1)
    # The same document, byte for byte once serialised, but for the timings.
    assert json.dumps(_timeless(report.to_json())) == json.dumps(_timeless(written))
    assert [run["ktext"] for run in report.runs] == [t["ktext"] for t in written["timings"]]


def test_run_options_default_as_the_run_command():
    args = build_parser().parse_args(["run"])
    assert RunOptions.from_args(args) == RunOptions() == parse_run_options([])
    parsed = parse_run_options(["--granule", "16k", "--add", "a.S", "--add", "b.S",
                                "--ro-replicas"])
    assert (parsed.granule, [str(p) for p in parsed.add], parsed.ro_replicas) == (
        16384, ["a.S", "b.S"], True)


def test_every_run_option_is_a_field():
    """A new ``run`` option must reach the API (and so the sweep)."""
    run_parser = build_parser().parse_args(["run"])
    # Output and debugger options change how a run is seen, not what it computes.
    output = {"json", "plot", "quiet", "command", "run", "traceback",
              "gdb", "gdb_on_fault", "gdb_allow_remote"}
    assert set(vars(run_parser)) - output == {field.name for field in fields(RunOptions)}


def test_a_failure_leaves_the_partial_report():
    report = Report()
    with pytest.raises(ConfigError, match="unknown machine preset"):
        run_comparison(RunOptions(machine="no-such-preset"), report=report)
    assert report.runs == [] and not report.complete
    assert report.to_json()["complete"] is False
    with pytest.raises(UsageError, match="--kernel and --add"):
        run_comparison(RunOptions(kernel=__file__, add=(__file__,)))  # type: ignore[arg-type]


def test_progress_is_asked_for_each_run():
    counts: dict[str, list[int]] = {}

    @contextmanager
    def progress(label):
        counts[label] = []
        yield counts[label].append

    report = run_comparison(parse_run_options(SMALL), progress=progress)
    assert list(counts) == ["ktext off", "ktext on"]
    for run, seen in zip(report.runs, counts.values(), strict=True):
        assert seen and seen == sorted(seen) and seen[-1] <= run["instructions"]


def test_a_sweep_point_runs_in_process_without_the_cli(tmp_path, monkeypatch):
    grid = tmp_path / "grid.toml"
    grid.write_text('[grid]\nktext = ["on", "off"]\n\n[fixed]\nnodes = 2\n'
                    'cpus-per-node = 1\nworkload = "syscall"\niterations = 30\n')
    _, points = load_grid(grid)
    assert [point.run.ktext for point in points] == ["on", "off"]
    assert points[0].run == parse_run_options(points[0].argv)

    def no_cli(*args, **kwargs):
        raise AssertionError("a sweep point must not go through the CLI")

    monkeypatch.setattr(cli, "build_parser", no_cli)
    monkeypatch.setattr(cli, "main", no_cli)
    row = sweep_executors.run_point(points[0])  # here, not in a worker process
    assert row["status"] == "ok", row["error"]
    expected = run_comparison(points[0].run).runs[0]
    assert row["runs"]["on"] == sweep_executors.summarize_run(json.loads(json.dumps(expected)))
