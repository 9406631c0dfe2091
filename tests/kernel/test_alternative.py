# ruff: noqa: F811  (pytest fixtures imported from the plugin are redefined as arguments)
"""Alternatives at boot: the .altinstructions records, the sites on node 0
and every copy for several capability sets against a reference computed
from the records with capstone, the capability bitmaps and report, and the
code that runs on every CPU of every node."""

from __future__ import annotations

import itertools
import struct

import capstone
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emu.errors import BlobError, ConfigError, PatchError
from emu.kernel import alternative, cpufeature
from emu.kernel.ktext import node_text_pas
from emu.pytest_plugin import ktext_lab_factory  # noqa: F401  (the fixture)

CAPS = [cap.name for cap in cpufeature.CPUCAPS]
CAP_SETS = [
    (),
    ("ARM64_HAS_CACHE_IDC",),
    ("ARM64_HAS_CACHE_DIC",),
    ("ARM64_WORKAROUND_CLEAN_CACHE",),
    ("ARM64_HAS_PAN",),
    ("ARM64_HAS_LSE_ATOMICS",),
    ("has_cache_idc", "has_cache_dic"),
    ("arm64_has_pan", "HAS_LSE_ATOMICS", "workaround_clean_cache"),
    tuple(CAPS),
]
BRANCHES = {"b", "bl", "cbz", "cbnz", "tbz", "tbnz"}


def _md():
    md = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
    md.detail = True
    return md


MD = _md()


def decode(word: int, pc: int):
    insns = list(MD.disasm(word.to_bytes(4, "little"), pc, 1))
    assert insns, f"capstone cannot decode {word:#010x}"
    return insns[0]


def is_branch(insn) -> bool:
    return insn.mnemonic in BRANCHES or insn.mnemonic.startswith("b.")


def last_imm(insn) -> int:
    """The instruction's last immediate (a branch target or ADRP page), as an address."""
    imms = [op.imm for op in insn.operands if op.type == capstone.arm64.ARM64_OP_IMM]
    return imms[-1] & ((1 << 64) - 1)


def elf_records(image):
    """The records, parsed here from the ELF file independently of alternative.py."""
    start, end = image.sym("__alt_instructions"), image.sym("__alt_instructions_end")
    data = image.elf.read(start, end - start)
    out = []
    for offset in range(0, len(data), 12):
        orig, alt, cap, orig_len, alt_len = struct.unpack_from("<iiHBB", data, offset)
        rec = start + offset
        out.append((rec + orig, rec + 4 + alt, cap, orig_len, alt_len))
    return out


