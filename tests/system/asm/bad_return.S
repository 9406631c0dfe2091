// A misbehaving EL0 task for tests/system/test_guest_faults.py: it returns
// from its entry point instead of calling exit(), like a main() with no libc
// behind it; x30 still holds whatever the kernel left there.

	.include "asm-offsets.inc"

	.section .user.text, "ax"

	.globl	workload_bad_return
	.type	workload_bad_return, %function
workload_bad_return:
	mov	x0, #7
	ret
	.size	workload_bad_return, . - workload_bad_return
