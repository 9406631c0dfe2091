"""The worked example's own test, as a ktext-emu user writes one: the
plugin's fixtures boot a machine with wordstat's kernel code behind syscall
15, then a test patches it on every node and checks every CPU sees the patch.

Run it with ``python3 -m pytest examples/test_wordstat.py`` (the plugin comes
with ktext-emu); tests/examples/ runs it in CI.
"""

from pathlib import Path

import pytest

HERE = Path(__file__).parent
RET = 0xD65F03C0  # ret
# What wordstat_score(salt) returns: `cc -DHOST examples/wordstat.c && ./a.out`.
EXPECTED = {0: 0x7F26E4E1F52C4685, 1: 0x7F26C32A1996C882, 3: 0x7EEF8BF63530E100}


@pytest.fixture
def lab(ktext_lab_factory):
    """2 nodes x 2 CPUs, 64K pages, wordstat in the kernel (syscall 15) and as user code."""
    return ktext_lab_factory(nodes=2, cpus_per_node=2, granule="64k",
                             add=[HERE / "wordstat_kernel.s"], add_user=[HERE / "wordstat.s"])


def test_the_syscall_gives_the_host_result_on_every_cpu(lab):
    for cpu in lab.cpus():
        for salt, expected in EXPECTED.items():
            assert lab.syscall(cpu, 15, salt)["x0"] == expected


def test_a_patch_reaches_every_node(lab):
    site = lab.sym("sys_wordstat")
    old = lab.read_text(site)
    lab.patch(site, RET)  # sys_wordstat(salt) now returns salt itself
    assert set(lab.read_text(site).values()) == {RET} != set(old.values())
    for cpu in lab.cpus():
        assert lab.syscall(cpu, 15, 7)["x0"] == 7
    lab.assert_replicated()


def test_a_stray_write_to_one_node_is_caught(lab):
    lab.corrupt(1, "sys_wordstat")  # brk #0xbad in node 1's copy only
    with pytest.raises(AssertionError, match="node 1: first difference"):
        lab.assert_replicated()
    assert lab.syscall(lab.cpus_on_node(0)[0], 15, 0)["x0"] == EXPECTED[0]  # node 0 unharmed
