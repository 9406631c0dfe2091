// A workload that prints one line per task through the puts syscall.
	.include "asm-offsets.inc"

	.section .user.text, "ax"
	.globl	workload_hello
	.type	workload_hello, %function
workload_hello:
	adrp	x0, .Lhello
	add	x0, x0, :lo12:.Lhello
	mov	x1, #HELLO_LEN
	mov	x8, #__NR_puts
	svc	#0
	mov	x0, #0
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_hello, . - workload_hello
.Lhello:
	.ascii	"hello from a task\n"
	.set	HELLO_LEN, . - .Lhello
