// A misbehaving EL0 task for tests/system/test_guest_faults.py: one good
// syscall, then a permanently undefined instruction.

	.include "asm-offsets.inc"

	.section .user.text, "ax"

	.globl	workload_bad_undef
	.type	workload_bad_undef, %function
workload_bad_undef:
	mov	x8, #__NR_null
	svc	#0
	udf	#0x1234
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_bad_undef, . - workload_bad_undef

	.text

// A kernel function that executes an undefined instruction (System.call).
	.globl	bad_kernel_udf
	.type	bad_kernel_udf, %function
bad_kernel_udf:
	udf	#0x5678
	ret
	.size	bad_kernel_udf, . - bad_kernel_udf
