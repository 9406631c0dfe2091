"""CnP in ``ktext-emu run``: with ARM64_HAS_CNP the guest's capability
enable path (cpu_enable_cnp -> cpu_enable_swapper_cnp, patch 12) sets
TTBR1_EL1.CnP on every CPU over its own node's root, and the report says what
the shared TLB entries did across nodes."""

from __future__ import annotations

import pytest

from emu.api import run_comparison
from emu.cli import main
from emu.hw.pagetable import decode_ttbr
from emu.jsonfmt import node_items
from emu.run_options import RunOptions

LAYOUTS = [(4096, 48), (16384, 36), (65536, 42)]


def _run(nodes: int, granule: int, va_bits: int, features: str, is_domain: str = "machine"
         ) -> dict:  # fmt: skip
    options = RunOptions(nodes=nodes, cpus_per_node=2, granule=granule, va_bits=va_bits,
                         ktext="on", cpu_features=features, workload="syscall",
                         iterations=200, quantum=1000, is_domain=is_domain)  # fmt: skip
    (run,) = run_comparison(options).runs
    return run


@pytest.mark.parametrize("nodes", [2, 3])
@pytest.mark.parametrize(("granule", "va_bits"), LAYOUTS)
def test_cnp_is_enabled_on_every_cpu_over_its_node_root(nodes, granule, va_bits):
    run = _run(nodes, granule, va_bits, "ARM64_HAS_CNP")
    roots = [int(node["pgd"], 16) for node in run["nodes"]]
    for cpu in run["cpus"]:
        ttbr1 = decode_ttbr(int(cpu["ttbr1"], 16))
        assert ttbr1.cnp and cpu["cnp"]
        assert ttbr1.baddr == roots[cpu["node"]]  # the CPU's own node root (patch 12)
    assert run["cnp"]["cpus"] == list(range(2 * nodes))
    assert run["checks"]["ttbr1_matches_node"]
    # One Inner Shareable domain (what Linux runs on): CPUs of one node use text
    # translations CPUs of another node filled, i.e. run that node's copy (the
    # small quantum interleaves the CPUs, as a machine runs them at once).
    cnp = run["cnp"]
    assert cnp["remote_filled_translations"] > 0 and cnp["cpus_using_remote_fills"] > 0
    assert 0 < cnp["remote_kernel_fetches_through_remote_fills"] <= (
        cnp["kernel_fetches_through_remote_fills"])
    remote = sum(sum(f for node, f in node_items(cpu["remote_filled_kernel_fetches_by_node"])
                     if node != cpu["node"]) for cpu in run["cpus"])
    assert remote == cnp["remote_kernel_fetches_through_remote_fills"]


def test_without_the_feature_cnp_stays_clear():
    run = _run(2, 4096, 48, "")
    assert not any(cpu["cnp"] for cpu in run["cpus"])
    assert run["cnp"]["cpus"] == [] and run["cnp"]["remote_filled_translations"] == 0
    assert run["cnp"]["shared_tlb_entries"] == 0


def test_per_node_domains_share_nothing_across_nodes():
    run = _run(2, 4096, 48, "ARM64_HAS_CNP", is_domain="node")
    assert run["cnp"]["cpus"] == [0, 1, 2, 3]
    assert run["cnp"]["shared_tlb_entries"] > 0  # shared within each node
    assert run["cnp"]["remote_filled_translations"] == 0


def test_run_prints_cnp_and_the_per_node_domain_caveat(capsys):
    argv = ["run", "--nodes", "2", "--cpus-per-node", "2", "--workload", "syscall",
            "--iterations", "200", "--quantum", "1000", "--ktext", "on", "--cpu-features", "ARM64_HAS_CNP"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "CnP (ktext on): TTBR1_EL1.CnP set on CPUs 0-3 of 4, one Inner Shareable " \
           "domain for the machine" in out
    assert "kernel-text fetches from another node's copy of the text through them" in out
    assert "hypothetical" not in out
    assert main([*argv, "--is-domain", "node"]) == 0
    out = capsys.readouterr().out
    assert "--is-domain node: one Inner Shareable domain per node is a hypothetical " \
           "hardware configuration, not one Linux can run on" in out
