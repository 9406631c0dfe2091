"""TLB maintenance as the guest does it: every EL1 ``tlbi`` form executed by a
kernel function on a chosen CPU (System.call) removes exactly the entries the
architecture says, on exactly the CPUs of its shareability domain, with one
Inner Shareable domain for the machine or one per node; CnP entries are shared
across a domain and their use by another node's CPU is recorded."""

from __future__ import annotations

import pytest

from emu.errors import GuestFault
from emu.hw.pagetable import make_ttbr
from emu.hw.tlb import GLOBAL, REGIME_EL10, TlbiScope, canonical_va, decode_tlbi
from emu.kernel.boot import USER_STACK_BASE, USER_STACK_STRIDE
from emu.scenarios.guest import TLBI_FORMS, tlbi_form_index

ASIDS = (0, 7)
V80_FORMS = [name for name in TLBI_FORMS if name not in ("vmalle1os", "rvae1is")]
ISSUER = 1  # CPU 1, on node 0


def leaf_base(va: int, size: int) -> int:
    return va - va % size


def removed_by(op, key, size) -> bool:
    """The ARM ARM's rule for one cached leaf (D8.16), independent of the model."""
    _regime, asid, page = key
    if op.scope is TlbiScope.ALL:
        return True
    if op.scope is TlbiScope.ASID:
        return asid != GLOBAL and asid == op.asid
    if op.scope is TlbiScope.VA and asid not in (GLOBAL, op.asid):
        return False
    return leaf_base(page, size) == leaf_base(op.va, size)


def booted(make_system, mode: str, granule: int = 4096, va_bits: int = 48):
    system = make_system(nodes=2, cpus_per_node=2, granule=granule, va_bits=va_bits,
                         ktext=True, iterations=3, is_domain=mode)
    system.run()
    return system


def probe_pages(system) -> tuple[list[int], list[int]]:
    image = system.image
    kernel = [image.sym("sys_null_weights"), image.sym("boot_regs")]
    user = [USER_STACK_BASE, USER_STACK_BASE + USER_STACK_STRIDE]
    return kernel, user


def fill_probes(system) -> None:
    kernel, user = probe_pages(system)
    for cpu in range(len(system.machine.cpus)):
        for va in kernel:
            system.call(cpu, "scenario_read_u64", va)
        for va in user:
            for asid in ASIDS:
                system.call(cpu, "scenario_read_asid", va, asid)


def probe_keys(system) -> dict[tuple[int, int, int], int]:
    """Every probe entry a CPU holds: (cpu, asid, page) -> leaf size."""
    kernel, user = probe_pages(system)
    pages = {canonical_va(va) & ~0xFFF for va in kernel + user}
    held = {}
    for vcpu in system.machine.cpus:
        for (regime, asid, page), entry in vcpu.tlb.entries.items():
            if regime == REGIME_EL10 and page in pages:
                held[(vcpu.index, asid, page)] = entry.size
    return held


def run_tlbi(system, name: str, operand: int) -> None:
    system.call(ISSUER, "scenario_tlbi", tlbi_form_index(name), operand)


def expected_after(system, before, name: str, operand: int, mode: str):
    crm, op2 = TLBI_FORMS[name]
    op = decode_tlbi(crm, op2, operand)
    if op.shareability.value == "":
        reached = {ISSUER}
    elif mode == "machine":
        reached = {0, 1, 2, 3}
    else:
        reached = {0, 1}  # node 0's domain
    return {
        key: size for key, size in before.items()
        if not (key[0] in reached and removed_by(op, (REGIME_EL10, key[1], key[2]), size))
    }


def operand_for(va: int, asid: int) -> int:
    return asid << 48 | (va >> 12) & ((1 << 44) - 1)


@pytest.mark.parametrize("mode", ["machine", "node"])
@pytest.mark.parametrize("name", V80_FORMS)
@pytest.mark.parametrize("target", ["user", "kernel"])
def test_each_form_removes_exactly_its_entries(make_system, mode, name, target):
    system = booted(make_system, mode)
    fill_probes(system)
    before = probe_keys(system)
    assert len(before) == 4 * (2 + 2 * len(ASIDS)), "every probe is cached on every CPU"
    kernel, user = probe_pages(system)
    operand = operand_for(user[0] if target == "user" else kernel[0], 7)
    run_tlbi(system, name, operand)
    assert probe_keys(system) == expected_after(system, before, name, operand, mode)
    # something was removed, and (except vmalle1os-style global forms) something kept
    assert probe_keys(system) != before


