// What `gcc -S` emits: the workload function in .text, not .user.text.
	.text
	.globl	workload_in_text
	.type	workload_in_text, %function
workload_in_text:
	mov	x0, #0
	mov	x8, #1
	svc	#0
	.size	workload_in_text, . - workload_in_text
