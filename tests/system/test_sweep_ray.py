"""`ktext-emu sweep --executor ray` on a local Ray instance gives the rows the
local executor gives (skipped when Ray is not installed)."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys

import pytest
from test_sweep import SMALL_GRID, without_timing, write_grid

from emu.cli import main

pytest.importorskip("ray", reason="Ray is not installed (pip install '.[cluster]')")


@pytest.mark.slow
def test_ray_rows_equal_local_rows(tmp_path):
    grid = write_grid(tmp_path, SMALL_GRID)
    local_json, ray_json = tmp_path / "local.json", tmp_path / "ray.json"
    assert main(["sweep", str(grid), "--jobs", "2", "--quiet", "--json", str(local_json),
                 "--csv", str(tmp_path / "local.csv")]) == 0
    # A process of its own: the Ray instance it starts ends with it.
    ray = subprocess.run(
        [sys.executable, "-m", "emu", "sweep", str(grid), "--executor", "ray", "--jobs", "2",
         "--json", str(ray_json), "--csv", str(tmp_path / "ray.csv")],
        capture_output=True, text=True, timeout=600,
    )
    assert ray.returncode == 0, ray.stderr
    assert "on a local Ray instance" in ray.stderr
    local_doc, ray_doc = json.loads(local_json.read_text()), json.loads(ray_json.read_text())
    assert ray_doc["complete"] is True
    assert [row["status"] for row in ray_doc["rows"]] == ["ok", "error", "ok", "error"]
    assert without_timing(ray_doc["rows"]) == without_timing(local_doc["rows"])
    local_csv = (tmp_path / "local.csv").read_text().splitlines()
    ray_csv = (tmp_path / "ray.csv").read_text().splitlines()
    assert local_csv[0] == ray_csv[0]  # the same columns


# Recent Ray protects a new cluster with a token that another driver on this
# machine does not get here; the test cluster lives only as long as the test.
NO_RAY_AUTH = {**os.environ, "RAY_AUTH_MODE": "disabled"}
# Ray starts in a few seconds on an idle machine; this bounds a head that never does.
HEAD_START_SECONDS = 300


@pytest.fixture
def ray_cluster():
    """A Ray cluster this test did not start through the sweep: its head runs in
    a process of its own until the test closes that process's stdin."""
    script = ("import sys, ray\n"
              "context = ray.init(num_cpus=2, include_dashboard=False, logging_level='error')\n"
              "print(context.address_info['gcs_address'], flush=True)\n"
              "sys.stdin.read()\n"
              "ray.shutdown()\n")
    # A session of its own, so the whole Ray process group can be ended: a head
    # whose ray.init never returns (seen on a heavily loaded machine) must fail
    # the test, not hang the suite, and must not outlive it.
    head = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=NO_RAY_AUTH,
                            start_new_session=True)
    try:
        ready, _, _ = select.select([head.stdout], [], [], HEAD_START_SECONDS)
        address = head.stdout.readline().strip() if ready else ""
        assert address, f"the Ray head did not start within {HEAD_START_SECONDS} s"
        yield address
    finally:
        head.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(timeout=120)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()


@pytest.mark.slow
def test_existing_cluster_runs_the_points(tmp_path, ray_cluster):
    grid = write_grid(tmp_path, "[grid]\nnodes = [1, 2]\n[fixed]\nworkload = 'syscall'\n"
                      "cpus_per_node = 1\niterations = 5\n")
    local_json, ray_json = tmp_path / "local.json", tmp_path / "ray.json"
    assert main(["sweep", str(grid), "--quiet", "--json", str(local_json)]) == 0
    ray = subprocess.run(
        [sys.executable, "-m", "emu", "sweep", str(grid), "--executor", "ray", "--address",
         ray_cluster, "--json", str(ray_json)],
        capture_output=True, text=True, timeout=600, env=NO_RAY_AUTH,
    )
    assert ray.returncode == 0, ray.stderr
    assert f"on Ray at {ray_cluster}" in ray.stderr
    local_rows = json.loads(local_json.read_text())["rows"]
    assert without_timing(json.loads(ray_json.read_text())["rows"]) == without_timing(local_rows)


def test_unreachable_cluster_is_one_line_and_writes_nothing(tmp_path, capsys):
    grid = write_grid(tmp_path, "[grid]\nnodes = [1]\n")
    json_path = tmp_path / "sweep.json"
    assert main(["sweep", str(grid), "--executor", "ray", "--address", "127.0.0.1:1",
                 "--json", str(json_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in err
    assert not json_path.exists()
