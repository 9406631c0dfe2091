"""Paths of the replay tests' committed real excerpts (data/README.md) and of
the Debian kernel files they are checked against when present."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
QEMU_EXEC = DATA / "debian61-boot-exec-nochain.log"
QEMU_INASM = DATA / "debian61-boot-inasm-exec-nochain.log"
DEBIAN_MAP = DATA / "debian61-System.map-excerpt"
PERF_SAMPLES = DATA / "x86-host-perf-samples.txt"
PERF_F = DATA / "x86-host-perf-samples-F-cpu-ip-sym.txt"
PERF_CALLCHAIN = DATA / "x86-host-perf-samples-callchain.txt"
X86_MAP = DATA / "x86-host-kallsyms-excerpt"
DEBIAN_IMAGE = Path("/work/cache/debian-arm64/image/boot/vmlinuz-6.1.0-57-arm64")
DEBIAN_FULL_MAP = Path("/work/cache/debian-arm64/dbg/usr/lib/debug/boot/System.map-6.1.0-57-arm64")
