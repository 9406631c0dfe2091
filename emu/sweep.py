"""``ktext-emu sweep GRID.toml``: run every point of a grid of ``ktext-emu run``
options and keep one combined report.  Owns the grid file (a ``[grid]`` table
of option lists whose cartesian product is the points, plus an optional
``[fixed]`` table), the points' stable ids, the report files (``{"rows":
[...]}`` JSON, the same rows flattened into CSV, and a journal of finished
rows) and ``--resume``.  Points run through emu/sweep_executors.py.

The report is rewritten atomically as points finish; each finished row is
also appended to ``<json>.journal`` at once, so a sweep killed at any moment
loses no finished point even when the report itself is rewritten less often
(large reports are rewritten at most every 20x the time one write takes).
The ``sweep`` command itself (options, progress lines) is emu/cli/sweep.py.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import io
import itertools
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from emu.errors import ConfigError, OutputError, UsageError
from emu.fileio import atomic_write_text, is_stdout, printable, read_input_file
from emu.jsonfmt import dumps as report_text
from emu.run_options import REPEATABLE, RunOptions, parse_run_options, run_options_parser
from emu.sweep_executors import (
    STATUS_CRASH,
    Point,
    one_line,
)
from emu.tomlfile import line_of, toml_error

SWEEP_REPORT_VERSION = 1
DEFAULT_MAX_POINTS = 10_000
MAX_GRID_BYTES = 1 << 20  # a grid file (10,000 points fit in a few KiB)
# A sweep report or its journal read back by --resume: 10,000 rows of a few
# KiB each are ~50 MiB, so this is room, not a squeeze.
MAX_SWEEP_REPORT_BYTES = 256 << 20
# `ktext-emu run` options that are about its own output, not about the run.
NOT_GRID_OPTIONS = frozenset({"help", "json", "quiet", "plot"})


@dataclass(frozen=True)
class Grid:
    """A parsed grid file: option name -> value, in the file's order."""

    path: Path
    fixed: dict[str, Any]
    axes: dict[str, list[Any]]

    @property
    def size(self) -> int:
        return math.prod(len(values) for values in self.axes.values())


# -- the grid file ------------------------------------------------------------


def _run_options() -> dict[str, argparse.Action]:
    """``ktext-emu run``'s options a grid may set, by dest (= name with '_')."""
    _, actions = run_options_parser()
    return actions


class _GridErrors:
    """Formats ``GRID:LINE: [table] key: message`` lines."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def __call__(self, message: str, table: str | None = None, key: str | None = None
                 ) -> ConfigError:
        line = line_of(self.text, table, key) if table else None
        where = f"{self.path}:{line}" if line else f"{self.path}"
        what = f"[{table}] {key}: " if table and key else (f"[{table}]: " if table else "")
        return ConfigError(printable(f"{where}: {what}{message}"))


def _toml_kind(value: object) -> str:
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"),
                       (str, "a string"), (list, "an array"), (dict, "a table")):
        if isinstance(value, kind):
            return name
    return "a date/time"


def show(value: object) -> str:
    """A grid value as the user wrote it (TOML and JSON agree on scalars and arrays)."""
    return json.dumps(value, default=str)


def _is_append(action: argparse.Action) -> bool:
    return action.dest in REPEATABLE


def option_args(action: argparse.Action, value: object) -> list[str]:
    """The run arguments for one option value (raises ValueError with the reason)."""
    flag = action.option_strings[-1]
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise ValueError(f"{show(value)} is {_toml_kind(value)}, expected true or false")
        return [flag] if value else []
    if _is_append(action):
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(item, str) for item in items):
            raise ValueError(f"{show(value)}: expected a string or an array of strings")
        return [f"{flag}={item}" for item in items]
    if isinstance(value, bool):
        choices = set(action.choices or ())
        if {"on", "off"} <= choices:
            return [f"{flag}={'on' if value else 'off'}"]
        raise ValueError(f"{show(value)} is a boolean, expected a single "
                         f"{'string' if action.type is None else 'number or string'}")
    if isinstance(value, int) and action.choices and action.dest == "granule":
        text = f"{value // 1024}k" if value % 1024 == 0 else str(value)
        return [f"{flag}={text}"]
    if isinstance(value, int | float | str):
        return [f"{flag}={value}"]
    raise ValueError(f"{show(value)} is {_toml_kind(value)}, expected a single value")


def _check_value(action: argparse.Action, value: object, error: Any, table: str,
                 key: str) -> tuple[list[str], object]:
    """The value's run arguments, and the RunOptions field value they give,
    checked by the run options' own parser."""
    try:
        args = option_args(action, value)
        field_value = getattr(parse_run_options(args), action.dest)
    except ValueError as err:
        raise error(str(err), table, key) from None
    except UsageError as err:
        detail = str(err).split(": ", 1)[-1]  # drop the "ktext-emu run" prefix
        raise error(f"{show(value)}: {detail}", table, key) from None
    return args, field_value


