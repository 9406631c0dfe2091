// Data, alignment, fill and symbol directives.
	.text
	.byte	1
	.align	3
	.byte	2
	.balign	8, 0x11
	.byte	3, 4, 5
	.p2align 4,,7
	.byte	6
	.p2align 4,,11
	.byte	7, 0
	.balignw 8, 0x1234
	.balignl 16, 0xaabbccdd
	.fill	2, 8, -1
	.fill	1, 3, 0x11223344
	.fill	3
	.skip	3, 0x55
	.space	2
	.zero	2
	.hword	0xbeef, -2
	.short	7
	.2byte	8
	.word	0xdeadbeef, -1
	.long	1
	.int	2
	.4byte	3
	.quad	0x0123456789abcdef
	.8byte	-1
	.xword	5
	.dword	6
	.ascii	"abc\n\t\"\\\101\x42"
	.asciz	"z"
	.string	"two", "strings"
	.ascii	"a" "b"
	.align	2
	.inst	0xd503201f, 0xd65f03c0
	.byte	'a', '\n', 0b101, 010, 0x1f, 'z
	.byte	4 + 1 & 1, 1 << 2 + 1, 3 == 1 + 2, 1 + 2 == 3
	.byte	(1 || 0), (2 && 3), !5, ~0, -7 / 2, -7 % 3, 1 ! 2
	.quad	-1 >> 1, (-8) >> 1
	.equ	ANSWER, 42
	.set	DOUBLE, ANSWER * 2
	TRIPLE = ANSWER * 3
	.byte	ANSWER, DOUBLE, TRIPLE
	.set	DOUBLE, 1
	.byte	DOUBLE
	.word	LATER
	.set	LATER, 0x1234
	.data
	.byte	1
	.align	3
	.byte	2
	.p2align 2, 0x77
	.org	16, 0x99
	.word	1
	.org	. + 3
	.byte	9
	.section .rodata.str1.1, "aMS", @progbits, 1
	.string	"merge me"
	.section .bss
	.skip	16
	.lcomm	lbuf, 24
	.section .noinit, "aw", @nobits
	.zero	4
	.section .init_array, "aw"
	.align	3
	.quad	0
	.section custom, "ax"
	nop
	.pushsection .data.pushed, "aw"
	.word	0xabcd
	.popsection
	ret
	.previous
	.word	0xfeed
	.text
	.subsection 1
	.byte	9
	.subsection 0
	.byte	8
	.align	2
	.section .note.GNU-stack, "", @progbits
