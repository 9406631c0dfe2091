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
// lm_alias(_stext): node 0's text through the linear map (read-only once
// mark_linear_text_alias_ro has run), which the patching code cleans to the
// PoU from a CPU off node 0 (the host sets it at boot).
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

// The FIX_TEXT_POKE0 fixmap slot (arch/arm64/include/asm/fixmap.h), which
// patch_map() points at the page being patched: its VA, the VA of its PTE
// (the fixmap's tables are shared by every node's root), the attributes of
// FIXMAP_PAGE_NORMAL (PAGE_KERNEL) with the page type, and PAGE_SIZE.
// The host fills it in at boot (patching.patching_init), as the constants
// and early_fixmap_init() give them in Linux.
	.data
	.balign	8
	.globl	text_poke_fixmap
	.type	text_poke_fixmap, %object
text_poke_fixmap:
	.quad	0				// __fix_to_virt(FIX_TEXT_POKE0)
	.quad	0				// its PTE, through the linear map
	.quad	0				// pgprot_val(FIXMAP_PAGE_NORMAL) | PTE_TYPE_PAGE
	.quad	0				// PAGE_SIZE
	.size	text_poke_fixmap, . - text_poke_fixmap
	.set	POKE_VA, 0
	.set	POKE_PTEP, 8
	.set	POKE_PROT, 16
	.set	POKE_PAGE_SIZE, 24

// The writable-replica remedy (emu/scenarios/writable_replica.py): the
// copies' linear aliases are read-only too, so the hook writes each copy
// through the fixmap as well.  0, the series: through the linear map.
	.globl	ktext_copies_ro
	.type	ktext_copies_ro, %object
ktext_copies_ro:
	.quad	0
	.size	ktext_copies_ro, . - ktext_copies_ro

// patch_lock (patching.c's raw spinlock around the fixmap slot)
	.globl	patch_lock
	.type	patch_lock, %object
patch_lock:
	.quad	0
	.size	patch_lock, . - patch_lock

	.text

// caches_clean_inval_pou(\reg, \reg + 4) for one word (arch/arm64/mm/cache.S):
// clean to the PoU (only dsb ishst with IDC), invalidate the I-cache (only
// isb with DIC).
	.macro	caches_clean_inval_pou_word reg
alternative_if ARM64_HAS_CACHE_IDC
	dsb	ishst
	b	.Lcci_dc_done\@
alternative_else_nop_endif
	ALTERNATIVE "dc cvau, \reg", "dc civac, \reg", ARM64_WORKAROUND_CLEAN_CACHE
	dsb	ish
.Lcci_dc_done\@:
alternative_if ARM64_HAS_CACHE_DIC
	isb
	b	.Lcci_done\@
alternative_else_nop_endif
	ic	ivau, \reg
	dsb	ish
	isb
.Lcci_done\@:
	.endm

// raw_spin_lock_irqsave(&patch_lock), x13 = &patch_lock; clobbers x3, x14, x15
	.macro	patch_lock_acquire
	mov	w3, #1
.Lpl_retry\@:
	ldaxr	w14, [x13]
	cbnz	w14, .Lpl_retry\@
	stxr	w15, w3, [x13]
	cbnz	w15, .Lpl_retry\@
	.endm

