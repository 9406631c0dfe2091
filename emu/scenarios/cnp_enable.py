"""cnp-enable: the CnP enable path re-installs a root on every CPU.

Upstream's cpu_enable_swapper_cnp() installs lm_alias(swapper_pg_dir) with CnP
set, which with replication is node 0's root: every CPU would run node 0's
text again.  v3 patch 12 installs the CPU's own node root instead.  Each CPU's
EL0 task runs the enable path (as the cpufeature enable callback runs on
every CPU) and then null syscalls.  The Inner Shareable domains are per node
here so that CnP sharing across nodes (cnp-shared-domain) does not mix in:
a device to keep the two hazards apart, not hardware Linux can run on (its
broadcast TLBI ...IS must reach every CPU).
"""

from __future__ import annotations

from emu.scenarios.base import Outcome, Role, Scenario, Setup, placement_outcome
from emu.scenarios.guest import ScenarioOp

TASK_ITERATIONS = 200
QUANTUM = 3000


def _outcome(setup: Setup, op: ScenarioOp, role: Role, label: str) -> Outcome:
    system = setup.boot(workload="scenario", iterations=TASK_ITERATIONS, quantum=QUANTUM,
                        is_domain="node")  # fmt: skip
    try:
        return placement_outcome(system, op, role, label)
    finally:
        system.close()


def run(setup: Setup) -> list[Outcome]:
    return [
        _outcome(setup, ScenarioOp.CNP_ENABLE_UPSTREAM, Role.HAZARD,
                 "upstream cpu_enable_swapper_cnp: lm_alias(swapper_pg_dir) with CnP"),
        _outcome(setup, ScenarioOp.CNP_ENABLE, Role.REMEDY,
                 "v3 patch 12: the CPU's node root with CnP"),
    ]  # fmt: skip


SCENARIO = Scenario(
    name="cnp-enable",
    title="CnP enable path re-installs a root on every CPU",
    v3="patch 12: cpu_enable_swapper_cnp() installs swapper_pg_dir_node_phys() with CnP",
    run=run,
)