def check_site_against_reference(image, site, repl, length, enabled, words):
    """``words`` (what a node holds at the site) against the records' meaning."""
    for index in range(length // 4):
        site_pc, alt_pc = site + 4 * index, repl + 4 * index
        original = int.from_bytes(image.elf.read(site_pc, 4), "little")
        replacement = int.from_bytes(image.elf.read(alt_pc, 4), "little")
        word = words[index]
        if not enabled:
            assert word == original, f"{site_pc:#x}: disabled alternative changed the site"
            continue
        want, got = decode(replacement, alt_pc), decode(word, site_pc)
        if is_branch(want):
            target = last_imm(want)
            if repl <= target <= repl + length:  # inside the replacement: copied as is
                assert word == replacement
            else:  # keeps its absolute target from the new place
                assert got.mnemonic == want.mnemonic
                assert last_imm(got) == target
                assert got.op_str.split(",")[:-1] == want.op_str.split(",")[:-1]
        elif want.mnemonic == "adrp":
            assert got.mnemonic == "adrp" and last_imm(got) == last_imm(want)
            assert got.op_str.split(",")[0] == want.op_str.split(",")[0]
        else:
            assert word == replacement


def _selected_numbers(image, names):
    return set(cpufeature.parse_cpu_features(image, names).values())


# ------------------------------------------------------------------ records


def test_records_are_in_the_linux_layout(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=1, boot=False)
    image = lab.system.image
    records = elf_records(image)
    assert len(records) >= 10
    assert records == [(a.orig, a.repl, a.cpucap, a.orig_len, a.alt_len)
                       for a in alternative.image_alt_records(image)]  # fmt: skip
    replacement = next(s for s in image.elf.sections if s.name == ".altinstr_replacement")
    numbers = set(cpufeature.image_cpucaps(image).values())
    for site, repl, cap, orig_len, alt_len in records:
        assert image.sym("_stext") <= site < image.sym("_etext")
        assert replacement.vaddr <= repl < replacement.vaddr + replacement.size
        assert orig_len == alt_len and orig_len % 4 == 0
        assert cap in numbers
    # the patch routine, sys_cpucaps and alternative_selftest all have sites
    names = {image.symbolize(site).split("+")[0] for site, *_ in records}
    assert {"aarch64_insn_patch_text_nosync", "sys_cpucaps", "alternative_selftest"} <= names


def test_cpucap_table_matches_the_image(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=1, boot=False)
    image = lab.system.image
    assert cpufeature.image_cpucaps(image) == {cap.name: cap.number for cap in cpufeature.CPUCAPS}
    assert image.sym("ARM64_NCAPS") == len(cpufeature.CPUCAPS)


# ------------------------------------------------------------- applied sites


@pytest.mark.parametrize("nodes", [1, 4])
@pytest.mark.parametrize("features", CAP_SETS, ids=lambda f: "+".join(f) or "none")
def test_sites_match_the_records_on_every_node(ktext_lab_factory, nodes, features):
    lab = ktext_lab_factory(nodes=nodes, cpus_per_node=1, cpu_features=features, boot=False)
    system = lab.system
    image = system.image
    enabled = _selected_numbers(image, features)
    copies = system.kernel.replication.text_copies
    assert sum(copy is not None for copy in copies) == nodes - 1
    for site, repl, cap, length, _ in elf_records(image):
        for _node, pa in node_text_pas(image, copies, site):
            words = [system.physmem.read_u32(pa + 4 * i) for i in range(length // 4)]
            check_site_against_reference(image, site, repl, length, cap in enabled, words)
    assert alternative.check_alternatives(system.physmem, image, copies) == []
    report = system.report()
    names = sorted(cpufeature.canonical_cap_name(f, CAPS) for f in features)
    assert sorted(report["cpu_caps"]) == names
    assert report["alternatives_match_caps"] is True
    assert sorted(cpufeature.applied_alternatives(system.physmem, image)) == names


@settings(max_examples=12, deadline=None)
@given(features=st.sets(st.sampled_from(CAPS)))
def test_any_capability_set(features):
    from emu.pytest_plugin import make_lab

    lab = make_lab(nodes=2, cpus_per_node=1, cpu_features=tuple(features), boot=False)
    try:
        image = lab.system.image
        enabled = {cpufeature.image_cpucaps(image)[name] for name in features}
        copies = lab.system.kernel.replication.text_copies
        for site, repl, cap, length, _ in elf_records(image):
            for _node, pa in node_text_pas(image, copies, site):
                words = [lab.system.physmem.read_u32(pa + 4 * i) for i in range(length // 4)]
                check_site_against_reference(image, site, repl, length, cap in enabled, words)
    finally:
        lab.system.close()


def test_alternatives_are_applied_on_every_layout(ktext_lab_factory):
    from ktext_testlib import REPLICATED_LAYOUTS

    for granule, va_bits in REPLICATED_LAYOUTS:
        lab = ktext_lab_factory(nodes=2, cpus_per_node=1, granule=granule, va_bits=va_bits,
                                cpu_features=tuple(CAPS), boot=False)  # fmt: skip
        report = lab.system.report()
        assert report["alternatives_match_caps"] is True, (granule, va_bits)
        lab.system.close()


# ------------------------------------------------------------ running code


@pytest.mark.parametrize("features", [(), ("ARM64_HAS_PAN",), ("ARM64_HAS_LSE_ATOMICS",),
                                      ("ARM64_HAS_PAN", "ARM64_HAS_LSE_ATOMICS")],
                         ids=lambda f: "+".join(f) or "none")  # fmt: skip
def test_selftest_on_every_cpu_of_every_node(ktext_lab_factory, features):
    lab = ktext_lab_factory(nodes=4, cpu_features=features)
    pan = "ARM64_HAS_PAN" in features
    lse = "ARM64_HAS_LSE_ATOMICS" in features
    page = lab.sym("alt_selftest_page_b" if pan else "alt_selftest_page_a")
    expected_x0 = (2 if lse else 1) | (0x20 if pan else 0x10)
    for cpu, regs in lab.call_everywhere("alternative_selftest").items():
        assert regs["x1"] == page, f"CPU {cpu}: the ADRP lost its page"
        assert regs["x0"] == expected_x0, f"CPU {cpu}: {regs['x0']:#x}"


@pytest.mark.parametrize("features", [(), ("ARM64_HAS_CACHE_DIC", "ARM64_HAS_CNP"), tuple(CAPS)],
                         ids=lambda f: "+".join(f) or "none")
def test_cpucaps_syscall_reports_the_live_alternatives(ktext_lab_factory, features):
    lab = ktext_lab_factory(nodes=2, cpu_features=features)
    mask = cpufeature.caps_mask(_selected_numbers(lab.system.image, features))
    assert {cpu: regs["x0"] for cpu, regs in lab.call_everywhere("sys_cpucaps").items()} == {
        cpu: mask for cpu in lab.cpus()}
    assert cpufeature.read_bitmap(lab.system.physmem, lab.system.image, "system_cpucaps") == mask


def test_applied_only_once_alternatives_survive_a_run(ktext_lab_factory):
    lab = ktext_lab_factory(nodes=4, cpu_features=("ARM64_HAS_PAN",), workload="static_keys",
                            iterations=5, boot=False)  # fmt: skip
    lab.system.run()
    assert lab.system.report()["alternatives_match_caps"] is True
    lab.assert_replicated()


# ------------------------------------------------------------------- errors


def test_unknown_feature_is_a_config_error(ktext_lab_factory):
    with pytest.raises(ConfigError, match="unknown CPU feature 'ARM64_HAS_WINGS'") as caught:
        ktext_lab_factory(nodes=1, cpu_features=("ARM64_HAS_WINGS",), boot=False)
    assert "ARM64_HAS_CACHE_DIC" in str(caught.value)


def _records_blob(orig_off, alt_off, cap, orig_len, alt_len):
    return struct.pack("<iiHBB", orig_off, alt_off, cap, orig_len, alt_len)


@pytest.mark.parametrize("fields,message", [
    ((0, 0, 1 << 15, 4, 4), "callback alternatives"),
    ((0, 0, 1, 4, 8), "replacement is 8 bytes but the site is 4"),
    ((2, 0, 1, 4, 4), "not whole, aligned 32-bit instructions"),
    ((0, 0, 1, 6, 6), "not whole, aligned 32-bit instructions"),
])  # fmt: skip
def test_bad_records_are_refused(ktext_lab_factory, fields, message):
    lab = ktext_lab_factory(nodes=1, boot=False)
    image = lab.system.image
    base = image.sym("alternative_selftest")
    # a record placed (virtually) right at the site: offsets are relative to it
    record = alternative.parse_alt_records(_records_blob(*fields), base)[0]
    with pytest.raises(PatchError, match=message):
        alternative._check_record(record, image)


def test_truncated_record_table(ktext_lab_factory):
    with pytest.raises(PatchError, match="not a whole number of 12-byte records"):
        alternative.parse_alt_records(b"\0" * 13, 0xFFFF_0000_0000_0000)


BAD_LENGTH_SOURCE = """
	.include "cpucaps.inc"
	.include "alternative.inc"
	.text
	.globl	bad_alternative
bad_alternative:
	ALTERNATIVE "nop", "nop; nop", ARM64_HAS_PAN
	ret
"""

OUT_OF_IMAGE_SOURCE = """
	.include "cpucaps.inc"
	.include "alternative.inc"
	.text
	.globl	far_alternative
far_alternative:
	nop
	.pushsection .altinstructions, "a"
	.word	0x7ffffff0
	.word	0
	.hword	ARM64_HAS_PAN
	.byte	4
	.byte	4
	.popsection
	ret
"""


def test_macro_refuses_replacements_of_another_length(ktext_lab_factory, tmp_path):
    source = tmp_path / "bad_alternative.S"
    source.write_text(BAD_LENGTH_SOURCE)
    with pytest.raises(BlobError, match="replacement and original differ in length"):
        ktext_lab_factory(nodes=1, boot=False, extra_sources=(source,))


def test_boot_refuses_a_record_outside_the_image(ktext_lab_factory, tmp_path):
    source = tmp_path / "far_alternative.S"
    source.write_text(OUT_OF_IMAGE_SOURCE)
    with pytest.raises(PatchError, match=r"site 0x[0-9a-f]+ is outside the kernel image"):
        ktext_lab_factory(nodes=2, boot=False, extra_sources=(source,))


def test_every_pair_of_caps_changes_only_its_own_sites(ktext_lab_factory):
    """Enabling cap A never touches the sites of cap B (records are independent)."""
    base = ktext_lab_factory(nodes=1, cpus_per_node=1, boot=False)
    image = base.system.image
    numbers = cpufeature.image_cpucaps(image)
    records = elf_records(image)

    def text(system):
        return {site: system.physmem.read(system.image.pa_of(site), length)
                for site, _r, _c, length, _a in records}  # fmt: skip

    plain = text(base.system)
    for first, second in itertools.combinations(["ARM64_HAS_CACHE_IDC", "ARM64_HAS_PAN",
                                                 "ARM64_HAS_LSE_ATOMICS"], 2):  # fmt: skip
        lab = ktext_lab_factory(nodes=1, cpus_per_node=1, cpu_features=(first, second),
                                boot=False)  # fmt: skip
        patched = text(lab.system)
        for site, _repl, cap, _len, _ in records:
            changed = patched[site] != plain[site]
            assert changed == (cap in (numbers[first], numbers[second]))
        lab.system.close()
