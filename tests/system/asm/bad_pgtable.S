// A guest that corrupts its own translation tables, for
// tests/system/test_guest_faults.py.

	.include "asm-offsets.inc"

	.text

// bad_pgtable_poke(x0 = linear-map offset (VA - PA), x1 = root: -1 the user
// address space, N node N's kernel root; x2 = entry index, x3 = new value):
// store x3 into that root entry through the linear map, then invalidate
// every CPU's TLB as a table update must.
	.globl	bad_pgtable_poke
	.type	bad_pgtable_poke, %function
bad_pgtable_poke:
	cmn	x1, #1
	b.ne	1f
	adrp	x4, boot_regs
	add	x4, x4, :lo12:boot_regs
	ldr	x5, [x4, #BOOT_USER_TTBR0]
	b	2f
1:	adrp	x4, ktext_pgd_phys
	add	x4, x4, :lo12:ktext_pgd_phys
	ldr	x5, [x4, x1, lsl #3]
2:	and	x5, x5, #0x0000fffffffffffe	// TTBR.BADDR
	add	x5, x5, x0
	str	x3, [x5, x2, lsl #3]
	dsb	ishst
	tlbi	vmalle1is
	dsb	ish
	isb
	ret
	.size	bad_pgtable_poke, . - bad_pgtable_poke
