// Guest paths of the scenario auditor (emu/scenarios/): the CnP enable path
// as the v3 series has it and as upstream had it, TTBR1 replacement through
// the idmap (__cpu_replace_ttbr1_phys), CPU suspend and resume through
// cpu_resume, an init function and init data (for free_initmem), plain
// loads, stores and TLBI forms for the host to run on a chosen CPU, and the
// scenario syscall with the EL0 task that calls it.  cpu_enable_swapper_cnp
// is also the boot path's: cpufeature.S calls it on every CPU of a system
// with ARM64_HAS_CNP.

	.include "asm-offsets.inc"

// cpu_install_idmap (asm/mmu_context.h): TTBR0 = the idmap, local TLB
// invalidated.  Clobbers x2, x3.
	.macro	cpu_install_idmap
	adrp	x2, boot_regs
	add	x2, x2, :lo12:boot_regs
	ldr	x3, [x2, #BOOT_IDMAP_TTBR0]
	msr	ttbr0_el1, x3
	isb
	tlbi	vmalle1
	dsb	nsh
	isb
	.endm

	// Counts the host checks against emu/scenarios/guest.py (absolute symbols).
	.globl	SCENARIO_OPS
	.equ	SCENARIO_OPS, 6			// ops of sys_scenario
	.globl	SCENARIO_TLBI_FORMS
	.equ	SCENARIO_TLBI_FORMS, 14		// forms of scenario_tlbi

	.data
	.balign	8
// system_supports_cnp(): the host sets it when the scenario's system has CnP;
// __cpu_suspend_exit then re-installs the node root with CnP (v6.7 + patch 12).
	.globl	scenario_cnp_supported
	.type	scenario_cnp_supported, %object
scenario_cnp_supported:
	.quad	0
	.size	scenario_cnp_supported, . - scenario_cnp_supported

	.bss
	.balign	8
// sleep_save_stash[cpu]: the stack pointer of the CPU's saved context while it is
// suspended (arch/arm64/kernel/sleep.S keeps the context on the stack too).
	.globl	sleep_save_stash
	.type	sleep_save_stash, %object
sleep_save_stash:
	.zero	8 * NR_CPUS
	.size	sleep_save_stash, . - sleep_save_stash

	.section .init.data, "aw"
	.balign	8
// __initdata: freed by free_initmem() after boot.
	.globl	scenario_init_word
	.type	scenario_init_word, %object
scenario_init_word:
	.quad	0x1717171717171717
	.size	scenario_init_word, . - scenario_init_word

	.section .init.text, "ax"
// An __init function: callable until free_initmem() unmaps (and frees) it.
	.globl	scenario_init_probe
	.type	scenario_init_probe, %function
scenario_init_probe:
	movz	x0, #0x1717
	ret
	.size	scenario_init_probe, . - scenario_init_probe

// ---------------------------------------------------------------- head text
// Runs from the identity map (PA == VA) or with the MMU off.
	.section .head.text, "ax"

// What the firmware does for PSCI CPU_SUSPEND to a power-down state, which
// ktext-emu's firmware lacks: the core loses its MMU state and TLB and comes
// back at the resume entry with the MMU off and the context id in x0.
// __cpu_powerdown(x0 = cpu, x1 = PA of the resume entry), from the idmap.
	.type	__cpu_powerdown, %function
__cpu_powerdown:
	mrs	x2, sctlr_el1
	bic	x2, x2, #SCTLR_ELx_M
	msr	sctlr_el1, x2
	isb
	tlbi	vmalle1
	dsb	nsh
	ic	iallu
	dsb	nsh
	isb
	br	x1
	.size	__cpu_powerdown, . - __cpu_powerdown

// cpu_resume (arch/arm64/kernel/sleep.S): enable the MMU on swapper_pg_dir,
// which with the MMU off is node 0's root, whatever the CPU's node.
	.globl	cpu_resume
	.type	cpu_resume, %function
cpu_resume:
	mov	x19, x0
	adrp	x21, swapper_pg_dir		// __pa_symbol(swapper_pg_dir): node 0's root
	b	__cpu_resume_mmu
	.size	cpu_resume, . - cpu_resume

// The remedy: resume on the CPU's own node root, as a secondary does from
// secondary_data.ttbr1 (patch 11), i.e. __swapper_pg_dir_node_phys(cpu_to_node(cpu)).
	.globl	cpu_resume_node_root
	.type	cpu_resume_node_root, %function
cpu_resume_node_root:
	mov	x19, x0
	adrp	x1, __cpu_to_node
	add	x1, x1, :lo12:__cpu_to_node
	ldr	w2, [x1, x19, lsl #2]
	adrp	x3, ktext_pgd_phys
	add	x3, x3, :lo12:ktext_pgd_phys
	ldr	x21, [x3, x2, lsl #3]
	b	__cpu_resume_mmu
	.size	cpu_resume_node_root, . - cpu_resume_node_root

// __cpu_setup + __enable_mmu(x21 = TTBR1 value) for cpu x19, then
// _cpu_resume at its kernel VA.
	.type	__cpu_resume_mmu, %function
__cpu_resume_mmu:
	mov	x1, x21
	bl	__enable_mmu
	ldr	x8, =_cpu_resume
	mov	x0, x19
	br	x8
	.size	__cpu_resume_mmu, . - __cpu_resume_mmu
	.ltorg

// ---------------------------------------------------------------- kernel text
	.text

// x0 = __pa_symbol(sym) for a kernel image symbol's VA in x0; clobbers x9.
	.macro	pa_of, reg
	adrp	x9, boot_regs
	add	x9, x9, :lo12:boot_regs
	ldr	x9, [x9, #BOOT_KIMAGE_VOFFSET]
	sub	\reg, \reg, x9
	.endm

// __cpu_replace_ttbr1_phys(x0 = root PA, x1 = cnp) (patch 01, mmu_context.h):
// install the idmap, call idmap_cpu_replace_ttbr1 through it (break-before-make
// through reserved_pg_dir with a local TLB flush), then go back to this CPU's
// TTBR0 (cpu_uninstall_idmap).
	.globl	cpu_replace_ttbr1_phys
	.type	cpu_replace_ttbr1_phys, %function
cpu_replace_ttbr1_phys:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	cmp	x1, #0
	cset	x1, ne
	orr	x19, x0, x1			// phys_to_ttbr(phys) | (cnp ? TTBR_CNP_BIT : 0)
	mrs	x20, ttbr0_el1
	cpu_install_idmap
	ldr	x5, =idmap_cpu_replace_ttbr1
	pa_of	x5
	mov	x0, x19
	blr	x5
	bl	cpu_uninstall_idmap
	msr	ttbr0_el1, x20
	isb
	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret
	.size	cpu_replace_ttbr1_phys, . - cpu_replace_ttbr1_phys

// cpu_uninstall_idmap(): TTBR0 on the empty reserved_pg_dir, local TLB flush.
	.type	cpu_uninstall_idmap, %function
cpu_uninstall_idmap:
	ldr	x1, =reserved_pg_dir
	pa_of	x1
	msr	ttbr0_el1, x1
	isb
	tlbi	vmalle1
	dsb	nsh
	isb
	ret
	.size	cpu_uninstall_idmap, . - cpu_uninstall_idmap

// x0 = swapper_pg_dir_node_phys(): the root of this CPU's node (patch 09).
	.type	swapper_pg_dir_node_phys, %function
swapper_pg_dir_node_phys:
	mrs	x1, tpidr_el1
	ldr	x2, [x1, #PCPU_NODE]
	adrp	x3, ktext_pgd_phys
	add	x3, x3, :lo12:ktext_pgd_phys
	ldr	x0, [x3, x2, lsl #3]
	ret
	.size	swapper_pg_dir_node_phys, . - swapper_pg_dir_node_phys

// cpu_enable_swapper_cnp() as v3 patch 12 has it: this CPU's node root, CnP set.
	.globl	cpu_enable_swapper_cnp
	.type	cpu_enable_swapper_cnp, %function
cpu_enable_swapper_cnp:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	swapper_pg_dir_node_phys
	mov	x1, #1
	bl	cpu_replace_ttbr1_phys
	ldp	x29, x30, [sp], #16
	ret
	.size	cpu_enable_swapper_cnp, . - cpu_enable_swapper_cnp

// cpu_enable_swapper_cnp() before the series: lm_alias(swapper_pg_dir), i.e.
// node 0's root, CnP set, on every CPU.
	.globl	cpu_enable_swapper_cnp_upstream
	.type	cpu_enable_swapper_cnp_upstream, %function
cpu_enable_swapper_cnp_upstream:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	ldr	x0, =swapper_pg_dir
	pa_of	x0
	mov	x1, #1
	bl	cpu_replace_ttbr1_phys
	ldp	x29, x30, [sp], #16
	ret
	.size	cpu_enable_swapper_cnp_upstream, . - cpu_enable_swapper_cnp_upstream

// The node root without CnP: what a replicated kernel gets if CnP stays off.
	.globl	cpu_install_node_root
	.type	cpu_install_node_root, %function
cpu_install_node_root:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	bl	swapper_pg_dir_node_phys
	mov	x1, #0
	bl	cpu_replace_ttbr1_phys
	ldp	x29, x30, [sp], #16
	ret
	.size	cpu_install_node_root, . - cpu_install_node_root

// int cpu_suspend(x0 = 0: resume through cpu_resume, 1: cpu_resume_node_root)
// Saves the callee-saved registers, SP_EL0, VBAR and TTBR0 on the stack and
// the stack pointer in sleep_save_stash[cpu], then powers the core down;
// returns 0 once the CPU has resumed (from _cpu_resume).
	.globl	cpu_suspend
	.type	cpu_suspend, %function
cpu_suspend:
	sub	sp, sp, #128
	stp	x19, x20, [sp, #0]
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]
	mrs	x2, sp_el0
	mrs	x3, ttbr0_el1
	stp	x2, x3, [sp, #96]
	mrs	x2, vbar_el1
	str	x2, [sp, #112]
	mrs	x4, tpidr_el1
	ldr	x19, [x4, #PCPU_CPU]
	adrp	x5, sleep_save_stash
	add	x5, x5, :lo12:sleep_save_stash
	mov	x6, sp
	str	x6, [x5, x19, lsl #3]
	// the resume entry the firmware is told about: __pa_symbol(cpu_resume...)
	ldr	x20, =cpu_resume
	ldr	x21, =cpu_resume_node_root
	cmp	x0, #0
	csel	x20, x20, x21, eq
	pa_of	x20
	cpu_install_idmap			// then down through the idmap alias of __cpu_powerdown
	ldr	x8, =__cpu_powerdown
	pa_of	x8
	mov	x0, x19
	mov	x1, x20
	br	x8
	.size	cpu_suspend, . - cpu_suspend

// _cpu_resume(x0 = cpu): back on the kernel VA with the MMU on; restore the
// context and run __cpu_suspend_exit, then return 0 from cpu_suspend.
	.type	_cpu_resume, %function
_cpu_resume:
	adrp	x5, sleep_save_stash
	add	x5, x5, :lo12:sleep_save_stash
	ldr	x6, [x5, x0, lsl #3]
	mov	sp, x6
	adrp	x1, per_cpu_area
	add	x1, x1, :lo12:per_cpu_area
	mov	x2, #PCPU_SIZE
	madd	x1, x0, x2, x1
	msr	tpidr_el1, x1
	ldp	x2, x3, [sp, #96]
	msr	sp_el0, x2
	ldr	x2, [sp, #112]
	msr	vbar_el1, x2
	// __cpu_suspend_exit(): cpu_uninstall_idmap, back to the task's TTBR0
	bl	cpu_uninstall_idmap
	ldr	x3, [sp, #104]
	msr	ttbr0_el1, x3
	isb
	// "Restore CnP bit in TTBR1_EL1": if (system_supports_cnp()) cpu_enable_swapper_cnp()
	adrp	x4, scenario_cnp_supported
	ldr	x4, [x4, :lo12:scenario_cnp_supported]
	cbz	x4, 1f
	bl	cpu_enable_swapper_cnp
1:	ldp	x19, x20, [sp, #0]
	ldp	x21, x22, [sp, #16]
	ldp	x23, x24, [sp, #32]
	ldp	x25, x26, [sp, #48]
	ldp	x27, x28, [sp, #64]
	ldp	x29, x30, [sp, #80]
	add	sp, sp, #128
	mov	x0, #0
	ret
	.size	_cpu_resume, . - _cpu_resume

// long sys_scenario(long op): run one scenario path on the calling CPU.
	.globl	sys_scenario
	.type	sys_scenario, %function
sys_scenario:
	stp	x29, x30, [sp, #-16]!
	mov	x29, sp
	cmp	x0, #SCENARIO_OPS
	b.hs	9f
	adr	x1, 1f
	add	x1, x1, x0, lsl #3
	br	x1
1:	mov	x0, #0				// SCENARIO_NOP
	b	8f
	bl	cpu_enable_swapper_cnp		// SCENARIO_CNP_ENABLE
	b	8f
	bl	cpu_enable_swapper_cnp_upstream	// SCENARIO_CNP_ENABLE_UPSTREAM
	b	8f
	bl	cpu_install_node_root		// SCENARIO_NODE_ROOT
	b	8f
	mov	x0, #0				// SCENARIO_SUSPEND: resume via cpu_resume
	b	7f
	mov	x0, #1				// SCENARIO_SUSPEND_NODE_ROOT: via cpu_resume_node_root
	b	7f
7:	bl	cpu_suspend
8:	mov	x0, #0
	ldp	x29, x30, [sp], #16
	ret
9:	mov	x0, #-EINVAL
	ldp	x29, x30, [sp], #16
	ret
	.size	sys_scenario, . - sys_scenario

// Where System.call returns to: Unicorn stops there before running it.  In
// .text, which every node maps, away from a page's first word.
	.balign	16
	nop
	.globl	call_sentinel
	.type	call_sentinel, %function
call_sentinel:
	b	.
	.size	call_sentinel, . - call_sentinel

// flush_tlb_kernel_range(x0 = start, x1 = end, x2 = PAGE_SIZE): a broadcast
// TLBI VAALE1IS for every page, as arch/arm64/include/asm/tlbflush.h does
// after a kernel mapping changes (vunmap_range, set_memory_*).
	.globl	scenario_flush_tlb_kernel_range
	.type	scenario_flush_tlb_kernel_range, %function
scenario_flush_tlb_kernel_range:
	dsb	ishst
1:	ubfx	x3, x0, #12, #44
	tlbi	vaale1is, x3
	add	x0, x0, x2
	cmp	x0, x1
	b.lo	1b
	dsb	ish
	isb
	ret
	.size	scenario_flush_tlb_kernel_range, . - scenario_flush_tlb_kernel_range

// u64 scenario_read_u64(x0 = va), void scenario_write_u64(x0 = va, x1 = value):
// one load or store on the calling CPU (the host calls these with System.call).
	.globl	scenario_read_u64
	.type	scenario_read_u64, %function
scenario_read_u64:
	ldr	x0, [x0]
	ret
	.size	scenario_read_u64, . - scenario_read_u64

	.globl	scenario_write_u64
	.type	scenario_write_u64, %function
scenario_write_u64:
	str	x1, [x0]
	mov	x0, #0
	ret
	.size	scenario_write_u64, . - scenario_write_u64

// u64 scenario_read_with_ttbr1(x0 = va, x1 = TTBR1 value): load through
// another TTBR1 value (its root, ASID or CnP bit) without TLB maintenance,
// then put the CPU's own TTBR1 back.
	.globl	scenario_read_with_ttbr1
	.type	scenario_read_with_ttbr1, %function
scenario_read_with_ttbr1:
	mrs	x9, ttbr1_el1
	msr	ttbr1_el1, x1
	isb
	ldr	x0, [x0]
	msr	ttbr1_el1, x9
	isb
	ret
	.size	scenario_read_with_ttbr1, . - scenario_read_with_ttbr1

// u64 scenario_read_asid(x0 = va, x1 = ASID): load with TTBR1_EL1.ASID (TCR.A1)
// set to x1, then put the CPU's own TTBR1 back.
	.globl	scenario_read_asid
	.type	scenario_read_asid, %function
scenario_read_asid:
	mrs	x9, ttbr1_el1
	mov	x10, x9
	bfi	x10, x1, #48, #16
	msr	ttbr1_el1, x10
	isb
	ldr	x0, [x0]
	msr	ttbr1_el1, x9
	isb
	ret
	.size	scenario_read_asid, . - scenario_read_asid

// void scenario_tlbi(x0 = form, x1 = operand): one TLBI of the forms
// emu/scenarios/guest.py TLBI_FORMS lists, then dsb + isb.  Forms this CPU
// does not implement take an undefined-instruction exception.
	.globl	scenario_tlbi
	.type	scenario_tlbi, %function
scenario_tlbi:
	cmp	x0, #SCENARIO_TLBI_FORMS
	b.hs	9f
	adr	x3, 1f
	add	x3, x3, x0, lsl #4
	br	x3
	.balign	16
1:	tlbi	vmalle1
	b	8f
	.balign	16
	tlbi	vmalle1is
	b	8f
	.balign	16
	tlbi	vae1, x1
	b	8f
	.balign	16
	tlbi	vae1is, x1
	b	8f
	.balign	16
	tlbi	aside1, x1
	b	8f
	.balign	16
	tlbi	aside1is, x1
	b	8f
	.balign	16
	tlbi	vaae1, x1
	b	8f
	.balign	16
	tlbi	vaae1is, x1
	b	8f
	.balign	16
	tlbi	vale1, x1
	b	8f
	.balign	16
	tlbi	vale1is, x1
	b	8f
	.balign	16
	tlbi	vaale1, x1
	b	8f
	.balign	16
	tlbi	vaale1is, x1
	b	8f
	.balign	16
	sys	#0, c8, c1, #0			// tlbi vmalle1os (FEAT_TLBIOS)
	b	8f
	.balign	16
	sys	#0, c8, c2, #1, x1		// tlbi rvae1is, x1 (FEAT_TLBIRANGE)
	b	8f
8:	dsb	ish
	isb
9:	ret
	.size	scenario_tlbi, . - scenario_tlbi

// ---------------------------------------------------------------- EL0 task
	.section .user.data, "aw"
	.balign	8
	.globl	scenario_op
	.type	scenario_op, %object
scenario_op:
	.quad	0				// the host sets the op every task runs
	.size	scenario_op, . - scenario_op

	.section .user.text, "ax"
// scenario: run scenario_op once through the scenario syscall, then
// x1 null syscalls (kernel text and rodata on whatever root the CPU has
// now), then exit with the syscall's result.
	.globl	workload_scenario
	.type	workload_scenario, %function
workload_scenario:
	mov	x19, x1
	adrp	x0, scenario_op
	ldr	x0, [x0, :lo12:scenario_op]
	mov	x8, #__NR_scenario
	svc	#0
	mov	x20, x0
	cbz	x19, 2f
1:	mov	x0, x19
	mov	x8, #__NR_null
	svc	#0
	subs	x19, x19, #1
	b.ne	1b
2:	mov	x0, x20
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_scenario, . - workload_scenario
