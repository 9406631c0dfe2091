// Exception vectors, kernel_entry/kernel_exit and the EL0 syscall path, as
// arch/arm64/kernel/entry.S and entry-common.c do them (without IRQs: the
// host preempts CPUs between quanta, the guest never sees an interrupt).

	.include "asm-offsets.inc"

	.macro	kernel_entry
	sub	sp, sp, #PT_REGS_SIZE
	stp	x0, x1, [sp, #16 * 0]
	stp	x2, x3, [sp, #16 * 1]
	stp	x4, x5, [sp, #16 * 2]
	stp	x6, x7, [sp, #16 * 3]
	stp	x8, x9, [sp, #16 * 4]
	stp	x10, x11, [sp, #16 * 5]
	stp	x12, x13, [sp, #16 * 6]
	stp	x14, x15, [sp, #16 * 7]
	stp	x16, x17, [sp, #16 * 8]
	stp	x18, x19, [sp, #16 * 9]
	stp	x20, x21, [sp, #16 * 10]
	stp	x22, x23, [sp, #16 * 11]
	stp	x24, x25, [sp, #16 * 12]
	stp	x26, x27, [sp, #16 * 13]
	stp	x28, x29, [sp, #16 * 14]
	mrs	x21, sp_el0
	mrs	x22, elr_el1
	mrs	x23, spsr_el1
	stp	x30, x21, [sp, #S_LR]
	stp	x22, x23, [sp, #S_PC]
	.endm

	.macro	kernel_exit
	ldp	x22, x23, [sp, #S_PC]
	ldp	x30, x21, [sp, #S_LR]
	msr	elr_el1, x22
	msr	spsr_el1, x23
	msr	sp_el0, x21
	ldp	x0, x1, [sp, #16 * 0]
	ldp	x2, x3, [sp, #16 * 1]
	ldp	x4, x5, [sp, #16 * 2]
	ldp	x6, x7, [sp, #16 * 3]
	ldp	x8, x9, [sp, #16 * 4]
	ldp	x10, x11, [sp, #16 * 5]
	ldp	x12, x13, [sp, #16 * 6]
	ldp	x14, x15, [sp, #16 * 7]
	ldp	x16, x17, [sp, #16 * 8]
	ldp	x18, x19, [sp, #16 * 9]
	ldp	x20, x21, [sp, #16 * 10]
	ldp	x22, x23, [sp, #16 * 11]
	ldp	x24, x25, [sp, #16 * 12]
	ldp	x26, x27, [sp, #16 * 13]
	ldp	x28, x29, [sp, #16 * 14]
	add	sp, sp, #PT_REGS_SIZE
	eret
	.endm

	.macro	ventry	label
	.balign	128
	b	\label
	.endm

	.text
	.balign	2048
	.globl	vectors
	.type	vectors, %function
vectors:
	ventry	el1_bad			// Synchronous EL1t
	ventry	el1_bad			// IRQ EL1t
	ventry	el1_bad			// FIQ EL1t
	ventry	el1_bad			// Error EL1t
	ventry	el1_sync		// Synchronous EL1h
	ventry	el1_bad			// IRQ EL1h
	ventry	el1_bad			// FIQ EL1h
	ventry	el1_bad			// Error EL1h
	ventry	el0_sync		// Synchronous 64-bit EL0
	ventry	el0_bad			// IRQ 64-bit EL0
	ventry	el0_bad			// FIQ 64-bit EL0
	ventry	el0_bad			// Error 64-bit EL0
	ventry	el0_bad			// Synchronous 32-bit EL0
	ventry	el0_bad			// IRQ 32-bit EL0
	ventry	el0_bad			// FIQ 32-bit EL0
	ventry	el0_bad			// Error 32-bit EL0
	.balign	128
	.size	vectors, . - vectors

	.type	el0_sync, %function
el0_sync:
	kernel_entry
	mrs	x24, esr_el1
	lsr	x25, x24, #ESR_ELx_EC_SHIFT
	cmp	x25, #ESR_ELx_EC_SVC64
	b.ne	el0_fault
el0_svc:
	cmp	x8, #__NR_syscalls
	b.hs	1f
	adrp	x16, sys_call_table
	add	x16, x16, :lo12:sys_call_table
	ldr	x16, [x16, x8, lsl #3]
	blr	x16
	b	2f
1:	mov	x0, #-ENOSYS
2:	str	x0, [sp, #S_X0]
	.globl	ret_to_user
ret_to_user:
	kernel_exit
	.size	el0_sync, . - el0_sync

// Faults the kernel does not handle: an EL0 abort (a real kernel would send
// SIGSEGV) and anything synchronous at EL1.  Both panic through the
// firmware, which stops the run with a report.
	.type	el0_fault, %function
el0_fault:
el0_bad:
el1_sync:
el1_bad:
	mrs	x1, esr_el1
	mrs	x2, far_el1
	mrs	x3, elr_el1
	mrs	x4, spsr_el1
	ldr	x0, =KTEXT_SIP_PANIC
	smc	#0
	b	.
	.size	el0_fault, . - el0_fault

// panic(x1 = reason code): a kernel-detected error with no exception behind it.
	.globl	panic
	.type	panic, %function
panic:
	mov	x2, #0
	mrs	x3, elr_el1
	mov	x4, x30
	ldr	x0, =KTEXT_SIP_PANIC
	smc	#0
	b	.
	.size	panic, . - panic
