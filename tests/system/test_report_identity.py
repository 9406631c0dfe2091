"""Identical runs give identical ``runs`` (issue 17, low): the kernel is named
by the SHA-256 of its ELF, not by its path, so neither the working directory
nor the kernel cache's location shows up in what ``compare`` compares; the
path is kept under ``timings``."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path: Path, name: str) -> dict:
    where = tmp_path / name
    where.mkdir()
    env = dict(os.environ, PYTHONPATH=str(ROOT), KTEXT_EMU_CACHE=str(where / "cache"))
    result = subprocess.run([sys.executable, "-m", "emu", "run", "--iterations", "3", "--quiet",
                             "--json", "report.json"], cwd=where, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads((where / "report.json").read_text())


def test_runs_are_identical_across_directories_and_caches(tmp_path):
    first, second = _run(tmp_path, "a"), _run(tmp_path, "b")
    assert json.dumps(first["runs"]) == json.dumps(second["runs"])
    kernel = first["runs"][0]["kernel"]
    assert "path" not in kernel
    path = Path(first["timings"][0]["kernel_path"])
    assert path.parent == tmp_path / "a" / "cache"
    assert kernel["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    compare = subprocess.run([sys.executable, "-m", "emu", "compare", str(tmp_path / "a" /
                              "report.json"), str(tmp_path / "b" / "report.json")],
                             env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                             text=True, timeout=60)
    assert compare.returncode == 0 and "no other differences" in compare.stdout
