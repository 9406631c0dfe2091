"""Kill tests: a run, a build and a sweep killed with SIGKILL at any moment
leave every output either complete and valid or absent, and every output that
existed before either untouched or replaced by a complete one.

All of it rests on emu/fileio.py (write a hidden temporary sibling, rename it
over the target when complete); a static check below keeps every writer in
the code base on it.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from emu.blob.elf import read_elf
from emu.errors import BlobError

ROOT = Path(__file__).resolve().parents[2]
# what emu/fileio.py leaves behind when killed between creating and renaming
TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PREVIOUS_JSON = '{"previous": "report"}\n'
PREVIOUS_BYTES = b"previous output, not an ELF"


def spawn(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m emu ARGV`` in its own process group (the keystone worker with it)."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "emu", *argv], cwd=ROOT, env=full_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL the process group after ``delay`` s; True if it was still running."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=delay)
    running = proc.poll() is None
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # also any worker it started
    proc.wait()
    return running


def outputs(directory: Path) -> list[Path]:
    """Every file in ``directory`` except fileio's orphaned temporaries."""
    return sorted(p for p in directory.iterdir() if not TEMPORARY.match(p.name))


def assert_valid_elf(path: Path) -> None:
    try:
        read_elf(path)  # checks that every header, segment and section is in the file
    except BlobError as err:
        raise AssertionError(f"{path} is not a complete ELF: {err}") from None


def without_paths(runs: list[dict]) -> list[dict]:
    """Runs without the kernel's cache path (each test has its own cache)."""
    return [{**run, "kernel": {k: v for k, v in run["kernel"].items() if k != "path"}}
            for run in runs]


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND"


RUN = ["run", "--nodes", "2", "--iterations", "100", "--quiet"]


