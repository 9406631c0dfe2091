// GCC-style operands and the instruction forms keystone gets wrong by itself.
	.text
	stp	x29, x30, [sp, -32]!
	ldp	x29, x30, [sp], 32
	ldr	x0, [x0, 8]
	str	w1, [sp, 28]
	ldrb	w1, [x0, 1]
	ldr	w0, [x1, x2, lsl 2]
	ldr	x0, [x1, w2, sxtw 3]
	add	x0, x1, x2, lsl 3
	movk	x0, 0x1234, lsl 16
	mov	w0, 5
	mov	x0, -1
	mov	w0, 0xffffffff
	mov	x0, 0x10000
	mov	x0, 0xffff0000ffff
	mov	x0, 0x5555555555555555
	mov	x0, 0xfffffffffffffffe
	mov	w1, -0x80000000
	mov	x29, sp
	mov	sp, x29
	cmp	w0, 255
	cmp	x0, #-5
	cmn	x0, -4096
	add	x0, x1, #-4096
	sub	w0, w0, #-16
	adds	x0, x0, #0x1000
	and	w0, w0, 255
	and	x0, x0, #0xffffffff00000000
	tst	w0, 0x80000000
	orr	x0, x0, 0xff00
	eor	w3, w3, #-2
	ubfx	x0, x1, 3, 4
	lsl	x0, x1, 3
	asr	w0, w1, 31
	tbz	x0, 3, .
	csel	x0, x1, x2, eq
	csinc	w0, w1, w2, HS
	cset	w0, ne
	ccmp	x0, 3, 2, le
	prfm	pldl1keep, [x2, #1]
	prfm	pstl2strm, [x2, -8]
	prfm	pldl1keep, [x2, #8]
	uxtw	x0, w1
	cmp	x0, x1, sxtw
	add	x0, x1, x2, uxtw 2
	fcmp	d0, #0
	mov	x0, ip0
	mov	ip1, x1
	MOV	X2, X3
	LDR	X0, [SP, #8]
	b.EQ	.
	paciasp
	autiasp
	pacibsp
	bti	c
	bti
	bti	jc
	csdb
	esb
	psb	csync
	tsb	csync
	dgh
	xpaclri
	sb
	ssbb
	pssbb
	retaa
	udf	#0x1234
	pacia	x0, x1
	autdb	x3, sp
	paciza	x5
	xpaci	x6
	pacga	x0, x1, x2
	braa	x1, x2
	blraaz	x3
	msr	pan, #1
	msr	uao, #0
	msr	dit, #1
	msr	ssbs, #0
	msr	daifset, #0xf
	msr	daifclr, #2
	msr	spsel, #1
	mrs	x0, pan
	msr	pan, x0
	mrs	x0, id_aa64mmfr2_el1
	mrs	x1, ttbr1_el2
	msr	sctlr_el12, x2
	mrs	x3, ttbr1_el1
	msr	ttbr0_el1, xzr
	mrs	x4, s3_0_c15_c2_0
	dc	cvap, x0
	dc	cvadp, x1
	dc	civac, x2
	ic	ivau, x3
	tlbi	vae1is, x4
	tlbi	vmalle1
	dsb	ish
	isb
	at	s1e1r, x0
	sys	#0, c7, c5, #0, x1
	ldaprb	w0, [x1]
	ldaprh	w0, [sp]
	ldapr	x2, [x3]
	ldapr	w2, [x3]
	strb	w16, [x16, 220]!
	stxr	w0, x0, [x1]
	svc	0
	hvc	#0
	brk	#0x800
	eret
	wfi
	yield
	fmov	d0, xzr
	fmov	d1, #1.5
	ldr	q0, [x0, 16]
	stp	q0, q1, [sp, -32]!
	mov	v0.16b, v1.16b
	ld1	{v0.16b, v1.16b}, [x0]
