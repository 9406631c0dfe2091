# ruff: noqa: F811  (pytest fixtures imported from the plugin are redefined as arguments)
"""Text patching on every node: the host API (patch_text_nosync, patch_text
under stop_machine), the guest's own aarch64_insn_patch_text_nosync run from
a CPU of each node, and the rules both enforce."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ktext_testlib import REPLICATED_LAYOUTS

from emu.errors import PatchError
from emu.hw.pagetable import Geometry
from emu.kernel import patching
from emu.kernel.insn import AARCH64_INSN_NOP
from emu.kernel.layout import LAYOUTS
from emu.pytest_plugin import ktext_lab_factory  # noqa: F401  (the fixture)

SITE = "sys_ni_syscall"  # mov x0, #-ENOSYS; ret: harmless to rewrite
NEG_ENOSYS = (1 << 64) - 38
LAYOUT_IDS = [Geometry(g, v).name for g, v in REPLICATED_LAYOUTS]


def movz_x0(imm: int) -> int:
    """movz x0, #imm (imm < 65536)."""
    return 0xD2800000 | (imm << 5)


def results(lab, function=SITE):
    return {cpu: regs["x0"] for cpu, regs in lab.call_everywhere(function).items()}


# ------------------------------------------------------------------ host API


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_host_patch_reaches_every_copy_and_every_cpu(ktext_lab_factory, nodes):
    lab = ktext_lab_factory(nodes=nodes)
    site = lab.sym(SITE)
    assert set(results(lab).values()) == {NEG_ENOSYS}  # now translated on every CPU
    patched = lab.patch(site, movz_x0(0x1234))
    assert [node for node, _pa in patched.pas] == list(range(nodes))
    assert lab.read_text(site) == {node: movz_x0(0x1234) for node in range(nodes)}
    assert results(lab) == {cpu: 0x1234 for cpu in lab.cpus()}
    lab.assert_replicated()


