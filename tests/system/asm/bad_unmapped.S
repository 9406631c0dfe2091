// Misbehaving EL0 tasks for tests/system/test_guest_faults.py: a branch into
// memory nothing maps, and a load from it.

	.include "asm-offsets.inc"

	.section .user.text, "ax"

// Calls a function pointer to an address no table maps.
	.globl	workload_bad_jump
	.type	workload_bad_jump, %function
workload_bad_jump:
	movz	x2, #0x7f00, lsl #32
	blr	x2
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_bad_jump, . - workload_bad_jump

// Loads from an unmapped address that is not page aligned (FAR must be exact).
	.globl	workload_bad_load
	.type	workload_bad_load, %function
workload_bad_load:
	mov	x8, #__NR_null
	svc	#0
	movz	x2, #0x7f00, lsl #32
	movk	x2, #0x0123
	ldr	x3, [x2, #0x10]
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_bad_load, . - workload_bad_load
