"""The README's worked example (examples/): its committed assembly is what
gcc makes of its C (when the cross compiler is here), it runs as a user
workload and as a kernel syscall and prints what the same C prints on the
host, and its own plugin test passes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from emu.blob import cc
from emu.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HOST_CC = shutil.which("cc") or shutil.which("gcc")
LINE = re.compile(r"task (\d+): wordstat_score = (0x[0-9a-f]{16})")


@pytest.mark.skipif(shutil.which(cc.CC) is None, reason=f"{cc.CC} not installed")
@pytest.mark.parametrize(("source", "assembly"), [("wordstat.c", "wordstat.s"),
                                                  ("wordstat_kernel.c", "wordstat_kernel.s")])
def test_committed_assembly_is_what_gcc_makes(tmp_path: Path, source: str, assembly: str) -> None:
    """The flags of examples/Makefile are emu/blob/cc.py's CFLAGS, and the .s is current."""
    makefile = (EXAMPLES / "Makefile").read_text()
    assert " ".join(makefile.split("CFLAGS = ")[1].split("\n\n")[0].replace("\\", "").split()) \
        == " ".join(cc.CFLAGS)
    out = tmp_path / assembly
    subprocess.run([cc.CC, *cc.CFLAGS, source, "-o", str(out)], cwd=EXAMPLES, check=True,
                   timeout=120)
    assert out.read_text() == (EXAMPLES / assembly).read_text(), (
        f"examples/{assembly} is stale: run `make -C examples`")


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> dict[int, str]:
    if HOST_CC is None:
        pytest.skip("no host C compiler (cc) to compile the example for the host")
    binary = tmp_path_factory.mktemp("host") / "wordstat-host"
    subprocess.run([HOST_CC, "-O2", "-DHOST", str(EXAMPLES / "wordstat.c"), "-o", str(binary)],
                   check=True, timeout=120)
    output = subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout
    return {int(task): value for task, value in LINE.findall(output)}


@pytest.mark.parametrize(("granule", "ktext"), [("4k", "both"), ("64k", "on")])
def test_the_example_runs_as_the_readme_says_and_matches_the_host(
        host, tmp_path, capsys, granule, ktext) -> None:
    out_json = tmp_path / "r.json"
    status = main(["run", "--nodes", "2", "--cpus-per-node", "2", "--granule", granule,
                   "--ktext", ktext, "--add-user", str(EXAMPLES / "wordstat.s"),
                   "--add", str(EXAMPLES / "wordstat_kernel.s"), "--workload", "wordstat",
                   "--iterations", "20", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert status == 0  # every task's user result equalled the kernel's (exit 0)
    printed = LINE.findall(out)
    runs = json.loads(out_json.read_text())["runs"]
    assert len(printed) == 4 * len(runs)
    for task, value in printed:
        assert value == host[int(task)], f"task {task}: emulated {value}, host {host[int(task)]}"
    assert all(run["syscalls"] == {"15": "sys_wordstat"} for run in runs)


def test_the_examples_own_plugin_test_passes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:ktext_emu", "-p", "emu.pytest_plugin",
         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(EXAMPLES / "test_wordstat.py")],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 passed" in result.stdout
