// Kernel text patching on every node's copy: aarch64_insn_patch_text_nosync
// (arch/arm64/kernel/patching.c with the ktext hook of patch 07), the static
// key update it serves (kernel/jump_label.c, arch/arm64/kernel/jump_label.c),
// the capability bitmaps the boot-time alternatives pass fills, and the
// syscalls through which EL0 tasks use them.
//
// Cache maintenance follows the emulator's cache model (emu/kernel/cachemodel.py):
// a new instruction is guaranteed to every CPU only once the writer has
// cleaned each written word to the PoU (dc cvau), completed that (dsb ish),
// invalidated the I-cache for it (ic ivau), completed that (dsb ish); a CPU
// then fetches it after its next context synchronization event (isb,
// exception entry or return).  With CTR_EL0.IDC / DIC (ARM64_HAS_CACHE_IDC,
// ARM64_HAS_CACHE_DIC) the clean / the invalidation is not needed, and the
// alternatives below drop it.

	.include "asm-offsets.inc"
	.set	CPUCAP_EXPORT, 1
	.include "cpucaps.inc"
	.include "alternative.inc"
	.include "jump_label.inc"

	.data
	.balign	8
// lm_alias(_stext): node 0's text through the linear map, where the patching
// code writes it (the host sets it at boot).
	.globl	ktext_lm_stext
	.type	ktext_lm_stext, %object
ktext_lm_stext:
	.quad	0
	.size	ktext_lm_stext, . - ktext_lm_stext

// The capabilities of the system (bit n: cpucap n) and those whose
// alternatives were applied at boot, as cpufeature.c and alternative.c keep them.
	.globl	system_cpucaps
	.type	system_cpucaps, %object
system_cpucaps:
	.quad	0
	.size	system_cpucaps, . - system_cpucaps

	.globl	applied_alternatives
	.type	applied_alternatives, %object
applied_alternatives:
	.quad	0
	.size	applied_alternatives, . - applied_alternatives

// jump_label_mutex: serialises static key updates (a spinlock here: the
// guest has no scheduler).  jump_label_seq is odd while an update is being
// written and even once it is complete; static_key_flips counts completed
// state changes, patch_text_count completed aarch64_insn_patch_text_nosync calls.
	.globl	jump_label_mutex
	.type	jump_label_mutex, %object
jump_label_mutex:
	.quad	0
	.size	jump_label_mutex, . - jump_label_mutex

	.globl	jump_label_seq
	.type	jump_label_seq, %object
jump_label_seq:
	.quad	0
	.size	jump_label_seq, . - jump_label_seq

	.globl	static_key_flips
	.type	static_key_flips, %object
static_key_flips:
	.quad	0
	.size	static_key_flips, . - static_key_flips

	.globl	patch_text_count
	.type	patch_text_count, %object
patch_text_count:
	.quad	0
	.size	patch_text_count, . - patch_text_count

	.text

// x9 = the linear-map address of node \node's copy of the patched word, or 0
// when that node has no copy.  x4 = offset from _stext, x7 = kernel_texts,
// x8 = lm_alias(_stext).
	.macro	node_text_alias node
	cbnz	\node, .Lalias_copy\@
	add	x9, x8, x4
	b	.Lalias_done\@
