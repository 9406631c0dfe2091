// The enable callbacks of the system's CPU capabilities
// (arch/arm64/kernel/cpufeature.c): cpu_enable_capabilities() runs, on the
// calling CPU, the callback of every capability in system_cpucaps that has
// one.  Only ARM64_HAS_CNP has one here: cpu_enable_cnp(), which calls
// cpu_enable_swapper_cnp(); with the series' patch 12 that re-installs the
// CPU's own node root with TTBR1_EL1.CnP set (scenarios.S has it, shared
// with the CnP scenarios).
//
// Linux runs the callbacks once every CPU is online (smp_cpus_done() ->
// setup_system_features(), each CPU through stop_machine()), and on a CPU
// brought up later from verify_local_cpu_capabilities().  Here the system's
// capabilities are final before any CPU starts (the host fills
// system_cpucaps at boot), so each CPU runs them on its way to its first
// task, as a late CPU does: no task runs on a CPU before its CnP is set.

	.include "cpucaps.inc"

	.text
	.globl	cpu_enable_capabilities
	.type	cpu_enable_capabilities, %function
cpu_enable_capabilities:
	adrp	x0, system_cpucaps
	ldr	x0, [x0, :lo12:system_cpucaps]
	tbz	x0, #ARM64_HAS_CNP, 1f
	b	cpu_enable_swapper_cnp		// cpu_enable_cnp(): a tail call
1:	ret
	.size	cpu_enable_capabilities, . - cpu_enable_capabilities
