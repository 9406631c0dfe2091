"""Machine presets, TOML machine files, overrides and MachineConfig."""

from __future__ import annotations

import argparse
import json
import math
from importlib import resources
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.cli.args import add_machine_arguments, machine_config_from_args
from emu.config import (
    MachineConfig,
    load_machine_file,
    load_preset,
    load_topology,
    machine_config,
    preset_names,
    topology_from_toml,
)
from emu.errors import ConfigError
from emu.hw.topology import MIB, MemoryLatency, Topology, regular_distances

KUNPENG_SLIT = ((10, 12, 20, 22), (12, 10, 22, 24), (20, 22, 10, 12), (22, 24, 12, 10))


def write(tmp_path: Path, text: str | bytes, name: str = "box.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


# -- presets -------------------------------------------------------------------


def test_the_three_presets_exist() -> None:
    assert preset_names() == ("altra-2s", "default", "kunpeng920-4n")


@pytest.mark.parametrize("name", ["default", "altra-2s", "kunpeng920-4n"])
def test_every_preset_loads_validates_and_cites_its_figures(name: str) -> None:
    topo = load_preset(name)
    assert topo.name == name
    assert topo.source.strip()
    text = resources.files("emu.hw.presets").joinpath(f"{name}.toml").read_text()
    assert any(line.startswith("#") for line in text.splitlines())
    assert topo.n_cpus == 8  # small emulated CPU counts; --cpus-per-node scales them
    assert topo.ram_bytes == 64 * MIB


def test_default_preset_is_4x2_with_remote_distance_20() -> None:
    topo = load_preset("default")
    assert (topo.nodes, topo.cpus_per_node) == (4, 2)
    assert topo.distances == regular_distances(4, 20)
    assert topo.hardware_cpus_per_node is None


def test_altra_preset_records_the_real_core_count() -> None:
    topo = load_preset("altra-2s")
    assert (topo.nodes, topo.cpus_per_node, topo.hardware_cpus_per_node) == (2, 4, 80)
    assert topo.distances == ((10, 20), (20, 10))
    assert "not a published Altra SLIT" in topo.source


def test_kunpeng_preset_has_the_published_slit() -> None:
    topo = load_preset("kunpeng920-4n")
    assert topo.distances == KUNPENG_SLIT
    assert topo.hardware_cpus_per_node == 32
    assert "lore.kernel.org" in topo.source


def test_presets_are_ordinary_machine_files(tmp_path: Path) -> None:
    for name in preset_names():
        text = resources.files("emu.hw.presets").joinpath(f"{name}.toml").read_text()
        assert load_machine_file(write(tmp_path, text, f"{name}.toml")) == load_preset(name)


def test_unknown_preset_lists_the_presets() -> None:
    with pytest.raises(ConfigError, match=r"unknown machine preset 'epyc' \(presets: altra-2s, "
                                          r"default, kunpeng920-4n; or give a path"):
        load_topology("epyc")


# -- overrides -------------------------------------------------------------------


def test_overrides_on_a_preset() -> None:
    topo = load_topology("altra-2s", cpus_per_node=16)
    assert (topo.nodes, topo.n_cpus, topo.distances) == (2, 32, ((10, 20), (20, 10)))
    topo = load_topology("kunpeng920-4n", nodes=2, ram_mib=32)
    assert topo.distances == ((10, 12), (12, 10))
    assert topo.ram_bytes == 32 * MIB
    assert "resized from 4 to 2 nodes" in topo.source
    topo = load_topology("kunpeng920-4n", nodes=64, cpus_per_node=4)
    assert topo.n_cpus == 256
    assert topo.distance(0, 63) == 12 and topo.distance(5, 5) == 10
    assert load_topology("default", nodes=4) == load_preset("default")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(nodes=0), "--nodes 0: must be a positive integer"),
        (dict(cpus_per_node=-1), "--cpus-per-node -1: must be a positive integer"),
        (dict(nodes=True), "--nodes True"),
        (dict(ram_mib=0), "--ram-mib 0"),
        (dict(nodes=2000), "nodes must be between 1 and 1024, got 2000"),
        (dict(nodes=1024, cpus_per_node=8), "8192 CPUs, more than the 4096"),
        (dict(ram_mib=8), "ram_bytes must be between"),
    ],
)
def test_bad_overrides(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_topology("default", **kwargs)


def test_path_or_preset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "[machine]\nnodes = 2\ncpus_per_node = 3\n", "two.toml")
    assert load_topology(path).name == "two"
    assert load_topology(str(path)).n_cpus == 6
    monkeypatch.chdir(tmp_path)
    assert load_topology("two.toml").nodes == 2
    (tmp_path / "default").write_text("not toml at all [")  # a bare name is always a preset
    assert load_topology("default") == load_preset("default")
    with pytest.raises(ConfigError, match="cannot read machine file"):
        load_topology("sub/dir")


# -- machine files: good ------------------------------------------------------------


def test_full_machine_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
# a comment
[machine]
name = "lab-box"
nodes = 3
cpus_per_node = 2
ram_mib = 32
distances = [[10, 15, 30], [15, 10, 30], [30, 30, 10]]

