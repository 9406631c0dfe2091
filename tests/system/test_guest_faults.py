"""Guests that misbehave on purpose: each ends the run with a GuestFault whose
FaultReport names the CPU, its node, the PC with symbol+offset, ESR/FAR and
the last blocks the CPU ran, and the emulator stays usable afterwards.

The guests are small kernel-blob sources (tests/system/asm/bad_*.S) linked
into the shipped kernel: EL0 workloads for user-mode misbehaviour, kernel
functions run with System.call for what only the kernel can do (rewrite its
vectors, corrupt its translation tables), followed by an ordinary run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.cli import main
from emu.errors import GuestFault
from emu.hw.accounting import NO_ACCEL_ENV, RECENT_BLOCKS
from emu.hw.exception import EXCEPTION_LOOP_LIMIT
from emu.hw.fault import (
    EC_DABT_CUR,
    EC_DABT_LOW,
    EC_IABT_CUR,
    EC_IABT_LOW,
    EC_UNKNOWN,
    ISS_WNR,
    decode_esr,
    esr_class,
)
from emu.hw.firmware import DEFAULT_MAX_CONSOLE_BYTES, DEFAULT_MAX_FIRMWARE_CALLS
from emu.hw.forensics import FaultReport
from emu.hw.machine import DEFAULT_WATCHDOG, StopReason
from emu.kernel.boot import USER_BASE
from emu.kernel.mmu import TableAllocator, create_pgd_mapping
from emu.kernel.pgtable_prot import PAGE_KERNEL
from emu.system import DEFAULT_MAX_INSTRUCTIONS, System

ASM = Path(__file__).parent / "asm"
UNMAPPED = 0x7F00_0000_0000  # below TTBR0's top for every layout tested, never mapped
UDF_0 = 0x0000_0000  # udf #0
BRANCH_TO_SELF = 0x1400_0000  # b .
VECTOR_EL1_SPX_SYNC = 0x200
VECTOR_EL0_SYNC = 0x400
USER_ROOT = -1  # bad_pgtable_poke's selector of the user address space


@pytest.fixture(params=["accel", "python-hooks"])
def hooks(request, monkeypatch) -> str:
    """Both implementations of the hot path: the C hooks and the Python ones."""
    if request.param == "python-hooks":
        monkeypatch.setenv(NO_ACCEL_ENV, "1")
    else:
        monkeypatch.delenv(NO_ACCEL_ENV, raising=False)
    return request.param


def fault_of(system: System, **run_args: int) -> FaultReport:
    """Run ``system`` until it faults; the report, checked for self-consistency."""
    with pytest.raises(GuestFault) as caught:
        system.run(**run_args)
    report = caught.value.report
    assert isinstance(report, FaultReport)
    assert str(caught.value) == report.message()
    topology = system.config.topology
    assert 0 <= report.cpu < topology.n_cpus
    assert report.node == topology.cpu_to_node(report.cpu)
    assert report.symbol == system.kernel.symbolize(report.pc)
    assert f"CPU {report.cpu} (node {report.node})" in report.message()
    assert f"{report.pc:#x} <{report.symbol}>" in report.message()
    assert 0 < len(report.recent_blocks) <= RECENT_BLOCKS
    return report


def block_symbols(system: System, report: FaultReport) -> list[str]:
    return [system.kernel.symbolize(va) for va in report.recent_blocks]


def user_va(system: System, symbol: str, offset: int = 0) -> int:
    """Where ``symbol`` of .user.text sits in the tasks' address space."""
    return USER_BASE + system.image.sym(symbol) - system.image.sym("__user_text_start") + offset


def linear_offset(system: System) -> int:
    """VA - PA of the guest's linear map."""
    base = system.physmem.banks[0].base
    return system.kernel.layout.linear_va(base, base) - base


def linear_alias(system: System, symbol: str) -> int:
    """A writable linear-map alias of a kernel symbol.  Linux makes node 0's
    text alias read-only (mark_linear_text_alias_ro); the symbol's page is
    made writable again, as rodata=off would leave it."""
    pa = system.image.pa_of(system.image.sym(symbol))
    granule = system.geometry.granule
    page = pa & ~(granule - 1)
    create_pgd_mapping(system.physmem, system.geometry, system.kernel.swapper_pa,
                       page + linear_offset(system), page, granule, PAGE_KERNEL,
                       TableAllocator(system.physmem, system.geometry, 0),
                       block_mappings=False, no_exec_tables=True)  # fmt: skip
    for vcpu in system.machine.cpus:
        vcpu.tlb.clear()
    system.machine.flush_tlb()
    return pa + linear_offset(system)


