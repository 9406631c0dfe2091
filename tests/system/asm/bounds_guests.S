// Guests that only the host-work bounds stop, for tests/system/test_bounds.py:
// CPUs waiting in wfi or wfe, a console flood, a firmware-call loop, tasks
// that spin without ever finishing.

	.include "asm-offsets.inc"

	.section .user.text, "ax"

// Every task waits for an interrupt that never comes.
	.globl	workload_wfi_loop
	.type	workload_wfi_loop, %function
workload_wfi_loop:
1:	wfi
	b	1b
	.size	workload_wfi_loop, . - workload_wfi_loop

// The task on CPU 0 waits forever; the others finish.
	.globl	workload_wfi_cpu0
	.type	workload_wfi_cpu0, %function
workload_wfi_cpu0:
	cbnz	x0, 2f
1:	wfi
	b	1b
2:	mov	x0, #0
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_wfi_cpu0, . - workload_wfi_cpu0

// wfe with nobody sending an event: an idle spin.
	.globl	workload_wfe_loop
	.type	workload_wfe_loop, %function
workload_wfe_loop:
1:	wfe
	b	1b
	.size	workload_wfe_loop, . - workload_wfe_loop

// 4 KiB of the task's own stack to the console, forever.
	.globl	workload_puts_flood
	.type	workload_puts_flood, %function
workload_puts_flood:
	sub	x19, sp, #4096
1:	mov	x0, x19
	mov	x1, #4096
	mov	x8, #__NR_puts
	svc	#0
	b	1b
	.size	workload_puts_flood, . - workload_puts_flood

// Every task spins at EL0 without entering the kernel again.
	.globl	workload_spin_all
	.type	workload_spin_all, %function
workload_spin_all:
1:	b	1b
	.size	workload_spin_all, . - workload_spin_all

	.text

// An smc loop with a function ID no firmware implements (SMCCC: NOT_SUPPORTED).
	.globl	bounds_smc_loop
	.type	bounds_smc_loop, %function
bounds_smc_loop:
	movz	x0, #0x8200, lsl #16
	movk	x0, #0x0123
	smc	#0
	b	bounds_smc_loop
	.size	bounds_smc_loop, . - bounds_smc_loop

// bounds_vector_to_smc_loop(x0 = writable alias of `vectors`, x1 = vector
// offset): the vector at x1 becomes `b bounds_smc_loop`.
	.globl	bounds_vector_to_smc_loop
	.type	bounds_vector_to_smc_loop, %function
bounds_vector_to_smc_loop:
	adrp	x2, vectors
	add	x2, x2, :lo12:vectors
	add	x2, x2, x1
	adrp	x3, bounds_smc_loop
	add	x3, x3, :lo12:bounds_smc_loop
	sub	x3, x3, x2
	ubfx	x3, x3, #2, #26
	movz	w4, #0x1400, lsl #16		// B imm26
	orr	w3, w3, w4
	add	x0, x0, x1
	str	w3, [x0]
	dc	cvau, x0
	dsb	ish
	ic	ivau, x0
	dsb	ish
	isb
	ret
	.size	bounds_vector_to_smc_loop, . - bounds_vector_to_smc_loop

// bounds_mmu_off: clear SCTLR_EL1.M while running at a kernel VA (the
// instruction after the isb is fetched with stage 1 off).
	.globl	bounds_mmu_off
	.type	bounds_mmu_off, %function
bounds_mmu_off:
	mrs	x0, sctlr_el1
	bic	x0, x0, #1
	msr	sctlr_el1, x0
	isb
	nop
	ret
	.size	bounds_mmu_off, . - bounds_mmu_off

// bounds_illegal_eret: an exception return to EL2h, which an EL1 kernel
// cannot return to (an illegal exception return: PSTATE.IL set, EL kept).
	.globl	bounds_illegal_eret
	.type	bounds_illegal_eret, %function
bounds_illegal_eret:
	mov	x0, #0x3c9			// DAIF masked, EL2h
	msr	spsr_el1, x0
	adr	x1, 1f
	msr	elr_el1, x1
	eret
1:	nop
	nop
	b	1b
	.size	bounds_illegal_eret, . - bounds_illegal_eret

// bounds_vector_to_illegal_eret(x0 = writable alias of `vectors`, x1 = vector
// offset): the vector at x1 becomes `b bounds_illegal_eret`.
	.globl	bounds_vector_to_illegal_eret
	.type	bounds_vector_to_illegal_eret, %function
bounds_vector_to_illegal_eret:
	adrp	x2, vectors
	add	x2, x2, :lo12:vectors
	add	x2, x2, x1
	adrp	x3, bounds_illegal_eret
	add	x3, x3, :lo12:bounds_illegal_eret
	sub	x3, x3, x2
	ubfx	x3, x3, #2, #26
	movz	w4, #0x1400, lsl #16		// B imm26
	orr	w3, w3, w4
	add	x0, x0, x1
	str	w3, [x0]
	dc	cvau, x0
	dsb	ish
	ic	ivau, x0
	dsb	ish
	isb
	ret
	.size	bounds_vector_to_illegal_eret, . - bounds_vector_to_illegal_eret
