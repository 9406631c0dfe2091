// Bindings, types, sizes, local and numeric labels, references between sections.
	.text
	.globl	gfunc
	.weak	wfunc
	.type	gfunc, %function
	.type	wfunc, @function
	.type	lobj, %object
gfunc:	nop
lfunc:	nop
wfunc:	nop
	b	gfunc
	bl	gfunc
	b	lfunc
	b	wfunc
	cbz	x0, gfunc
	adr	x0, gfunc
	adr	x1, lfunc
	ldr	x0, gfunc
	b	.+8
	bl	.-4
	tbz	w3, #5, lfunc
	tbnz	x3, 40, 1f
	b.ne	1f
	bne	1f
1:	cbnz	w1, 1b
1:	b	1b
	b	ext_func
	bl	ext_func + 8
	adrp	x0, ext_data + 16
	adrp	x1, lobj
	add	x1, x1, :lo12:lobj
	ldr	x2, [x1, #:lo12:lobj+8]
	ldrb	w2, [x1, :lo12:lobj]
	ldrh	w2, [x1, :lo12:lobj]
	ldrsw	x2, [x1, :lo12:lobj]
	ldr	q2, [x1, :lo12:lobj]
	str	wzr, [x1, :lo12:lobj]
	strb	w2, [x1, :lo12:ext_data]
	movz	x3, #:abs_g3:ext_data
	movk	x3, #:abs_g2_nc:ext_data
	movk	x3, #:abs_g1_nc:ext_data
	movk	x3, #:abs_g0_nc:ext_data
	movz	x4, #:abs_g0:small
	movz	x4, #:abs_g2:small
	mov	x5, #(2f - 1b)
	.size	gfunc, . - gfunc
2:	ret
	.data
	.type	lobj, %object
	.size	lobj, 16
lobj:	.quad	lfunc, gfunc
	.word	gfunc - .
	.word	lfunc - .
	.word	gfunc - lfunc
	.quad	lfunc + 4
	.byte	lfunc - gfunc
	.quad	1b + 8
	.word	ext_data - .
	.word	ext_data - lobj + 4
	.quad	ext_data + 4
	.quad	ext_data - 4
	.quad	. + 4
	.hword	ext_data
	.hword	ext_data - .
	.xword	ext_data - .
	.local	small
	.set	small, 0x1234
	.set	alias, lobj + 8
	.quad	alias
	.globl	absolute_global
	absolute_global = 0x4000
	.text
	.equ	UART_BASE, 0x9000000
	adrp	x0, UART_BASE
	adrp	x2, 0x12345678
