// Address translation instructions for tests/hw/test_mmu_differential.py:
// each returns PAR_EL1 after an AT of x0 (Unicorn's own QEMU walker).
	.text
	.globl	at_s1e1r
	.type	at_s1e1r, %function
at_s1e1r:
	at	s1e1r, x0
	isb
	mrs	x0, par_el1
	ret
	.size	at_s1e1r, . - at_s1e1r

	.globl	at_s1e1w
	.type	at_s1e1w, %function
at_s1e1w:
	at	s1e1w, x0
	isb
	mrs	x0, par_el1
	ret
	.size	at_s1e1w, . - at_s1e1w
