# ruff: noqa: F811  (pytest fixtures imported from the plugin are redefined as arguments)
"""Static keys: the __jump_table, enable/disable from the host and from the
guest on a CPU of each node, NOP <-> B at every site on every copy, and
what every CPU of every node then runs."""

from __future__ import annotations

import pytest
from ktext_testlib import REPLICATED_LAYOUTS

from emu.errors import PatchError, UsageError
from emu.hw.pagetable import Geometry
from emu.kernel import jump_label
from emu.kernel.insn import AARCH64_INSN_NOP, aarch64_insn_gen_branch_imm
from emu.pytest_plugin import ktext_lab_factory  # noqa: F401  (the fixture)

KEYS = {"probe_key_false": False, "probe_key_true": True, "storm_key": False}
# static_key_probe's bit for each site, and the key it reports
PROBE_BITS = {"probe_key_false": 0b0011, "probe_key_true": 0b1100, "storm_key": 0b10000}


def expected_probe(states: dict[str, bool]) -> int:
    return sum(bits for key, bits in PROBE_BITS.items() if states[key])


def probes(lab) -> dict[int, int]:
    return {cpu: regs["x0"] for cpu, regs in lab.call_everywhere("static_key_probe").items()}


def test_jump_table_matches_the_sites(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=1, boot=False)
    system = lab.system
    image = system.image
    entries = jump_label.jump_entries(system)
    assert len(entries) == 5
    keys = {image.symbolize(entry.key) for entry in entries}
    assert keys == set(KEYS)
    for entry in entries:
        assert image.sym("static_key_probe") <= entry.code < image.sym("_etext")
        name = image.symbolize(entry.key)
        # the instruction the assembler chose is the one jump_label_type picks
        word = int.from_bytes(image.elf.read(entry.code, 4), "little")
        assert word == entry.insn(KEYS[name])
        if jump_label.jump_label_type(entry, not KEYS[name]):
            assert word == AARCH64_INSN_NOP
    assert jump_label.static_keys(system)["storm_key"]["sites"] == [image.sym(
        "static_key_storm_site")]
    assert {e.branch for e in entries if image.symbolize(e.key) == "probe_key_false"} == {
        False, True}


def test_parse_rejects_a_torn_table():
    with pytest.raises(PatchError, match="not a whole number of 16-byte entries"):
        jump_label.parse_jump_table(b"\0" * 20, 0xFFFF_8000_0000_0000)


def test_entry_insn_is_nop_or_branch():
    entry = jump_label.JumpEntry(0x1000, 0xFFFF_8000_0001_0000, 0xFFFF_8000_0001_0040,
                                 0xFFFF_8000_0009_0000, False)  # fmt: skip
    assert entry.insn(False) == AARCH64_INSN_NOP
    assert entry.insn(True) == aarch64_insn_gen_branch_imm(entry.code, entry.target, False)
    likely = jump_label.JumpEntry(entry.entry, entry.code, entry.target, entry.key, True)
    assert likely.insn(True) == AARCH64_INSN_NOP
    assert likely.insn(False) == entry.insn(True)


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_host_flips_reach_every_node(ktext_lab_factory, nodes):
    lab = ktext_lab_factory(nodes=nodes)
    states = dict(KEYS)
    assert set(probes(lab).values()) == {expected_probe(states)}
    for key in ["probe_key_false", "probe_key_true", "storm_key", "probe_key_false"]:
        states[key] = not states[key]
        patched = lab.key_set(key, states[key])
        assert patched and all(len(p.pas) == nodes for p in patched)
        assert lab.key_enabled(key) is states[key]
        assert probes(lab) == {cpu: expected_probe(states) for cpu in lab.cpus()}
        assert jump_label.check_jump_labels(lab.system) == []
        lab.assert_replicated()
    assert lab.key_set("storm_key", states["storm_key"]) == []  # already so: no patch


@pytest.mark.parametrize("granule,va_bits", REPLICATED_LAYOUTS,
                         ids=[Geometry(g, v).name for g, v in REPLICATED_LAYOUTS])
def test_guest_flips_from_each_node_every_layout(ktext_lab_factory, granule, va_bits):
    lab = ktext_lab_factory(nodes=4, cpus_per_node=1, granule=granule, va_bits=va_bits)
    states = dict(KEYS)
    flips = lab.system.image.pa_of(lab.sym("static_key_flips"))
    before = lab.system.physmem.read_u64(flips)
    for node in range(4):
        cpu = lab.cpus_on_node(node)[0]
        states["probe_key_true"] = not states["probe_key_true"]
        assert lab.guest_key(cpu, "probe_key_true") == states["probe_key_true"]
        assert probes(lab) == {c: expected_probe(states) for c in lab.cpus()}
        lab.assert_replicated()
    assert lab.system.physmem.read_u64(flips) == before + 4


def test_guest_enable_disable_and_idempotence(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2)
    count = lab.system.image.pa_of(lab.sym("patch_text_count"))
    assert lab.guest_key(3, "storm_key", "enable") == 1
    patches = lab.system.physmem.read_u64(count)
    assert lab.guest_key(0, "storm_key", "enable") == 1  # already enabled: nothing patched
    assert lab.system.physmem.read_u64(count) == patches
    assert lab.guest_key(1, "storm_key", "disable") == 0
    assert lab.system.physmem.read_u64(count) == patches + 1  # one site
    assert set(probes(lab).values()) == {expected_probe(KEYS)}


def test_host_and_guest_agree(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=3, cpus_per_node=1)
    lab.key_set("probe_key_false", True)
    host = {n: w for n, w in lab.read_text(lab.sym("static_key_probe") + 4).items()}
    lab.key_set("probe_key_false", False)
    lab.guest_key(2, "probe_key_false", "enable")
    assert lab.read_text(lab.sym("static_key_probe") + 4) == host


def test_syscall_refuses_unknown_keys_and_ops(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2)
    einval = (1 << 64) - 22
    assert lab.call(1, "sys_static_key", 3, 1)["x0"] == einval
    assert lab.call(1, "sys_static_key", 0, 3)["x0"] == einval
    assert lab.call(1, "sys_static_key", (1 << 64) - 1, 1)["x0"] == einval
    with pytest.raises(UsageError, match="not one of"):
        lab.guest_key(0, "storm_key", "flip")
    with pytest.raises(UsageError, match="no static key"):
        lab.key_set("no_such_key", True)
    with pytest.raises(UsageError, match="not a static key"):
        lab.key_set("syscall_count", True)


def test_host_refuses_while_a_cpu_holds_the_mutex(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2)
    mutex = lab.system.image.pa_of(lab.sym("jump_label_mutex"))
    lab.system.physmem.write_u64(mutex, 1)
    with pytest.raises(PatchError, match="jump_label_mutex is held"):
        lab.key_set("storm_key", True)
    assert lab.key_enabled("storm_key") is False
    lab.system.physmem.write_u64(mutex, 0)
    lab.key_set("storm_key", True)
    assert lab.key_enabled("storm_key") is True


def test_check_finds_a_site_out_of_step_with_its_key(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=2)
    site = lab.sym("static_key_storm_site")
    copy = lab.system.kernel.replication.text_copies[1]
    entry = next(e for e in jump_label.jump_entries(lab.system) if e.code == site)
    lab.system.physmem.write_u32(copy + site - lab.sym("_stext"), entry.insn(True))
    problems = jump_label.check_jump_labels(lab.system)
    assert [(p.node, p.site, p.key) for p in problems] == [(1, site, "storm_key")]
    assert "static_key_storm_site" in problems[0].message()
