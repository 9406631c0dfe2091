"""The pytest plugin as a user meets it: a test file of a few lines, run by
pytest in a subprocess with the plugin loaded."""

from __future__ import annotations

import subprocess
import sys
import textwrap

USER_TESTS = '''
import pytest

def test_patch_every_node(ktext_lab):
    site = ktext_lab.sym("sys_ni_syscall")
    ktext_lab.patch(site, 0xD2800000 | (42 << 5))          # movz x0, #42
    for cpu in ktext_lab.cpus():
        assert ktext_lab.call(cpu, "sys_ni_syscall")["x0"] == 42
    ktext_lab.assert_replicated()

@pytest.mark.parametrize("nodes", [2, 3])
def test_guest_patch_from_last_node(ktext_lab_factory, nodes):
    lab = ktext_lab_factory(nodes=nodes, cpus_per_node=1)
    site = lab.sym("sys_ni_syscall")
    assert lab.guest_patch(nodes - 1, site + 2, 0) == -22     # misaligned: refused
    assert lab.guest_patch(nodes - 1, site, 0xD2800000 | (nodes << 5)) == 0
    assert {regs["x0"] for regs in lab.call_everywhere("sys_ni_syscall").values()} == {nodes}
    assert lab.verify().ok

def test_corruption_is_reported(ktext_lab):
    copy = ktext_lab.system.kernel.replication.text_copies[1]
    ktext_lab.system.physmem.write_u32(copy, 0)
    with pytest.raises(AssertionError, match="node 1: first difference"):
        ktext_lab.assert_replicated()
'''


def test_user_tests_run_with_the_plugin(tmp_path):
    path = tmp_path / "test_user_patching.py"
    path.write_text(textwrap.dedent(USER_TESTS))
    # -p no:ktext_emu: if the entry point is installed, load the plugin only once
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:ktext_emu", "-p", "emu.pytest_plugin",
         "-p", "no:cacheprovider", str(path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
