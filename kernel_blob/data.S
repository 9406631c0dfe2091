// Kernel data the host fills at boot (boot_regs, the per-node roots and
// copies, cpu_to_node, stacks) and the per-CPU areas.  This file also exports
// every asm-offsets constant as an absolute symbol for the host.

	.set	KCONST_EXPORT, 1
	.include "asm-offsets.inc"

	.data
	.balign	64
	.globl	boot_regs
	.type	boot_regs, %object
boot_regs:
	.zero	BOOT_REGS_SIZE
	.size	boot_regs, . - boot_regs

// __swapper_pg_dir_node_phys(nid) for every node (patches 08-10): node 0's
// entry is swapper_pg_dir, the others the node-local roots.
	.balign	8
	.globl	ktext_pgd_phys
	.type	ktext_pgd_phys, %object
ktext_pgd_phys:
	.zero	8 * MAX_NUMNODES
	.size	ktext_pgd_phys, . - ktext_pgd_phys

// kernel_texts[nid] (patch 06): linear-map address of each node's copy of
// [_stext, __end_rodata); 0 for node 0, which runs the original image.
	.globl	kernel_texts
	.type	kernel_texts, %object
kernel_texts:
	.zero	8 * MAX_NUMNODES
	.size	kernel_texts, . - kernel_texts

	.globl	__cpu_to_node
	.type	__cpu_to_node, %object
__cpu_to_node:
	.zero	4 * NR_CPUS
	.size	__cpu_to_node, . - __cpu_to_node

	.balign	8
	.globl	cpu_stack_tops
	.type	cpu_stack_tops, %object
cpu_stack_tops:
	.zero	8 * NR_CPUS
	.size	cpu_stack_tops, . - cpu_stack_tops

	.globl	task_user_sp
	.type	task_user_sp, %object
task_user_sp:
	.zero	8 * NR_CPUS
	.size	task_user_sp, . - task_user_sp

// TTBR0 of each CPU's task, filled at boot: the one shared user root, or
// with --user-memory local the root of the CPU's node.
	.globl	task_user_ttbr0
	.type	task_user_ttbr0, %object
task_user_ttbr0:
	.zero	8 * NR_CPUS
	.size	task_user_ttbr0, . - task_user_ttbr0

	.globl	syscall_count
	.type	syscall_count, %object
syscall_count:
	.quad	0
	.size	syscall_count, . - syscall_count

	.bss
	.balign	64
	.globl	secondary_data
	.type	secondary_data, %object
secondary_data:
	.zero	SECONDARY_DATA_SIZE * NR_CPUS
	.size	secondary_data, . - secondary_data

	.globl	per_cpu_area
	.type	per_cpu_area, %object
per_cpu_area:
	.zero	PCPU_SIZE * NR_CPUS
	.size	per_cpu_area, . - per_cpu_area
