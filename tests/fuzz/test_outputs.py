"""Fuzzed inputs through the real command line, and atomic outputs.

Through ``ktext-emu`` (a fresh process, as a user runs it) a damaged input
gives exit status 0 or its error class's status with one ``ktext-emu:
error:`` line and never a Python traceback; a failed build leaves an
existing output untouched; and every output written through emu.fileio is
either the complete new file or the old one, whatever fails and wherever.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emu.errors import OutputError
from emu.fileio import atomic_output
from fuzz.targets import elf as elf_target
from fuzz.targets import ldscript as ldscript_target

REPO = Path(__file__).resolve().parents[2]
CLI_CASES = 4  # each case is a fresh interpreter: keep the count small


def ktext_emu(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "emu", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def assert_clean_exit(proc: subprocess.CompletedProcess[str], error_status: int) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 0:
        return
    assert proc.returncode == error_status, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ktext-emu: error: "), proc.stderr


@settings(max_examples=CLI_CASES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(elf_target.damaged_kernel())
def test_symbols_and_disasm_of_a_damaged_elf(tmp_path_factory, data: bytes) -> None:
    work = tmp_path_factory.mktemp("elf")
    (work / "k.elf").write_bytes(data)
    assert_clean_exit(ktext_emu("symbols", "k.elf", cwd=work), 4)
    assert_clean_exit(ktext_emu("disasm", "k.elf", "--symbol", "start_kernel", cwd=work), 4)


@pytest.mark.slow
@settings(max_examples=2, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(ldscript_target.strategy())
def test_build_with_a_damaged_script_keeps_the_old_output(tmp_path_factory, data: bytes) -> None:
    work = tmp_path_factory.mktemp("build")
    (work / "k.ld").write_bytes(data)
    old = b"the previous image\n"
    (work / "out.elf").write_bytes(old)
    proc = ktext_emu("build", "-T", "k.ld", "-o", "out.elf", cwd=work)
    assert_clean_exit(proc, 4)
    if proc.returncode:
        assert (work / "out.elf").read_bytes() == old
    assert sorted(p.name for p in work.iterdir()) == ["k.ld", "out.elf"]  # no temporaries


def test_a_build_that_fails_leaves_the_old_output(tmp_path: Path) -> None:
    (tmp_path / "bad.S").write_text("nop\n.quad undefined_symbol\n")
    (tmp_path / "out.elf").write_bytes(b"old")
    proc = ktext_emu("build", "bad.S", "-o", "out.elf", cwd=tmp_path)
    assert_clean_exit(proc, 4)
    assert proc.returncode == 4 and "undefined" in proc.stderr
    assert (tmp_path / "out.elf").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.S", "out.elf"]


class _Failure(Exception):
    pass


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    old=st.one_of(st.none(), st.binary(max_size=64)),
    chunks=st.lists(st.binary(max_size=256), max_size=6),
    fail_after=st.one_of(st.none(), st.integers(0, 6)),
    text=st.booleans(),
)
def test_atomic_output_is_all_new_or_all_old(tmp_path_factory, old, chunks, fail_after, text):
    directory = tmp_path_factory.mktemp("atomic")
    target = directory / "report.out"
    if old is not None:
        target.write_bytes(old)
    new = [c.decode("latin-1") for c in chunks] if text else chunks
    try:
        with atomic_output(target, "w" if text else "wb") as handle:
            for index, chunk in enumerate(new):
                if fail_after == index:
                    raise _Failure
                handle.write(chunk)
            if fail_after is not None and fail_after >= len(new):
                raise _Failure
    except _Failure:
        assert (target.read_bytes() if old is not None else None) == old
    else:
        expected = "".join(new).encode("utf-8") if text else b"".join(new)
        assert target.read_bytes() == expected
    assert [p.name for p in directory.iterdir()] == ([] if not target.exists() else [target.name])


def test_atomic_output_refuses_a_directory_and_an_unwritable_place(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a directory"), atomic_output(tmp_path):
        pass
    with pytest.raises(OutputError, match="cannot write"), atomic_output(
        tmp_path / "missing" / "x.json"
    ):
        pass
