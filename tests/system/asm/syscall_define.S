// A kernel function made system call 13 with SYSCALL_DEFINE, and a user
// workload calling it: sys_triple(x) = 3 * x + task-independent 1.
	.include "asm-offsets.inc"
	.include "syscall.inc"

	.text
	.globl	sys_triple
	.type	sys_triple, %function
sys_triple:
	add	x0, x0, x0, lsl #1
	add	x0, x0, #1
	ret
	.size	sys_triple, . - sys_triple
	SYSCALL_DEFINE 13, sys_triple

	.section .user.text, "ax"
	.globl	workload_triple
	.type	workload_triple, %function
workload_triple:
	mov	x19, x0
	mov	x8, #13
	svc	#0				// x0 = 3 * task + 1
	add	x1, x19, x19, lsl #1
	add	x1, x1, #1
	cmp	x0, x1
	cset	x0, ne				// exit 0 when the kernel agreed
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_triple, . - workload_triple

// A second handler with no SYSCALL_DEFINE, for --syscall NR=SYMBOL.
	.text
	.globl	sys_plus_seven
	.type	sys_plus_seven, %function
sys_plus_seven:
	add	x0, x0, #7
	ret
	.size	sys_plus_seven, . - sys_plus_seven
