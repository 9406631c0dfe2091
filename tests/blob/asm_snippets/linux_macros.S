// Macros in the style of arch/arm64/include/asm/assembler.h and alternative-macros.h,
// written from their documented behaviour.
	.macro	mov_q, reg, val
	.if (((\val) >> 31) == 0 || ((\val) >> 31) == 0x1ffffffff)
	movz	\reg, :abs_g1_s:\val
	.else
	.if (((\val) >> 47) == 0 || ((\val) >> 47) == 0x1ffff)
	movz	\reg, :abs_g2_s:\val
	.else
	movz	\reg, :abs_g3:\val
	movk	\reg, :abs_g2_nc:\val
	.endif
	movk	\reg, :abs_g1_nc:\val
	.endif
	movk	\reg, :abs_g0_nc:\val
	.endm

	.macro	adr_l, dst, sym
	adrp	\dst, \sym
	add	\dst, \dst, :lo12:\sym
	.endm

	.macro	ldr_l, dst, sym, tmp=
	.ifb	\tmp
	adrp	\dst, \sym
	ldr	\dst, [\dst, :lo12:\sym]
	.else
	adrp	\tmp, \sym
	ldr	\dst, [\tmp, :lo12:\sym]
	.endif
	.endm

	.macro	str_l, src, sym, tmp
	adrp	\tmp, \sym
	str	\src, [\tmp, :lo12:\sym]
	.endm

	.macro altinstruction_entry orig_offset alt_offset feature orig_len alt_len
	.word \orig_offset - .
	.word \alt_offset - .
	.hword (\feature)
	.byte \orig_len
	.byte \alt_len
	.endm

	.macro alternative_insn insn1, insn2, cap, enable = 1
	.if \enable
661:	\insn1
662:	.pushsection .altinstructions, "a"
	altinstruction_entry 661b, 663f, \cap, 662b-661b, 664f-663f
	.popsection
	.subsection 1
663:	\insn2
664:	.org	. - (664b-663b) + (662b-661b)
	.org	. - (662b-661b) + (664b-663b)
	.previous
	.endif
	.endm

	.macro	save_regs, base, regs:vararg
	.irp	r, \regs
	str	\r, [\base], #8
	.endr
	.endm

	.macro	counted
	.word	\@
	.endm

	.text
	.globl	entry
	.type	entry, %function
entry:
	mov_q	x0, 0x0000000012345678
	mov_q	x1, 0xffffffff87654321
	mov_q	x2, 0x0000123456789abc
	mov_q	x3, 0x123456789abcdef0
	mov_q	x4, -5
	adr_l	x5, shared_data
	ldr_l	x6, shared_data
	ldr_l	w7, shared_word, x8
	str_l	x9, shared_data, x10
	alternative_insn "dsb ish", "nop", 5
	alternative_insn "mov x0, #1", "mov x0, #2", 7
	alternative_insn "isb", "nop", 9, 0
	save_regs x20, x0, x1, x2, x3
	counted
	counted
1:	b	1b
	.rept	3
	add	x0, x0, #1
	.endr
	.irpc	n, 0123
	mov	x\n, #\n
	.endr
	ret
	.size	entry, . - entry

	.data
	.align	3
	.globl	shared_data
shared_data:
	.quad	entry, entry + 8, shared_word
shared_word:
	.word	0x11223344
	.word	shared_word - shared_data
	.word	entry - .