def _resolve_path(value: object, base: Path) -> object:
    """A relative path in a grid is relative to the grid file's directory."""
    if isinstance(value, list):
        return [_resolve_path(item, base) for item in value]
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str(base / value)
    return value


def _path_valued(action: argparse.Action, value: object) -> bool:
    if action.type is Path:
        return True
    # --machine takes a preset name or a machine file
    return action.dest == "machine" and isinstance(value, str) and (
        value.endswith(".toml") or "/" in value)


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = read_input_file(path, MAX_GRID_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError(f"cannot read grid {path}: {reason}") from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(toml_error(str(path), err)) from None


def _tables(path: Path, text: str, doc: dict[str, Any], options: dict[str, argparse.Action],
            error: _GridErrors) -> dict[str, dict[str, tuple[str, Any]]]:
    """[fixed] and [grid] as dest -> (key as written, value), names checked."""
    unknown = [name for name in doc if name not in ("grid", "fixed")]
    if unknown:
        name = unknown[0]
        line = line_of(text, name, None)
        raise ConfigError(printable(
            f"{path}{f':{line}' if line else ''}: unknown "
            f"{'table' if isinstance(doc[name], dict) else 'key'} '{name}' "
            "(a grid file has [grid] and optionally [fixed])"))
    if not isinstance(doc.get("grid"), dict):
        raise error("no [grid] table (its keys are `ktext-emu run` options, its values lists)")
    known = ", ".join(sorted(options))
    set_in: dict[str, str] = {}
    tables: dict[str, dict[str, tuple[str, Any]]] = {"fixed": {}, "grid": {}}
    for table in ("fixed", "grid"):
        content = doc.get(table, {})
        if not isinstance(content, dict):
            raise error(f"'{table}' must be a table")
        for key, value in content.items():
            dest = key.replace("-", "_")
            if dest not in options:
                if dest in NOT_GRID_OPTIONS:
                    raise error(f"'{key}' is about the run's output, not the run; "
                                "the sweep writes its own report", table, key)
                raise error(f"not a `ktext-emu run` option (options: {known})", table, key)
            if dest in set_in:
                raise error(f"also set in [{set_in[dest]}]", table, key)
            set_in[dest] = table
            tables[table][dest] = (key, value)
    if not tables["grid"]:
        raise error("is empty: give at least one option and a list of its values", "grid")
    for dest, (key, value) in tables["fixed"].items():
        if isinstance(value, list) and not _is_append(options[dest]):
            raise error(f"{show(value)}: [fixed] takes a single value (lists go in [grid])",
                        "fixed", key)
    for key, values in tables["grid"].values():
        if not isinstance(values, list):
            raise error(f"{show(values)} is {_toml_kind(values)}; [grid] values are lists "
                        f"(e.g. {key} = [{show(values)}]), single values go in [fixed]",
                        "grid", key)
        if not values:
            raise error("empty list: give at least one value", "grid", key)
    return tables


def load_grid(path: Path, max_points: int = DEFAULT_MAX_POINTS) -> tuple[Grid, GridPoints]:
    """Parse and check GRID.toml; return it and its points in grid order
    (built lazily, see GridPoints)."""
    text, doc = _read_toml(path)
    error = _GridErrors(path, text)
    options = _run_options()
    tables = _tables(path, text, doc, options, error)
    fixed = {dest: value for dest, (_, value) in tables["fixed"].items()}
    axes = {dest: list(values) for dest, (_, values) in tables["grid"].items()}
    grid = Grid(path, fixed, axes)
    if grid.size > max_points:  # before checking each value: a huge grid is refused at once
        shape = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        raise ConfigError(f"{path}: the grid has {grid.size:,} points ({shape}), more than "
                          f"the limit of {max_points:,}; raise it with --max-points")

    def checked(dest: str, key: str, value: object, table: str) -> tuple[list[str], object]:
        action = options[dest]
        if _path_valued(action, value):
            value = _resolve_path(value, path.parent)
        return _check_value(action, value, error, table, key)

    fixed_args: list[str] = []
    fixed_fields: dict[str, object] = {}
    for dest, (key, value) in tables["fixed"].items():
        args, fixed_fields[dest] = checked(dest, key, value, "fixed")
        fixed_args += args
    axis_args: list[list[tuple[list[str], object]]] = []
    for dest, (key, values) in tables["grid"].items():
        seen: dict[tuple[str, ...], tuple[object, object]] = {}
        for value in values:
            args, field_value = checked(dest, key, value, "grid")
            if tuple(args) in seen:  # the same run twice, perhaps spelt differently
                raise error(f"{show(value)} repeats {show(seen[tuple(args)][0])}", "grid", key)
            seen[tuple(args)] = (value, field_value)
        axis_args.append([(list(args), field_value) for args, (_, field_value) in seen.items()])
    base = replace(RunOptions(), **fixed_fields)
    return grid, GridPoints(grid, options, axis_args, tuple(fixed_args), base)


class GridPoints(Sequence[Point]):
    """The grid's points in grid order (the last option varies fastest, as in
    ``itertools.product``), each built only when asked for: a grid of 10^6
    points costs nothing before its first point runs."""

    def __init__(self, grid: Grid, options: dict[str, argparse.Action],
                 axis_args: list[list[tuple[list[str], object]]], fixed_args: tuple[str, ...],
                 base: RunOptions) -> None:
        self.grid, self.options, self.axis_args = grid, options, axis_args
        self.fixed_args, self.base = fixed_args, base

    def __len__(self) -> int:
        return self.grid.size

    def __getitem__(self, index: int) -> Point:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"point {index} of {len(self)}")
        index %= len(self)
        combo = []
        rest = index
        for values in reversed(self.axis_args):
            rest, digit = divmod(rest, len(values))
            combo.append(digit)
        return self._point(index, tuple(reversed(combo)))

    def __iter__(self) -> Iterator[Point]:
        combos = itertools.product(*(range(len(v)) for v in self.axis_args))
        for index, combo in enumerate(combos):
            yield self._point(index, combo)

    def axis_values(self) -> Iterator[Point]:
        """Points that between them hold every value of every option
        (one option varied at a time): enough to find every input file."""
        for axis, values in enumerate(self.axis_args):
            for digit in range(len(values)):
                combo = [0] * len(self.axis_args)
                combo[axis] = digit
                yield self._point(-1, tuple(combo))

    def _point(self, index: int, combo: tuple[int, ...]) -> Point:
        axes, fixed = self.grid.axes, self.grid.fixed
        point_options = {dest: axes[dest][i] for dest, i in zip(axes, combo, strict=True)}
        point_options.update(fixed)
        chosen = [values[i] for values, i in zip(self.axis_args, combo, strict=True)]
        argv = [arg for args, _ in chosen for arg in args]
        run = replace(self.base, **{dest: field_value
                                    for dest, (_, field_value) in zip(axes, chosen, strict=True)})
        return Point(index, point_id(point_options, self.options), point_options,
                     (*argv, *self.fixed_args), run)


