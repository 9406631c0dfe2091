	.arch armv8-a
	.file	"wordstat.c"
	.text
	.align	2
	.p2align 4,,11
	.global	wordstat_score
	.type	wordstat_score, %function
wordstat_score:
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
	.size	wordstat_score, .-wordstat_score
	.section	.rodata.str1.8,"aMS",@progbits,1
	.align	3
.LC0:
	.string	"task "
	.align	3
.LC1:
	.string	": wordstat_score = 0x"
	.align	3
.LC2:
	.string	", but the kernel says 0x"
	.text
	.align	2
	.p2align 4,,11
	.global	workload_wordstat
	.type	workload_wordstat, %function
workload_wordstat:
	stp	x29, x30, [sp, -144]!
	mov	x11, x0
	sub	x13, x1, #1
	mov	x29, sp
	mov	x12, 0
	b	.L17
	.p2align 2,,3
.L36:
	cmp	x12, x13
	bhi	.L16
.L17:
	mov	x0, x11
	bl	wordstat_score
	mov	x8, 15
	mov	x5, x0
	mov	x1, 0
	mov	x0, x11
#APP
// 120 "wordstat.c" 1
	svc #0
// 0 "" 2
#NO_APP
	add	x12, x12, 1
	mov	x6, x0
	cmp	x5, x0
	beq	.L36
.L16:
	adrp	x2, .LC0
	add	x1, sp, 48
	add	x2, x2, :lo12:.LC0
	mov	w0, 116
	.p2align 3,,7
.L18:
	strb	w0, [x1], 1
	ldrb	w0, [x2, 1]!
	cbnz	w0, .L18
	mov	x9, -3689348814741910324
	mov	x0, 1
	movk	x9, 0xcccd, lsl 0
	.p2align 3,,7
.L19:
	umulh	x3, x11, x9
	add	x2, sp, 24
	add	x4, x2, x0
	mov	x7, x11
	mov	x8, x0
	add	x0, x0, 1
	lsr	x3, x3, 3
	add	x2, x3, x3, lsl 2
	sub	x2, x11, x2, lsl 1
	mov	x11, x3
	add	w2, w2, 48
	strb	w2, [x4, -1]
	cmp	x7, 9
	bhi	.L19
	sxtw	x8, w8
	mov	x0, x8
	add	x4, x1, x8
	.p2align 3,,7
.L20:
	add	x2, sp, 24
	add	x3, x2, x0
	neg	x2, x0
	sub	x0, x0, #1
	ldrb	w3, [x3, -1]
	strb	w3, [x4, x2]
	cbnz	w0, .L20
	adrp	x3, .LC1
	add	x1, x1, x8
	add	x3, x3, :lo12:.LC1
	mov	w0, 58
	.p2align 3,,7
.L21:
	mov	x2, x1
	strb	w0, [x1], 1
	ldrb	w0, [x3, 1]!
	cbnz	w0, .L21
	adrp	x3, .LANCHOR1
	add	x8, x3, :lo12:.LANCHOR1
	add	x7, x8, 168
	mov	w3, 60
	.p2align 3,,7
.L22:
	lsr	x4, x5, x3
	and	x4, x4, 15
	sub	w3, w3, #4
	ldrb	w0, [x7, x4]
	strb	w0, [x1], 1
	cmn	w3, #4
	bne	.L22
	add	x1, x2, 17
	cmp	x5, x6
	beq	.L23
	adrp	x2, .LC2
	add	x2, x2, :lo12:.LC2
	mov	w0, 44
	.p2align 3,,7
.L24:
	mov	x4, x1
	strb	w0, [x1], 1
	ldrb	w0, [x2, 1]!
	cbnz	w0, .L24
	add	x3, x8, 168
	mov	w0, 60
	.p2align 3,,7
.L25:
	lsr	x2, x6, x0
	and	x2, x2, 15
	sub	w0, w0, #4
	ldrb	w2, [x3, x2]
	strb	w2, [x1], 1
	cmn	w0, #4
	bne	.L25
	add	x1, x4, 17
.L23:
	mov	w2, 10
	strb	w2, [x1], 1
	add	x0, sp, 48
	mov	x8, 3
	sub	x1, x1, x0
#APP
// 120 "wordstat.c" 1
	svc #0
// 0 "" 2
#NO_APP
	cmp	x5, x6
	mov	x8, 1
	cset	x0, ne
	mov	x1, 0
#APP
// 120 "wordstat.c" 1
	svc #0
// 0 "" 2
#NO_APP
.L26:
	b	.L26
	.size	workload_wordstat, .-workload_wordstat
	.global	wordstat_calls
	.global	wordstat_seed
	.section	.rodata.str1.8
	.align	3
.LC3:
	.string	"replicate"
	.align	3
.LC4:
	.string	"kernel"
	.align	3
.LC5:
	.string	"text"
	.align	3
.LC6:
	.string	"per"
	.align	3
.LC7:
	.string	"node"
	.align	3
.LC8:
	.string	"so"
	.align	3
.LC9:
	.string	"every"
	.align	3
.LC10:
	.string	"cpu"
	.align	3
.LC11:
	.string	"fetches"
	.align	3
.LC12:
	.string	"locally"
	.align	3
.LC13:
	.string	"numa"
	.align	3
.LC14:
	.string	"arm64"
	.section	.rodata
	.align	3
	.set	.LANCHOR1,. + 0
	.type	words, %object
	.size	words, 96
words:
	.xword	.LC3
	.xword	.LC4
	.xword	.LC5
	.xword	.LC6
	.xword	.LC7
	.xword	.LC8
	.xword	.LC9
	.xword	.LC10
	.xword	.LC11
	.xword	.LC12
	.xword	.LC13
	.xword	.LC14
	.type	CSWTCH.14, %object
	.size	CSWTCH.14, 72
CSWTCH.14:
	.xword	3
	.xword	5
	.xword	7
	.xword	11
	.xword	13
	.xword	17
	.xword	19
	.xword	23
	.xword	29
	.type	digits.0, %object
	.size	digits.0, 17
digits.0:
	.string	"0123456789abcdef"
	.data
	.align	3
	.set	.LANCHOR0,. + 0
	.type	wordstat_seed, %object
	.size	wordstat_seed, 8
wordstat_seed:
	.xword	-7046029254386353131
	.bss
	.align	3
	.set	.LANCHOR2,. + 0
	.type	wordstat_calls, %object
	.size	wordstat_calls, 8
wordstat_calls:
	.zero	8
	.ident	"GCC: (Debian 12.2.0-14) 12.2.0"
	.section	.note.GNU-stack,"",@progbits
