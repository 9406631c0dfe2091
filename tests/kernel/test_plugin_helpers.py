"""The pytest plugin's helpers for users (issue 13): granules as on the
command line, added code and syscalls, negative-test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from emu.errors import UsageError
from emu.pytest_plugin import BRK_BAD, granule_bytes, make_lab

ASM = Path(__file__).resolve().parents[1] / "system" / "asm"


@pytest.fixture
def labs():
    """What the plugin's ktext_lab_factory does: make_lab, closed at teardown."""
    made = []

    def factory(**kwargs):
        made.append(make_lab(**kwargs))
        return made[-1]

    yield factory
    for lab in made:
        lab.system.close()


@pytest.mark.parametrize(("granule", "size"), [("4k", 4096), ("16K", 16384), ("64k", 65536),
                                               (4096, 4096), (65536, 65536)])
def test_granule_spellings(granule, size) -> None:
    assert granule_bytes(granule) == size


@pytest.mark.parametrize("granule", ["8k", "4096k", 8192, "big"])
def test_bad_granules_are_refused(granule) -> None:
    with pytest.raises(UsageError, match="granule"):
        granule_bytes(granule)


def test_factory_takes_the_granule_as_on_the_cli(labs):
    lab = labs(nodes=2, cpus_per_node=1, granule="64k", boot=False)
    assert lab.system.geometry.granule == 65536


@pytest.mark.parametrize("syscalls", [{14: "sys_plus_seven"}, ["14=sys_plus_seven"]])
def test_factory_adds_code_and_syscalls(labs, syscalls):
    lab = labs(nodes=2, cpus_per_node=1, add=[ASM / "syscall_define.S"],
                            syscalls=syscalls)
    assert lab.system.kernel.syscalls == {13: "sys_triple", 14: "sys_plus_seven"}
    for cpu in lab.cpus():
        assert lab.syscall(cpu, 14, 1)["x0"] == 8
        assert lab.syscall(cpu, 13, 2)["x0"] == 7


def test_corrupt_changes_one_node_and_the_verifier_names_it(labs):
    lab = labs(nodes=3, cpus_per_node=1)
    site = lab.sym("sys_ni_syscall")
    before = lab.read_text(site)
    old = lab.corrupt(2, "sys_ni_syscall")
    assert old == before[2]
    assert lab.read_text(site) == {**before, 2: BRK_BAD}
    result = lab.verify()
    assert not result.ok
    with pytest.raises(AssertionError, match="node 2: first difference"):
        lab.assert_replicated()
    # rodata is in the copies too: a stray write there is caught as well.
    lab.corrupt(2, "sys_ni_syscall", word=old)
    lab.corrupt(1, "sys_call_table", word=0, offset=4)
    with pytest.raises(AssertionError, match="node 1"):
        lab.assert_replicated()


def test_corrupt_refuses_what_has_no_per_node_copy(labs):
    lab = labs(nodes=2, cpus_per_node=1, ktext=False)
    with pytest.raises(UsageError, match="node 1 has no copy of its own"):
        lab.corrupt(1, "sys_ni_syscall")
    with pytest.raises(UsageError, match=r"not in \[_stext, __end_rodata\)"):
        lab.corrupt(0, "boot_regs")


def test_static_keys_lists_every_key_with_its_sites(labs):
    lab = labs(nodes=2, cpus_per_node=1)
    keys = lab.static_keys()
    assert keys, "the shipped kernel has static keys"
    for name, key in keys.items():
        assert lab.key_enabled(name) == key["enabled"]
        assert key["sites"] and all(lab.sym("_stext") <= site < lab.sym("_etext")
                                    for site in key["sites"])
    name = next(iter(keys))
    lab.key_set(name, not keys[name]["enabled"])
    assert lab.static_keys()[name]["enabled"] != keys[name]["enabled"]