def point_id(point_options: dict[str, Any], options: dict[str, argparse.Action]) -> str:
    """A stable id: a hash of the point's options as run arguments, in name order.

    Spellings of one value (granule 4096 and "4k") give one id; paths count as
    written in the grid, so a grid directory can move without losing its rows.
    """
    args = sorted(arg for dest, value in point_options.items()
                  for arg in option_args(options[dest], value))
    digest = hashlib.sha256(json.dumps(args).encode("utf-8")).hexdigest()
    return digest[:12]


# -- the report files ----------------------------------------------------------


def flatten(row: dict, prefix: str = "") -> dict[str, Any]:
    """Dotted column names: runs.on.local_kernel_share_by_node.0, timing.seconds ..."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, list):
            flat.update(flatten({str(i): item for i, item in enumerate(value)}, name + "."))
        else:
            flat[name] = value
    return flat


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def csv_columns(flat_rows: Sequence[dict[str, Any]]) -> list[str]:
    """The union of the rows' columns, each new one placed right after the column
    that precedes it in its own row (node 1's figures after node 0's, a fault
    after the checks of its run), then timing.* last."""
    columns: list[str] = []
    known: set[str] = set()
    for flat in flat_rows:
        previous = None
        for column in flat:
            if column not in known:
                columns.insert(columns.index(previous) + 1 if previous else 0, column)
                known.add(column)
            previous = column
    head = [c for c in columns if not c.startswith("timing.")]
    return head + [c for c in columns if c.startswith("timing.")]


def rows_csv(rows: Sequence[dict]) -> str:
    """The rows as CSV, one column per flattened field (see csv_columns)."""
    flat_rows = [flatten(row) for row in rows]
    columns = csv_columns(flat_rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for flat in flat_rows:
        writer.writerow([_csv_value(flat.get(column)) for column in columns])
    return out.getvalue()


def journal_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name + ".journal")


def load_done_rows(json_path: Path) -> dict[str, dict]:
    """Rows already computed: the report's, then the journal's (one JSON row a line)."""
    rows: dict[str, dict] = {}
    if json_path.exists():
        try:
            doc = json.loads(read_input_file(json_path, MAX_SWEEP_REPORT_BYTES).decode("utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise ConfigError(f"--resume: cannot read {json_path} as a sweep report "
                              f"({one_line(str(err))})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
            raise ConfigError(f"--resume: {json_path} is not a sweep report (no \"rows\" list)")
        rows.update(_rows_by_id(doc["rows"]))
    journal = journal_path(json_path)
    if journal.exists():
        try:
            raw = read_input_file(journal, MAX_SWEEP_REPORT_BYTES)
        except OSError as err:
            raise ConfigError(f"--resume: cannot read {printable(str(journal))}: "
                              f"{err.strerror or err}") from None
        lines = raw.decode("utf-8", errors="replace").splitlines()
        parsed = []
        for line in lines:
            # a line cut short by a kill, or one no report of ours could hold
            with contextlib.suppress(json.JSONDecodeError, RecursionError):
                parsed.append(json.loads(line))
        rows.update(_rows_by_id(parsed))
    # A crash is not a result of the point: run it again.
    return {key: row for key, row in rows.items() if row.get("status") != STATUS_CRASH}


def _rows_by_id(rows: Iterable[object]) -> dict[str, dict]:
    return {row["id"]: row for row in rows
            if isinstance(row, dict) and isinstance(row.get("id"), str) and "status" in row}


class SweepReport:
    """The rows so far and the files they go to."""

    def __init__(self, grid: Grid, points: Sequence[Point], json_path: Path,
                 csv_path: Path | None, rows: dict[str, dict]) -> None:
        self.grid, self.points = grid, points
        self.json_path, self.csv_path = json_path, csv_path
        self.journal = journal_path(json_path)
        self.rows = rows
        self._journal_file: Any = None
        self.started = False
        self._last_write_seconds = 0.0
        self._last_write_at = -math.inf

    @property
    def complete(self) -> bool:
        # the count first: no walk over a large grid while rows are missing
        return (len(self.rows) >= len(self.points)
                and all(point.point_id in self.rows for point in self.points))

    def document(self) -> dict:
        ordered = sorted(self.rows.values(), key=lambda row: row["index"])
        return {
            "ktext_emu_sweep": SWEEP_REPORT_VERSION,
            "grid": str(self.grid.path),
            "complete": self.complete,
            "points": len(self.points),
            "rows": ordered,
        }

    def write(self) -> None:
        started = time.perf_counter()
        document = self.document()
        atomic_write_text(self.json_path, report_text(document))
        if self.csv_path is not None:
            atomic_write_text(self.csv_path, rows_csv(document["rows"]))
        self._last_write_at = time.perf_counter()
        self._last_write_seconds = self._last_write_at - started

    @property
    def to_stdout(self) -> bool:
        """The report goes to standard output: written once, at the end, with no journal."""
        return is_stdout(self.json_path)

    def start(self) -> None:
        """Write the report of what is already done and open a fresh journal."""
        self.started = True
        if self.to_stdout:
            return
        self.write()
        try:
            self._journal_file = self.journal.open("w", encoding="utf-8")
        except OSError as err:
            raise OutputError(f"cannot write {self.journal}: {err.strerror or err}") from None

    def add(self, row: dict) -> None:
        self.rows[row["id"]] = row
        if self.to_stdout:
            return
        try:
            self._journal_file.write(json.dumps(row) + "\n")
            self._journal_file.flush()
        except OSError as err:
            raise OutputError(f"cannot write {self.journal}: {err.strerror or err}") from None
        if time.perf_counter() - self._last_write_at >= 20 * self._last_write_seconds:
            self.write()

    def finish(self) -> None:
        """Write everything; the journal is then redundant."""
        self.write()
        if self._journal_file is not None:
            self._journal_file.close()
            self._journal_file = None
            with contextlib.suppress(OSError):
                self.journal.unlink()
