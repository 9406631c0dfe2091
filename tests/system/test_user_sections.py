"""User sections are linked at the addresses they run at (issue 13, defect 1).

A workload written as GCC writes C (a pointer table to string constants in
.user.rodata, globals in .user.data/.user.bss, an absolute literal) runs
correctly; the ELF, the run, fault reports and objdump agree on its addresses.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from emu.blob.elf import read_elf
from emu.kernel.boot import USER_BASE

ASM = Path(__file__).parent / "asm"
OBJDUMP = "aarch64-linux-gnu-objdump"


@pytest.mark.parametrize("granule", [4096, 16384, 65536])
def test_absolute_pointers_in_user_code_work(make_system, granule: int) -> None:
    system = make_system(nodes=2, cpus_per_node=1, granule=granule, workload="user_pointers",
                         extra_sources=(ASM / "user_pointers.S",))
    system.run()
    assert [cpu.exit_status for cpu in system.machine.cpus] == [0, 0]
    # Both tasks incremented the shared .user.bss counter, read through its ELF address.
    image = system.image
    assert system.physmem.read_u64(image.pa_of(image.sym("user_runs"))) == 2


def test_user_symbols_are_the_addresses_tasks_run_at(make_system) -> None:
    system = make_system(nodes=1, cpus_per_node=1, workload="user_pointers",
                         extra_sources=(ASM / "user_pointers.S",))
    image = system.image
    assert image.sym("__user_text_start") == USER_BASE
    entry = image.sym("workload_user_pointers")
    assert USER_BASE <= entry < image.sym("__user_text_end")
    assert system.kernel.symbolize(entry) == "workload_user_pointers (user)"
    # The segment holding user text is loaded after the kernel image, at its LMA.
    elf = read_elf(image.path)
    segment = next(s for s in elf.segments if s.vaddr <= entry < s.vaddr + s.memsz)
    assert segment.paddr == image.load_pa + image.image_size
    assert not segment.writable and segment.executable
    words = image.sym("user_words")
    table = elf.read(words, 24)
    pointers = [int.from_bytes(table[i:i + 8], "little") for i in (0, 8, 16)]
    assert all(image.sym("__user_rodata_start") <= p < image.sym("__user_rodata_end")
               for p in pointers)
    assert elf.read(pointers[1], 5) == b"beta\0"


@pytest.mark.skipif(shutil.which(OBJDUMP) is None, reason=f"{OBJDUMP} not installed")
def test_objdump_finds_the_user_workload_where_it_runs(make_system) -> None:
    system = make_system(nodes=1, cpus_per_node=1, workload="user_pointers",
                         extra_sources=(ASM / "user_pointers.S",))
    entry = system.image.sym("workload_user_pointers")
    out = subprocess.run(
        [OBJDUMP, "-d", f"--start-address={entry:#x}", f"--stop-address={entry + 8:#x}",
         str(system.image.path)], capture_output=True, text=True, check=True,
    ).stdout
    assert f"{entry:016x} <workload_user_pointers>:" in out


def test_a_workload_outside_user_text_is_a_setup_error(make_system) -> None:
    """Defect 2: a set-up error naming the symbol, its section and the fix,
    not an instruction abort at EL0."""
    from emu.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        make_system(nodes=1, cpus_per_node=1, workload="in_text",
                    extra_sources=(ASM / "workload_in_text.S",))
    message = str(caught.value)
    assert "workload_in_text is in .text" in message
    assert "not in .user.text" in message and "--add-user" in message


def test_cli_reports_a_workload_outside_user_text_with_status_3(capsys) -> None:
    from emu.cli import main

    status = main(["run", "--nodes", "1", "--cpus-per-node", "1", "--ktext", "off", "--add",
                   str(ASM / "workload_in_text.S"), "--workload", "in_text", "--quiet"])
    err = capsys.readouterr().err
    assert status == 3
    assert err.count("\n") == 1 and "workload_in_text is in .text" in err


def test_user_code_holding_a_kernel_address_is_refused_at_link_time(make_system) -> None:
    """Defect 1's other half: what cannot work is refused with file:line."""
    from emu.errors import LinkError

    with pytest.raises(LinkError, match=r"user_to_kernel\.S:5: user code at .* refers to "
                                        r"syscall_count, which is in kernel section \.data"):
        make_system(nodes=1, cpus_per_node=1, extra_sources=(ASM / "user_to_kernel.S",))


def test_a_pointer_table_in_user_data_reaches_user_strings(make_system) -> None:
    """Defect 1 as reported: `.xword .LC3` held a kernel VA, and the load
    through it faulted (FAR in the kernel range)."""
    system = make_system(nodes=2, cpus_per_node=1, workload="user_pointer_table",
                         extra_sources=(ASM / "user_pointer_table.S",))
    system.run()
    assert [cpu.exit_status for cpu in system.machine.cpus] == [0, 0]
