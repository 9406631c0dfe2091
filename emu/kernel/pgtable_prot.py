"""The kernel's page protections, mirroring arch/arm64/include/asm/pgtable-prot.h.

``PAGE_KERNEL``, ``PAGE_KERNEL_RO``... are Linux's choice of descriptor
attributes for each kind of mapping, so they live with the kernel; the
attribute format itself (``Prot``, AP/SH/XN bits, MAIR slots) is the
architecture's and stays in emu/hw/pagetable.py.  A module of its own, as
the header is, because hw tests that build tables by hand need these values
and nothing else of the kernel.
"""

from __future__ import annotations

from emu.hw.pagetable import AP_RO_ALL, AP_RO_EL1, AP_RW_ALL, AP_RW_EL1, MT_DEVICE_nGnRE, Prot

# pgtable-prot.h with rodata=full, no KPTI (PTE_MAYBE_NG = 0), no BTI.
# PAGE_USER is PAGE_SHARED after its first write (pte_mkdirty clears
# PTE_RDONLY): the form a software-dirty-tracking kernel leaves in a written page.
PAGE_KERNEL = Prot(ap=AP_RW_EL1, pxn=True, uxn=True, dbm=True)
PAGE_KERNEL_RO = Prot(ap=AP_RO_EL1, pxn=True, uxn=True)
PAGE_KERNEL_ROX = Prot(ap=AP_RO_EL1, uxn=True)
PAGE_KERNEL_EXEC = Prot(ap=AP_RW_EL1, uxn=True, dbm=True)
PAGE_DEVICE = Prot(attr_index=MT_DEVICE_nGnRE, ap=AP_RW_EL1, pxn=True, uxn=True, dbm=True)
PAGE_USER = Prot(ap=AP_RW_ALL, ng=True, pxn=True, uxn=True, dbm=True)
PAGE_USER_RO = Prot(ap=AP_RO_ALL, ng=True, pxn=True, uxn=True)
PAGE_USER_EXEC = Prot(ap=AP_RO_ALL, ng=True, pxn=True)
