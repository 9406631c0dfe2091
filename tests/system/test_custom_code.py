"""Custom code that just works (issue 13): GCC output as user code without
hand edits (--add-user, --add FILE.c), kernel code behind a syscall in one
step (SYSCALL_DEFINE, --syscall NR=SYMBOL), and where user pages live
(--user-memory node0|local)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from emu.blob import cc
from emu.cli import main
from emu.errors import BlobError, ConfigError, LinkError
from emu.hw.pagetable import Access, walk
from emu.jsonfmt import dense

ROOT = Path(__file__).resolve().parents[2]
ASM = Path(__file__).parent / "asm"
EXAMPLES = ROOT / "examples"
SMALL = ["--nodes", "2", "--cpus-per-node", "1"]
needs_gcc = pytest.mark.skipif(shutil.which(cc.CC) is None, reason=f"{cc.CC} not installed")


# ------------------------------------------------------------ --add-user
def test_gcc_output_runs_as_user_code_unedited(make_system) -> None:
    """examples/wordstat.s is gcc -S output: .text, .rodata.str1.8, .rodata
    (a pointer table), .data and .bss, none of them a user section."""
    text = (EXAMPLES / "wordstat.s").read_text()
    assert ".user." not in text and "\t.section\t.rodata.str1.8" in text
    system = make_system(nodes=2, cpus_per_node=1, workload="wordstat", iterations=2,
                         user_sources=(EXAMPLES / "wordstat.s",),
                         extra_sources=(EXAMPLES / "wordstat_kernel.s",))
    system.run()
    assert [cpu.exit_status for cpu in system.machine.cpus] == [0, 0]
    image = system.image
    for name, section in (("workload_wordstat", ".user.text"), ("words", ".user.rodata"),
                          ("wordstat_seed", ".user.data"), ("wordstat_calls", ".user.bss")):
        assert section in {sym.section for sym in image.elf.all_symbols if sym.name == name}
    # Both tasks called wordstat_score twice: the shared .user.bss counter says 4.
    assert system.physmem.read_u64(image.pa_of(image.sym("wordstat_calls"))) == 4


def test_add_user_refuses_a_section_user_code_has_no_place_for(tmp_path, make_system) -> None:
    source = tmp_path / "init.s"
    source.write_text('\t.section .init.text, "ax"\n\tret\n')
    with pytest.raises(LinkError, match=r"init\.s: section \.init\.text has no place in user "
                                        r"code .*add the file with --add"):
        make_system(nodes=1, cpus_per_node=1, user_sources=(source,))


# ------------------------------------------------------------ --add FILE.c
@needs_gcc
def test_add_compiles_c_with_the_documented_flags(tmp_path, capsys) -> None:
    out_json = tmp_path / "r.json"
    assert main(["run", *SMALL, "--ktext", "on", "--add-user", str(EXAMPLES / "wordstat.c"),
                 "--add", str(EXAMPLES / "wordstat_kernel.c"), "--workload", "wordstat",
                 "--iterations", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "[cpu 1] task 1: wordstat_score = 0x7f26c32a1996c882" in out
    run = json.loads(out_json.read_text())["runs"][0]
    assert run["syscalls"] == {"15": "sys_wordstat"}


def test_add_c_without_the_compiler_names_the_command(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    source = tmp_path / "mine.c"
    source.write_text("long f(long x) { return x + 1; }\n")
    status = main(["run", *SMALL, "--add", str(source), "--workload", "syscall"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == BlobError.exit_status and len(err) == 1
    expected = " ".join([cc.CC, *cc.CFLAGS, str(source), "-o", str(source.with_suffix(".s"))])
    assert f"run `{expected}`" in err[0]
    assert "aarch64-linux-gnu-gcc is not on PATH" in err[0]


# ------------------------------------------------------------ syscalls
def test_syscall_define_hooks_a_kernel_function(make_system) -> None:
    system = make_system(nodes=2, cpus_per_node=2, ktext=True, workload="triple",
                         extra_sources=(ASM / "syscall_define.S",))
    assert system.kernel.syscalls == {13: "sys_triple"}
    system.run()
    assert [cpu.exit_status for cpu in system.machine.cpus] == [0, 0, 0, 0]
    # The table entry is in every node's copy of rodata.
    for cpu in range(4):
        assert system.call(cpu, "sys_triple", 5)["x0"] == 16


def test_syscall_option_hooks_a_symbol_and_system_call_reaches_it(make_system) -> None:
    system = make_system(nodes=2, cpus_per_node=1, workload="syscall", iterations=1,
                         extra_sources=(ASM / "syscall_define.S",),
                         syscalls=((14, "sys_plus_seven"),))
    assert system.kernel.syscalls == {13: "sys_triple", 14: "sys_plus_seven"}
    system.run()
    assert system.syscall(1, 14, 35)["x0"] == 42
    assert system.syscall(0, 13, 1)["x0"] == 4


@pytest.mark.parametrize(("hook", "message"), [
    ((3, "sys_plus_seven"), r"syscall 3 is sys_puts already; free numbers: 7, (\d+, )*31$"),
    ((32, "sys_plus_seven"), r"the table has numbers 0 to 31"),
    ((14, "workload_triple"), r"workload_triple is user code; a syscall handler must be in "
                              r"the kernel's \.text"),
    ((14, "no_such_function"), r"no symbol 'no_such_function' in the kernel"),
])
def test_syscall_hooks_that_cannot_work_are_refused(make_system, hook, message) -> None:
    with pytest.raises(ConfigError, match=message):
        make_system(nodes=1, cpus_per_node=1, extra_sources=(ASM / "syscall_define.S",),
                    syscalls=(hook,))


def test_syscall_option_is_checked_on_the_command_line(capsys) -> None:
    assert main(["run", "--syscall", "fourteen=f"]) == 2
    assert "expected NR=SYMBOL" in capsys.readouterr().err


# ------------------------------------------------------------ --user-memory
@pytest.mark.parametrize("granule", [4096, 65536])
@pytest.mark.parametrize("user_memory", ["node0", "local"])
def test_user_memory_places_user_text_and_says_so(make_system, user_memory, granule) -> None:
    system = make_system(nodes=3, cpus_per_node=1, granule=granule, workload="syscall",
                         iterations=50, user_memory=user_memory)
    system.run()
    report = system.report()
    assert report["user_memory"] == user_memory
    for cpu in report["cpus"]:
        # Fetches outside [_stext, _etext): user code, and head text on node 0.
        other = [all_ - kernel for all_, kernel in
                 zip(dense(cpu["fetches_by_node"], 3), dense(cpu["kernel_fetches_by_node"], 3),
                     strict=True)]
        away = [n for n in range(3) if n not in (0, cpu["node"])]
        assert all(other[n] == 0 for n in away)
        if cpu["node"] != 0:
            assert (other[cpu["node"]] > 0) == (user_memory == "local"), (cpu["cpu"], other)
        assert cpu["exit_status"] == 0
    # Each CPU's user root maps the workload's text to its own node (local) or node 0.
    image = system.image
    entry = image.sym("workload_syscall")
    for cpu in range(3):
        ttbr0 = system.physmem.read_u64(image.pa_of(image.sym("task_user_ttbr0")) + 8 * cpu)
        walked = walk(system.physmem.read_u64, system.kernel.tcr, ttbr0, 0, entry,
                      Access.FETCH, 0)
        node = system.physmem.node_of(walked.pa)
        assert node == (system.config.topology.cpu_to_node(cpu) if user_memory == "local" else 0)


def test_the_table_says_where_user_memory_is(capsys) -> None:
    assert main(["run", *SMALL, "--workload", "syscall", "--iterations", "5",
                 "--user-memory", "local"]) == 0
    assert "user text and rodata in each node's own RAM (--user-memory local)" in (
        capsys.readouterr().out)