# ------------------------------------------------------------------ EL0 tasks
@pytest.mark.parametrize(
    "granule,va_bits,level",
    [(4096, 48, 0), (4096, 39, 0), (16384, 47, 1), (65536, 48, 1), (65536, 42, 0)],
    ids=["4k-48", "4k-39", "16k-47", "64k-48", "64k-42"],
)
def test_jump_into_unmapped_memory(make_system, granule, va_bits, level):
    system = make_system(nodes=2, cpus_per_node=1, granule=granule, va_bits=va_bits,
                         workload="bad_jump", extra_sources=(ASM / "bad_unmapped.S",))
    report = fault_of(system)
    assert (report.cpu, report.node) == (0, 0)
    assert report.pc == report.far == UNMAPPED
    assert esr_class(report.esr) == EC_IABT_LOW
    assert decode_esr(report.esr).endswith(f"translation fault level {level}")
    assert report.what.startswith("blr x2 at <workload_bad_jump+0x4 (user)> to a bad address")
    symbols = block_symbols(system, report)
    # the task's block, then the EL0 synchronous vector and the kernel's panic path
    assert symbols[-4:] == ["workload_bad_jump (user)", "vectors+0x400", "el0_sync", "el1_sync"]


def test_load_from_unmapped_memory_reports_the_exact_address(make_system, hooks):
    system = make_system(nodes=2, cpus_per_node=1, workload="bad_load",
                         extra_sources=(ASM / "bad_unmapped.S",))
    report = fault_of(system)
    assert report.pc == user_va(system, "workload_bad_load", 0x10)
    assert report.symbol == "workload_bad_load+0x10 (user)"
    assert esr_class(report.esr) == EC_DABT_LOW
    assert not report.esr & ISS_WNR
    assert report.far == UNMAPPED + 0x123 + 0x10  # not page aligned: the access itself
    assert report.what.startswith("unhandled exception")


def test_undefined_instruction(make_system, hooks):
    system = make_system(nodes=2, cpus_per_node=2, workload="bad_undef",
                         extra_sources=(ASM / "bad_undef.S",))
    report = fault_of(system)
    assert (report.cpu, report.node) == (0, 0)
    assert report.symbol == "workload_bad_undef+0x8 (user)"
    assert esr_class(report.esr) == EC_UNKNOWN
    assert decode_esr(report.esr) == "undefined instruction"
    assert report.far is None  # FAR is UNKNOWN after an undefined instruction
    assert block_symbols(system, report)[-4:] == [
        "workload_bad_undef+0x8 (user)", "vectors+0x400", "el0_sync", "el1_sync",
    ]


def test_exception_in_a_kernel_call_does_not_leak_into_the_next_run(make_system):
    system = make_system(nodes=2, cpus_per_node=1, workload="syscall",
                         extra_sources=(ASM / "bad_undef.S",))
    with pytest.raises(GuestFault, match="bad_kernel_udf"):
        system.call(0, "bad_kernel_udf")
    assert system.run().reason is StopReason.ALL_OFF
    assert [cpu["exit_status"] for cpu in system.report()["cpus"]] == [0, 0]


def test_return_from_the_entry_point(make_system):
    system = make_system(nodes=2, cpus_per_node=1, workload="bad_return",
                         extra_sources=(ASM / "bad_return.S",))
    report = fault_of(system)
    assert report.what.startswith("ret x30 at <workload_bad_return+0x4 (user)> to a bad address")
    assert esr_class(report.esr) == EC_IABT_LOW
    assert report.far == report.pc  # an instruction abort's FAR is the PC it could not fetch


def test_spinning_task_is_stopped_by_the_watchdog(make_system, hooks):
    system = make_system(nodes=2, cpus_per_node=1, workload="bad_spin",
                         extra_sources=(ASM / "bad_spin.S",))
    system.machine.watchdog = 1_000_000
    report = fault_of(system, max_instructions=5_000_000)
    assert report.cpu == 0
    assert report.what == "spinning: 1,000,000 instructions without taking an exception " \
        "(watchdog 1,000,000)"
    assert report.esr is None and report.far is None
    loop = user_va(system, "workload_bad_spin", 0xC)
    assert report.pc in (loop, loop + 4)
    assert set(report.recent_blocks) == {loop}  # the ring is full of the loop
    # boot (under 300,000 instructions on CPU 0), one syscall, then exactly the watchdog's
    # worth of the loop, give or take the quantum in which the syscall was taken
    ran = system.machine.accounting.counts(0).instructions
    assert 1_000_000 <= ran < 1_000_000 + 300_000 + system.spec.quantum


