"""Topology: CPU/node numbering, the Linux SLIT rules, limits, resizing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.errors import ConfigError
from emu.hw.topology import (
    LOCAL_DISTANCE,
    MAX_CPUS,
    MAX_NODES,
    MIB,
    MemoryLatency,
    Topology,
    nearest_remote,
    regular_distances,
    resize_distances,
)


def make(nodes: int = 4, cpus_per_node: int = 2, ram_bytes: int = 64 * MIB,
         distances=None, **extra) -> Topology:
    if distances is None:
        distances = regular_distances(nodes)
    return Topology("t", nodes, cpus_per_node, ram_bytes, distances, **extra)


@pytest.mark.parametrize(("nodes", "cpus_per_node"), [(1, 1), (2, 4), (4, 2), (3, 5), (64, 4)])
def test_cpu_and_node_numbering_is_node_major(nodes: int, cpus_per_node: int) -> None:
    topo = make(nodes, cpus_per_node)
    assert topo.n_cpus == nodes * cpus_per_node
    seen = []
    for node in range(nodes):
        cpus = topo.node_cpus(node)
        assert len(cpus) == cpus_per_node
        assert all(topo.cpu_to_node(cpu) == node for cpu in cpus)
        seen.extend(cpus)
    assert seen == list(range(topo.n_cpus))


def test_cpu_and_node_out_of_range() -> None:
    topo = make(4, 2)
    for bad in (-1, 8):
        with pytest.raises(ConfigError, match=f"cpu {bad} does not exist"):
            topo.cpu_to_node(bad)
    for bad in (-1, 4):
        with pytest.raises(ConfigError, match=f"node {bad} does not exist"):
            topo.node_cpus(bad)
        with pytest.raises(ConfigError):
            topo.distance(0, bad)


def test_distance_and_totals() -> None:
    slit = ((10, 12, 20, 22), (12, 10, 22, 24), (20, 22, 10, 12), (22, 24, 12, 10))
    topo = make(4, 2, 32 * MIB, slit)
    assert topo.distance(1, 3) == 24
    assert topo.distance(2, 2) == LOCAL_DISTANCE
    assert topo.total_ram_bytes == 4 * 32 * MIB
    assert topo.distances == slit


def test_lists_become_tuples_so_the_topology_stays_immutable() -> None:
    topo = make(2, 1, distances=[[10, 20], [20, 10]])
    assert topo.distances == ((10, 20), (20, 10))
    assert isinstance(topo.distances[0], tuple)
    assert hash(topo) == hash(make(2, 1, distances=((10, 20), (20, 10))))


@pytest.mark.parametrize(
    ("nodes", "cpus_per_node"),
    [(64, 4), (1, 256), (2, 128), (256, 1), (1024, 4), (1, MAX_CPUS), (MAX_NODES, 1)],
)
def test_large_machines_are_accepted(nodes: int, cpus_per_node: int) -> None:
    topo = Topology.uniform("big", nodes, cpus_per_node, 16 * MIB)
    assert topo.n_cpus == nodes * cpus_per_node
    assert topo.cpu_to_node(topo.n_cpus - 1) == nodes - 1


BAD_FIELDS = [
    (dict(nodes=0), "nodes must be between 1 and 1024, got 0"),
    (dict(nodes=MAX_NODES + 1), "nodes must be between 1 and 1024"),
    (dict(nodes=True), "nodes must be an integer"),
    (dict(nodes=2.0), "nodes must be an integer"),
    (dict(cpus_per_node=0), "cpus_per_node must be between 1 and 4096"),
    (dict(cpus_per_node="2"), "cpus_per_node must be an integer"),
    (dict(nodes=2, cpus_per_node=2049), "4098 CPUs, more than the 4096"),
    (dict(ram_bytes=16 * MIB - 64 * 1024), "ram_bytes must be between"),
    (dict(ram_bytes=16 * MIB + 4096), "not a multiple of 64 KiB"),
    (dict(ram_bytes=1 << 40), "ram_bytes must be between"),
    (dict(hardware_cpus_per_node=0), "hardware_cpus_per_node must be between"),
    (dict(name=""), "name: must be a non-empty string"),
    (dict(source=3), "source must be a string"),
    (dict(latency=(1, 2)), "latency must be a MemoryLatency"),
]


@pytest.mark.parametrize(("change", "message"), BAD_FIELDS)
def test_each_invalid_field_is_one_line_naming_it(change: dict, message: str) -> None:
    fields = dict(name="t", nodes=4, cpus_per_node=2, ram_bytes=64 * MIB, distances=None)
    fields.update(change)
    nodes = fields["nodes"]
    if fields["distances"] is None:
        fields["distances"] = regular_distances(nodes if isinstance(nodes, int) and 0 < nodes <= 2000
                                                else 1)
    with pytest.raises(ConfigError) as err:
        Topology(**fields)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


BAD_SLITS = [
    (((10, 20), (20, 11)), "distances[1][1] must be 10 (LOCAL_DISTANCE), got 11"),
    (((10, 10), (20, 10)), "distances[0][1] must be in 11..255"),
    (((10, 9), (20, 10)), "distances[0][1] must be in 11..255"),
    (((10, 256), (20, 10)), "distances[0][1] must be in 11..255 (remote, u8), got 256"),
    (((10, 20),), "distances must be a 2x2 matrix, got 1 rows"),
    (((10, 20), (20,)), "distances row 1 must have 2 entries, got 1"),
    (((10, 20), (20.0, 10)), "distances[1][0] must be an integer, got float"),
    (((10, True), (20, 10)), "distances[0][1] must be an integer, got bool"),
    ("nope", "distances must be a 2x2 matrix"),
    (((10, 20), 5), "distances row 1 must have 2 entries, got int"),
]


@pytest.mark.parametrize(("slit", "message"), BAD_SLITS)
def test_slit_rules_of_linux(slit, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        make(2, 1, distances=slit)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_slit_edges_linux_accepts() -> None:
    # 255 is the u8 maximum (ACPI's "unreachable"); SLITs need not be symmetric.
    topo = make(3, 1, distances=((10, 255, 11), (11, 10, 30), (40, 21, 10)))
    assert topo.distance(0, 1) == 255
    assert topo.distance(1, 0) != topo.distance(0, 1)


def test_memory_latency_validation() -> None:
    lat = MemoryLatency(90, 140.5, "somewhere")
    assert make(latency=lat).latency == lat
    for args, message in [
        ((0, 10, "s"), "local_ns: must be > 0"),
        ((10, 5, "s"), "remote_ns (5) is smaller than local_ns (10)"),
        ((10, 20, " "), "a citation"),
        ((True, 20, "s"), "local_ns: expected a number"),
        ((10, float("nan"), "s"), "remote_ns: must be > 0"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            MemoryLatency(*args)


KUNPENG = ((10, 12, 20, 22), (12, 10, 22, 24), (20, 22, 10, 12), (22, 24, 12, 10))


@pytest.mark.parametrize("nodes", [1, 2, 3, 4])
def test_shrinking_keeps_the_leading_block(nodes: int) -> None:
    assert resize_distances(KUNPENG, nodes) == tuple(row[:nodes] for row in KUNPENG[:nodes])


@pytest.mark.parametrize("nodes", [5, 8, 64])
def test_growing_uses_local_and_nearest_remote(nodes: int) -> None:
    grown = resize_distances(KUNPENG, nodes)
    assert grown == regular_distances(nodes, 12)
    assert nearest_remote(KUNPENG) == 12
    assert nearest_remote(((10,),)) == 20


def test_resized_topology_records_the_rule_and_overrides() -> None:
    topo = make(4, 2, distances=KUNPENG, source="paper")
    assert topo.resized() is topo
    same_nodes = topo.resized(nodes=4, cpus_per_node=8)
    assert same_nodes.distances == KUNPENG and same_nodes.source == "paper"
    assert same_nodes.n_cpus == 32
    shrunk = topo.resized(nodes=2)
    assert shrunk.distances == ((10, 12), (12, 10))
    assert "resized from 4 to 2 nodes" in shrunk.source and shrunk.source.startswith("paper; ")
    grown = topo.resized(nodes=6, ram_bytes=32 * MIB)
    assert grown.ram_bytes == 32 * MIB and grown.distance(0, 5) == 12
    assert "12 (nearest remote)" in grown.source
    with pytest.raises(ConfigError, match="nodes must be between 1 and 1024"):
        topo.resized(nodes=10**9)
    with pytest.raises(ConfigError, match="CPUs, more than the 4096"):
        topo.resized(nodes=1024, cpus_per_node=5)


slits = st.integers(1, 8).flatmap(
    lambda n: st.lists(
        st.lists(st.integers(11, 255), min_size=n, max_size=n), min_size=n, max_size=n
    ).map(lambda rows: tuple(
        tuple(LOCAL_DISTANCE if i == j else d for j, d in enumerate(row))
        for i, row in enumerate(rows)
    ))
)


@settings(max_examples=200, deadline=None)
@given(slit=slits, nodes=st.integers(1, 12), cpus=st.integers(1, 16))
def test_any_resize_of_a_valid_slit_is_valid(slit, nodes: int, cpus: int) -> None:
    topo = make(len(slit), 1, distances=slit)
    resized = topo.resized(nodes=nodes, cpus_per_node=cpus)
    assert resized.nodes == nodes and resized.n_cpus == nodes * cpus
    for cpu in range(resized.n_cpus):
        assert cpu in resized.node_cpus(resized.cpu_to_node(cpu))
    if nodes <= len(slit):
        expected = tuple(row[:nodes] for row in slit[:nodes])
    else:
        expected = regular_distances(nodes, nearest_remote(slit))
    assert resized.distances == expected


@settings(max_examples=200, deadline=None)
@given(
    nodes=st.integers(-3, 1100),
    cpus=st.integers(-3, 5000),
    ram_kib=st.integers(-64, 1 << 27),
    local=st.integers(0, 300),
    remote=st.integers(0, 300),
)
def test_random_fields_give_a_topology_or_one_config_error(nodes, cpus, ram_kib, local, remote):
    n = max(1, min(nodes, 40))
    slit = tuple(tuple(local if i == j else remote for j in range(n)) for i in range(n))
    try:
        topo = Topology("r", nodes, cpus, ram_kib * 1024, slit)
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    assert 1 <= topo.nodes <= MAX_NODES and topo.n_cpus <= MAX_CPUS
    assert local == LOCAL_DISTANCE and (n == 1 or 10 < remote <= 255)
