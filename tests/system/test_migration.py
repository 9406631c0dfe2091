"""Tasks moved between nodes keep running correctly and their kernel fetches
follow them to each node's copy."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("nodes", [2, 4])
def test_migrated_tasks_complete_and_fetch_locally(make_system, nodes):
    baseline = make_system(nodes=nodes, cpus_per_node=1, ktext=True, iterations=200)
    baseline.run()
    moving = make_system(nodes=nodes, cpus_per_node=1, ktext=True, iterations=200,
                         migrate_every=3000)
    result = moving.run()
    assert result.reason.name == "ALL_OFF"
    # Same work done: every task ran all its iterations, none lost or duplicated.
    assert result.instructions == baseline.result.instructions
    assert moving.scheduler.migrations > nodes
    tasks = moving.scheduler.report()
    for task in tasks:
        assert set(task["cpu_history"]) == set(range(nodes)), "the task visited every node"
        assert sorted(map(int, task["kernel_fetches_by_node"])) == list(range(nodes))
    # With replication on, every kernel fetch a CPU made was from its own node:
    # the task's fetches per node are what it did while it was there.
    for vcpu in moving.machine.cpus:
        fetches = moving.machine.accounting.counts(vcpu.index).kernel_fetches_by_node
        assert sum(fetches) == fetches[vcpu.node]


def test_migration_without_replication_stays_on_node0(make_system):
    system = make_system(nodes=2, cpus_per_node=2, ktext=False, iterations=100,
                         migrate_every=2000)
    system.run()
    for task in system.scheduler.report():
        assert len(set(task["cpu_history"])) > 1
        assert list(task["kernel_fetches_by_node"]) == ["0"]  # v2: nonzero entries only


def test_tasks_move_in_kernel_mode_too(make_system):
    """Migration at arbitrary instructions also catches tasks inside syscalls:
    they finish the syscall on the new CPU from its node's copy."""
    system = make_system(nodes=2, cpus_per_node=1, ktext=True, iterations=300,
                         migrate_every=997, quantum=997)
    system.run()
    assert system.result.reason.name == "ALL_OFF"
    assert system.report()["checks"]["ttbr1_matches_node"]


@pytest.mark.parametrize(("nodes", "cpus_per_node", "every"),
                         [(2, 1, 50), (2, 2, 10), (4, 2, 1)])
def test_any_migration_period_works_during_boot(make_system, nodes, cpus_per_node, every):
    """Periods shorter than the boot path: CPUs still booting (in __cpu_up,
    secondary_entry) take no part, and every task still finishes."""
    system = make_system(nodes=nodes, cpus_per_node=cpus_per_node, ktext=True,
                         iterations=30, migrate_every=every)
    result = system.run()
    assert result.reason.name == "ALL_OFF"
    assert [cpu.exit_status for cpu in system.machine.cpus] == [0] * nodes * cpus_per_node
    assert system.scheduler.migrations > 0
    assert system.report()["checks"]["ttbr1_matches_node"]


@pytest.mark.parametrize("ktext", [False, True])
def test_what_tasks_were_charged_adds_up_to_what_cpus_fetched(make_system, ktext):
    """The scheduler charges each task its CPU's fetches since the last charge,
    from the nodes the CPU touched only: over all tasks, per node, that is
    every fetch every CPU made after the run began."""
    system = make_system(nodes=4, cpus_per_node=2, ktext=ktext, iterations=100,
                         migrate_every=1500)
    accounting, nodes = system.machine.accounting, system.machine.topology.nodes
    before = [accounting.fetches_touched(cpu.index) for cpu in system.machine.cpus]
    system.run()
    system.scheduler.charge()
    assert system.scheduler.migrations >= 2
    for which, name in enumerate(("kernel_fetches_by_node", "fetches_by_node")):
        charged = [0] * nodes
        for task in system.scheduler.tasks:
            for node, count in getattr(task, name).items():
                charged[node] += count
        fetched = [0] * nodes
        for cpu, start in zip(system.machine.cpus, before, strict=True):
            counts = getattr(accounting.counts(cpu.index), name)
            for node in range(nodes):
                fetched[node] += counts[node] - start[which].get(node, 0)
        assert charged == fetched, name
