// The kernel's static keys, the sites that use them, and the EL0 workloads
// that flip them from user space (through sys_static_key, patching.S) while
// other CPUs run the sites.

	.include "asm-offsets.inc"
	.include "task.inc"
	.include "jump_label.inc"

	DEFINE_STATIC_KEY probe_key_false, 0
	DEFINE_STATIC_KEY probe_key_true, 1
	DEFINE_STATIC_KEY storm_key, 0

	.globl	NR_STATIC_KEYS
	.equ	NR_STATIC_KEYS, 3

	.section .rodata, "a"
	.balign	8
// The keys sys_static_key() may change, by index.
	.globl	static_key_table
	.type	static_key_table, %object
static_key_table:
	.quad	probe_key_false			// 0
	.quad	probe_key_true			// 1
	.quad	storm_key			// 2
	.size	static_key_table, . - static_key_table

	.text

// long sys_static_key(unsigned long index, long op): static_key_update() on
// static_key_table[index]; -EINVAL for an unknown key or op.
	.globl	sys_static_key
	.type	sys_static_key, %function
sys_static_key:
	cmp	x0, #NR_STATIC_KEYS
	b.hs	1f
	cmp	x1, #2
	b.hi	1f
	adrp	x2, static_key_table
	add	x2, x2, :lo12:static_key_table
	ldr	x0, [x2, x0, lsl #3]
	b	static_key_update
1:	mov	x0, #-EINVAL
	ret
	.size	sys_static_key, . - sys_static_key

// long static_key_probe(void): which way each site went, bit set = the site
// saw its key enabled.  Four sites cover the four initial encodings:
//   bit 0 probe_key_false, unlikely (NOP)   bit 1 probe_key_false, likely (B)
//   bit 2 probe_key_true, unlikely (B)      bit 3 probe_key_true, likely (NOP)
//   bit 4 storm_key, unlikely (NOP): the site static_key_storm_site
// Also the handler of __NR_static_probe.
	.globl	static_key_probe
	.type	static_key_probe, %function
static_key_probe:
	mov	x0, #0
	static_branch_unlikely probe_key_false, 1f, 0
	b	2f
1:	orr	x0, x0, #1
2:	static_branch_likely probe_key_false, 3f, 0
	orr	x0, x0, #2
3:	static_branch_unlikely probe_key_true, 4f, 1
	b	5f
4:	orr	x0, x0, #4
5:	static_branch_likely probe_key_true, 6f, 1
	orr	x0, x0, #8
6:
	.globl	static_key_storm_site
static_key_storm_site:
	static_branch_unlikely storm_key, 7f, 0
	ret
7:	orr	x0, x0, #16
	ret
	.size	static_key_probe, . - static_key_probe

// ---------------------------------------------------------------- EL0
	.section .user.data, "aw"
	.balign	8
storm_flippers_started:
	.quad	0
storm_flippers_running:
	.quad	0

	.section .user.text, "ax"

// key_storm: even tasks flip storm_key x1 times each (toggle through
// __NR_static_key, then run the sites once); odd tasks run the sites
// (__NR_static_probe) until every flipper that started is done.  x1 = 0:
// flippers flip forever.
	.globl	workload_key_storm
	.type	workload_key_storm, %function
workload_key_storm:
	mov	x19, x1
	mov	x22, x0
	window_start_unless_warmup	xzr	// no warm-up: the storm is the measurement
	adr	x20, storm_flippers_started
	adr	x21, storm_flippers_running
	tbnz	x22, #0, .Lstorm_watch
	mov	x2, #1
	str	x2, [x20]
1:	ldxr	x3, [x21]
	add	x3, x3, #1
	stxr	w4, x3, [x21]
	cbnz	w4, 1b
2:	mov	x0, #2				// storm_key
	mov	x1, #2				// toggle
	mov	x8, #__NR_static_key
	svc	#0
	mov	x8, #__NR_static_probe		// and run the site: a gap between flips
	svc	#0
	cbz	x19, 2b
	subs	x19, x19, #1
	b.ne	2b
3:	ldxr	x3, [x21]
	sub	x3, x3, #1
	stxr	w4, x3, [x21]
	cbnz	w4, 3b
	b	.Lstorm_exit
.Lstorm_watch:
	mov	x8, #__NR_static_probe
	svc	#0
	ldr	x2, [x20]
	cbz	x2, .Lstorm_watch		// no flipper has started yet
	ldr	x3, [x21]
	cbnz	x3, .Lstorm_watch
.Lstorm_exit:
	mov	x0, #0
	mov	x8, #__NR_exit
	svc	#0
	.size	workload_key_storm, . - workload_key_storm

// static_keys: every task toggles probe_key_false, then runs the probe
// sites and the capability sites, x1 times (0: forever).
	.globl	workload_static_keys
	.type	workload_static_keys, %function
workload_static_keys:
	mov	x19, x1
	window_start_unless_warmup	x3
1:	mov	x0, #0				// probe_key_false
	mov	x1, #2
	mov	x8, #__NR_static_key
	svc	#0
	mov	x8, #__NR_cpucaps
	svc	#0
	mov	x8, #__NR_static_probe
	svc	#0
	next_iteration_or_exit
	.size	workload_static_keys, . - workload_static_keys

// key_watch: every task runs the sites (__NR_static_probe) x1 times (0:
// forever) and changes nothing: a host flipping keys is the only writer.
	.globl	workload_key_watch
	.type	workload_key_watch, %function
workload_key_watch:
	mov	x19, x1
	window_start_unless_warmup	x3
1:	mov	x8, #__NR_static_probe
	svc	#0
	next_iteration_or_exit
	.size	workload_key_watch, . - workload_key_watch
