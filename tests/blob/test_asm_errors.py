"""Bad input: one-line FILE:LINE errors, never a traceback and never a dead process."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.blob.asm import assemble_file, assemble_source
from emu.blob.ksworker import KeystoneWorker, screen, shared_worker
from emu.errors import AsmError, BlobError

PLACE = re.compile(r"^[^\n]+:\d+: [^\n]+$")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("nop\n\n  bogus x0, x1\n", r"^t\.S:3: unknown instruction 'bogus'"),
        ("nop\n.frobnicate 1\n", r"^t\.S:2: unknown directive .frobnicate$"),
        ("mov x0, #70000\n", r"^t\.S:1: immediate 0x11170 cannot be moved into x0 with one instruction"),
        ("ldadd x0, x1, [x2]\n", r"^t\.S:1: LSE atomic 'ldadd' is not supported"),
        ("casal x0, x1, [x2]\n", r"^t\.S:1: LSE atomic 'casal' is not supported"),
        ("add x0, x1\n", r"^t\.S:1: invalid operands in 'add x0, x1'"),
        ("ldr x1, [x1], 8\n", r"^t\.S:1: .* CONSTRAINED UNPREDICTABLE"),
        ("b 1f\n", r"^t\.S:1: reference to local label 1f, which is never defined"),
        ("b 1b\n", r"^t\.S:1: backward reference 1b"),
        ("mov x0, #(1 +)\n", r"^t\.S:1: unexpected .\). in expression"),
        ("nop\n/* never closed\nnop\n", r"^t\.S:2: unterminated /\* comment"),
        ('.ascii "open\n', r"^t\.S:1: unterminated string"),
        (".byte 1,\n", r"^t\.S:1: missing value"),
        ('.section .x, "q"\n', r"^t\.S:1: unknown section flag"),
        (".section .x, @nobits\n", r"^t\.S:1: section flags must be a quoted string"),
        (".align 40\n", r"^t\.S:1: alignment 2\*\*40 out of range"),
        (".skip -1\n", r"^t\.S:1: negative size"),
        (".skip 0x10000000\n", r"^t\.S:1: section .text larger than"),
        (".type f, %gnu_indirect_function\n", r"^t\.S:1: unsupported symbol type"),
        ("1: nop\n.size f, undefined_end - f\nf:\n", r"^t\.S:2: "),
        ("x", r"^t\.S:1: unknown instruction 'x'"),
        ("\x00\x01\x02", r"^t\.S:1: junk at the start of the statement"),
        ("ldr x0, =1, 2\n", r"^t\.S:1: "),
        ("ldr sp, =1\n", r"^t\.S:1: no literal pool load into sp"),
        ("str x0, =1\n", r"^t\.S:1: '=' literals are only allowed"),
        ("label: label:\n", r"^t\.S:1: symbol 'label' is already defined"),
        ("mov x0, x31\n", r"^t\.S:1: immediate must be an absolute expression"),
    ],
)
def test_errors_name_file_and_line(source, message):
    with pytest.raises(AsmError) as err:
        assemble_source(source, "t.S")
    assert PLACE.match(str(err.value)), str(err.value)
    assert re.search(message, str(err.value)), str(err.value)
    assert isinstance(err.value, BlobError) and err.value.loc is not None


def test_first_error_in_source_order_is_reported():
    with pytest.raises(AsmError, match=r"^t\.S:2: "):
        assemble_source("nop\nadd x0, x1\nb nowhere_defined_locally\nmov w0, #0x100000000\n", "t.S")


def test_assemble_file_errors(tmp_path: Path):
    with pytest.raises(AsmError, match="cannot read"):
        assemble_file(tmp_path / "missing.S")
    path = tmp_path / "bad.S"
    path.write_bytes(b"nop\n\xff\xfe garbage\n")
    with pytest.raises(AsmError, match=rf"^{re.escape(str(path))}:2: "):
        assemble_file(path)


# ---------------------------------------------------------------------------
# The keystone guard


def test_texts_keystone_dies_on_are_never_sent():
    for text in (".text", ".data", "add x0, x0, :lo12:sym", "nop; nop", "nop\nnop", "b sym@plt", "x" * 300):
        assert screen(text) is not None
    assert screen("add x0, x1, #16") is None
    assert screen("ldr q0, [x0, #16]!") is None


def test_a_worker_that_dies_is_reported_and_restarted():
    """Keystone segfaults on '.text' (measured); only the worker dies."""
    worker = KeystoneWorker()
    try:
        results = worker._run_chunk(["nop", ".text", "ret", ".text", "isb"])
        assert [r.data for r in results[::2]] == [
            bytes.fromhex("1f2003d5"),
            bytes.fromhex("c0035fd6"),
            bytes.fromhex("df3f03d5"),
        ]
        assert results[1].error is not None and results[1].error.startswith("keystone crashed on '.text' (signal SIG")
        assert worker.restarts == 2
        assert worker.encode("mov x0, #1").data == bytes.fromhex("200080d2")
    finally:
        worker.close()


FAKE_WORKER = r"""
import os, signal, sys, time
from keystone import KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN, Ks
ks = Ks(KS_ARCH_ARM64, KS_MODE_LITTLE_ENDIAN)
for raw in sys.stdin:
    text = raw.rstrip("\n")
    if text.startswith("brk"):
        os.kill(os.getpid(), signal.SIGSEGV)
    if text.startswith("hlt"):
        time.sleep(60)
    sys.stdout.write("+" + bytes(ks.asm(text, 0)[0]).hex() + "\n")
    sys.stdout.flush()
