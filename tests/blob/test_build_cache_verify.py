"""The shipped-kernel cache verifies its entries (issue 17, item 9): each ELF
has a sidecar with its SHA-256, written after it; an entry whose bytes do not
match (one instruction changed, one bit of sys_call_table flipped, no
sidecar) is rebuilt and said once on stderr; a cache directory that cannot be
written means the run goes on uncached, not an error.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from emu.blob import build
from emu.blob.elf import read_elf

ROOT = Path(__file__).resolve().parents[2]


def sidecar(path: Path) -> Path:
    """The digest file of a cache entry: its name plus .sha256."""
    return path.with_name(path.name + ".sha256")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> tuple[Path, bytes]:
    """The real shipped kernel built into a cache of its own, and its bytes."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get(build.CACHE_ENV)
    os.environ[build.CACHE_ENV] = str(cache)
    try:
        path = build.shipped_kernel_elf()
    finally:
        if old is None:
            del os.environ[build.CACHE_ENV]
        else:
            os.environ[build.CACHE_ENV] = old
    return path, path.read_bytes()


@pytest.fixture
def entry(shipped, monkeypatch) -> Path:
    """A fresh copy of the verified cache entry, with its sidecar."""
    path, data = shipped
    monkeypatch.setenv(build.CACHE_ENV, str(path.parent))
    path.write_bytes(data)
    sidecar(path).write_text(f"{hashlib.sha256(data).hexdigest()}  {path.name}\n")
    return path


def _file_offset(data: bytes, symbol: str, path: Path) -> int:
    """Where ``symbol``'s first bytes sit in the file (found by content)."""
    image = read_elf(path)
    value = image.symbol_value(symbol)
    head = image.read(value, 32)
    offset = data.find(head)
    assert offset > 0 and data.find(head, offset + 1) == -1
    return offset


def _corrupt_and_reload(entry: Path, data: bytes, offset: int, capsys) -> str:
    corrupt = bytearray(data)
    corrupt[offset] ^= 0x01
    entry.write_bytes(bytes(corrupt))
    assert build.shipped_kernel_elf() == entry
    assert entry.read_bytes() == data  # rebuilt, not trusted
    err = capsys.readouterr().err
    assert build.shipped_kernel_elf() == entry  # the rebuilt entry verifies: said once
    assert capsys.readouterr().err == ""
    return err


@pytest.mark.parametrize("symbol", ["start_kernel", "sys_call_table"])
def test_a_flipped_bit_in_a_cached_kernel_is_rebuilt_and_said(entry, shipped, symbol, capsys):
    _, data = shipped
    err = _corrupt_and_reload(entry, data, _file_offset(data, symbol, entry), capsys)
    assert err.count("\n") == 1
    assert "does not match its SHA-256 digest: rebuilding it" in err
    assert str(entry) in err


def test_an_entry_without_its_digest_is_rebuilt(entry, shipped, capsys):
    sidecar(entry).unlink()
    assert build.shipped_kernel_elf() == entry
    assert "has no digest" in capsys.readouterr().err
    assert sidecar(entry).read_text().split()[0] == hashlib.sha256(
        shipped[1]).hexdigest()  # fmt: skip


def test_a_verified_entry_is_used_silently(entry, capsys):
    inode = entry.stat().st_ino
    assert build.shipped_kernel_elf() == entry
    assert entry.stat().st_ino == inode  # not rebuilt: a store renames a new file in
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("cache", ["/proc/ktext-emu-cache", "{file}/cache"],
                         ids=["unwritable", "under a file"])
def test_an_unwritable_cache_runs_uncached(tmp_path, cache):
    afile = tmp_path / "afile"
    afile.write_text("")
    env = dict(os.environ, PYTHONPATH=str(ROOT), KTEXT_EMU_CACHE=cache.format(file=afile),
               TMPDIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "emu", "run", "--iterations", "2", "--quiet"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "running uncached" in lines[0]  # said once for both runs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # the private copy is gone


def _fake_entries(directory: Path, count: int, start: float) -> list[Path]:
    """``count`` entry-named ELFs with sidecars, used one minute apart from ``start``."""
    paths = []
    for index in range(count):
        path = directory / f"kernel-{index:024x}.elf"
        path.write_bytes(b"\x7fELF" + bytes(60))
        sidecar(path).write_text("0\n")
        os.utime(path, (start + 60 * index, start + 60 * index))
        paths.append(path)
    return paths


def test_the_cache_keeps_the_most_recently_used_entries(tmp_path) -> None:
    """Beyond the limit the least recently used go, sidecar first; an entry
    used within the grace period, the one just stored and files that are not
    entries stay."""
    old = _fake_entries(tmp_path, 10, start=1_000_000.0)
    (tmp_path / "notes.txt").write_text("mine")
    recent = tmp_path / f"kernel-{99:024x}.elf"
    recent.write_bytes(b"x")  # mtime now: inside the grace period
    removed = build.prune_cache(tmp_path, keep=old[0], max_entries=4, grace_seconds=600)
    assert sorted(removed) == sorted(old[1:7])  # 11 entries, keep 4 newest + old[0]
    for path in old[1:7]:
        assert not path.exists() and not sidecar(path).exists()
    for path in (*old[7:], old[0], recent, tmp_path / "notes.txt"):
        assert path.exists()


def test_a_hit_marks_the_entry_used(entry) -> None:
    os.utime(entry, (1_000_000, 1_000_000))
    assert build.shipped_kernel_elf() == entry
    assert entry.stat().st_mtime > 1_000_000 + 86400


def test_storing_an_entry_prunes_the_cache(shipped, tmp_path, monkeypatch) -> None:
    _path, data = shipped
    monkeypatch.setenv(build.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(build, "MAX_CACHE_ENTRIES", 3)
    stale = _fake_entries(tmp_path, 5, start=1_000_000.0)
    built = build.shipped_kernel_elf()
    assert built.parent == tmp_path and built.read_bytes() == data
    left = sorted(tmp_path.glob("kernel-*.elf"))
    assert built in left and len(left) == 3
    assert [p for p in stale if p.exists()] == stale[-2:]
