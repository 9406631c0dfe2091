// A system call whose handler recurses without bound, for
// tests/system/test_guest_faults.py: each frame pushes 32 bytes until the
// store below the kernel stack hits its unmapped guard page.
	.include "asm-offsets.inc"
	.include "syscall.inc"

	.text
	.globl	sys_recurse
	.type	sys_recurse, %function
sys_recurse:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	str	x0, [sp, #16]
	add	x0, x0, #1
	bl	sys_recurse
	ldp	x29, x30, [sp], #32
	ret
	.size	sys_recurse, . - sys_recurse
	SYSCALL_DEFINE 14, sys_recurse

	.section .user.text, "ax"
	.globl	workload_recurse
	.type	workload_recurse, %function
workload_recurse:
	mov	x8, #14
	svc	#0
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_recurse, . - workload_recurse
