// Guests whose exception handling goes wrong, for tests/system/test_guest_faults.py.
//
// workload_bad_user_pointer hands the kernel an unmapped user buffer, so the
// copy in sys_db_read faults at EL1 (there is no exception-table fixup).
// bad_vector_branch and bad_vector_poke rewrite the guest's own vector table
// through its linear-map alias, the way a patch routine writes text.

	.include "asm-offsets.inc"

	.section .user.text, "ax"

	.globl	workload_bad_user_pointer
	.type	workload_bad_user_pointer, %function
workload_bad_user_pointer:
	mov	x0, #0				// row 0
	movz	x1, #0x7f00, lsl #32		// an unmapped "user buffer"
	movk	x1, #0x40
	mov	x2, #DB_ROW_BYTES
	mov	x8, #__NR_db_read
	svc	#0
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_bad_user_pointer, . - workload_bad_user_pointer

	.text

// bad_vector_branch(x0 = writable alias of `vectors`, x1 = vector offset):
// the vector at x1 becomes `b bad_handler`.
	.globl	bad_vector_branch
	.type	bad_vector_branch, %function
bad_vector_branch:
	adrp	x2, vectors
	add	x2, x2, :lo12:vectors
	add	x2, x2, x1
	adrp	x3, bad_handler
	add	x3, x3, :lo12:bad_handler
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
	.size	bad_vector_branch, . - bad_vector_branch

// bad_vector_poke(x0 = writable alias of `vectors`, x1 = offset, w2 = instruction)
	.globl	bad_vector_poke
	.type	bad_vector_poke, %function
bad_vector_poke:
	add	x0, x0, x1
	str	w2, [x0]
	dc	cvau, x0
	dsb	ish
	ic	ivau, x0
	dsb	ish
	isb
	ret
	.size	bad_vector_poke, . - bad_vector_poke

// An EL1 handler that faults itself: it reads the address that faulted.
	.globl	bad_handler
	.type	bad_handler, %function
bad_handler:
	mrs	x0, far_el1
	ldr	x1, [x0]
	eret
	.size	bad_handler, . - bad_handler
