"""The C hooks (accounting, svc entry) and the pure-Python fallback give the
same results, instruction for instruction."""

from __future__ import annotations

import pytest

from emu.hw.accounting import NO_ACCEL_ENV


@pytest.mark.parametrize("workload", ["syscall", "dbsim", "migrate"])
def test_python_fallback_matches_compiled_hooks(make_system, monkeypatch, workload):
    fast = make_system(nodes=2, cpus_per_node=2, ktext=True, workload=workload,
                       iterations=30, migrate_every=2000 if workload == "migrate" else 0)
    if not fast.machine.accounting.compiled:
        pytest.skip("the C extension is not built (no compiler when installing)")
    fast.run()
    monkeypatch.setenv(NO_ACCEL_ENV, "1")
    slow = make_system(nodes=2, cpus_per_node=2, ktext=True, workload=workload,
                       iterations=30, migrate_every=2000 if workload == "migrate" else 0)
    assert not slow.machine.accounting.compiled
    slow.run()
    assert slow.result == fast.result
    fast_report, slow_report = fast.report(), slow.report()
    assert slow_report["cpus"] == fast_report["cpus"]
    assert slow_report["tasks"] == fast_report["tasks"]
    assert fast.machine.accounting.state.svc_entries > 0
