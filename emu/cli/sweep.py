"""``ktext-emu sweep GRID.toml``: the command over emu/sweep.py (the grid,
the points' ids, the report files) and emu/sweep_executors.py (where points
run): its options, the executor it picks, and its progress lines.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from emu.cli.args import input_files, positive_int
from emu.errors import EmuError, UsageError
from emu.fileio import STDOUT, check_outputs
from emu.sweep import (
    DEFAULT_MAX_POINTS,
    Grid,
    GridPoints,
    SweepReport,
    journal_path,
    load_done_rows,
    load_grid,
)
from emu.sweep_executors import (
    STATUS_CRASH,
    STATUS_ERROR,
    STATUS_OK,
    LocalExecutor,
    Point,
    RayExecutor,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "sweep",
        help="run every point of a grid of `run` options and write one combined report",
        description="Run the cartesian product of the option lists in GRID.toml's [grid] "
        "table (with the options of its [fixed] table) as `ktext-emu run` would, one row per "
        "point, in parallel; the report is written as points finish.",
    )
    parser.add_argument("grid", type=Path, metavar="GRID.toml", help="the grid file")
    parser.add_argument("--jobs", "-j", type=positive_int, default=None, metavar="N",
                        help="points run at once (default: this machine's cores; with ray "
                        "and --address: no limit but the cluster's)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: processes on this machine (default); ray: Ray tasks")
    parser.add_argument("--address", metavar="ADDR",
                        help="the Ray cluster to use (e.g. auto or HOST:6379); default: "
                        "start a local Ray instance")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="the report (default: GRID's name with .sweep.json, here; - for "
                        "standard output, written once at the end)")
    parser.add_argument("--csv", type=Path, metavar="PATH",
                        help="the rows as CSV (default: the JSON path with .csv)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of the existing report and run only missing points")
    parser.add_argument("--max-points", type=positive_int, default=DEFAULT_MAX_POINTS, metavar="N",
                        help=f"refuse grids of more points (default {DEFAULT_MAX_POINTS:,})")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")
    parser.set_defaults(run=sweep_command)


def _describe(point: Point, grid: Grid) -> str:
    return " ".join(f"{key}={point.options[key]}" for key in grid.axes)


def point_inputs(grid: Grid, points: GridPoints) -> list[tuple[str, Path | None]]:
    """Every file some point reads (machine files, kernels, --add sources);
    each option's files depend on its own value only, so one point per value
    of each option finds them all without walking the grid."""
    seen: dict[tuple[str, str], tuple[str, Path | None]] = {}
    for point in points.axis_values():
        run = point.run
        for what, path in input_files(run.machine, run.kernel, run.add, run.add_user):
            if path is not None:
                seen.setdefault((what, str(path)), (f"{what} in {grid.path}", path))
    return list(seen.values())


class _LazyTodo(Sequence[Point]):
    """The points not yet done, built as the executor takes them."""

    def __init__(self, points: GridPoints, done: dict[str, dict]) -> None:
        self.points, self.done = points, done

    def __len__(self) -> int:
        return len(self.points) - len(self.done)

    def __getitem__(self, index: int) -> Point:  # type: ignore[override]
        raise TypeError("the points to run are taken in order, not by index")

    def __iter__(self) -> Iterator[Point]:
        return (point for point in self.points if point.point_id not in self.done)


def make_executor(args: argparse.Namespace) -> LocalExecutor | RayExecutor:
    if args.executor == "ray":
        return RayExecutor(args.address, args.jobs)
    if args.address is not None:
        raise UsageError("--address is for --executor ray")
    return LocalExecutor(args.jobs)


def sweep_command(args: argparse.Namespace) -> int:
    executor = make_executor(args)  # first: a missing Ray is reported before anything runs
    grid, points = load_grid(args.grid, args.max_points)
    stem = args.grid.name.removesuffix(".toml")
    json_path = args.json or Path(f"{stem}.sweep.json")
    csv_path = args.csv or (json_path.with_suffix(".csv") if json_path.suffix == ".json"
                            else json_path.with_name(json_path.name + ".csv"))
    to_stdout = str(json_path) == STDOUT
    if to_stdout:
        if args.resume:
            raise UsageError("--resume needs a report file, not --json -")
        csv_path = args.csv  # no default CSV beside standard output
    outputs = [("--json", json_path), ("--csv", csv_path)]
    if not to_stdout:
        outputs.append(("the journal", journal_path(json_path)))
    check_outputs(outputs, [("the grid", args.grid), *point_inputs(grid, points)])
    done: dict[str, dict] = {}
    if args.resume:  # only a resumed sweep walks the grid before it runs
        index = {point.point_id: point.index for point in points}
        previous = load_done_rows(json_path)
        done = {key: row for key, row in previous.items() if key in index}
        dropped = len(previous) - len(done)
        if dropped and not args.quiet:
            print(f"sweep: {dropped} row(s) of {json_path} are not points of this grid "
                  "and are left out", file=sys.stderr)
        for key, row in done.items():
            row["index"] = index[key]
    # Lazily, one point at a time; point ids are distinct (repeated values
    # are refused), so the count is known without building the points.
    todo = _LazyTodo(points, done)
    report = SweepReport(grid, points, json_path, csv_path, done)
    if not args.quiet:
        already = f", {len(done)} already done" if done else ""
        if executor.name == "ray":
            where = f"Ray at {args.address}" if args.address else "a local Ray instance"
        else:
            where = f"{executor.jobs} local process(es)"
        print(f"sweep: {len(points)} point(s){already}; running {len(todo)} on {where}",
              file=sys.stderr)
    counts = {STATUS_OK: 0, STATUS_ERROR: 0, STATUS_CRASH: 0}
    rows = executor.run(todo)
    try:
        if todo:  # before any file is written: an unreachable cluster changes nothing
            executor.start()
        report.start()
        for finished, row in enumerate(rows, 1):
            report.add(row)
            counts[row["status"]] += 1
            if not args.quiet:
                point = points[row["index"]]
                outcome = row["status"] + (f": {row['error']}" if row["error"] else "")
                print(f"[{finished}/{len(todo)}] {row['id']} {_describe(point, grid)}: "
                      f"{outcome} ({row['timing']['seconds']:.1f} s)", file=sys.stderr)
    except (KeyboardInterrupt, EmuError):
        rows.close()  # stops the points still running
        if report.started:
            with contextlib.suppress(EmuError):
                report.finish()
        raise
    finally:
        rows.close()
        executor.close()
    report.finish()
    if not args.quiet:
        outputs = f"{json_path}" + (f", {csv_path}" if csv_path else "")
        print(f"sweep: {len(points)} point(s): {counts[STATUS_OK]} ok, {counts[STATUS_ERROR]} "
              f"error(s), {counts[STATUS_CRASH]} crash(es) in this run; wrote {outputs}",
              file=sys.stderr)
    if counts[STATUS_CRASH]:
        raise EmuError(f"{counts[STATUS_CRASH]} point(s) crashed (see their rows); "
                       "--resume runs them again")
    return 0