@pytest.mark.parametrize("granule,va_bits", [(16384, 47), (65536, 48)])
@pytest.mark.parametrize("name", ["vae1is", "vaale1", "vale1is"])
def test_va_forms_cover_the_whole_granule_page(make_system, granule, va_bits, name):
    system = booted(make_system, "machine", granule, va_bits)
    fill_probes(system)
    before = probe_keys(system)
    assert set(before.values()) == {granule}
    kernel, _ = probe_pages(system)
    # name another 4 KiB page of the same leaf than the one cached
    other = leaf_base(kernel[0], granule) + (granule - 4096 if kernel[0] % granule == 0 else 0)
    operand = operand_for(other, 0)
    run_tlbi(system, name, operand)
    after = probe_keys(system)
    assert after == expected_after(system, before, name, operand, "machine")
    assert not any(page == canonical_va(kernel[0]) & ~0xFFF and cpu in
                   ({ISSUER} if not name.endswith("is") else {0, 1, 2, 3})
                   for cpu, _asid, page in after)


@pytest.mark.parametrize("name", ["vmalle1os", "rvae1is"])
def test_armv84_forms_are_undefined_and_change_nothing(make_system, name):
    system = booted(make_system, "machine")
    fill_probes(system)
    before = probe_keys(system)
    tlbis = system.machine.tlbs.invalidations
    # the CPU stopped at the TLBI with an undefined-instruction exception,
    # which System.call reports with where it happened
    with pytest.raises(GuestFault, match="undefined instruction in call of scenario_tlbi") as fault:
        run_tlbi(system, name, 1 << 46 | 1)
    assert fault.value.report.symbol.startswith("scenario_tlbi+")
    assert probe_keys(system) == before
    assert system.machine.tlbs.invalidations == tlbis


MARKER = 0x5EED_0000_CAFE_0001


def cnp_system(make_system, mode: str):
    system = booted(make_system, mode)
    repl = system.kernel.replication
    variable = system.image.sym("alt_selftest_page_a")  # replicated rodata (its first page)
    original = system.physmem.read_u64(system.image.pa_of(variable))
    # node 1's copy differs, so who filled an entry shows in the value read
    system.physmem.write_u64(repl.text_copies[1] + variable - system.image.sym("_stext"), MARKER)
    for vcpu in system.machine.cpus:  # start from empty TLBs
        vcpu.tlb.clear()
    system.machine.tlbs.shared.clear()
    return system, repl, variable, original


def test_cnp_entries_are_shared_across_one_domain(make_system):
    system, repl, variable, original = cnp_system(make_system, "machine")
    node0 = make_ttbr(repl.pgd_phys[0], cnp=True)
    node1 = make_ttbr(repl.pgd_phys[1], cnp=True)
    assert system.call(0, "scenario_read_with_ttbr1", variable, node0)["x0"] == original
    # CPU 2 walks node 1's root... but hits CPU 0's shared entry first
    assert system.call(2, "scenario_read_with_ttbr1", variable, node1)["x0"] == original
    uses = [use for use in system.machine.tlbs.remote_fills.values() if use.va ==
            canonical_va(variable) & ~0xFFF]
    assert [(use.cpu, use.filled_by, use.pa_node) for use in uses] == [(2, 0, 0)]
    # without CnP CPU 2 uses its own walk: node 1's copy
    plain = make_ttbr(repl.pgd_phys[1])
    assert system.call(2, "scenario_read_with_ttbr1", variable, plain)["x0"] == MARKER


def test_cnp_entries_stay_in_their_node_domain(make_system):
    system, repl, variable, original = cnp_system(make_system, "node")
    node0 = make_ttbr(repl.pgd_phys[0], cnp=True)
    node1 = make_ttbr(repl.pgd_phys[1], cnp=True)
    assert system.call(0, "scenario_read_with_ttbr1", variable, node0)["x0"] == original
    assert system.call(2, "scenario_read_with_ttbr1", variable, node1)["x0"] == MARKER
    assert system.call(3, "scenario_read_with_ttbr1", variable, node1)["x0"] == MARKER
    assert system.machine.tlbs.remote_fills == {}


def test_cnp_shared_entry_goes_with_a_broadcast_tlbi(make_system):
    system, repl, variable, _original = cnp_system(make_system, "machine")
    node0 = make_ttbr(repl.pgd_phys[0], cnp=True)
    node1 = make_ttbr(repl.pgd_phys[1], cnp=True)
    system.call(0, "scenario_read_with_ttbr1", variable, node0)
    run_tlbi(system, "vaae1is", operand_for(variable, 0))
    assert system.call(2, "scenario_read_with_ttbr1", variable, node1)["x0"] == MARKER
