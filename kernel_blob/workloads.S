// User-space workloads (EL0).  The host maps .user.text and .user.data into
// the one user address space every task shares, at USER_BASE; a task starts
// at workload_<name> with x0 = task number, x1 = iterations (0: forever),
// x2 = tasks and x3 = warm-up iterations (task.inc).  dbsim itself is
// generated (emu/blob/synth.py).
// Code here may only address its own sections, PC-relative.

	.include "asm-offsets.inc"
	.include "task.inc"

	.section .user.text, "ax"

// syscall: tight EL0 -> EL1 -> EL0 round trips through the syscall table.
	.globl	workload_syscall
	.type	workload_syscall, %function
workload_syscall:
	mov	x19, x1
	window_start_unless_warmup	x3
1:	mov	x0, x19
	mov	x8, #__NR_null
	svc	#0
	next_iteration_or_exit		// 0 iterations: run until stopped
	.size	workload_syscall, . - workload_syscall

// dbsim_tiny: the old dbsim, kept as a negative control: a database-like
// load whose kernel path (about 100 instructions a syscall) and user side
// (a few cache lines) fit in any L1.  Each query picks a row (a per-task LCG),
// looks its key up in the kernel's shared hash index (syscall), copies the
// row out of the kernel buffer into a user buffer on the task's stack
// (copy_to_user-like syscall), checksums it in user space, and commits
// (a third syscall, reading rodata and updating shared counters).
// Returns (in the exit code) nothing; a failed lookup panics through exit(1).
	.globl	workload_dbsim_tiny
	.type	workload_dbsim_tiny, %function
workload_dbsim_tiny:
	mov	x19, x1				// queries left
	ldr	x9, =0x9e3779b9
	madd	x20, x0, x9, x9			// per-task LCG state
	window_start_unless_warmup	x3	// the index was built at boot (db_init)
	ldr	x21, =6364136223846793005
	ldr	x22, =1442695040888963407
	ldr	x23, =DB_KEY_MULT
	mov	x24, #0				// checksum
	sub	sp, sp, #DB_ROW_BYTES
1:	madd	x20, x20, x21, x22
	lsr	x25, x20, #33
	and	x25, x25, #(DB_ROWS - 1)	// row
	mul	x0, x25, x23
	and	x0, x0, #0xffffffff		// its key
	mov	x8, #__NR_db_lookup
	svc	#0
	cmp	x0, x25
	b.ne	9f
	mov	x1, sp
	mov	x2, #DB_ROW_BYTES
	mov	x8, #__NR_db_read
	svc	#0
	mov	x3, sp
	mov	x4, #(DB_ROW_BYTES / 16)
2:	ldp	x5, x6, [x3], #16
	eor	x24, x24, x5
	add	x24, x24, x6
	subs	x4, x4, #1
	b.ne	2b
	mov	x0, x24
	mov	x8, #__NR_null
	svc	#0
	next_iteration_or_exit
9:	mov	x0, #1				// the index lost a row
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_dbsim_tiny, . - workload_dbsim_tiny

// migrate: getcpu/null round trips meant to run under continuous migration
// (the host moves every task to the next node; see emu/workloads.py).
	.globl	workload_migrate
	.type	workload_migrate, %function
workload_migrate:
	mov	x19, x1
	window_start_unless_warmup	x3
1:	mov	x8, #__NR_getcpu
	svc	#0
	mov	x8, #__NR_null
	svc	#0
	next_iteration_or_exit
	.size	workload_migrate, . - workload_migrate

// patchstorm: static keys flipped while all CPUs execute the sites; the
// storm itself is workload_key_storm (static_keys.S): even tasks toggle
// storm_key through the guest's own text patching (every node's copy), odd
// tasks keep running the patched site.
	.globl	workload_patchstorm
	.type	workload_patchstorm, %function
workload_patchstorm:
	b	workload_key_storm
	.size	workload_patchstorm, . - workload_patchstorm
