	.arch armv8-a
	.file	"wordstat_kernel.c"
	.text
#APP
	.globl __ktext_syscall_15
	.set __ktext_syscall_15, sys_wordstat
#NO_APP
	.align	2
	.p2align 4,,11
	.global	kernel_wordstat_score
	.type	kernel_wordstat_score, %function
kernel_wordstat_score:
	adrp	x1, .LANCHOR0
	adrp	x8, .LANCHOR1
	mov	x9, 899
	add	x8, x8, :lo12:.LANCHOR1
	ldr	x1, [x1, #:lo12:.LANCHOR0]
	mov	x7, 0
	movk	x9, 0x739d, lsl 16
	mov	x6, 435
	movk	x9, 0xfb0, lsl 32
	add	x10, x8, 96
	ldr	x5, [x8, x7, lsl 3]
	eor	x0, x0, x1
	mov	w2, 114
	movk	x9, 0x1465, lsl 48
	movk	x6, 0x100, lsl 32
	cbz	w2, .L2
	.p2align 3,,7
.L13:
	mov	x3, x5
	mov	x1, x9
	.p2align 3,,7
.L3:
	uxtw	x4, w2
	ldrb	w2, [x3, 1]!
	eor	x1, x4, x1
	mul	x1, x1, x6
	cbnz	w2, .L3
	eor	x0, x1, x0
	mov	w1, 0
	.p2align 3,,7
.L4:
	mov	w3, w1
	add	w1, w1, 1
	ldrb	w2, [x5, w1, uxtw]
	cbnz	w2, .L4
	mov	x1, 31
	cmp	w3, 8
	bhi	.L5
	ldr	x1, [x10, w3, uxtw 3]
.L5:
	madd	x0, x1, x0, x7
	add	x7, x7, 1
	cmp	x7, 12
	beq	.L6
.L14:
	ldr	x1, [x8, x7, lsl 3]
	ldr	x5, [x8, x7, lsl 3]
	ldrb	w2, [x1]
	cbnz	w2, .L13
.L2:
	eor	x0, x0, x9
	mov	x1, 31
	madd	x0, x1, x0, x7
	add	x7, x7, 1
	cmp	x7, 12
	bne	.L14
.L6:
	adrp	x2, .LANCHOR2
	ldr	x1, [x2, #:lo12:.LANCHOR2]
	add	x1, x1, 1
	str	x1, [x2, #:lo12:.LANCHOR2]
	ret
	.size	kernel_wordstat_score, .-kernel_wordstat_score
	.align	2
	.p2align 4,,11
	.global	sys_wordstat
	.type	sys_wordstat, %function
sys_wordstat:
	b	kernel_wordstat_score
	.size	sys_wordstat, .-sys_wordstat
	.global	kernel_wordstat_calls
	.global	kernel_wordstat_seed
	.section	.rodata.str1.8,"aMS",@progbits,1
	.align	3
.LC0:
	.string	"replicate"
	.align	3
.LC1:
	.string	"kernel"
	.align	3
.LC2:
	.string	"text"
	.align	3
.LC3:
	.string	"per"
	.align	3
.LC4:
	.string	"node"
	.align	3
.LC5:
	.string	"so"
	.align	3
.LC6:
	.string	"every"
	.align	3
.LC7:
	.string	"cpu"
	.align	3
.LC8:
	.string	"fetches"
	.align	3
.LC9:
	.string	"locally"
	.align	3
.LC10:
	.string	"numa"
	.align	3
.LC11:
	.string	"arm64"
	.section	.rodata
	.align	3
	.set	.LANCHOR1,. + 0
	.type	words, %object
	.size	words, 96
words:
	.xword	.LC0
	.xword	.LC1
	.xword	.LC2
	.xword	.LC3
	.xword	.LC4
	.xword	.LC5
	.xword	.LC6
	.xword	.LC7
	.xword	.LC8
	.xword	.LC9
	.xword	.LC10
	.xword	.LC11
	.type	CSWTCH.6, %object
	.size	CSWTCH.6, 72
CSWTCH.6:
	.xword	3
	.xword	5
	.xword	7
	.xword	11
	.xword	13
	.xword	17
	.xword	19
	.xword	23
	.xword	29
	.data
	.align	3
	.set	.LANCHOR0,. + 0
	.type	kernel_wordstat_seed, %object
	.size	kernel_wordstat_seed, 8
kernel_wordstat_seed:
	.xword	-7046029254386353131
	.bss
	.align	3
	.set	.LANCHOR2,. + 0
	.type	kernel_wordstat_calls, %object
	.size	kernel_wordstat_calls, 8
kernel_wordstat_calls:
	.zero	8
	.ident	"GCC: (Debian 12.2.0-14) 12.2.0"
	.section	.note.GNU-stack,"",@progbits
