// User-space workloads (EL0).  The host maps .user.text and .user.data into
// the one user address space every task shares, at USER_BASE; a task starts
// at workload_<name> with x0 = task number and x1 = iterations (0: forever).
// Code here may only address its own sections, PC-relative.

	.include "asm-offsets.inc"

	.section .user.text, "ax"

// syscall: tight EL0 -> EL1 -> EL0 round trips through the syscall table.
	.globl	workload_syscall
	.type	workload_syscall, %function
workload_syscall:
	mov	x19, x1
1:	mov	x0, x19
	mov	x8, #__NR_null
	svc	#0
	cbz	x19, 1b				// 0 iterations: run until stopped
	subs	x19, x19, #1
	b.ne	1b
	mov	x0, #0
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_syscall, . - workload_syscall
