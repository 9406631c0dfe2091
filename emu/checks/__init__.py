"""Checkers of the emulated kernel: code that is not a Linux file.

emu/kernel/ mirrors the Linux arm64 file map (mmu.c, ktext.c, patching.c,
alternative.c...); what judges the kernel from outside lives here, so a
reader who knows Linux finds only Linux's files there:

* verify.py: the replication verifier (every node's copy against node 0's,
  what each node maps, alternatives and jump labels), the check the series
  lacks;
* icache.py: the ARM ARM's instruction-cache coherence rules for patching
  and a checker of guest patch routines against them, and an observer of
  jump label sites while keys flip.

They take an ``emu.kernel.context.KernelContext`` like kernel code does;
kernel code never imports them.
"""
