"""Fuzz targets for every kind of file ktext-emu reads, and the engine that runs them.

Owns the long-running fuzzers of GitHub issue 7: one target per input kind
(``elf``: the ELF reader and KernelImage on top; ``asm``: the assembler front
end with keystone in its guarded worker; ``ldscript``: the linker-script
parser and the linker; ``toml``: machine files; ``pagetable``: the stage-1
walk over random guest memory; ``boot``: a damaged kernel ELF booted and
run, as ``ktext-emu run --kernel`` does; ``sweep``: sweep grids and the
files ``--resume`` reads), the verdict of one case (clean result,
documented EmuError, or a failure: a traceback, a broken property, a hang,
a crash), and the supervisor that keeps a crashing or hanging case from
ending the run.

Run ``python -m fuzz --target elf --seconds 60`` (``--target all`` runs
every target in turn, ``--list`` names them, ``--replay FILE`` re-runs one
saved input with its traceback). The bounded properties of tests/fuzz/ run
the same targets with a few hundred examples each.
"""
