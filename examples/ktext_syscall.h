/*
 * KTEXT_SYSCALL(nr, handler): make the kernel function `handler` system call
 * number `nr` (a literal).  The C form of SYSCALL_DEFINE in
 * kernel_blob/syscall.inc: it defines the alias __ktext_syscall_<nr> =
 * handler, which ktext-emu's boot code writes into sys_call_table[nr] before
 * the table is replicated.  The number must be free in sys_call_table
 * (sys_ni_syscall): 7 and 11-15 in the shipped kernel.
 */
#ifndef KTEXT_SYSCALL_H
#define KTEXT_SYSCALL_H

#define KTEXT_SYSCALL(nr, handler)                                  \
	__asm__(".globl __ktext_syscall_" #nr "\n\t"                \
		".set __ktext_syscall_" #nr ", " #handler)

/* The shipped kernel's system calls a workload uses (kernel_blob/asm-offsets.inc). */
#define __NR_exit 1
#define __NR_puts 3

#endif
