"""The pure parts of benchmarks/realkernel: the newc writer and the
log-to-figures analysis, on hand-made logs and on the committed excerpt of a
real capture (tests/replay/data).  QEMU itself is not run here."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.realkernel import analyse, guest, measure
from benchmarks.realkernel.initramfs import Entry, init_archive, newc_archive

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "replay" / "data"
FOOTPRINT = ROOT / "emu" / "data" / "footprint" / "debian-6.1-arm64.json"

VECTORS = 0xFFFF800008010800
USER_NM = """\
0000000000400100 000000000000000c T sc_getppid
000000000040010c 000000000000000c T sc_ctl_write
0000000000400200 0000000000000040 T ktm_main
"""
KMAP = """\
ffff800008010000 T _stext
ffff800008010800 T vectors
ffff800008011000 T el0_svc
ffff800008011100 t do_getppid
ffff800008011200 T irq_handler
ffff800008020000 D _etext
ffff800009660000 T _sinittext
ffff8000096d5f98 T _einittext
"""


def read_newc(blob: bytes) -> list[tuple[str, int, int, int, bytes]]:
    """An independent reader: (name, mode, rdevmajor, rdevminor, data) per member."""
    out, pos = [], 0
    while True:
        assert blob[pos:pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(blob[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = blob[pos + 110: pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        data = blob[pos: pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            assert pos == len(blob)
            return out
        out.append((name, fields[1], fields[9], fields[10], data))


def test_newc_archive_round_trips_files_and_device_nodes():
    members = read_newc(init_archive(b"\x7fELF" + b"x" * 13))
    by_name = {m[0]: m for m in members}
    assert by_name["init"][4] == b"\x7fELF" + b"x" * 13
    assert stat.S_ISREG(by_name["init"][1]) and by_name["init"][1] & 0o111
    assert stat.S_ISCHR(by_name["dev/null"][1]) and by_name["dev/null"][2:4] == (1, 3)
    assert by_name["dev/zero"][2:4] == (1, 5)
    assert by_name["dev/console"][2:4] == (5, 1)
    assert stat.S_ISDIR(by_name["dev"][1])


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 111])
def test_newc_pads_every_member_to_four_bytes(size):
    blob = newc_archive([Entry("f", stat.S_IFREG | 0o644, data=b"a" * size)])
    assert len(blob) % 4 == 0
    assert read_newc(blob)[0][4] == b"a" * size


def _in_block(start: int, mnemonics: list[str]) -> list[str]:
    lines = ["----------------\n", "IN: \n"]
    for i, mnem in enumerate(mnemonics):
        lines.append(f"0x{start + 4 * i:016x}:  d503201f  {mnem}\n")
    return [*lines, "\n"]


def _trace(cpu: int, pc: int) -> str:
    return f"Trace {cpu}: 0x7f0000001000 [0000000000007001/{pc:016x}/00000021/ff080200] \n"


def _symbols():
    kernel, every = analyse.parse_system_map(KMAP.splitlines())
    return kernel, every, measure.user_symbols(USER_NM)


def test_stopped_line_drops_the_block_that_did_not_run():
    log = [*_in_block(0x400100, ["mov", "svc"]), *_in_block(0xFFFF800008011000, ["nop"] * 3),
           _trace(0, 0x400100), _trace(1, 0x400100), _trace(0, 0xFFFF800008011000),
           "Stopped execution of TB chain before 0x7f0000001000 [ffff800008011000] \n",
           _trace(1, 0xFFFF800008011000)]
    blocks = list(analyse.parse_log(log))
    assert [(b.cpu, b.pc, b.insns) for b in blocks] == [
        (0, 0x400100, 2), (1, 0x400100, 2), (1, 0xFFFF800008011000, 3)]


def _trace_cflags(cpu: int, pc: int, cflags: int) -> str:
    return f"Trace {cpu}: 0x7f0000001000 [0000000000007001/{pc:016x}/00000021/{cflags:08x}] \n"


def test_cut_translations_count_only_their_instructions():
    """-icount cuts a block to its remaining budget: the cut listing must not
    shrink the pc's full block, and the Trace's cflags count rules."""
    pc = 0xFFFF800008011000
    log = [*_in_block(pc, ["nop"] * 5), _trace(0, pc),
           *_in_block(pc, ["nop"] * 2), _trace_cflags(0, pc, 0xFF020202), _trace(0, pc)]
    assert [b.insns for b in analyse.parse_log(log)] == [5, 2, 5]


def test_rewound_block_counts_up_to_the_io_instruction():
    pc = 0xFFFF800008011000
    log = [*_in_block(pc, ["nop"] * 6), *_in_block(pc + 12, ["ldr"]),
           *_in_block(pc + 16, ["nop", "ret"]),
           _trace(0, pc), "cpu_io_recompile: rewound execution of TB to ffff800008011000\n",
           _trace_cflags(0, pc + 12, 0xFF028001), _trace(0, pc + 16)]
    assert [(b.pc - pc, b.insns) for b in analyse.parse_log(log)] == [(0, 3), (12, 1), (16, 2)]


def test_qemu_command_has_the_measurement_switches():
    cmd = guest.qemu_command("qemu-system-aarch64", Path("Image"), Path("initrd"),
                             Path("mon.sock"), cpu="cortex-a72", smp=2, iters=7, warmup=3,
                             icount_shift=0)
    assert cmd[cmd.index("-icount") + 1] == "shift=0"
    append = cmd[cmd.index("-append") + 1].split()
    assert {"nokaslr", "console=ttyAMA0", "ktm_iters=7", "ktm_warmup=3", "ktm_cpus=2",
            "ktm_mode=0"} <= set(append)
    assert cmd[cmd.index("-monitor") + 1] == "unix:mon.sock,server=on,wait=off"
    assert "-icount" not in guest.qemu_command("q", Path("I"), Path("i"), Path("m"),
                                               cpu="max", smp=1, iters=1, warmup=0)


def test_blocks_translated_before_the_log_are_counted_not_guessed():
    unknown: Counter = Counter()
    blocks = list(analyse.parse_log([_trace(0, 0x1234)], unknown=unknown))
    assert blocks == [] and unknown == {0x1234: 1}


@pytest.mark.parametrize("bad, lineno", [
    (["Trace x: nonsense\n"], 1),
    ([*_in_block(0x1000, ["nop"])[:3], "garbage inside a block\n"], 4),
    (["\n", "what is this\n"], 2),
])
def test_malformed_log_names_the_line(bad, lineno):
    with pytest.raises(analyse.LogFormatError, match=f"line {lineno}:"):
        list(analyse.parse_log(bad))


def test_excursions_are_named_by_the_svc_wrapper_or_the_vector():
    kernel, every, user = _symbols()
    k = 0xFFFF800008011000
    log = [
        *_in_block(0x400100, ["mov", "svc"]), *_in_block(0x400200, ["add", "b"]),
        *_in_block(0x40010C, ["mov", "svc"]),
        *_in_block(VECTORS + 0x400, ["b"]), *_in_block(VECTORS + 0x480, ["b"]),
        *_in_block(VECTORS + 0x280, ["b"]),
        *_in_block(k, ["nop"] * 4), *_in_block(k + 0x100, ["nop"] * 8),
        *_in_block(k + 0x200, ["nop"] * 2),
        # getppid with an EL1 interrupt inside, then an EL0 irq taken on the
        # way out (no user block in between), then user code, a control write.
        _trace(0, 0x400100), _trace(0, VECTORS + 0x400), _trace(0, k), _trace(0, k + 0x100),
        _trace(0, VECTORS + 0x280), _trace(0, k + 0x200),
        _trace(0, VECTORS + 0x480), _trace(0, k + 0x200),
        _trace(0, 0x400200), _trace(0, 0x40010C), _trace(0, VECTORS + 0x400), _trace(0, k),
        _trace(0, 0x400200),
    ]
    table = analyse.TranslationTable()
    excs = list(analyse.excursions(analyse.parse_log(log, table), table, user, every["vectors"]))
    assert [(e.kind, e.insns) for e in excs] == [
        ("getppid", 1 + 4 + 8 + 1 + 2), ("el0_irq", 1 + 2), ("control", 1 + 4)]
    fp = analyse.accumulate(excs, table, kernel)
    insns, nbytes, lines, funcs = fp.calls["getppid"][0]
    assert insns == 16
    assert nbytes == 4 * (1 + 4 + 8 + 1 + 2)
    assert funcs == 4  # vectors, el0_svc, do_getppid, irq_handler
    assert lines == len({a // 64 for a in fp.addrs["getppid"]})
    assert fp.uninterrupted["getppid"] == []  # the EL1 entry at vectors+0x280
    assert fp.uninterrupted["el0_irq"] == [3]


def test_size_distribution_percentiles():
    d = analyse.size_distribution(range(1, 101))
    assert d["count"] == 100 and d["mean"] == 50.5
    assert d["p50"] == 50.5 and d["p10"] == pytest.approx(10.9) and d["p99"] == 99.0  # 99.01, to 0.1
    assert analyse.size_distribution([])["count"] == 0


def test_text_share_splits_main_init_other():
    _, every, _ = _symbols()
    addrs = {0xFFFF800008011000, 0xFFFF800008011004, 0xFFFF800009660000, 0xFFFF80000A000000}
    assert analyse.text_share(addrs, every) == {
        "stext_etext_bytes": 8, "init_text_bytes": 4, "other_bytes": 4}


@pytest.fixture(scope="module")
def excerpt_figures():
    with open(DATA / "qemu-exec-debian-6.1.txt") as log, open(DATA / "System.map-excerpt") as m:
        return measure.analyse_log(log, list(m), None, (DATA / "ktm-init.nm").read_text())


def test_excerpt_is_small_and_self_contained(excerpt_figures):
    assert (DATA / "qemu-exec-debian-6.1.txt").stat().st_size < 300_000
    assert excerpt_figures["log"]["records_without_translation"] == 0
    assert set(excerpt_figures["log"]["records_by_cpu"]) == {"0", "1"}


def test_excerpt_getppid_matches_the_committed_full_run(excerpt_figures):
    """The excerpt is a short capture of the same kernel and init (stream mode):
    its getppid calls take the same steady path as the committed figures' (the
    median is exact: the path is deterministic; the mean is not, interrupts
    land where they land)."""
    got = excerpt_figures["syscalls"]["getppid"]
    full = json.loads(FOOTPRINT.read_text())["syscalls"]["getppid"]
    assert got["calls"] >= 20 and set(got["calls_by_cpu"]) == {"0", "1"}
    assert got["instructions_per_call_median"] == full["instructions_per_call_median"]
    assert got["text_bytes_per_call"] == full["text_bytes_per_call"]
    assert got["lines_per_call"] == full["lines_per_call"]
    assert got["functions_per_call"] == full["functions_per_call"]
    for name in ("el0_svc", "invoke_syscall", "__arm64_sys_getppid", "ret_to_user"):
        assert name in got["functions"]


@pytest.mark.oracle
@pytest.mark.skipif(shutil.which(measure.CROSS_GCC) is None, reason="needs aarch64-linux-gnu-gcc")
def test_init_builds_with_one_svc_per_wrapper(tmp_path):
    init, nm = measure.build_init(tmp_path)
    dump = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(init)], check=True,
                          capture_output=True, text=True).stdout
    syms = measure.user_symbols(nm.read_text())
    wrappers = {name for name in syms.names if name.startswith("sc_")}
    assert {f"sc_{n}" for n in measure.MEASURED} <= wrappers
    svc_owner = Counter()
    for line in dump.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].strip().startswith("svc"):
            svc_owner[syms.lookup(int(parts[0].strip().rstrip(":"), 16))] += 1
    assert svc_owner == {name: 1 for name in wrappers}
    assert len({syms.address(n) for n in wrappers}) == len(wrappers)  # none folded