def test_kernel_spinning_in_its_vectors_is_stopped_by_the_watchdog(make_system):
    system = make_system(nodes=2, cpus_per_node=1, workload="syscall",
                         extra_sources=(ASM / "bad_handler.S",))
    system.call(0, "bad_vector_poke", linear_alias(system, "vectors"), VECTOR_EL0_SYNC,
                BRANCH_TO_SELF)
    system.machine.watchdog = 1_000_000
    report = fault_of(system, max_instructions=5_000_000)
    assert report.symbol == "vectors+0x400"
    assert report.what.startswith("spinning: 1,000,000 instructions")


def test_without_watchdog_the_instruction_limit_ends_a_spin(make_system):
    system = make_system(nodes=2, cpus_per_node=1, workload="bad_spin",
                         extra_sources=(ASM / "bad_spin.S",))
    system.machine.watchdog = 0
    result = system.run(max_instructions=300_000)
    assert result.reason is StopReason.INSTRUCTION_LIMIT
    assert result.instructions == 300_000


def test_default_bounds_are_explicit_and_ordered():
    # a spinning guest meets the watchdog before the run's own instruction limit
    assert 0 < DEFAULT_WATCHDOG < DEFAULT_MAX_INSTRUCTIONS


# ---------------------------------------------------- exception handling goes wrong
def test_kernel_faults_in_its_syscall_handler(make_system):
    system = make_system(nodes=2, cpus_per_node=1, workload="bad_user_pointer",
                         extra_sources=(ASM / "bad_handler.S",))
    report = fault_of(system)
    assert report.symbol.startswith("sys_db_read+")
    assert esr_class(report.esr) == EC_DABT_CUR
    assert report.esr & ISS_WNR  # the copy-out store
    assert report.far == UNMAPPED + 0x40
    assert block_symbols(system, report)[-2:] == ["vectors+0x200", "el1_sync"]


def test_handler_that_faults_again_is_an_exception_loop(make_system, hooks):
    system = make_system(nodes=2, cpus_per_node=1, workload="bad_user_pointer",
                         extra_sources=(ASM / "bad_handler.S",))
    system.call(0, "bad_vector_branch", linear_alias(system, "vectors"), VECTOR_EL1_SPX_SYNC)
    report = fault_of(system, max_instructions=2_000_000)
    assert report.what.startswith(f"exception loop: {EXCEPTION_LOOP_LIMIT} exceptions taken at EL1")
    assert report.symbol == "bad_handler+0x4"
    assert esr_class(report.esr) == EC_DABT_CUR
    assert report.far == UNMAPPED + 0x40
    symbols = block_symbols(system, report)
    assert symbols[-4:] == ["vectors+0x200", "bad_handler", "vectors+0x200", "bad_handler"]


def test_exception_inside_the_vectors(make_system, hooks):
    system = make_system(nodes=2, cpus_per_node=1, workload="bad_user_pointer",
                         extra_sources=(ASM / "bad_handler.S",))
    system.call(0, "bad_vector_poke", linear_alias(system, "vectors"), VECTOR_EL1_SPX_SYNC, UDF_0)
    report = fault_of(system)
    assert report.what == "exception inside the exception vectors"
    assert report.symbol == "vectors+0x200"
    assert decode_esr(report.esr) == "undefined instruction"


# ---------------------------------------------------- corrupted translation tables
def _root_entry(system: System, kind: str) -> int:
    if kind == "garbage table descriptor":
        return 0xDEAD_BEEF_DEAD_BEEF
    if kind == "garbage block descriptor":
        return 0xDEAD_BEEF_DEAD_BEE5  # a level-0 block: not allowed with 4K pages
    if kind == "table loop":
        return system.kernel.user_pgd_pa | 3  # the root's first table is the root itself
    if kind == "table outside RAM":
        return 0x7_0000_0000 | 3
    raise AssertionError(kind)


@pytest.mark.parametrize("kind,status", [
    ("garbage table descriptor", "synchronous external abort on translation table walk level 1"),
    ("garbage block descriptor", "translation fault level 0"),
    ("table loop", "translation fault level 2"),
    ("table outside RAM", "synchronous external abort on translation table walk level 1"),
])  # fmt: skip
def test_corrupt_user_tables(make_system, kind, status):
    system = make_system(nodes=2, cpus_per_node=1, workload="syscall",
                         extra_sources=(ASM / "bad_pgtable.S",))
    system.call(0, "bad_pgtable_poke", linear_offset(system), USER_ROOT, 0,
                _root_entry(system, kind))
    report = fault_of(system)
    # CPU 0 boots the others, then faults on its first user fetch
    assert (report.cpu, report.node) == (0, 0)
    assert report.pc == report.far == user_va(system, "workload_syscall")
    assert esr_class(report.esr) == EC_IABT_LOW
    assert decode_esr(report.esr) == f"instruction abort (lower EL), {status}"


