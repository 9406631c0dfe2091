"""The committed real-kernel footprints (emu/data/footprint/*.json): schema,
provenance, internal consistency, and that the package ships them."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from benchmarks.realkernel.measure import MEASURED

ROOT = Path(__file__).resolve().parents[2]
FOOTPRINTS = sorted((ROOT / "emu" / "data" / "footprint").glob("*.json"))
PROVENANCE_KEYS = ("packages", "qemu", "qemu_command", "qemu_log_flags", "script", "date",
                   "iterations", "warmup_iterations", "cpus", "cpu_model", "host",
                   "cross_compiler", "init_source_sha256", "kernel_release")
PER_CALL_KEYS = {"instructions_per_call": float, "text_bytes_per_call": int,
                 "lines_per_call": int, "functions_per_call": int, "calls": int}
PERCENTILES = ("p10", "p25", "p50", "p75", "p90", "p99")


def test_there_is_a_footprint_for_debian_6_1():
    assert ROOT / "emu" / "data" / "footprint" / "debian-6.1-arm64.json" in FOOTPRINTS


@pytest.fixture(params=FOOTPRINTS, ids=lambda p: p.name)
def doc(request):
    return json.loads(request.param.read_text())


def test_every_figure_has_its_provenance(doc):
    prov = doc["provenance"]
    for key in PROVENANCE_KEYS:
        assert prov.get(key) not in (None, "", [], {}), f"provenance.{key} is empty"
    for pkg in prov["packages"]:
        assert pkg["architecture"] == "arm64"
        assert re.fullmatch(r"linux-image-[\d.]+-\d+-arm64(-dbg)?", pkg["package"])
        assert re.fullmatch(r"[0-9a-f]{64}", pkg["sha256"]), "the .deb's checksum"
        assert pkg["version"]
    assert prov["qemu"].startswith("QEMU emulator version")
    assert prov["qemu_command"].startswith("qemu-system-aarch64 ")
    assert f"ktm_iters={prov['iterations']}" in prov["qemu_command"]
    assert f"-cpu {prov['cpu_model']}" in prov["qemu_command"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", prov["date"])
    assert prov["script"].startswith("python3 -m benchmarks.realkernel.measure")


def test_figures_come_from_the_committed_init(doc):
    """Changing ktm_init.c makes the committed figures stale: rerun the script."""
    source = ROOT / "benchmarks" / "realkernel" / "ktm_init.c"
    assert doc["provenance"]["init_source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_syscall_figures_have_the_schema_and_agree(doc):
    syscalls = doc["syscalls"]
    assert set(syscalls) == set(MEASURED)
    for name, fig in syscalls.items():
        for key, kind in PER_CALL_KEYS.items():
            assert isinstance(fig[key], kind), f"{name}.{key}"
            assert fig[key] > 0, f"{name}.{key}"
        # per call: every instruction byte is in a line, every line in a function
        assert fig["lines_per_call"] * 64 >= fig["text_bytes_per_call"] >= fig["lines_per_call"] * 4
        assert fig["functions_per_call"] <= fig["lines_per_call"]
        assert fig["text_bytes_per_call"] <= fig["union_text_bytes"] <= doc["union_text_bytes"]
        assert fig["text_bytes_per_call"] <= 4 * fig["instructions_per_call_max"]
        assert fig["calls"] == doc["provenance"]["iterations"] * doc["provenance"]["cpus"]
        assert sum(fig["calls_by_cpu"].values()) == fig["calls"]
    assert doc["union_lines"] * 64 >= doc["union_text_bytes"]
    share = doc["text_share"]
    assert sum(share.values()) == doc["union_text_bytes"]
    assert doc["log"]["records_without_translation"] == 0


def test_function_size_distributions_are_ordered(doc):
    for which in ("all", "executed"):
        dist = doc["function_sizes"][which]
        assert dist["count"] > 0
        values = [dist[p] for p in PERCENTILES]
        assert values == sorted(values), which
        assert values[0] > 0
    sizes = doc["function_sizes"]
    assert sizes["executed"]["count"] + sizes["executed_without_size"] == doc["union_functions"]


def test_package_data_ships_the_footprints():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["emu"]
    for path in FOOTPRINTS:
        rel = path.relative_to(ROOT / "emu")
        assert any(rel.match(p) for p in patterns), f"{rel} is not in package-data"
