/*
 * wordstat.c: the worked example of the README ("Your own C code, as user
 * code and as kernel code").  Real C as GCC compiles it: a table of pointers
 * to string constants (absolute addresses), a global with an initial value
 * (.data), a zeroed global (.bss), a switch that becomes a jump table, and
 * calls between functions.
 *
 * One file, three builds, the same numbers:
 *   wordstat.s         user code (--add-user): workload_wordstat computes
 *                      wordstat_score(task) at EL0, asks the kernel for the
 *                      same through syscall 15, prints both, exits 0 if equal;
 *   wordstat_kernel.s  kernel code (--add; wordstat_kernel.c defines
 *                      WORDSTAT_KERNEL): sys_wordstat, syscall 15 through
 *                      KTEXT_SYSCALL;
 *   the host           (cc -DHOST): prints what the emulated runs must print.
 *
 * examples/Makefile has the exact gcc commands; tests/examples/ checks all
 * three agree.
 */

#include "ktext_syscall.h"

typedef unsigned long u64;

static const char *const words[] = {
	"replicate", "kernel", "text", "per", "node", "so", "every", "cpu",
	"fetches", "locally", "numa", "arm64",
};
#define NWORDS (sizeof(words) / sizeof(words[0]))

#define WORDSTAT_NR 15	/* the system call sys_wordstat is */

#ifdef WORDSTAT_KERNEL
/* User and kernel copies link into one image: the kernel's globals get
   their own names. */
#define wordstat_seed kernel_wordstat_seed
#define wordstat_calls kernel_wordstat_calls
#define wordstat_score kernel_wordstat_score
#endif

/* Initialised global (.data) and zeroed global (.bss). */
u64 wordstat_seed = 0x9e3779b97f4a7c15UL;
u64 wordstat_calls;

static u64 str_hash(const char *s)
{
	u64 h = 1469598103934665603UL;	/* FNV-1a */

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211UL;
	}
	return h;
}

static unsigned str_len(const char *s)
{
	unsigned n = 0;

	while (s[n])
		n++;
	return n;
}

static u64 weight(unsigned len)
{
	switch (len) {	/* dense cases: GCC may emit a jump table */
	case 1: return 3;
	case 2: return 5;
	case 3: return 7;
	case 4: return 11;
	case 5: return 13;
	case 6: return 17;
	case 7: return 19;
	case 8: return 23;
	case 9: return 29;
	default: return 31;
	}
}

/* The score of one pass over the word table, mixed with ``salt``. */
u64 wordstat_score(u64 salt)
{
	u64 acc = wordstat_seed ^ salt;
	unsigned i;

	for (i = 0; i < NWORDS; i++)
		acc = (acc ^ str_hash(words[i])) * weight(str_len(words[i])) + i;
	wordstat_calls++;
	return acc;
}

#if defined(HOST)
#include <stdio.h>
/* What each task of a run prints (task = salt). */
int main(void)
{
	u64 task;

	for (task = 0; task < 64; task++)
		printf("task %lu: wordstat_score = 0x%016lx\n", task, wordstat_score(task));
	return 0;
}

#elif defined(WORDSTAT_KERNEL)
/* long sys_wordstat(u64 salt): system call WORDSTAT_NR, at EL1. */
long sys_wordstat(u64 salt)
{
	return (long)wordstat_score(salt);
}
KTEXT_SYSCALL(15, sys_wordstat);

#else
static long syscall2(long nr, long a0, long a1)
{
	register long x8 __asm__("x8") = nr;
	register long x0 __asm__("x0") = a0;
	register long x1 __asm__("x1") = a1;

	__asm__ volatile("svc #0" : "+r"(x0) : "r"(x1), "r"(x8) : "memory");
	return x0;
}

static char *put_str(char *p, const char *s)
{
	while (*s)
		*p++ = *s++;
	return p;
}

static char *put_hex(char *p, u64 v)
{
	static const char digits[] = "0123456789abcdef";
	int shift;

	for (shift = 60; shift >= 0; shift -= 4)
		*p++ = digits[(v >> shift) & 15];
	return p;
}

static char *put_dec(char *p, u64 v)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = '0' + v % 10;
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

/* The EL0 workload: x0 = task, x1 = iterations (0: forever). */
void workload_wordstat(u64 task, u64 iterations)
{
	u64 user = 0, kernel = 0, i;
	char line[96], *p = line;

	for (i = 0; !iterations || i < iterations; i++) {
		user = wordstat_score(task);
		kernel = (u64)syscall2(WORDSTAT_NR, (long)task, 0);
		if (user != kernel)
			break;
	}
	p = put_str(p, "task ");
	p = put_dec(p, task);
	p = put_str(p, ": wordstat_score = 0x");
	p = put_hex(p, user);
	if (user != kernel) {
		p = put_str(p, ", but the kernel says 0x");
		p = put_hex(p, kernel);
	}
	*p++ = '\n';
	syscall2(__NR_puts, (long)line, p - line);
	syscall2(__NR_exit, user != kernel, 0);
	for (;;)
		;
}
#endif
