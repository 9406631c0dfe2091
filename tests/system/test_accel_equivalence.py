"""The C hooks (accounting, svc entry) and the pure-Python fallback give the
same results, instruction for instruction.

The two count data accesses in different ways (the C instruction hook
decodes loads and stores, the Python fallback hooks memory), so equal data
counts here also check the decoder on whole workloads."""

from __future__ import annotations

import pytest
from ktext_testlib import SMALL_FOOTPRINT

from emu.hw.accounting import NO_ACCEL_ENV


@pytest.mark.parametrize("ktext", [True, False])
@pytest.mark.parametrize("workload", ["syscall", "dbsim", "dbsim_tiny", "migrate", "patchstorm"])
def test_python_fallback_matches_compiled_hooks(make_system, monkeypatch, workload, ktext):
    options = dict(nodes=2, cpus_per_node=2, ktext=ktext, workload=workload, iterations=30,
                   migrate_every=2000 if workload == "migrate" else 0, data_accesses=True,
                   footprint=SMALL_FOOTPRINT)
    fast = make_system(**options)
    if not fast.machine.accounting.compiled:
        pytest.skip("the C extension is not built (no compiler when installing)")
    fast.run()
    monkeypatch.setenv(NO_ACCEL_ENV, "1")
    slow = make_system(**options)
    assert not slow.machine.accounting.compiled
    slow.run()
    assert slow.result == fast.result
    fast_report, slow_report = fast.report(), slow.report()
    assert slow_report["cpus"] == fast_report["cpus"]
    assert slow_report["tasks"] == fast_report["tasks"]
    assert fast.machine.accounting.state.svc_entries > 0
    for system in (fast, slow):
        accounting = system.machine.accounting
        assert accounting.unknown_instructions == accounting.unknown_data_accesses == 0
    for cpu in range(4):
        fast_counts = fast.machine.accounting.counts(cpu)
        assert fast_counts == slow.machine.accounting.counts(cpu)
        assert sum(fast_counts.data_reads_by_node) > 0
