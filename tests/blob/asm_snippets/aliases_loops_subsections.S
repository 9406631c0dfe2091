// Macro counters in loops, empty .irp, .rept counts from label differences, weak/global
// ordering, global aliases (relocations name the alias), subsections and .previous.
	.macro m2 n
	.rept 2
	.byte \n, \@
	.endr
	.endm
	m2 5
	m2 6
	.irp x
	.byte 7
	.endr
a:	.skip 3
b:
	.rept b - a
	.byte 9
	.endr
	.globl gsym
	.weak gsym
	.weak w2
	.globl w2
gsym:	.byte 1
w2:	.byte 2
	.set alias, gsym
	.globl alias
	.quad alias, gsym, w2
	.data
dl:	.quad 0
	.set eqd, dl + 4
	.globl eqd
	.quad eqd
	.text
	.subsection 2
sub2:	nop
	.size sub2, . - sub2
	.subsection 0
	.balign 4
	adrp x0, sub2
	.align 3
	.balign 16, 0xaa, 3
	nop
	.data
	.text
	.text
	.previous
	.word 0x11
	.pushsection .pushed, "a"
	.previous
	.byte 0x22
	.popsection
	.previous
	.word 0x33
	.balign 4
