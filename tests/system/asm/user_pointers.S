// A user workload written the way GCC writes C: a table of pointers to
// string constants (absolute addresses, R_AARCH64_ABS64), the strings in
// .user.rodata, a global in .user.data and a counter in .user.bss.  It sums
// the bytes of every string through the table and exits with 0 when the sum
// and the globals are what the host expects (USER_POINTERS_SUM), else 1.

	.include "asm-offsets.inc"

	.section .user.rodata, "a"
.Lstr0:	.asciz	"alpha"
.Lstr1:	.asciz	"beta"
.Lstr2:	.asciz	"gamma"

	.section .user.data, "aw"
	.balign	8
	.globl	user_words
	.type	user_words, %object
user_words:
	.xword	.Lstr0, .Lstr1, .Lstr2, 0
	.size	user_words, . - user_words

	.section .user.bss, "aw", %nobits
	.balign	8
	.globl	user_runs
	.type	user_runs, %object
user_runs:
	.zero	8
	.size	user_runs, . - user_runs

	.section .user.text, "ax"
	.globl	workload_user_pointers
	.type	workload_user_pointers, %function
workload_user_pointers:
	ldr	x9, =user_words			// an absolute address from the literal pool
	mov	x10, #0				// sum
1:	ldr	x11, [x9], #8
	cbz	x11, 3f
2:	ldrb	w12, [x11], #1
	add	x10, x10, x12
	cbnz	w12, 2b
	b	1b
3:	adrp	x13, user_runs
	add	x13, x13, :lo12:user_runs
	ldr	x14, [x13]
	add	x14, x14, #1
	str	x14, [x13]
	mov	x0, #0
	movz	x15, #1445			// 'alpha'+'beta'+'gamma' byte sums
	cmp	x10, x15
	cset	x0, ne
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_user_pointers, . - workload_user_pointers
	.pool
