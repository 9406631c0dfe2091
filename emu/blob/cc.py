"""C sources as kernel-blob input: ``--add FILE.c`` / ``--add-user FILE.c``
compile a file to GNU assembly with the AArch64 cross compiler, which our
assembler then takes like any ``.s``.

The flags make code that runs with nothing under it: no libc, no FP/SIMD
registers (the kernel saves none), absolute addresses (the image is linked
where it runs, with no dynamic relocation), no stack protector (no canary
runtime) and no unwind tables.  ``-fno-tree-loop-distribute-patterns`` stops
GCC turning loops into memset/memcpy calls, which nothing here defines.
Without the compiler the error names the exact command to run elsewhere; its
``.s`` output is then added like any assembly file.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path

from emu.errors import BlobError

CC = "aarch64-linux-gnu-gcc"
CFLAGS = (
    "-S", "-O2", "-std=gnu11", "-ffreestanding", "-fno-pic", "-fno-pie",
    "-mgeneral-regs-only", "-mcmodel=small", "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables", "-fno-unwind-tables",
    "-fno-tree-loop-distribute-patterns", "-mno-outline-atomics",
    "-mbranch-protection=none", "-fno-common",
)  # fmt: skip
C_SUFFIXES = (".c",)


def is_c_source(path: Path) -> bool:
    return Path(path).suffix in C_SUFFIXES


def gcc_command(source: Path, output: Path) -> list[str]:
    """The command that compiles ``source`` to ``output`` (assembly)."""
    return [CC, *CFLAGS, str(source), "-o", str(output)]


def compiler_version() -> str:
    """The cross compiler's first --version line ("" without it): part of the build key."""
    if shutil.which(CC) is None:
        return ""
    try:
        result = subprocess.run([CC, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.splitlines()[0] if result.stdout else ""


def compile_c(source: Path, out_dir: Path) -> Path:
    """Compile ``source`` into ``out_dir``; the ``.s`` path.  A BlobError
    with the compiler's own messages, or with the command to run where a
    cross compiler is installed."""
    source = Path(source)
    if not source.is_file():
        raise BlobError(f"source file {source} does not exist")
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    output = Path(out_dir) / f"{source.stem}-{digest}.s"
    if shutil.which(CC) is None:
        command = shlex.join(gcc_command(source, source.with_suffix(".s")))
        raise BlobError(
            f"{source}: {CC} is not on PATH, so the C file cannot be compiled here; run "
            f"`{command}` (Debian: apt-get install gcc-aarch64-linux-gnu) and add the .s instead"
        )
    try:
        result = subprocess.run(gcc_command(source, output), capture_output=True, text=True,
                                timeout=300)
    except (OSError, subprocess.SubprocessError) as err:
        raise BlobError(f"{source}: cannot run {CC}: {err}") from None
    if result.returncode != 0:
        first = next((line for line in result.stderr.splitlines() if "error" in line),
                     result.stderr.strip().splitlines()[0] if result.stderr.strip() else "")
        raise BlobError(f"{source}: {CC} failed: {first}")
    return output
