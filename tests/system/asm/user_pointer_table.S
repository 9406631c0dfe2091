// The pointer-table case with only the sections every kernel.ld had
// (.user.text, .user.data): `.xword .Lstr` is an absolute address, which
// faulted with FAR in the kernel range while user sections were linked at a
// kernel VA.  Exits 0 when the bytes read through the table sum to 1445.
	.include "asm-offsets.inc"

	.section .user.data, "aw"
	.balign	8
table:
	.xword	.Lalpha, .Lbeta, .Lgamma, 0

	.section .user.text, "ax"
	.globl	workload_user_pointer_table
	.type	workload_user_pointer_table, %function
workload_user_pointer_table:
	adrp	x9, table
	add	x9, x9, :lo12:table
	mov	x10, #0
1:	ldr	x11, [x9], #8
	cbz	x11, 3f
2:	ldrb	w12, [x11], #1
	add	x10, x10, x12
	cbnz	w12, 2b
	b	1b
3:	mov	x15, #1445
	cmp	x10, x15
	cset	x0, ne
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_user_pointer_table, . - workload_user_pointer_table
.Lalpha:	.asciz	"alpha"
.Lbeta:		.asciz	"beta"
.Lgamma:	.asciz	"gamma"
