// System calls: the table lives in .rodata, so it is replicated on every
// node; the handlers read replicated rodata and shared read-write data.

	.include "asm-offsets.inc"

	.section .rodata, "a"
	.balign	8
	.globl	sys_call_table
	.type	sys_call_table, %object
sys_call_table:
	.quad	sys_getcpu			// 0
	.quad	sys_exit			// 1
	.quad	sys_null			// 2
	.quad	sys_puts			// 3
	.quad	sys_static_key			// 4 (patching.S)
	.quad	static_key_probe		// 5 (static_keys.S)
	.quad	sys_cpucaps			// 6 (patching.S)
	.quad	sys_ni_syscall			// 7
	.quad	sys_db_lookup			// 8
	.quad	sys_db_read			// 9
	.quad	sys_scenario			// 10 (scenarios.S)
	.quad	sys_window			// 11
	.rept	__NR_synth_base - 12
	.quad	sys_ni_syscall
	.endr
	.quad	sys_synth_0, sys_synth_1, sys_synth_2, sys_synth_3	// 16-23: the generated
	.quad	sys_synth_4, sys_synth_5, sys_synth_6, sys_synth_7	// paths (synth.S)
	.rept	__NR_syscalls - __NR_synth_base - __NR_synth_max
	.quad	sys_ni_syscall
	.endr
	.size	sys_call_table, . - sys_call_table

// A small read-only table the null syscall sums: kernel read-only data that
// replication moves to the reading CPU's node.
	.globl	sys_null_weights
	.type	sys_null_weights, %object
sys_null_weights:
	.quad	1, 2, 3, 5, 8, 13, 21, 34
	.size	sys_null_weights, . - sys_null_weights

	.text

// long sys_getcpu(void): (node << 32) | cpu of the CPU serving the call
	.globl	sys_getcpu
	.type	sys_getcpu, %function
sys_getcpu:
	mrs	x1, tpidr_el1
	ldr	x0, [x1, #PCPU_CPU]
	ldr	x2, [x1, #PCPU_NODE]
	orr	x0, x0, x2, lsl #32
	ret
	.size	sys_getcpu, . - sys_getcpu

// void sys_exit(int code): this workload task is done; the CPU powers off.
// The code rides along in x1 (CPU_OFF ignores it) so the host can report it.
	.globl	sys_exit
	.type	sys_exit, %function
sys_exit:
	mov	x1, x0
	ldr	x0, =PSCI_0_2_FN_CPU_OFF
	smc	#0
	b	.
	.size	sys_exit, . - sys_exit

// long sys_null(long arg): sum the weights (rodata), count the call per CPU
// and in a shared counter (read-write data), return arg + sum.
	.globl	sys_null
	.type	sys_null, %function
sys_null:
	adrp	x1, sys_null_weights
	add	x1, x1, :lo12:sys_null_weights
	mov	x2, #8
	mov	x3, #0
1:	ldr	x4, [x1], #8
	add	x3, x3, x4
	subs	x2, x2, #1
	b.ne	1b
	mrs	x5, tpidr_el1
	ldr	x6, [x5, #PCPU_SYSCALLS]
	add	x6, x6, #1
	str	x6, [x5, #PCPU_SYSCALLS]
	adrp	x7, syscall_count
	add	x7, x7, :lo12:syscall_count
	ldr	x8, [x7]
	add	x8, x8, #1
	str	x8, [x7]
	add	x0, x0, x3
	ret
	.size	sys_null, . - sys_null

// long sys_puts(const char __user *buf, size_t len): console output through
// the firmware.  No copy_from_user checks: the user range is trusted here.
	.globl	sys_puts
	.type	sys_puts, %function
sys_puts:
	mov	x2, x1
	mov	x1, x0
	ldr	x0, =KTEXT_SIP_PUTS
	smc	#0
	ret
	.size	sys_puts, . - sys_puts

// long sys_window(void): the calling task's set-up and warm-up are done.  The
// firmware snapshots this CPU's counters: what ran before is set-up, what
// runs after is the measured window (emu/hw/accounting.py).
	.globl	sys_window
	.type	sys_window, %function
sys_window:
	ldr	x0, =KTEXT_SIP_WINDOW
	smc	#0
	ret
	.size	sys_window, . - sys_window

// The generated paths (emu/blob/synth.py) define sys_synth_<n>; a kernel
// built without them answers those numbers like any missing syscall.  Weak
// stubs of their own, so that sys_ni_syscall keeps its address to itself.
	.irp	n, 0, 1, 2, 3, 4, 5, 6, 7
	.weak	sys_synth_\n
	.type	sys_synth_\n, %function
sys_synth_\n:
	b	sys_ni_syscall
	.size	sys_synth_\n, . - sys_synth_\n
	.endr

	.globl	sys_ni_syscall
	.type	sys_ni_syscall, %function
sys_ni_syscall:
	mov	x0, #-ENOSYS
	ret
	.size	sys_ni_syscall, . - sys_ni_syscall
