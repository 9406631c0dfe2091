"""Breakpoints and watchpoints live in the emulator: they stop the CPU that
reaches them on any node's copy, change no byte of any copy (``verify``
stays clean while they are set), and leave no hook behind."""

from __future__ import annotations

import pytest

from emu.checks.verify import verify
from emu.gdb.stoppoints import SOFTWARE, WRITE_WATCH, StopPoints
from emu.gdb.target import Target
from emu.hw.cpu import VCpu


class Recorder:
    """A Debugger that notes every hit and lets the run go on."""

    def __init__(self, points: StopPoints) -> None:
        self.points = points
        self.hits = []

    def before_quantum(self, cpu: VCpu, budget: int) -> int:
        return budget

    def after_quantum(self, cpu: VCpu) -> None:
        hit = self.points.take_hit()
        if hit is not None:
            self.hits.append((hit, cpu.index, cpu.node))
            if hit.kind == SOFTWARE:  # step off it, as GDB does before continuing
                self.points.suppress_breakpoints = True
                self.points.machine.run_quantum(cpu, 1)
                self.points.suppress_breakpoints = False


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_breakpoints_hit_every_node_and_verify_stays_clean(make_system, nodes):
    system = make_system(nodes=nodes, cpus_per_node=1, ktext=True, workload="syscall",
                         iterations=3)
    target = Target(system)
    points = StopPoints(system.machine, target.physical_addresses)
    handler = system.image.sym("sys_null")
    assert points.insert(SOFTWARE, handler, 4)
    recorder = Recorder(points)
    system.machine.debugger = recorder
    system.run(max_instructions=400_000)
    assert verify(system).ok, verify(system).messages()
    hit_nodes = {node for hit, _cpu, node in recorder.hits if hit.address == handler}
    assert hit_nodes == set(range(nodes))
    # Where each CPU stopped, it was fetching its own node's copy.
    for hit, cpu, _node in recorder.hits:
        assert hit.cpu == cpu
    points.clear()
    assert not points.breakpoints and not points.watchpoints


def test_watchpoint_reports_the_virtual_address(make_system):
    system = make_system(nodes=2, cpus_per_node=2, ktext=True, workload="key_storm",
                         iterations=4)
    target = Target(system)
    points = StopPoints(system.machine, target.physical_addresses)
    key = system.image.sym("storm_key")
    system.run(max_instructions=20_000)  # every CPU has its tables by now
    assert points.insert(WRITE_WATCH, key, 4)
    recorder = Recorder(points)
    system.machine.debugger = recorder
    system.run()
    writes = [hit for hit, _cpu, _node in recorder.hits if hit.kind == WRITE_WATCH]
    assert writes and all(hit.address == key for hit in writes)
    assert {hit.cpu % 2 for hit in writes} == {0}  # the flippers are the even CPUs