// aarch64_insn_write() of w1 at physical address \pa through FIX_TEXT_POKE0
// (x12 = text_poke_fixmap): patch_map() (set_pte, published with dsb ishst;
// isb), the store, patch_unmap() (pte_clear, then flush_tlb_kernel_range:
// tlbi vaale1is per page, dsb ish, isb).  Clobbers x3, x7, x14, x15, x17.
	.macro	text_poke_fixmap pa
	ldr	x7, [x12, #POKE_PAGE_SIZE]
	sub	x7, x7, #1			// ~PAGE_MASK
	bic	x3, \pa, x7
	ldr	x17, [x12, #POKE_PROT]
	orr	x3, x3, x17			// pfn_pte(phys >> PAGE_SHIFT, FIXMAP_PAGE_NORMAL)
	ldr	x17, [x12, #POKE_PTEP]
	str	x3, [x17]			// set_pte(): a valid kernel pte...
	dsb	ishst				// ...is published with dsb ishst; isb
	isb
	ldr	x14, [x12, #POKE_VA]
	and	x3, \pa, x7
	add	x3, x14, x3			// the word through the fixmap
	str	w1, [x3]			// copy_to_kernel_nofault()
	str	xzr, [x17]			// clear_fixmap(): pte_clear...
	dsb	ishst
	add	x15, x14, x7			// the slot's last byte
	ubfx	x14, x14, #12, #44		// __TLBI_VADDR(start, 0): VA[55:12]
	ubfx	x15, x15, #12, #44
	lsr	x7, x7, #12
	add	x7, x7, #1			// 1 << (PAGE_SHIFT - 12)
.Ltp_tlbi\@:
	tlbi	vaale1is, x14			// ...and flush_tlb_kernel_range()
	add	x14, x14, x7
	cmp	x14, x15
	b.ls	.Ltp_tlbi\@
	dsb	ish
	isb
	.endm

// int aarch64_insn_patch_text_nosync(void *addr, u32 insn)
//
// x0: a 4-byte aligned address of kernel text [_stext, _etext) or init text
// (core_kernel_text()); w1: the new instruction.  As patching.c with the
// series' hook (patch 07):
//  1. aarch64_insn_write(): under patch_lock, patch_map() points the
//     FIX_TEXT_POKE0 slot at the word's physical page (__pa_symbol: node 0's
//     image; the linear alias is read-only, mark_linear_text_alias_ro), the
//     word is stored through it, patch_unmap() clears the slot and flushes
//     it (flush_tlb_kernel_range);
//  2. ktext_replication_patch(), for kernel text only: off node 0, clean node
//     0's word to the PoU through its linear alias; then every node's copy
//     written through the linear map, each with its own
//     caches_clean_inval_pou;
//  3. caches_clean_inval_pou(addr), through this CPU's own mapping of addr.
// With ktext_copies_ro set (the writable-replica remedy) the copies are
// written through the fixmap too.  Returns 0, or -EINVAL for an address that
// is no core kernel text or is misaligned.  Clobbers x0-x17.
	.globl	aarch64_insn_patch_text_nosync
	.type	aarch64_insn_patch_text_nosync, %function
aarch64_insn_patch_text_nosync:
	tst	x0, #3
	b.ne	.Lpatch_einval
	adrp	x2, _stext
	add	x2, x2, :lo12:_stext
	adrp	x3, _etext
	add	x3, x3, :lo12:_etext
	mov	x11, #1				// is_kernel_text(): replicated
	cmp	x0, x2
	b.lo	.Lpatch_einval
	cmp	x0, x3
	b.lo	.Lpatch_text_ok
	adrp	x2, __inittext_begin
	add	x2, x2, :lo12:__inittext_begin
	adrp	x3, __inittext_end
	add	x3, x3, :lo12:__inittext_end
	mov	x11, #0				// init text: not replicated
	cmp	x0, x2
	b.lo	.Lpatch_einval
	cmp	x0, x3
	b.hs	.Lpatch_einval
.Lpatch_text_ok:
	adrp	x5, boot_regs
	add	x5, x5, :lo12:boot_regs
	adrp	x12, text_poke_fixmap
	add	x12, x12, :lo12:text_poke_fixmap

	// 1. aarch64_insn_write(): node 0's page (__pa_symbol) through the fixmap
	adrp	x13, patch_lock
	add	x13, x13, :lo12:patch_lock
	patch_lock_acquire
	ldr	x6, [x5, #BOOT_KIMAGE_VOFFSET]
	sub	x6, x0, x6			// __pa_symbol(addr)
	text_poke_fixmap x6
	stlr	wzr, [x13]			// raw_spin_unlock_irqrestore

	// 2. ktext_replication_patch(addr, insn)
	cbz	x11, .Lpatch_own
	adrp	x2, _stext
	add	x2, x2, :lo12:_stext
	sub	x4, x0, x2			// offset from _stext
	adrp	x8, ktext_lm_stext
	ldr	x8, [x8, :lo12:ktext_lm_stext]
	mrs	x3, tpidr_el1
	ldr	x3, [x3, #PCPU_NODE]
	cbz	x3, 1f
	add	x9, x8, x4			// lm_alias(node 0's word): a read-only alias
	caches_clean_inval_pou_word x9
1:	ldr	x2, [x5, #BOOT_NR_NODES]
	adrp	x16, kernel_texts
	add	x16, x16, :lo12:kernel_texts
	adrp	x11, ktext_copies_ro
	ldr	x11, [x11, :lo12:ktext_copies_ro]
	mov	x10, #1
.Lpatch_copy:
	cmp	x10, x2
	b.hs	.Lpatch_own
	ldr	x9, [x16, x10, lsl #3]
	add	x10, x10, #1
	cbz	x9, .Lpatch_copy		// no copy on that node
	add	x9, x9, x4
	cbnz	x11, 2f
	str	w1, [x9]			// WRITE_ONCE() into the node's copy
	b	3f
2:	sub	x6, x9, x8			// the remedy: the copy's PA, through the fixmap
	adrp	x3, _stext
	add	x3, x3, :lo12:_stext
	ldr	x7, [x5, #BOOT_KIMAGE_VOFFSET]
	sub	x3, x3, x7
	add	x6, x6, x3			// __pa(copy word) = lm - lm_alias(_stext) + __pa_symbol(_stext)
	patch_lock_acquire
	text_poke_fixmap x6
	stlr	wzr, [x13]
3:	caches_clean_inval_pou_word x9
	b	.Lpatch_copy

	// 3. caches_clean_inval_pou(tp, tp + 1): this CPU's own copy of addr
.Lpatch_own:
	caches_clean_inval_pou_word x0
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
