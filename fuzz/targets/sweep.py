"""Fuzz target ``sweep``: the files ``ktext-emu sweep`` reads: GRID.toml
(emu.sweep.load_grid) and, for ``--resume``, the JSON report and its journal
(emu.sweep.load_done_rows).

An input's first byte says which file the rest is (even: a grid, 1 mod 4: a
report, 3 mod 4: a journal). Grids are the test suite's grids damaged with
option names and values of every TOML type; reports and journals are valid
ones damaged, cut short, or nested deeply. Properties: only ConfigError or
UsageError comes out; a loaded grid's points have distinct ids.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import strategies as st

from emu.errors import ConfigError, UsageError
from fuzz.harness import PropertyViolation, Target
from fuzz.mutate import damaged_bytes, damaged_text, utf8

GRIDS = (
    "[grid]\nnodes = [1, 2]\nworkload = [\"syscall\", \"dbsim\"]\n\n[fixed]\n"
    "cpus-per-node = 1\niterations = 5\n",
    "[grid]\nnodes = [1, 2]\niterations = [5, 6, 7]\nktext = [\"on\", \"off\"]\n"
    "granule = [\"4k\", 16384]\n[fixed]\nworkload = \"syscall\"\ncpus_per_node = 1\n"
    "machine = \"default\"\nmax-instructions = 100000\n",
)
REPORT = json.dumps({"version": 1, "rows": [
    {"id": "a1", "status": "ok", "options": {"nodes": 1}, "run": {"cycles": 10}},
    {"id": "b2", "status": "crash", "options": {"nodes": 2}},
]})  # fmt: skip
JOURNAL = "\n".join(json.dumps(row) for row in json.loads(REPORT)["rows"]) + "\n{\"id\": \"c"
FRAGMENTS = [
    "[grid]", "[fixed]", "[other]", "nodes", "cpus-per-node", "cpus_per_node", "workload",
    "iterations", "granule", "va-bits", "ktext", "machine", "kernel", "add", "json", "help",
    "max-instructions", "quantum", "migrate-every", "cmdline", "=", "[]", "[1, 1]", "[1, \"1\"]",
    "[0]", "[-1]", "[1e309]", "[nan]", "[true]", "[[1]]", "[{}]", "\"/dev/zero\"", "\"../x.S\"",
    "[" + ", ".join(str(i) for i in range(200)) + "]", "99999999999999999999", "\"\\u001b\"",
]  # fmt: skip


def _with_mode(mode: int, body: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return body.map(lambda b: bytes([mode]) + b)


def strategy() -> st.SearchStrategy[bytes]:
    grid = st.sampled_from(GRIDS).flatmap(lambda t: damaged_text(t, FRAGMENTS))
    nested = st.integers(1, 100_000).map(lambda n: "[" * n + "]" * (n % 3))
    report = st.one_of(utf8(nested), damaged_bytes(REPORT.encode(), max_edits=3))
    journal = st.one_of(utf8(nested), damaged_bytes(JOURNAL.encode(), max_edits=3))
    return st.one_of(_with_mode(0, utf8(grid)), _with_mode(0, utf8(grid)),
                     _with_mode(1, report), _with_mode(3, journal))  # fmt: skip


def seeds() -> list[bytes]:
    return [b"\0" + g.encode() for g in GRIDS] + [b"\1" + REPORT.encode(), b"\3" + JOURNAL.encode()]


@functools.lru_cache(maxsize=1)
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="ktext-fuzz-sweep-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def run(data: bytes) -> str:
    from emu.sweep import journal_path, load_done_rows, load_grid

    mode, body = (data[0], data[1:]) if data else (0, b"")
    work = _scratch()
    report = work / "sweep.json"
    report.unlink(missing_ok=True)
    journal_path(report).unlink(missing_ok=True)
    if mode % 2 == 0:
        path = work / "grid.toml"
        path.write_bytes(body)
        _grid, points = load_grid(path, max_points=1000)
        if len({p.point_id for p in points}) != len(points):
            raise PropertyViolation("two points of one grid share an id")
        return f"grid of {min(len(points), 10)}{'+' if len(points) > 10 else ''} points"
    (report if mode % 4 == 1 else journal_path(report)).write_bytes(body)
    rows = load_done_rows(report)
    if not isinstance(rows, dict):
        raise PropertyViolation("load_done_rows did not give a dict")
    return "resume rows read"


TARGET = Target(
    name="sweep",
    summary="sweep grid files (load_grid) and --resume report/journal files (load_done_rows)",
    documented=(ConfigError, UsageError),
    run=run,
    strategy=strategy,
    seeds=seeds,
    timeout=10.0,
)