def test_corrupt_kernel_root_of_one_node(make_system):
    system = make_system(nodes=2, cpus_per_node=2, ktext=True, workload="syscall", iterations=0,
                         extra_sources=(ASM / "bad_pgtable.S",))
    assert system.run(max_instructions=400_000).reason is StopReason.INSTRUCTION_LIMIT
    first, _ = system.kernel.replication.kidx
    system.call(0, "bad_pgtable_poke", linear_offset(system), 1, first, 0xDEAD_BEEF_DEAD_BEEF)
    report = fault_of(system)
    # only node 1 lost its kernel mapping: its first CPU faults entering the vectors
    assert (report.cpu, report.node) == (2, 1)
    assert report.what == "exception inside the exception vectors"
    # entering from EL0 or from EL1, depending on where the limit left it
    assert report.symbol in ("vectors+0x400", "vectors+0x200")
    assert report.far == report.pc
    assert esr_class(report.esr) == EC_IABT_CUR
    assert decode_esr(report.esr).endswith("external abort on translation table walk level 1")


def test_corrupt_kernel_root_before_secondaries_boot(make_system):
    system = make_system(nodes=2, cpus_per_node=2, ktext=True, workload="syscall",
                         extra_sources=(ASM / "bad_pgtable.S",))
    first, _ = system.kernel.replication.kidx
    system.call(0, "bad_pgtable_poke", linear_offset(system), 1, first, 0x5)
    report = fault_of(system)
    # CPU 2 switches to node 1's root, then cannot fetch secondary_start_kernel
    # and has no vectors yet
    assert (report.cpu, report.node) == (2, 1)
    assert report.what == "exception with no vector table"
    assert report.symbol == "secondary_start_kernel"
    assert esr_class(report.esr) == EC_IABT_CUR


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.integers(0, (1 << 64) - 1), kernel=st.booleans())
def test_random_root_entry_faults_cleanly_or_runs(make_system, value, kernel):
    """Whatever a root entry holds, the run ends normally or with a report."""
    system = make_system(nodes=2, cpus_per_node=1, ktext=True, workload="syscall",
                         extra_sources=(ASM / "bad_pgtable.S",))
    root, index = (1, system.kernel.replication.kidx[0]) if kernel else (USER_ROOT, 0)
    system.call(0, "bad_pgtable_poke", linear_offset(system), root, index, value)
    try:
        result = system.run(max_instructions=2_000_000)
    except GuestFault as fault:
        assert isinstance(fault.report, FaultReport)
        assert fault.report.esr is not None or fault.report.what.startswith("spinning")
    else:
        assert result.reason in (StopReason.ALL_OFF, StopReason.INSTRUCTION_LIMIT)
    system.close()


# ------------------------------------------------------------ stays usable
CASES = [
    ("bad_unmapped.S", "bad_jump", None),
    ("bad_undef.S", "bad_undef", None),
    ("bad_return.S", "bad_return", None),
    ("bad_spin.S", "bad_spin", None),
    ("bad_handler.S", "bad_user_pointer", ("bad_vector_branch", VECTOR_EL1_SPX_SYNC)),
]


def test_emulator_stays_usable_after_every_fault(make_system):
    before = make_system(nodes=2, cpus_per_node=2, workload="dbsim_tiny")
    before.run()
    expected = before.report()
    for source, workload, setup in CASES:
        system = make_system(nodes=2, cpus_per_node=2, workload=workload,
                             extra_sources=(ASM / source,))
        system.machine.watchdog = 1_000_000
        if setup is not None:
            system.call(0, setup[0], linear_alias(system, "vectors"), setup[1])
        fault_of(system)
        system.close()
    after = make_system(nodes=2, cpus_per_node=2, workload="dbsim_tiny")
    assert after.run().reason is StopReason.ALL_OFF
    assert after.report() == expected
    assert all(after.report()["checks"].values())


