// Literal pools: placement, alignment, sharing of identical entries.
	.text
f:
	ldr	x0, =0x123456789
	ldr	w1, =0x12345
	ldr	x2, =0x123456789
	ldr	x3, =ext_sym
	ldr	w4, =0x12345
	ldr	x5, =5
	ldr	w6, =ext_sym2
	ldr	x7, =ext_sym + 8
	ldr	x8, =local_target
	ldr	x9, =local_target
	ldr	x10, =ext_sym+4+4
	nop
	.ltorg
local_target:
	ldr	x8, =0x123456789
	ldr	w9, =-1
	.byte	1
	.pool
	ldr	x11, =0xfeedfacecafebeef
	.section .text.other, "ax", @progbits
	ldr	x0, =0x99999
	.word	1
	.data
	.word	0x77