"""


def test_crashing_line_becomes_its_asm_error():
    worker = KeystoneWorker(command=[sys.executable, "-c", FAKE_WORKER])
    try:
        with pytest.raises(AsmError, match=r"^k\.S:2: keystone crashed on 'brk #1' \(signal SIGSEGV\)"):
            assemble_source("nop\nbrk #1\nret\n", "k.S", worker=worker)
        obj = assemble_source("nop\nret\n", "k.S", worker=worker)
        assert bytes(obj.sections[".text"].data) == bytes.fromhex("1f2003d5c0035fd6")
    finally:
        worker.close()


def test_hanging_worker_times_out():
    worker = KeystoneWorker(timeout=1.0, command=[sys.executable, "-c", FAKE_WORKER])
    try:
        with pytest.raises(AsmError, match=r"^h\.S:1: keystone hung on 'hlt #2' \(no answer in 1 s\)"):
            assemble_source("hlt #2\n", "h.S", worker=worker)
        assert worker.encode("nop").data == bytes.fromhex("1f2003d5")
    finally:
        worker.close()


def test_encodings_are_cached():
    worker = KeystoneWorker()
    try:
        first = assemble_source("add x1, x2, #3\nadd x1, x2, #3\n", worker=worker)
        pid = worker.pid
        worker._proc.kill()  # type: ignore[union-attr]
        second = assemble_source("add x1, x2, #3\n", worker=worker)
        assert bytes(second.sections[".text"].data) == bytes(first.sections[".text"].data)[:4]
        assert worker.restarts == 0 and worker.pid == pid  # answered from the cache
    finally:
        worker.close()


def _assemble_in_child(queue) -> None:  # type: ignore[no-untyped-def]
    queue.put(bytes(assemble_source("add x1, x2, #5").sections[".text"].data))


@pytest.mark.skipif(sys.platform != "linux", reason="needs the fork start method")
def test_forked_children_get_their_own_worker():
    import multiprocessing

    worker = shared_worker()
    assert worker.encode("nop").data is not None
    parent_pid = worker.pid
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_assemble_in_child, args=(queue,))
    child.start()
    assert queue.get(timeout=30) == bytes.fromhex("41140091")
    child.join(timeout=30)
    assert child.exitcode == 0
    assert worker.pid == parent_pid and worker.encode("add x3, x4, #6").data == bytes.fromhex("83180091")


# ---------------------------------------------------------------------------
# Fuzzing: random and garbled input only ever raises AsmError

FRAGMENTS = [
    "nop", "mov", "add", "ldr", "str", "b", "bl", "adrp", "cbz", "tbz", "ldp", "stp", "msr", "mrs", "movz",
    "x0", "w1", "sp", "xzr", "[x1", "]", "]!", "#", "#1", "-", "+", "*", "/", "(", ")", ",", ":", ";", "=",
    ":lo12:", ":abs_g0:", ":got:", "1f", "1b", "1:", "foo", "foo:", ".L1", ".", "0x", "0x10", "'", '"', "\\",
    "\\@", "\\()", "//", "/*", "*/", "#", ".text", ".data", ".bss", ".section", ".pushsection", ".popsection",
    ".previous", ".byte", ".word", ".quad", ".ascii", ".asciz", ".align", ".balign", ".p2align", ".skip",
    ".fill", ".org", ".set", ".equ", ".globl", ".weak", ".type", ".size", ".macro", ".endm", ".exitm", ".rept",
    ".irp", ".irpc", ".endr", ".if", ".ifdef", ".ifc", ".ifb", ".else", ".elseif", ".endif", ".ltorg", ".inst",
    ".err", ".error", ".subsection", ".comm", ".lcomm", "%function", "@nobits", '"ax"', "eq", "lsl", "uxtw",
    "ttbr1_el1", "daifset", "\t", " ", "\n",
]  # fmt: skip


def check_only_asm_errors(source: str) -> None:
    try:
        assemble_source(source, "fuzz.S")
    except AsmError as err:
        text = str(err)
        assert "internal assembler error" not in text, text
        assert PLACE.match(text), text
        assert text.startswith("fuzz.S:")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(" ".join))
def test_fuzz_assembler_token_soup(source):
    check_only_asm_errors(source)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=80), max_size=12).map("\n".join))
def test_fuzz_random_text(source):
    check_only_asm_errors(source)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_fuzz_random_bytes(source):
    check_only_asm_errors(source)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["", "1: ", "foo: ", ".L2: "]),
            st.sampled_from(["mov", "add", "ldr", "b", "cbz", "movk", "adrp", "stp", "tbz", ".word", ".byte", ".quad"]),
            st.lists(
                st.sampled_from(["x0", "w3", "sp", "#1", "#-1", "1f", "1b", "foo", "[x1, #8]", "[sp, -16]!",
                                 ":lo12:foo", "#:abs_g1:foo", "lsl #12", "=foo", "0x7fffffff", "eq", ". - foo"]),
                max_size=4,
            ).map(", ".join),
        ).map(lambda t: f"{t[0]}{t[1]} {t[2]}"),
        max_size=20,
    ).map("\n".join)
)
def test_fuzz_plausible_programs(source):
    check_only_asm_errors(source)


class _Bug(Exception):
    """Stands for a mistake in the assembler itself."""


def _bug(*args: object, **kwargs: object) -> None:
    raise _Bug("a bug in the assembler")


def test_a_back_end_bug_is_not_turned_into_an_asm_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from emu.blob.asm import tc_aarch64

    monkeypatch.setattr(tc_aarch64, "a64fix", _bug)
    with pytest.raises(_Bug):
        assemble_source("nop\n", "t.S")


def test_a_pseudo_op_bug_is_not_turned_into_an_asm_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from emu.blob.asm import read

    monkeypatch.setitem(read.PSEUDO_OPS, ".byte", _bug)
    with pytest.raises(_Bug):
        assemble_source(".byte 1\n", "t.S")
    # The user's own mistakes around it are still AsmError at FILE:LINE.
    with pytest.raises(AsmError, match=r"^t\.S:2: unknown directive .bogus$"):
        assemble_source("nop\n.bogus\n", "t.S")


@pytest.mark.parametrize("directive", [".incbin", ".include"])
@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_incbin_or_include_of_a_device_or_fifo_says_so(tmp_path: Path, directive, kind):
    """Found, then refused as not a regular file: not "cannot find file", and a
    FIFO never blocks (issue 17, low)."""
    import os

    target = "/dev/zero"
    if kind == "fifo":
        target = str(tmp_path / "pipe")
        os.mkfifo(target)
    source = tmp_path / "t.S"
    source.write_text(f'\t.data\n\t{directive} "{target}"\n')
    with pytest.raises(AsmError, match=r"^.*t\.S:2: cannot read (include )?file .*: not a regular file"):
        assemble_file(source)