# -------------------------------------------------------------- CLI and JSON
def test_cli_fault_report_in_json(tmp_path, capsys):
    out = tmp_path / "fault.json"
    status = main(["run", "--nodes", "2", "--cpus-per-node", "1", "--ktext", "on",
                   "--add", str(ASM / "bad_unmapped.S"), "--workload", "bad_load",
                   "--json", str(out)])
    assert status == GuestFault.exit_status
    err = capsys.readouterr().err.splitlines()[-1:]  # after the block listing
    assert err[0].startswith("ktext-emu: error: CPU 0 (node 0): ")
    report = json.loads(out.read_text())
    assert report["complete"] is False
    (run,) = report["runs"]
    fault = run["fault"]
    assert fault["message"] == err[0].removeprefix("ktext-emu: error: ")
    assert (fault["cpu"], fault["node"]) == (0, 0)
    assert fault["symbol"] == "workload_bad_load+0x10 (user)"
    assert fault["far"] == f"{UNMAPPED + 0x133:#x}"
    assert int(fault["esr"], 16) >> 26 == EC_DABT_LOW
    assert int(fault["pc"], 16) > 0
    blocks = fault["recent_blocks"]
    assert 0 < len(blocks) <= RECENT_BLOCKS
    assert blocks[-1]["symbol"] == "el1_sync"
    assert blocks[-1]["insns"] and blocks[-1]["insns"][0]["va"] == blocks[-1]["va"]
    assert all(int(block["va"], 16) > 0 for block in blocks)


def test_cli_watchdog_option(tmp_path, capsys):
    out = tmp_path / "spin.json"
    status = main(["run", "--nodes", "2", "--cpus-per-node", "1", "--ktext", "off",
                   "--add", str(ASM / "bad_spin.S"), "--workload", "bad_spin",
                   "--watchdog", "500000", "--json", str(out), "--quiet"])
    assert status == GuestFault.exit_status
    assert "spinning: 500,000 instructions" in capsys.readouterr().err
    (run,) = json.loads(out.read_text())["runs"]
    assert run["limits"] == {"max_instructions": DEFAULT_MAX_INSTRUCTIONS, "watchdog": 500_000,
                             "max_firmware_calls": DEFAULT_MAX_FIRMWARE_CALLS,
                             "max_console_bytes": DEFAULT_MAX_CONSOLE_BYTES}
    fault = run["fault"]
    assert fault["esr"] is None and fault["far"] is None
    assert fault["symbol"].startswith("workload_bad_spin+")


# ---------------------------------------------------- kernel stack overflow
@pytest.mark.parametrize("granule", [4096, 16384, 65536])
def test_kernel_stack_overflow_hits_the_guard_page(make_system, hooks, granule):
    """A handler recursing without bound on CPU 1 faults on the unmapped page
    below its vmap'ed stack; the word just below that guard page (the top of
    CPU 0's stack) is unchanged."""
    system = make_system(nodes=1, cpus_per_node=2, granule=granule, workload="syscall",
                         extra_sources=(ASM / "bad_recursion.S",))
    assert system.run().reason is StopReason.ALL_OFF  # brings CPU 1 up
    guards = system.machine.kernel_stack_guards
    assert [cpu for _, _, cpu in guards] == [0, 1]
    start, end, _ = guards[1]
    assert end - start == system.kernel.geometry.granule
    below = start - 8  # CPU 0's stack's top word
    pa = system.machine.mmu.translate(system.machine.uc, below)
    assert pa is not None
    before = system.physmem.read_u64(pa)
    with pytest.raises(GuestFault) as caught:
        system.syscall(1, 14, max_instructions=2_000_000)
    report = caught.value.report
    assert report.cpu == 1
    assert start <= report.far < end
    # System.call reports the faulting page (Unicorn's pending VA), not the word
    assert report.what.startswith(
        f"kernel stack overflow on CPU 1 (FAR {report.far:#x} in the guard page below its stack)")
    assert system.physmem.read_u64(pa) == before


def test_cli_kernel_stack_overflow_exits_5(tmp_path):
    """Through the CLI, in a subprocess: exit 5 naming the overflow, promptly."""
    import os
    import subprocess
    import sys
    result = subprocess.run(
        [sys.executable, "-m", "emu", "run", "--nodes", "2", "--cpus-per-node", "1",
         "--ktext", "on", "--add", str(ASM / "bad_recursion.S"), "--workload", "recurse",
         "--json", str(tmp_path / "overflow.json")],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )  # fmt: skip
    assert result.returncode == GuestFault.exit_status == 5
    last = result.stderr.splitlines()[-1]
    assert "kernel stack overflow on CPU " in last
    assert "in the guard page below its stack" in last
    fault = json.loads((tmp_path / "overflow.json").read_text())["runs"][0]["fault"]
    assert "kernel stack overflow" in fault["message"]
    # the run path's exact FAR: the first 32-byte frame below the stack, none further
    assert -int(fault["far"], 16) % 4096 <= 32
