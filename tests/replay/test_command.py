"""``ktext-emu replay`` end to end on the committed real excerpts: run's table
and JSON shape, and one error line with the input status for bad input."""

from __future__ import annotations

import json

import pytest
from replay_testdata import (
    DEBIAN_MAP,
    PERF_CALLCHAIN,
    PERF_F,
    PERF_SAMPLES,
    QEMU_EXEC,
    QEMU_INASM,
    X86_MAP,
)

from emu.errors import ConfigError, UsageError

CONFIG, USAGE = ConfigError.exit_status, UsageError.exit_status


@pytest.fixture(scope="module")
def run_document(tmp_path_factory):
    """A real ``ktext-emu run`` report: the shape replay's must share."""
    from emu.cli import main

    out = tmp_path_factory.mktemp("run") / "run.json"
    assert main(["run", "--iterations", "5", "--json", str(out), "--quiet"]) == 0
    return json.loads(out.read_text())


def _keys(value):
    return set(value) if isinstance(value, dict) else set()


@pytest.mark.parametrize("trace,system_map", [
    (QEMU_EXEC, DEBIAN_MAP), (QEMU_INASM, DEBIAN_MAP), (PERF_SAMPLES, X86_MAP),
    (PERF_F, X86_MAP), (PERF_CALLCHAIN, X86_MAP),
])  # fmt: skip
def test_json_has_the_shape_of_runs(ktext_emu, tmp_path, run_document, trace, system_map, capsys):
    out = tmp_path / "replay.json"
    assert ktext_emu(["replay", str(trace), "--system-map", str(system_map), "--machine",
                      "altra-2s", "--cpu-node", "0=0,1=1", "--json", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    document = json.loads(out.read_text())
    assert _keys(document) == _keys(run_document)
    for run, reference in zip(document["runs"], run_document["runs"], strict=True):
        missing = {"machine", "kernel", "ktext", "cpus", "nodes", "checks", "cost",
                   "instructions", "stop_reason", "workload"} - set(run)  # fmt: skip
        assert not missing
        for key in ("machine", "kernel", "checks"):
            assert _keys(run[key]) == _keys(reference[key]), key
        assert _keys(run["cost"]) == _keys(reference["cost"])
        assert _keys(run["nodes"][0]) >= _keys(reference["nodes"][0])
        assert _keys(run["cpus"][0]) >= {"cpu", "node", "ttbr1", "instructions",
                                         "kernel_fetches_by_node", "fetches_by_node"}
        assert len(run["cpus"]) == 8 and run["machine"]["nodes"] == 2
        assert run["data_accesses"] is None and "data accesses are not in the trace" in \
            " ".join(run["source"]["assumptions"])
    off, on = document["runs"]
    assert on["cost"]["speedup"] >= 1.0
    assert "local kernel fetches (ktext off)" in printed and "cost model: fast" in printed
    # Trace CPU 1 is machine CPU 4, on node 1: with ktext on its kernel text is local.
    assert on["source"]["trace_cpus"]
    for run, home in ((off, 0), (on, 1)):
        cpu4 = run["cpus"][4]
        assert set(cpu4["kernel_fetches_by_node"]) <= {str(home)}  # v2: nonzero entries only


@pytest.mark.parametrize("argv,status,needle", [
    (["{trace}", "--system-map", "{missing}"], CONFIG, "cannot read System.map"),
    (["{missing}", "--system-map", "{map}"], CONFIG, "cannot read the trace"),
    (["{trace}", "--system-map", "{trace}"], CONFIG, "not a System.map line"),
    (["{trace}"], USAGE, "--system-map"),
    (["{trace}", "--system-map", "{map}", "--cpu-node", "0"], USAGE, "expected CPU=NODE"),
    (["{trace}", "--system-map", "{map}", "--cpu-node", "0=9"], CONFIG, "nodes 0-3"),
    (["{trace}", "--system-map", "{map}", "--nodes", "1", "--cpus-per-node", "1"], CONFIG,
     "trace CPU 1 is not on the machine"),
    (["{dir}", "--system-map", "{map}"], CONFIG, "not a regular file"),
    (["{trace}", "--system-map", "{map}", "--kernel-image", "{map}"], CONFIG,
     "neither a vmlinux ELF nor an arm64 Image"),
])  # fmt: skip
def test_bad_input_is_one_line(ktext_emu, tmp_path, capsys, argv, status, needle):
    names = {"trace": QEMU_EXEC, "map": DEBIAN_MAP, "missing": tmp_path / "nope",
             "dir": tmp_path}  # fmt: skip
    argv = ["replay", *(part.format(**names) for part in argv)]
    assert ktext_emu(argv) == status
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1, err
    assert err.startswith("ktext-emu: error: ") and needle in err


def test_debian_placeholder_system_map_is_explained(ktext_emu, tmp_path, capsys):
    placeholder = tmp_path / "System.map-6.1.0-57-arm64"
    placeholder.write_text("ffffffffffffffff B The real System.map is in the "
                           "linux-image-<version>-dbg package\n")  # fmt: skip
    assert ktext_emu(["replay", str(QEMU_EXEC), "--system-map", str(placeholder)]) == CONFIG
    assert "-dbg package" in capsys.readouterr().err


def test_garbage_trace_names_its_line(ktext_emu, tmp_path, capsys):
    lines = QEMU_EXEC.read_text().splitlines(keepends=True)
    lines[41] = "Trace 0: 0x7fcab0c7e240 [0000000000007001/ffff8000\n"
    trace = tmp_path / "bad.log"
    trace.write_text("".join(lines))
    assert ktext_emu(["replay", str(trace), "--system-map", str(DEBIAN_MAP)]) == CONFIG
    err = capsys.readouterr().err
    assert f"{trace}:42: truncated or malformed QEMU exec record" in err


def test_the_verdict_line_leaves_whole_workload_figures_unchecked(ktext_emu, tmp_path, capsys):
    """A trace is played for its kernel fetches alone: its kernel share is
    100% by construction, so the whole-workload ranges are not applied, and
    the verdict says which figures it did not check (and prints like run's)."""
    out = tmp_path / "replay.json"
    assert ktext_emu(["replay", str(QEMU_EXEC), "--system-map", str(DEBIAN_MAP), "--machine",
                      "altra-2s", "--cpu-node", "0=0,1=1", "--json", str(out)]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    verdict = json.loads(out.read_text())["runs"][1]["cost"]["verdict"]
    assert verdict["claimed"] and not verdict["failed"]
    rows = {row["figure"]: row for row in verdict["sanity_check"]}
    for name in ("kernel_share", "frontend_stall_share", "cpi"):
        assert rows[name]["in_range"] is None and not rows[name]["checked"]
        assert "kernel instruction fetches only" in rows[name]["why_not_checked"]
    assert rows["kernel_share"]["value"] == pytest.approx(1.0)
    assert f"verdict: {verdict['line']}" in printed
    assert "sanity not checked for kernel share, front-end stall share, CPI" in verdict["line"]
