"""suspend-resume: a CPU resumed through cpu_resume runs on node 0's root.

cpu_resume (sleep.S) turns the MMU on with swapper_pg_dir, node 0's root.
v6.7's __cpu_suspend_exit re-installs the node root only on a system with CnP
(cpu_enable_swapper_cnp), so without CnP a resumed CPU keeps running node
0's text: correct but remote.  Each CPU's task suspends and resumes once
(through a power-down from the idmap: the firmware part of PSCI CPU_SUSPEND),
then runs null syscalls.  Remedy: resume on the node root, as a secondary
boots from secondary_data.ttbr1.  The Inner Shareable domains are per node
here, as in cnp-enable, only to keep CnP sharing across nodes
(cnp-shared-domain) out: not hardware Linux can run on.
"""

from __future__ import annotations

from emu.scenarios.base import Outcome, Role, Scenario, Setup, placement_outcome
from emu.scenarios.guest import ScenarioOp

TASK_ITERATIONS = 200
QUANTUM = 3000


def _outcome(setup: Setup, op: ScenarioOp, cnp: bool, role: Role, label: str) -> Outcome:
    system = setup.boot(workload="scenario", iterations=TASK_ITERATIONS, quantum=QUANTUM,
                        is_domain="node")  # fmt: skip
    try:
        image = system.image
        system.physmem.write_u64(image.pa_of(image.sym("scenario_cnp_supported")), int(cnp))
        return placement_outcome(system, op, role, label)
    finally:
        system.close()


def run(setup: Setup) -> list[Outcome]:
    return [
        _outcome(setup, ScenarioOp.SUSPEND, False, Role.HAZARD,
                 "v3 without CnP: cpu_resume enables the MMU on swapper_pg_dir"),
        _outcome(setup, ScenarioOp.SUSPEND, True, Role.NOTE,
                 "v3 with CnP: __cpu_suspend_exit re-installs the node root (remote until then)"),
        _outcome(setup, ScenarioOp.SUSPEND_NODE_ROOT, False, Role.REMEDY,
                 "resume on the node root (__swapper_pg_dir_node_phys(cpu_to_node(cpu)))"),
    ]  # fmt: skip


SCENARIO = Scenario(
    name="suspend-resume",
    title="CPU resumed through cpu_resume runs on node 0's root",
    v3="cpu_resume uses swapper_pg_dir; only the CnP path re-installs the node root",
    run=run,
)