[hardware]
cpus_per_node = 24
source = "our lab's numactl -H"

[latency]
local_ns = 95
remote_ns = 142.5
source = "measured with lat_mem_rd"
""")
    topo = load_machine_file(path)
    assert topo == Topology(
        "lab-box", 3, 2, 32 * MIB, ((10, 15, 30), (15, 10, 30), (30, 30, 10)),
        "our lab's numactl -H", 24, MemoryLatency(95, 142.5, "measured with lat_mem_rd"),
    )


def test_minimal_machine_file_defaults(tmp_path: Path) -> None:
    topo = load_machine_file(write(tmp_path, "[machine]\nnodes = 5\ncpus_per_node = 1\n", "m.toml"))
    assert topo.name == "m"
    assert topo.ram_bytes == 64 * MIB
    assert topo.distances == regular_distances(5, 20)
    assert (topo.source, topo.hardware_cpus_per_node, topo.latency) == ("", None, None)


# -- machine files: bad ---------------------------------------------------------------

M = "[machine]\nnodes = 2\ncpus_per_node = 1\n"
BAD_FILES = [
    ("nodes = 2\n", "unknown top-level key 'nodes'", 1),
    (M + "[extra]\na = 1\n", "unknown table [extra]", 4),
    (M + "color = 'red'\n", "[machine] unknown key 'color'", 4),
    ("[machine]\nnodes = '2'\ncpus_per_node = 1\n", "[machine] nodes: expected an integer, got string", 2),
    ("[machine]\nnodes = true\ncpus_per_node = 1\n", "expected an integer, got boolean", 2),
    (M + "ram_mib = 64.5\n", "[machine] ram_mib: expected an integer, got float", 4),
    (M + "distances = [[10, '20'], [20, 10]]\n", "expected an array of arrays of integers", 4),
    (M + "distances = [10, 20]\n", "expected an array of arrays of integers, got array", 4),
    (M + "distances = [[10, 20], [20]]\n", "distances row 1 must have 2 entries, got 1", None),
    (M + "distances = [[10, 20], [20, 9]]\n", "distances[1][1] must be 10", None),
    (M + "distances = [[10, 20], [300, 10]]\n", "distances[1][0] must be in 11..255", None),
    ("[machine]\nnodes = 2\n", "[machine] missing key 'cpus_per_node'", 1),
    ("[hardware]\ncpus_per_node = 4\n", "missing [machine] table", None),
    ("[machine\nnodes = 2\n", "invalid TOML", 1),
    ("[machine]\nnodes = = 2\n", "invalid TOML", 2),
    ("[machine]\nnodes = 2\nnodes = 3\ncpus_per_node = 1\n", "invalid TOML", 3),
    ("[machine]\nnodes = 0\ncpus_per_node = 1\n", "nodes must be between 1 and 1024, got 0", None),
    ("[machine]\nnodes = 99999999999999999999\ncpus_per_node = 1\n", "nodes must be between", None),
    (M + "[latency]\nlocal_ns = 90\nremote_ns = 120\n", "[latency] missing key 'source'", 4),
    (M + "[latency]\nlocal_ns = 90\nremote_ns = 20\nsource = 's'\n", "is smaller than local_ns", None),
    (M + "[latency]\nlocal_ns = 'fast'\nremote_ns = 20\nsource = 's'\n",
     "[latency] local_ns: expected a number or a range [low, high], got string", 5),
    ("machine = 5\n", "'machine' must be a [machine] table", 1),
    (M + "[hardware]\ncpus_per_node = 0\n", "hardware_cpus_per_node must be between", None),
    (M + "ram_mib = 8\n", "ram_bytes must be between", None),
    (M + "ram_mib = 0\n", "ram_mib 0: must be an integer number of MiB", None),
    ("[machine]\nnodes = 1979-05-27\ncpus_per_node = 1\n", "got a date/time", 2),
    (M + "name = ''\n", "name: must be a non-empty string", None),
    ("[machine]\nnodes = 1000\ncpus_per_node = 5\n", "5000 CPUs, more than the 4096", None),
]


@pytest.mark.parametrize(("text", "message", "line"), BAD_FILES)
def test_bad_machine_file_is_one_config_error_naming_file_and_place(
    tmp_path: Path, text: str, message: str, line: int | None
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_machine_file(path)
    text_of_error = str(err.value)
    assert message in text_of_error
    assert "\n" not in text_of_error
    prefix = f"{path}:{line}: " if line else f"{path}: "
    assert text_of_error.startswith(prefix), text_of_error


def test_unreadable_machine_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"^{missing}: cannot read machine file: No such file"):
        load_machine_file(missing)
    folder = tmp_path / "dir.toml"
    folder.mkdir()
    with pytest.raises(ConfigError, match=f"^{folder}: cannot read machine file: Is a directory"):
        load_machine_file(folder)
    latin1 = write(tmp_path, b'[machine]\nname = "caf\xe9"\n', "latin1.toml")
    with pytest.raises(ConfigError, match=f"^{latin1}:2: invalid TOML: not UTF-8"):
        load_machine_file(latin1)


TOML_BITS = st.sampled_from([
    "[machine]", "[latency]", "[hardware]", "[", "]", "nodes", "cpus_per_node", "ram_mib",
    "distances", "local_ns", "source", "=", " = ", "\n", "1", "2", "64", "10", "20", "-1",
    "[[10, 20], [20, 10]]", "[", ",", '"', "'", "x", "1e3", "true", "#", "\\", "{", "}", ".",
])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.lists(TOML_BITS, max_size=40).map("".join), st.text(max_size=200)))
def test_random_toml_ish_text_gives_a_topology_or_a_config_error(text: str) -> None:
    try:
        topo = topology_from_toml(text, "fuzz.toml")
    except ConfigError as err:
        assert str(err).startswith("fuzz.toml")
        assert "\n" not in str(err)
    else:
        assert isinstance(topo, Topology)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200))
def test_random_bytes_in_a_file_give_only_config_errors(tmp_path: Path, data: bytes) -> None:
    path = write(tmp_path, data, "fuzz.toml")
    try:
        load_machine_file(path)
    except ConfigError as err:
        assert str(err).startswith(str(path))


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else
                                                "-inf" if value == -math.inf else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


VALUES = st.one_of(
    st.integers(-3, 70), st.integers(2**31, 2**70), st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=True), st.booleans(), st.text(max_size=8),
    st.lists(st.lists(st.integers(-5, 300), max_size=4), max_size=4),
    st.lists(st.one_of(st.integers(), st.text(max_size=2)), max_size=3),
)
KEYS = st.sampled_from(["name", "nodes", "cpus_per_node", "ram_mib", "distances", "local_ns",
                        "remote_ns", "source", "bogus"])
TABLES = st.dictionaries(
    st.sampled_from(["machine", "hardware", "latency", "extra"]),
    st.dictionaries(KEYS, VALUES, max_size=6),
    max_size=3,
)


@settings(max_examples=200, deadline=None)
@given(TABLES)
def test_random_values_give_a_valid_topology_or_a_config_error(tables: dict) -> None:
    text = "".join(
        f"[{table}]\n" + "".join(f"{key} = {toml_value(v)}\n" for key, v in body.items())
        for table, body in tables.items()
    )
    try:
        topo = topology_from_toml(text, "values.toml")
    except ConfigError as err:
        assert "\n" not in str(err) and str(err).startswith("values.toml")
        return
    machine = tables["machine"]
    assert topo.nodes == machine["nodes"] and topo.cpus_per_node == machine["cpus_per_node"]
    assert set(tables) <= {"machine", "hardware", "latency"}


# -- MachineConfig -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("granule", "va_bits", "levels"),
    [(4096, 39, 3), (4096, 48, 4), (16384, 36, 2), (16384, 47, 3), (16384, 48, 4),
     (65536, 42, 2), (65536, 48, 3)],
)
def test_granule_and_va_bits_give_the_arm64_level_count(granule: int, va_bits: int,
                                                         levels: int) -> None:
    config = machine_config("default", granule=granule, va_bits=va_bits)
    assert config.pgtable_levels == levels
    assert 1 << config.page_shift == granule


@pytest.mark.parametrize(
    ("granule", "va_bits", "message"),
    [(4096, 52, "4K pages allow 39, 48"), (4096, 47, "4K pages allow"), (16384, 39, "16K pages"),
     (65536, 39, "64K pages allow 42, 48"), (65536, 52, "64K pages allow 42, 48"), (8192, 48, "granule 8192"),
     (4096, "48", "va_bits '48'"), (True, 48, "granule True"), (4096, 48.0, "va_bits 48.0")],
)
def test_bad_granule_or_va_bits(granule, va_bits, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MachineConfig(load_preset("default"), granule, va_bits)


def test_machine_config_defaults_and_ktext() -> None:
    config = machine_config()
    assert config.topology == load_preset("default")
    assert (config.granule, config.va_bits, config.cmdline, config.ktext) == (4096, 48, "", False)
    assert machine_config(cmdline="console=ttyAMA0 ktext=1").ktext is True
    # Linux warns "Malformed early option 'ktext'" and boots with the default.
    assert machine_config(cmdline="ktext=maybe").ktext is False
    with pytest.raises(ConfigError, match="topology must be a Topology"):
        MachineConfig("default")  # type: ignore[arg-type]


def test_command_line_options() -> None:
    parser = argparse.ArgumentParser()
    add_machine_arguments(parser)
    args = parser.parse_args(["--machine", "kunpeng920-4n", "--nodes", "2", "--cpus-per-node",
                              "3", "--ram-mib", "128"])
    config = machine_config_from_args(args)
    assert (config.topology.nodes, config.topology.n_cpus) == (2, 6)
    assert config.topology.ram_bytes == 128 * MIB
    args.granule, args.va_bits, args.cmdline = 65536, 42, "ktext=y"
    config = machine_config_from_args(args)
    assert (config.pgtable_levels, config.ktext) == (2, True)
    assert machine_config_from_args(parser.parse_args([])) == machine_config()
