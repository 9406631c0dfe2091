"""Static-key storms: keys flipped thousands of times, by the guest from a
CPU on every node and by the host between quanta, while CPUs on every node
run the site.  Every executed instruction at the site must be the site's
NOP or its B, the CPU must go where that instruction sends it, and once a
flip has completed every CPU must run the new one."""

from __future__ import annotations

import pytest

from emu.checks.icache import IcacheChecker, JumpSiteObserver
from emu.checks.verify import verify
from emu.config import machine_config
from emu.kernel import jump_label
from emu.system import RunSpec, System


def _storm_entries(system):
    key = jump_label.key_address(system, "storm_key")
    return [entry for entry in jump_label.jump_entries(system) if entry.key == key]


def _flips(system) -> int:
    return system.physmem.read_u64(system.image.pa_of(system.image.sym("static_key_flips")))


@pytest.fixture
def storm_system():
    made = []

    def factory(nodes=4, cpus_per_node=2, flips=1000, features=(), quantum=1000,
                workload="key_storm"):
        flippers = (nodes * cpus_per_node + 1) // 2
        config = machine_config("default", nodes, cpus_per_node)
        spec = RunSpec(ktext=True, workload=workload, iterations=flips // flippers,
                       quantum=quantum, cpu_features=tuple(features))  # fmt: skip
        system = System(config, spec)
        made.append(system)
        return system

    yield factory
    for system in made:
        system.close()


def _check_storm(system, observer, flips):
    result = system.run()
    assert result.reason.name == "ALL_OFF"
    assert [cpu["exit_status"] for cpu in system.report()["cpus"]] == [0] * len(
        system.machine.cpus)
    assert _flips(system) == flips
    assert observer.anomalies == [], [a.message() for a in observer.anomalies[:5]]
    (stats,) = observer.stats.values()
    nodes = system.config.topology.nodes
    assert sorted(stats.by_node) == list(range(nodes)), "some node never ran the site"
    assert 0 < stats.during_update < stats.executions, "no execution during or outside updates"
    assert 0 < stats.taken < stats.executions, "the site never went one of its two ways"
    assert verify(system).ok


def test_ten_thousand_guest_flips_from_every_node(storm_system):
    system = storm_system(nodes=4, cpus_per_node=2, flips=10_000)
    observer = JumpSiteObserver(system, _storm_entries(system))
    _check_storm(system, observer, 10_000)
    flippers = {vcpu.node for vcpu in system.machine.cpus if vcpu.index % 2 == 0}
    assert flippers == {0, 1, 2, 3}


@pytest.mark.parametrize("features", [(), ("ARM64_HAS_CACHE_IDC", "ARM64_HAS_CACHE_DIC"),
                                      ("ARM64_WORKAROUND_CLEAN_CACHE",)],
                         ids=lambda f: "+".join(f) or "none")  # fmt: skip
def test_storm_maintenance_follows_the_cache_model(storm_system, features):
    system = storm_system(nodes=4, cpus_per_node=2, flips=1000, features=features)
    site = system.image.sym("static_key_storm_site")
    checker = IcacheChecker(system, watch=[site])
    observer = JumpSiteObserver(system, _storm_entries(system))
    _check_storm(system, observer, 1000)
    assert checker.violations == [], [v.message() for v in checker.violations[:5]]
    assert checker.unpublished() == []
    assert checker.stores == 1000 * 4  # one site, four copies
    assert checker.in_flight, "no CPU ever ran the site while a flip was in flight"


@pytest.mark.parametrize("nodes,cpus_per_node", [(2, 4), (8, 1)])
def test_storm_topologies(storm_system, nodes, cpus_per_node):
    system = storm_system(nodes=nodes, cpus_per_node=cpus_per_node, flips=800, quantum=600)
    observer = JumpSiteObserver(system, _storm_entries(system))
    _check_storm(system, observer, 800)


def test_host_flips_between_quanta(storm_system):
    """The host flips storm_key between rounds while the guest flips it too."""
    system = storm_system(nodes=4, cpus_per_node=2, flips=0, quantum=700)  # guest flips forever
    observer = JumpSiteObserver(system, _storm_entries(system))
    machine = system.machine
    host_flips = 0
    for round_ in range(300):
        system.run(machine.total_instructions + machine.quantum * len(machine.cpus) + round_)
        if jump_label.update_in_progress(system) or system.physmem.read_u64(
                system.image.pa_of(system.image.sym("jump_label_mutex"))):
            continue  # a CPU is parked inside its own update: the host would have to wait
        jump_label.static_key_toggle(system, "storm_key")
        host_flips += 1
    # How often a round ends with the guest outside its update depends on the
    # interleaving; a fifth of the 300 rounds is plenty of host flips.
    assert host_flips > 60
    assert observer.anomalies == [], [a.message() for a in observer.anomalies[:5]]
    (stats,) = observer.stats.values()
    assert sorted(stats.by_node) == [0, 1, 2, 3]
    assert _flips(system) > host_flips


@pytest.mark.parametrize("nodes", [2, 4])
def test_host_only_flips_every_cpu_sees_each_completed_flip(storm_system, nodes):
    """Only the host writes: after every flip, every execution on every node
    must be the new instruction, and must go where it says."""
    system = storm_system(nodes=nodes, cpus_per_node=2, flips=0, quantum=500,
                          workload="key_watch")  # fmt: skip
    observer = JumpSiteObserver(system, _storm_entries(system))
    machine = system.machine
    per_node_before = {}
    for round_ in range(400):
        system.run(machine.total_instructions + machine.quantum * len(machine.cpus) + round_)
        jump_label.static_key_toggle(system, "storm_key")
        (stats,) = observer.stats.values()
        if round_ == 200:
            per_node_before = dict(stats.by_node)
    assert observer.anomalies == [], [a.message() for a in observer.anomalies[:5]]
    (stats,) = observer.stats.values()
    assert stats.during_update == 0  # the host's flips complete between quanta
    assert all(stats.by_node[n] > per_node_before.get(n, 0) for n in range(nodes))
    assert 0 < stats.taken < stats.executions
    assert _flips(system) == 400
    assert verify(system).ok