.Lalias_copy\@:
	ldr	x9, [x7, \node, lsl #3]
	cbz	x9, .Lalias_done\@
	add	x9, x9, x4
.Lalias_done\@:
	.endm

// int aarch64_insn_patch_text_nosync(void *addr, u32 insn)
//
// x0: a kernel text address in [_stext, _etext), 4-byte aligned; w1: the new
// instruction.  Writes node 0's image (through its linear alias) and every
// node's copy (through kernel_texts[]), then does the maintenance of the
// cache model for each: dc cvau, dsb ish, ic ivau, dsb ish, isb.
// Returns 0, or -EINVAL for an address outside kernel text or misaligned.
// Clobbers x0-x10.
	.globl	aarch64_insn_patch_text_nosync
	.type	aarch64_insn_patch_text_nosync, %function
aarch64_insn_patch_text_nosync:
	tst	x0, #3
	b.ne	.Lpatch_einval
	adrp	x2, _stext
	add	x2, x2, :lo12:_stext
	adrp	x3, _etext
	add	x3, x3, :lo12:_etext
	cmp	x0, x2
	b.lo	.Lpatch_einval
	cmp	x0, x3
	b.hs	.Lpatch_einval
	sub	x4, x0, x2
	adrp	x5, boot_regs
	add	x5, x5, :lo12:boot_regs
	ldr	x6, [x5, #BOOT_NR_NODES]
	adrp	x7, kernel_texts
	add	x7, x7, :lo12:kernel_texts
	adrp	x8, ktext_lm_stext
	ldr	x8, [x8, :lo12:ktext_lm_stext]

	// aarch64_insn_write() and ktext_replication_patch(): every copy, each
	// cleaned to the PoU (not needed with IDC, where the store is enough
	// once ordered)
	mov	x10, #0
.Lpatch_write:
	node_text_alias x10
	cbz	x9, .Lpatch_write_next
	str	w1, [x9]
alternative_if ARM64_HAS_CACHE_IDC
	b	.Lpatch_write_next
alternative_else_nop_endif
	ALTERNATIVE "dc cvau, x9", "dc civac, x9", ARM64_WORKAROUND_CLEAN_CACHE
.Lpatch_write_next:
	add	x10, x10, #1
	cmp	x10, x6
	b.lo	.Lpatch_write
	dsb	ish

	// invalidate the I-cache for every copy (by PA, through the linear
	// alias); not needed with DIC
alternative_if ARM64_HAS_CACHE_DIC
	b	.Lpatch_sync
alternative_else_nop_endif
	mov	x10, #0
.Lpatch_inval:
	node_text_alias x10
	cbz	x9, .Lpatch_inval_next
	ic	ivau, x9
.Lpatch_inval_next:
	add	x10, x10, #1
	cmp	x10, x6
	b.lo	.Lpatch_inval
	dsb	ish
.Lpatch_sync:
	isb
	adrp	x2, patch_text_count
	add	x2, x2, :lo12:patch_text_count
	ldr	x3, [x2]
	add	x3, x3, #1
	str	x3, [x2]
	mov	x0, #0
	ret
.Lpatch_einval:
	mov	x0, #-EINVAL
	ret
	.size	aarch64_insn_patch_text_nosync, . - aarch64_insn_patch_text_nosync

// long static_key_update(struct static_key *key, long op)
//
// op 0: static_key_disable, 1: static_key_enable, 2: toggle.  Under
// jump_label_mutex: set key->enabled, then jump_label_update(): every
// __jump_table entry of this key gets "B target" when (enabled XOR branch),
// a NOP otherwise, through aarch64_insn_patch_text_nosync (arm64 patches
// jump labels without stop_machine: NOP and B may be changed while other
// CPUs run them).  Returns the key's new state.
	.globl	static_key_update
	.type	static_key_update, %function
static_key_update:
	stp	x29, x30, [sp, #-64]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	stp	x21, x22, [sp, #32]
	stp	x23, x24, [sp, #48]
	mov	x19, x0
	mov	x20, x1
	adrp	x21, jump_label_mutex
	add	x21, x21, :lo12:jump_label_mutex
	mov	w2, #1
.Lsk_lock:
	ldaxr	w3, [x21]
	cbnz	w3, .Lsk_lock
	stxr	w4, w2, [x21]
	cbnz	w4, .Lsk_lock

	ldr	w5, [x19, #STATIC_KEY_ENABLED]
	cmp	x20, #2
	b.ne	1f
	eor	w20, w5, #1
1:	cmp	w5, w20
	b.eq	.Lsk_unlock			// already so: nothing to patch
	adrp	x22, jump_label_seq
	add	x22, x22, :lo12:jump_label_seq
	ldr	x6, [x22]
	add	x6, x6, #1			// odd: update in progress
	str	x6, [x22]
	str	w20, [x19, #STATIC_KEY_ENABLED]

	adrp	x23, __start___jump_table
	add	x23, x23, :lo12:__start___jump_table
	adrp	x24, __stop___jump_table
	add	x24, x24, :lo12:__stop___jump_table
.Lsk_entry:
	cmp	x23, x24
	b.hs	.Lsk_done
	ldr	x6, [x23, #JUMP_ENTRY_KEY]
	add	x6, x6, x23
	add	x6, x6, #JUMP_ENTRY_KEY
	and	x7, x6, #~3
	cmp	x7, x19
	b.ne	.Lsk_next
	and	x8, x6, #1
	eor	x8, x8, x20			// jump_label_type(): 1 = JUMP_LABEL_JMP
	ldrsw	x0, [x23, #JUMP_ENTRY_CODE]
	add	x0, x0, x23
	ldr	w1, =0xd503201f			// aarch64_insn_gen_nop()
	cbz	x8, 2f
	ldrsw	x9, [x23, #JUMP_ENTRY_TARGET]
	add	x9, x9, x23
	add	x9, x9, #JUMP_ENTRY_TARGET
	sub	x9, x9, x0			// aarch64_insn_gen_branch_imm(code, target, NOLINK)
	ubfx	x9, x9, #2, #26
	movz	w1, #0x1400, lsl #16
	orr	w1, w1, w9
2:	bl	aarch64_insn_patch_text_nosync
	cbz	x0, .Lsk_next
	mov	x1, x0
	bl	panic				// a jump table entry outside kernel text
.Lsk_next:
	add	x23, x23, #JUMP_ENTRY_SIZE
	b	.Lsk_entry
.Lsk_done:
	adrp	x2, static_key_flips
	add	x2, x2, :lo12:static_key_flips
	ldr	x3, [x2]
	add	x3, x3, #1
	str	x3, [x2]
	ldr	x6, [x22]
	add	x6, x6, #1			// even: complete
	str	x6, [x22]
.Lsk_unlock:
	stlr	wzr, [x21]
	mov	w0, w20
	ldp	x23, x24, [sp, #48]
	ldp	x21, x22, [sp, #32]
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #64
	ret
	.size	static_key_update, . - static_key_update

// long sys_cpucaps(void): bit n set iff cpucap n's alternatives are live in
// the text this CPU runs (cpus_have_final_cap() for every capability).
	.globl	sys_cpucaps
	.type	sys_cpucaps, %function
sys_cpucaps:
	mov	x0, #0
	.irp	cap, ARM64_WORKAROUND_CLEAN_CACHE, ARM64_HAS_CACHE_IDC, ARM64_HAS_CACHE_DIC, ARM64_HAS_CNP, ARM64_HAS_PAN, ARM64_HAS_LSE_ATOMICS
	alternative_has_cap \cap, 1f
	orr	x0, x0, #(1 << \cap)
1:
	.endr
	ret
	.size	sys_cpucaps, . - sys_cpucaps

// alternative_selftest(): x0 and x1 tell which code each alternative left.
//   x1 = the page an ADRP yields (alt_selftest_page_a, or _b with PAN): an
//        ADRP moved into place must keep its target page;
//   x0 bit 0 / bit 1: the original / the LSE replacement ran, the latter
//        leaving through a branch out of the replacement (re-pointed);
//   x0 bit 4 / bit 5: the original / the PAN replacement ran, the latter
//        skipping an instruction with a branch inside the replacement (kept).
	.globl	alternative_selftest
	.type	alternative_selftest, %function
alternative_selftest:
	mov	x0, #0
	ALTERNATIVE "adrp x1, alt_selftest_page_a", "adrp x1, alt_selftest_page_b", ARM64_HAS_PAN
alternative_if ARM64_HAS_LSE_ATOMICS
	orr	x0, x0, #2
	b	9f
alternative_else_nop_endif
	orr	x0, x0, #1
9:
alternative_if_not ARM64_HAS_PAN
	orr	x0, x0, #0x10
	nop
	nop
alternative_else
	b	8f
	orr	x0, x0, #0x100
8:	orr	x0, x0, #0x20
alternative_endif
	ret
	.size	alternative_selftest, . - alternative_selftest

	.section .rodata, "a"
	.balign	4096
	.globl	alt_selftest_page_a
	.type	alt_selftest_page_a, %object
alt_selftest_page_a:
	.quad	0xa
	.size	alt_selftest_page_a, . - alt_selftest_page_a
	.balign	4096
	.globl	alt_selftest_page_b
	.type	alt_selftest_page_b, %object
alt_selftest_page_b:
	.quad	0xb
	.size	alt_selftest_page_b, . - alt_selftest_page_b