def _matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory) -> dict:
    """The report the run below writes when nobody kills it."""
    path = tmp_path_factory.mktemp("reference") / "report.json"
    done = subprocess.run([sys.executable, "-m", "emu", *RUN, "--json", str(path)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert done.returncode == 0
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def complete_build(tmp_path_factory) -> bytes:
    """The ELF `ktext-emu build` writes when nobody kills it (builds are reproducible)."""
    path = tmp_path_factory.mktemp("reference") / "kernel.elf"
    done = subprocess.run([sys.executable, "-m", "emu", "build", "-o", str(path)], cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300,
                          stdout=subprocess.DEVNULL)
    assert done.returncode == 0
    return path.read_bytes()


# The kills land at different moments: booting (and building the kernel into
# an empty cache), running, writing.  The property holds whatever the moment.
@pytest.mark.parametrize("delay", [0.4, 1.5, 3.0])
def test_kill_a_run(tmp_path, delay, complete_run):
    plot = _matplotlib()
    out = tmp_path / "out"
    out.mkdir()
    cache = tmp_path / "cache"
    report, picture = out / "report.json", out / "plot.png"
    report.write_text(PREVIOUS_JSON)
    picture.write_bytes(PREVIOUS_BYTES)
    argv = [*RUN, "--json", str(report)]
    if plot:
        argv += ["--plot", str(picture)]
    kill_after(spawn(argv, {"KTEXT_EMU_CACHE": str(cache)}), delay)

    assert outputs(out) == [picture, report]
    text = report.read_text()
    if text != PREVIOUS_JSON:
        document = json.loads(text)
        assert document["complete"] is True
        assert without_paths(document["runs"]) == without_paths(complete_run["runs"])
    if picture.read_bytes() != PREVIOUS_BYTES:
        assert_valid_png(picture)
        assert text != PREVIOUS_JSON  # the plot is written after the report
    # the kernel cache holds complete images only, and the next run can use it
    if cache.exists():
        for image in outputs(cache):
            if image.suffix == ".elf":
                assert_valid_elf(image)
    done = subprocess.run([sys.executable, "-m", "emu", "run", "--nodes", "2", "--iterations",
                           "5", "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT), KTEXT_EMU_CACHE=str(cache)))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_kill_a_build(tmp_path, delay, complete_build):
    elf = tmp_path / "kernel.elf"
    elf.write_bytes(PREVIOUS_BYTES)
    kill_after(spawn(["build", "-o", str(elf)]), delay)
    assert outputs(tmp_path) == [elf]
    assert elf.read_bytes() in (PREVIOUS_BYTES, complete_build)


GRID = """\
[grid]
nodes = [1, 2, 3]
workload = ["syscall", "migrate"]

[fixed]
cpus-per-node = 1
iterations = 300
"""


@pytest.mark.parametrize("delay", [0.4, 0.9, 1.6])
def test_kill_a_sweep(tmp_path, delay):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID)
    report, table = tmp_path / "sweep.json", tmp_path / "sweep.csv"
    report.write_text(PREVIOUS_JSON)
    table.write_text("previous,table\n")
    kill_after(spawn(["sweep", str(grid), "--jobs", "2", "--json", str(report),
                      "--csv", str(table), "--quiet"]), delay)

    names = {p.name for p in outputs(tmp_path)}
    assert names <= {"grid.toml", "sweep.json", "sweep.csv", "sweep.json.journal"}
    assert {"sweep.json", "sweep.csv"} <= names
    if report.read_text() != PREVIOUS_JSON:
        document = json.loads(report.read_text())  # a whole document, possibly few rows
        assert all(isinstance(row["id"], str) for row in document["rows"])
    if table.read_text() != "previous,table\n":
        rows = list(csv.reader(io.StringIO(table.read_text())))
        assert rows and all(len(row) == len(rows[0]) for row in rows)
    journal = tmp_path / "sweep.json.journal"
    if journal.exists():
        lines = journal.read_text().split("\n")
        for line in lines[:-1]:  # only the last line may be cut short
            json.loads(line)


def test_a_writer_killed_inside_its_write(tmp_path):
    """Kill a process between the first and last byte of an atomic write."""
    target = tmp_path / "data.bin"
    target.write_bytes(PREVIOUS_BYTES)
    script = textwrap.dedent(f"""
        import os, signal
        from emu.fileio import atomic_output
        with atomic_output({str(target)!r}) as handle:
            handle.write(b"half of the new ")
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
            handle.write(b"content")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert done.returncode == -signal.SIGKILL
    assert target.read_bytes() == PREVIOUS_BYTES
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and TEMPORARY.match(leftovers[0])


# ------------------------------------------------------- every writer is atomic
WRITE_METHODS = {"write_text", "write_bytes", "savefig", "tofile", "dump"}
# Writers that are not outputs, each with the reason it need not be atomic.
ALLOWED = {
    ("emu/fileio.py", "open"): "the atomic writer itself (os.open of the temporary)",
    ("emu/sweep.py", "open"): "the sweep journal: append-only, a torn last line is skipped",
    ("emu/cli/__init__.py", "open"): "os.open of /dev/null to stand in for a closed stdout",
    ("emu/plot.py", "savefig"): "renders into io.BytesIO; the bytes go out through fileio",
}


def _writes(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in WRITE_METHODS:
            if name == "dump" and not (isinstance(func, ast.Attribute)
                                       and getattr(func.value, "id", "") in ("json", "pickle")):
                continue
            found.append((name, node.lineno))
        elif name in ("open", "fdopen"):
            modes = [arg.value for arg in node.args[1:2] if isinstance(arg, ast.Constant)]
            modes += [kw.value.value for kw in node.keywords
                      if kw.arg == "mode" and isinstance(kw.value, ast.Constant)]
            if isinstance(func, ast.Attribute) and func.attr == "open" and node.args:
                first = node.args[0]  # Path.open("w"): the mode is the first argument
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    modes.append(first.value)
            if getattr(func, "value", None) is not None and getattr(func.value, "id", "") == "os":
                flags = ast.unparse(node)
                if "O_WRONLY" in flags or "O_RDWR" in flags:
                    found.append(("open", node.lineno))
                continue
            if any(isinstance(m, str) and set(m) & set("wax+") for m in modes):
                found.append(("open", node.lineno))
    return found


def test_every_writer_goes_through_fileio():
    offenders = []
    for path in sorted((ROOT / "emu").rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for name, line in _writes(ast.parse(path.read_text(), relative)):
            if (relative, name) not in ALLOWED:
                offenders.append(f"{relative}:{line}: {name}")
    assert offenders == []


def test_the_writer_check_finds_raw_writes():
    code = textwrap.dedent("""
        from pathlib import Path
        import json, os
        Path("x").write_text("y")
        open("x", "w")
        Path("x").open("a")
        json.dump({}, handle)
        os.open("x", os.O_WRONLY | os.O_CREAT)
        open("x")
        Path("x").read_text()
    """)
    assert [name for name, _ in _writes(ast.parse(code))] == [
        "write_text", "open", "open", "dump", "open"
    ]
