// Test-only kernel code, linked into the shipped kernel with --add.

	.text
	.globl	test_ttbr1_switch
	.type	test_ttbr1_switch, %function
// test_ttbr1_switch(x0 = VA to read, x1 = new TTBR1_EL1):
// x2 = value before, x3 = after `msr ttbr1_el1` without TLB maintenance,
// x4 = after `tlbi vmalle1`; the old TTBR1 is restored (break-before-make).
test_ttbr1_switch:
	mrs	x9, ttbr1_el1
	ldr	x2, [x0]
	msr	ttbr1_el1, x1
	isb
	ldr	x3, [x0]
	tlbi	vmalle1
	dsb	nsh
	isb
	ldr	x4, [x0]
	msr	ttbr1_el1, x9
	isb
	tlbi	vmalle1
	dsb	nsh
	isb
	ret
	.size	test_ttbr1_switch, . - test_ttbr1_switch
