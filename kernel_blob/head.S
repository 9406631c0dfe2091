// CPU bring-up: the boot CPU's start_kernel, __cpu_up, and the secondary
// entry path of arch/arm64/kernel/head.S as the ktext series changes it
// (patch 11: a secondary loads its node's root from secondary_data.ttbr1).
//
// The host plays the boot loader and the boot-time C code (paging_init,
// ktext_replication_init): the boot CPU enters start_kernel with the MMU on,
// TTBR1_EL1 on node 0's swapper_pg_dir and SP on its stack.

	.include "asm-offsets.inc"

	.section .head.text, "ax"

// PSCI CPU_ON enters here at the physical address, MMU off, EL1h, with the
// logical CPU number as context id in x0.  Everything up to the branch to
// secondary_start_kernel runs from the identity map.
	.globl	secondary_entry
	.type	secondary_entry, %function
secondary_entry:
	mov	x19, x0
	adrp	x20, secondary_data		// PC-relative: a physical address here
	add	x20, x20, :lo12:secondary_data
	mov	x1, #SECONDARY_DATA_SIZE
	madd	x20, x19, x1, x20
	ldr	x1, [x20, #CPU_BOOT_TTBR1]	// patch 11: was adrp x1, swapper_pg_dir
	bl	__enable_mmu
	ldr	x8, =secondary_start_kernel
	mov	x0, x19
	br	x8
	.size	secondary_entry, . - secondary_entry

// __enable_mmu(x1 = TTBR1 root, physical): __cpu_setup's register values
// from boot_regs, the idmap in TTBR0, the given root in TTBR1 (load_ttbr1),
// a local TLB flush, then the MMU on.  As in head.S the caller passes the
// root: swapper_pg_dir, or with the series the CPU's node root from
// secondary_data.ttbr1 (patch 11), so the MMU comes on directly on it.
// Called with the MMU off from the identity-mapped head text (by
// secondary_entry and by cpu_resume); clobbers x1-x4.
	.globl	__enable_mmu
	.type	__enable_mmu, %function
__enable_mmu:
	adrp	x4, boot_regs
	add	x4, x4, :lo12:boot_regs
	ldr	x3, [x4, #BOOT_IDMAP_TTBR0]
	msr	ttbr0_el1, x3
	msr	ttbr1_el1, x1
	ldr	x3, [x4, #BOOT_TCR]
	msr	tcr_el1, x3
	ldr	x3, [x4, #BOOT_MAIR]
	msr	mair_el1, x3
	isb
	tlbi	vmalle1
	dsb	nsh
	ldr	x3, [x4, #BOOT_SCTLR]
	msr	sctlr_el1, x3
	isb
	ic	iallu
	dsb	nsh
	isb
	ret
	.size	__enable_mmu, . - __enable_mmu

// idmap_cpu_replace_ttbr1(x0 = new TTBR1 value): break-before-make through
// the empty reserved_pg_dir with a local TLB flush, as arch/arm64/mm/proc.S.
// Runs from the identity map, so adrp yields physical addresses.
	.globl	idmap_cpu_replace_ttbr1
	.type	idmap_cpu_replace_ttbr1, %function
idmap_cpu_replace_ttbr1:
	adrp	x1, reserved_pg_dir
	msr	ttbr1_el1, x1
	isb
	tlbi	vmalle1
	dsb	nsh
	isb
	msr	ttbr1_el1, x0
	isb
	ret
	.size	idmap_cpu_replace_ttbr1, . - idmap_cpu_replace_ttbr1

	.text

// The boot CPU (CPU 0, node 0) starts here on node 0's root; it is never
// switched to another root (ktext-series.md 2.3).
	.globl	start_kernel
	.type	start_kernel, %function
start_kernel:
	adrp	x1, vectors
	add	x1, x1, :lo12:vectors
	msr	vbar_el1, x1
	isb
	bl	db_init
	bl	smp_init
	mov	x0, #0
	b	cpu_startup_common
	.size	start_kernel, . - start_kernel

// smp_init: __cpu_up() every other CPU, in order.
	.type	smp_init, %function
smp_init:
	stp	x29, x30, [sp, #-32]!
	mov	x29, sp
	stp	x19, x20, [sp, #16]
	adrp	x1, boot_regs
	add	x1, x1, :lo12:boot_regs
	ldr	x20, [x1, #BOOT_NR_CPUS]
	mov	x19, #1
1:	cmp	x19, x20
	b.hs	2f
	mov	x0, x19
	bl	__cpu_up
	add	x19, x19, #1
	b	1b
2:	ldp	x19, x20, [sp, #16]
	ldp	x29, x30, [sp], #32
	ret
	.size	smp_init, . - smp_init

// __cpu_up(x0 = cpu): fill secondary_data[cpu] with the root of the CPU's
// node (patch 11) and its stack, clean it to the PoC (the CPU reads it with
// the MMU off) and start the CPU through PSCI CPU_ON.
	.globl	__cpu_up
	.type	__cpu_up, %function
__cpu_up:
	adrp	x1, __cpu_to_node
	add	x1, x1, :lo12:__cpu_to_node
	ldr	w2, [x1, x0, lsl #2]
	adrp	x3, ktext_pgd_phys
	add	x3, x3, :lo12:ktext_pgd_phys
	ldr	x4, [x3, x2, lsl #3]
	adrp	x5, secondary_data
	add	x5, x5, :lo12:secondary_data
	mov	x6, #SECONDARY_DATA_SIZE
	madd	x5, x0, x6, x5
	str	x4, [x5, #CPU_BOOT_TTBR1]
	adrp	x7, cpu_stack_tops
	add	x7, x7, :lo12:cpu_stack_tops
	ldr	x8, [x7, x0, lsl #3]
	str	x8, [x5, #CPU_BOOT_STACK]
	dc	cvac, x5
	dsb	sy

	mov	x1, x0				// target CPU
	mov	x3, x0				// context id
	adrp	x2, secondary_entry
	add	x2, x2, :lo12:secondary_entry
	adrp	x9, boot_regs
	add	x9, x9, :lo12:boot_regs
	ldr	x10, [x9, #BOOT_KIMAGE_VOFFSET]
	sub	x2, x2, x10			// __pa_symbol(secondary_entry)
	ldr	x0, =PSCI_0_2_FN64_CPU_ON
	smc	#0
	cbnz	x0, cpu_up_failed
	ret
cpu_up_failed:
	mov	x1, x0
	b	panic
	.size	__cpu_up, . - __cpu_up

// secondary_start_kernel(x0 = cpu): first code on the kernel VA, running on
// this node's root.  Drop the idmap, take the stack, report online.
	.globl	secondary_start_kernel
	.type	secondary_start_kernel, %function
secondary_start_kernel:
	mov	x19, x0
	adrp	x20, secondary_data
	add	x20, x20, :lo12:secondary_data
	mov	x1, #SECONDARY_DATA_SIZE
	madd	x20, x19, x1, x20
	ldr	x2, [x20, #CPU_BOOT_STACK]
	mov	sp, x2
	adrp	x1, vectors
	add	x1, x1, :lo12:vectors
	msr	vbar_el1, x1
	// cpu_uninstall_idmap: TTBR0 back to the empty reserved_pg_dir
	adrp	x1, reserved_pg_dir
	adrp	x3, boot_regs
	add	x3, x3, :lo12:boot_regs
	ldr	x4, [x3, #BOOT_KIMAGE_VOFFSET]
	sub	x1, x1, x4
	msr	ttbr0_el1, x1
	isb
	tlbi	vmalle1
	dsb	nsh
	isb
	mov	x5, #1
	str	x5, [x20, #CPU_BOOT_ONLINE]
	mov	x0, x19
	b	cpu_startup_common
	.size	secondary_start_kernel, . - secondary_start_kernel

// cpu_startup_common(x0 = cpu): per-CPU area in TPIDR_EL1, then drop to EL0
// in this CPU's first task (the workload, one task per CPU).
	.type	cpu_startup_common, %function
cpu_startup_common:
	adrp	x1, per_cpu_area
	add	x1, x1, :lo12:per_cpu_area
	mov	x2, #PCPU_SIZE
	madd	x1, x0, x2, x1
	msr	tpidr_el1, x1
	str	x0, [x1, #PCPU_CPU]
	adrp	x3, __cpu_to_node
	add	x3, x3, :lo12:__cpu_to_node
	ldr	w4, [x3, x0, lsl #2]
	str	x4, [x1, #PCPU_NODE]
	bl	cpu_enable_capabilities		// cpufeature.S: CnP, if the system has it
	mrs	x1, tpidr_el1
	ldr	x0, [x1, #PCPU_CPU]

	adrp	x5, boot_regs
	add	x5, x5, :lo12:boot_regs
	adrp	x6, task_user_ttbr0		// this CPU's user root (its node's
	add	x6, x6, :lo12:task_user_ttbr0	// with --user-memory local)
	ldr	x6, [x6, x0, lsl #3]
	msr	ttbr0_el1, x6
	isb
	ldr	x7, [x5, #BOOT_USER_PC]
	msr	elr_el1, x7
	msr	spsr_el1, xzr			// EL0t
	adrp	x8, task_user_sp
	add	x8, x8, :lo12:task_user_sp
	ldr	x9, [x8, x0, lsl #3]
	msr	sp_el0, x9
	ldr	x1, [x5, #BOOT_USER_ARG]
	ldr	x2, [x5, #BOOT_NR_CPUS]
	ldr	x3, [x5, #BOOT_USER_WARMUP]
	// Nothing of the kernel's leaks to EL0 (Linux starts a task with its
	// registers cleared): only x0 (task), x1 (iterations), x2 (tasks) and
	// x3 (warm-up iterations) are set.
	.irp	reg, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30
	mov	x\reg, xzr
	.endr
	eret
	.size	cpu_startup_common, . - cpu_startup_common