@pytest.mark.parametrize("geometry", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_host_patch_every_layout(ktext_lab_factory, geometry):
    lab = ktext_lab_factory(nodes=2, cpus_per_node=1, granule=geometry.granule,
                            va_bits=geometry.va_bits)  # fmt: skip
    site = lab.sym(SITE)
    results(lab)
    patched = lab.patch(site, movz_x0(7))
    replicated = lab.system.kernel.replication.enabled
    assert replicated == (geometry.name != "16k-48")  # the series refuses 16K/48
    assert len(patched.pas) == (2 if replicated else 1)
    assert results(lab) == {0: 7, 1: 7}
    lab.assert_replicated()


def test_host_patch_without_replication_writes_only_the_image(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=4, ktext=False)
    patched = lab.patch(lab.sym(SITE), movz_x0(3))
    assert [node for node, _ in patched.pas] == [0]
    assert set(results(lab).values()) == {3}
    lab.assert_replicated()


def test_patched_word_describes_old_and_new(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2)
    site = lab.sym(SITE)
    patched = lab.patch(site, AARCH64_INSN_NOP)
    assert patched.old == 0x928004A0  # mov x0, #-38
    assert patched.new == AARCH64_INSN_NOP
    assert patched.symbol == SITE
    assert "nop" in patched.describe() and "2 copies" in patched.describe()


# ------------------------------------------------------------------ the rules


def _bad_cases(lab):
    layout = lab.system.kernel.layout
    sym = lab.sym
    return {
        "misaligned": (sym(SITE) + 2, AARCH64_INSN_NOP, "not 4-byte aligned"),
        "rodata": (sym("sys_call_table"), AARCH64_INSN_NOP, "rodata"),
        "ro_after_init": (sym("__start___jump_table"), AARCH64_INSN_NOP, "rodata"),
        "data": (sym("syscall_count"), AARCH64_INSN_NOP, "kernel data"),
        "bss": (sym("per_cpu_area"), AARCH64_INSN_NOP, "kernel data"),
        "head text": (sym("secondary_entry"), AARCH64_INSN_NOP, "head text"),
        "etext": (sym("_etext"), AARCH64_INSN_NOP, "outside kernel text"),
        "modules": (layout.modules_vaddr + 0x1000, AARCH64_INSN_NOP, "modules area"),
        "init data": (sym("__initdata_begin"), AARCH64_INSN_NOP, "init text/data"),
        "linear map": (layout.page_offset, AARCH64_INSN_NOP, "linear map"),
        "user space": (0x40_0000, AARCH64_INSN_NOP, "user space"),
        "vmalloc": (layout.vmalloc_start, AARCH64_INSN_NOP, "vmalloc"),
        "too wide": (sym(SITE), 1 << 32, "not a 32-bit value"),
        "negative": (sym(SITE), -1, "not a 32-bit value"),
        "bool": (sym(SITE), True, "not a 32-bit value"),
        "text insn": (sym(SITE), "nop", "not a 32-bit value"),
        "float": (sym(SITE), 1.0, "not a 32-bit value"),
        "va not int": ("sys_ni_syscall", AARCH64_INSN_NOP, "not a 64-bit virtual address"),
        "va too big": (1 << 64, AARCH64_INSN_NOP, "not a 64-bit virtual address"),
    }


BAD_CASES = ["misaligned", "rodata", "ro_after_init", "data", "bss", "head text", "init data",
             "etext", "modules", "linear map", "user space", "vmalloc", "too wide", "negative",
             "bool", "text insn", "float", "va not int", "va too big"]  # fmt: skip


@pytest.fixture(scope="module")
def quiet_lab():
    from emu.pytest_plugin import make_lab

    lab = make_lab(nodes=2)
    yield lab
    lab.system.close()


@pytest.mark.parametrize("case", BAD_CASES)
def test_patch_error_names_address_symbol_and_rule(quiet_lab, case):
    lab = quiet_lab
    va, insn, rule = _bad_cases(lab)[case]
    before = {node: word for node, word in patching.read_text(lab.system, lab.sym(SITE))}
    for call in (lambda: patching.patch_text_nosync(lab.system, va, insn),
                 lambda: patching.patch_text(lab.system, [(lab.sym(SITE), AARCH64_INSN_NOP),
                                                          (va, insn)])):  # fmt: skip
        with pytest.raises(PatchError) as caught:
            call()
        message = str(caught.value)
        assert rule in message
        assert "\n" not in message
        if isinstance(va, int) and va < 1 << 64:
            assert f"{va:#x}" in message
            assert f"<{lab.symbolize(va)}>" in message
    # all or nothing: the good site of the pair was not written either
    assert dict(patching.read_text(lab.system, lab.sym(SITE))) == before


def test_text_boundaries_are_patchable(quiet_lab):
    lab = quiet_lab
    for va in (lab.sym("_stext"), lab.sym("_etext") - 4):
        old = lab.read_text(va)[0]
        lab.patch(va, old)  # the same word back: allowed, harmless
        assert lab.read_text(va) == {0: old, 1: old}


@settings(max_examples=200, deadline=None)
@given(va=st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_only_aligned_kernel_text_passes_the_rules(quiet_lab, va):
    lab = quiet_lab
    text = lab.sym("_stext") <= va < lab.sym("_etext")
    init_text = lab.sym("__inittext_begin") <= va < lab.sym("__inittext_end")
    ok = (text or init_text) and va % 4 == 0  # no module is mapped here
    try:
        patching.check_patch(lab.system, va, AARCH64_INSN_NOP)
    except PatchError:
        assert not ok
    else:
        assert ok


@settings(max_examples=100, deadline=None)
@given(offset=st.integers(min_value=0, max_value=0xFFFC).map(lambda o: o & ~3),
       insn=st.integers(min_value=0, max_value=(1 << 32) - 1))
def test_any_word_anywhere_in_text_is_accepted(quiet_lab, offset, insn):
    va = quiet_lab.sym("_stext") + offset
    if va >= quiet_lab.sym("_etext"):
        return
    patching.check_patch(quiet_lab.system, va, insn)


def test_patch_text_refuses_empty_duplicate_and_malformed_sites(quiet_lab):
    system = quiet_lab.system
    site = quiet_lab.sym(SITE)
    with pytest.raises(PatchError, match="no sites"):
        patching.patch_text(system, [])
    with pytest.raises(PatchError, match="more than once"):
        patching.patch_text(system, [(site, AARCH64_INSN_NOP), (site, AARCH64_INSN_NOP)])
    with pytest.raises(PatchError, match="not a \\(va, insn\\) pair"):
        patching.patch_text(system, [site])


# ------------------------------------------------------------- guest patching


@pytest.mark.parametrize("nodes,cpus_per_node", [(2, 1), (4, 2), (8, 1)])
def test_guest_patch_from_each_node_reaches_every_cpu(ktext_lab_factory, nodes, cpus_per_node):
    lab = ktext_lab_factory(nodes=nodes, cpus_per_node=cpus_per_node)
    site = lab.sym(SITE)
    results(lab)
    for node in range(nodes):
        patcher = lab.cpus_on_node(node)[-1]
        assert lab.guest_patch(patcher, site, movz_x0(0x100 + node)) == 0
        assert lab.read_text(site) == {n: movz_x0(0x100 + node) for n in range(nodes)}
        assert results(lab) == {cpu: 0x100 + node for cpu in lab.cpus()}
        lab.assert_replicated()


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS, ids=LAYOUT_IDS)
def test_guest_patch_every_layout(ktext_lab_factory, granule, va_bits):
    lab = ktext_lab_factory(nodes=3, cpus_per_node=1, granule=granule, va_bits=va_bits)
    site = lab.sym(SITE)
    results(lab)
    assert lab.guest_patch(2, site, movz_x0(9)) == 0
    assert results(lab) == {0: 9, 1: 9, 2: 9}
    lab.assert_replicated()


def test_guest_patch_counts_completed_patches(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2)
    counter = lab.system.image.pa_of(lab.sym("patch_text_count"))
    before = lab.system.physmem.read_u64(counter)
    lab.guest_patch(1, lab.sym(SITE), AARCH64_INSN_NOP)
    assert lab.system.physmem.read_u64(counter) == before + 1


@pytest.mark.parametrize("where", ["misaligned", "rodata", "data", "user space", "etext"])
def test_guest_refuses_what_the_host_refuses(quiet_lab, where):
    lab = quiet_lab
    va, insn, _rule = _bad_cases(lab)[where]
    target = va & ~3
    before = lab.system.physmem.read(lab.system.image.pa_of(target), 4) if where in (
        "rodata", "data", "etext") else None
    assert lab.guest_patch(1, va, insn) == -patching.EINVAL
    if before is not None:
        assert lab.system.physmem.read(lab.system.image.pa_of(target), 4) == before
    lab.assert_replicated()


# ------------------------------------------------------------- stop_machine


def _probe_recorder(lab):
    """Record x0 at every return of static_key_probe, per CPU."""
    from unicorn import UC_HOOK_CODE
    from unicorn.arm64_const import UC_ARM64_REG_X0

    image = lab.system.image
    start = lab.sym("static_key_probe")
    size = image.elf.symbols["static_key_probe"].size
    data = image.elf.read(start, size)
    rets = [start + i for i in range(0, size, 4) if data[i:i + 4] == (0xD65F03C0).to_bytes(4, "little")]
    seen: list[tuple[int, int]] = []

    def on_ret(uc, _address, _size, _user):
        seen.append((lab.system.machine.current.index, uc.reg_read(UC_ARM64_REG_X0)))

    for va in rets:
        lab.system.machine.uc.hook_add(UC_HOOK_CODE, on_ret, None, va, va)
    patching.invalidate_text(lab.system.machine)
    return seen


def test_patch_text_is_atomic_for_every_cpu(ktext_lab_factory):
    """Two sites rewritten together: no CPU ever runs one new and one old.

    static_key_probe's first two sites both report probe_key_false (bits 0
    and 1); patch_text flips both encodings at once, with tiny quanta so
    CPUs are often parked between the two sites when the host patches."""
    lab = ktext_lab_factory(nodes=4, workload="key_storm", iterations=0, quantum=7, boot=False)
    lab.boot_all()
    from emu.kernel.jump_label import jump_entries

    key = lab.sym("probe_key_false")
    first, second = [e for e in jump_entries(lab.system) if e.key == key]
    seen = _probe_recorder(lab)
    inside = 0
    for round_ in range(60):
        enabled = round_ % 2 == 0
        lab.run(20 * lab.round_instructions + 3 * round_)
        lab.system.machine.save_current()
        inside += sum(1 for vcpu in lab.system.machine.cpus if patching.cpu_el(vcpu))
        rendezvous = lab.patch_many([(first.code, first.insn(enabled)),
                                     (second.code, second.insn(enabled))])
        assert rendezvous.released
        assert {p.cpu for p in rendezvous.parked} == set(lab.cpus())
        assert all(p.el == 0 for p in rendezvous.parked)
    assert inside > 0, "no CPU was ever inside the kernel when the host patched"
    assert len(seen) > 100
    mixed = [(cpu, x0) for cpu, x0 in seen if (x0 & 1) != (x0 >> 1 & 1)]
    assert not mixed


def test_stop_machine_drains_cpus_out_of_the_kernel(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2, workload="key_storm", iterations=0, quantum=13, boot=False)
    lab.boot_all()
    lab.run(lab.round_instructions + 5)
    lab.system.machine.save_current()
    in_kernel = {v.index for v in lab.system.machine.cpus if patching.cpu_el(v)}
    with patching.stop_machine(lab.system) as rendezvous:
        assert all(p.el == 0 for p in rendezvous.parked)
        assert set(rendezvous.drained) >= in_kernel
        assert not rendezvous.released
    assert rendezvous.released


def test_stop_machine_detects_a_cpu_running_while_parked(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2)
    machine = lab.system.machine
    with (pytest.raises(PatchError, match=r"CPU 1 ran .* instructions while it was parked"),
          patching.stop_machine(lab.system)):
        machine.switch_to(machine.cpus[1])
        machine.run_quantum(machine.cpus[1], 50)


def test_stop_machine_gives_up_on_a_cpu_stuck_in_the_kernel(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2)
    # hold jump_label_mutex, then make CPU 1 take the key: it spins in the kernel
    system = lab.system
    mutex = system.image.pa_of(lab.sym("jump_label_mutex"))
    system.physmem.write_u64(mutex, 1)
    machine = system.machine
    vcpu = machine.cpus[1]
    machine.switch_to(vcpu)
    from unicorn.arm64_const import (
        UC_ARM64_REG_PC,
        UC_ARM64_REG_PSTATE,
        UC_ARM64_REG_X0,
        UC_ARM64_REG_X1,
    )

    from emu.hw.cpu import PSTATE_EL1H_MASKED, SPSR_EL1, read_sysreg, write_sysreg

    uc = machine.uc
    uc.reg_write(UC_ARM64_REG_X0, lab.sym("storm_key"))
    uc.reg_write(UC_ARM64_REG_X1, 2)
    uc.reg_write(UC_ARM64_REG_PSTATE, PSTATE_EL1H_MASKED)
    write_sysreg(uc, SPSR_EL1, read_sysreg(uc, SPSR_EL1))
    uc.reg_write(UC_ARM64_REG_PC, lab.sym("static_key_update"))
    machine.save_current()
    with pytest.raises(PatchError, match=r"CPU 1 at static_key_update.* did not leave the kernel"):
        patching.patch_text(system, [(lab.sym(SITE), AARCH64_INSN_NOP)], drain_limit=20_000)
    assert lab.read_text(lab.sym(SITE))[0] != AARCH64_INSN_NOP


# ------------------------------------------- text that is not replicated


def test_init_text_is_patched_on_node0_only(ktext_lab_factory):
    """Init text goes through aarch64_insn_patch_text_nosync() like kernel
    text (core_kernel_text(), __pa_symbol); the ktext hook leaves it alone:
    every node maps node 0's init text."""
    lab = ktext_lab_factory(nodes=3, cpus_per_node=1)
    va = lab.sym("__inittext_begin")
    patched = patching.patch_text_nosync(lab.system, va, AARCH64_INSN_NOP)
    assert patched.pas == ((0, lab.system.image.pa_of(va)),)
    assert patching.read_text(lab.system, va) == [(0, AARCH64_INSN_NOP)]
    assert lab.system.physmem.read_u32(lab.system.image.pa_of(va)) == AARCH64_INSN_NOP


def test_module_text_is_patched_through_vmalloc_to_page(ktext_lab_factory):
    from emu.kernel.pgtable_prot import PAGE_KERNEL_RO, PAGE_KERNEL_ROX
    from emu.scenarios.kmodel import vmap

    lab = ktext_lab_factory(nodes=2, cpus_per_node=1)
    system = lab.system
    granule, layout = system.geometry.granule, system.kernel.layout
    pa = system.physmem.memblock_alloc_node(2 * granule, granule, 0)
    text_va = layout.modules_vaddr + 16 * granule
    vmap(system, text_va, pa, granule, PAGE_KERNEL_ROX)
    vmap(system, text_va + granule, pa + granule, granule, PAGE_KERNEL_RO)  # module rodata
    patched = patching.patch_text_nosync(system, text_va + 8, AARCH64_INSN_NOP)
    assert patched.pas == ((0, pa + 8),)
    assert system.physmem.read_u32(pa + 8) == AARCH64_INSN_NOP
    assert patching.read_text(system, text_va + 8) == [(0, AARCH64_INSN_NOP)]
    with pytest.raises(PatchError, match="modules area"):
        patching.patch_text_nosync(system, text_va + granule, AARCH64_INSN_NOP)
