// A misbehaving EL0 task for tests/system/test_guest_faults.py: one syscall,
// then a loop that never enters the kernel again (the watchdog's case).

	.include "asm-offsets.inc"

	.section .user.text, "ax"

	.globl	workload_bad_spin
	.type	workload_bad_spin, %function
workload_bad_spin:
	mov	x8, #__NR_null
	svc	#0
	mov	x3, #0
1:	add	x3, x3, #1
	b	1b
	.size	workload_bad_spin, . - workload_bad_spin
