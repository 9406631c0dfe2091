/*
 * ktm_init: the static, libc-free AArch64 /init that benchmarks/realkernel
 * boots under qemu-system-aarch64 to measure a real kernel's syscall paths.
 *
 * Built with: aarch64-linux-gnu-gcc -static -nostdlib -ffreestanding -O2
 *
 * Every system call goes through its own noinline wrapper `sc_NAME`, so the
 * `svc #0` of each measured call sits inside a symbol of its own: the analysis
 * attributes each kernel excursion to the wrapper whose svc preceded it
 * (nm of this binary gives the wrapper ranges).  Wrappers named sc_ctl_* are
 * control traffic (console, fork, affinity, synchronisation), never measured.
 *
 * Protocol with the host script (measure.py):
 *   1. fork a child; parent pins itself to CPU 0, child to CPU 1;
 *   2. both run every loop `ktm_warmup` times (unrecorded: warms the dentry
 *      and slab caches and faults the pages in);
 *   3. the child parks on a shared futex; the parent prints "KTM READY" and
 *      blocks reading a line from the console;
 *   4. the host switches QEMU's exec log on and sends a line;
 *   5. the parent wakes the child; both run every loop `ktm_iters` times,
 *      each prints "KTM END cpuN"; the parent reaps the child, prints
 *      "KTM DONE" and powers the machine off after the host's next line.
 * Parameters come from the kernel command line (unknown key=value words
 * reach init as environment variables): ktm_iters=N ktm_warmup=N ktm_cpus=N
 * ktm_mode=0|1.
 *
 * ktm_mode=1 (stream) is for short, self-contained log excerpts: no console
 * handshake (whose kernel path would fill an excerpt with its translations);
 * after "KTM STREAM" both CPUs call getppid `ktm_iters` times (its path is
 * the shortest, so an excerpt holds many calls) and the host switches the
 * log on mid-loop.
 */

typedef unsigned long u64;
typedef long s64;

#define NR_getppid 173
#define NR_read 63
#define NR_write 64
#define NR_openat 56
#define NR_close 57
#define NR_fstat 80
#define NR_newfstatat 79
#define NR_pipe2 59
#define NR_mmap 222
#define NR_munmap 215
#define NR_clock_gettime 113
#define NR_sched_yield 124
#define NR_futex 98
#define NR_clone 220
#define NR_exit 93
#define NR_wait4 260
#define NR_sched_setaffinity 122
#define NR_reboot 142

#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_WRONLY 1
#define O_CLOEXEC 02000000
#define PROT_READ 1
#define PROT_WRITE 2
#define MAP_SHARED 0x01
#define MAP_PRIVATE 0x02
#define MAP_ANONYMOUS 0x20
#define FUTEX_WAIT 0
#define FUTEX_WAKE 1
#define FUTEX_PRIVATE_FLAG 128
#define CLOCK_MONOTONIC 1
#define SIGCHLD 17
#define LINUX_REBOOT_MAGIC1 0xfee1dead
#define LINUX_REBOOT_MAGIC2 672274793
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321fedc

static inline s64 raw6(u64 nr, u64 a, u64 b, u64 c, u64 d, u64 e, u64 f)
{
	register u64 x8 __asm__("x8") = nr;
	register u64 x0 __asm__("x0") = a;
	register u64 x1 __asm__("x1") = b;
	register u64 x2 __asm__("x2") = c;
	register u64 x3 __asm__("x3") = d;
	register u64 x4 __asm__("x4") = e;
	register u64 x5 __asm__("x5") = f;
	__asm__ volatile("svc #0"
			 : "+r"(x0)
			 : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5)
			 : "memory", "cc");
	return (s64)x0;
}

/* One wrapper per call site kind: its svc lies inside symbol sc_NAME. */
#define WRAP(name, nr)                                                        \
	__attribute__((noinline)) s64 sc_##name(u64 a, u64 b, u64 c, u64 d,  \
						  u64 e, u64 f)               \
	{                                                                     \
		return raw6(nr, a, b, c, d, e, f);                            \
	}

/* measured */
WRAP(getppid, NR_getppid)
WRAP(read_devzero, NR_read)
WRAP(write_devnull, NR_write)
WRAP(openat, NR_openat)
WRAP(close, NR_close)
WRAP(fstat, NR_fstat)
WRAP(newfstatat, NR_newfstatat)
WRAP(pipe_write, NR_write)
WRAP(pipe_read, NR_read)
WRAP(mmap, NR_mmap)
WRAP(munmap, NR_munmap)
WRAP(clock_gettime, NR_clock_gettime)
WRAP(sched_yield, NR_sched_yield)
WRAP(futex_wake, NR_futex)
/* control traffic, not measured */
WRAP(ctl_read, NR_read)
WRAP(ctl_write, NR_write)
WRAP(ctl_open, NR_openat)
WRAP(ctl_pipe2, NR_pipe2)
WRAP(ctl_mmap, NR_mmap)
WRAP(ctl_futex, NR_futex)
WRAP(ctl_clone, NR_clone)
WRAP(ctl_exit, NR_exit)
WRAP(ctl_wait4, NR_wait4)
WRAP(ctl_setaffinity, NR_sched_setaffinity)
WRAP(ctl_yield, NR_sched_yield)
WRAP(ctl_reboot, NR_reboot)

/* -ffreestanding still lets GCC emit calls to these. */
void *memset(void *dst, int c, u64 n)
{
	unsigned char *p = dst;
	while (n--)
		*p++ = (unsigned char)c;
	return dst;
}

void *memcpy(void *dst, const void *src, u64 n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}

static u64 str_len(const char *s)
{
	u64 n = 0;
	while (s[n])
		n++;
	return n;
}

static void say(const char *s)
{
	sc_ctl_write(1, (u64)s, str_len(s), 0, 0, 0);
}

static void say_num(const char *prefix, u64 v, const char *suffix)
{
	char buf[24];
	int i = sizeof(buf);
	buf[--i] = 0;
	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	say(prefix);
	say(&buf[i]);
	say(suffix);
}

static u64 env_num(char **envp, const char *key, u64 fallback)
{
	u64 klen = str_len(key);
	for (; *envp; envp++) {
		const char *e = *envp;
		u64 i = 0;
		while (i < klen && e[i] == key[i])
			i++;
		if (i == klen && e[i] == '=') {
			u64 v = 0;
			for (e += i + 1; *e >= '0' && *e <= '9'; e++)
				v = v * 10 + (u64)(*e - '0');
			return v;
		}
	}
	return fallback;
}

/*
 * A hint after every measured call.  Under QEMU's -icount (single-threaded,
 * round-robin TCG) YIELD ends the vCPU's turn, so the two CPUs' records
 * interleave call by call as they would on two real cores; under
 * multi-threaded TCG, and on hardware, it does nothing.  User mode only: the
 * kernel never sees it.
 */
static inline void hand_over(void)
{
	__asm__ volatile("yield" ::: "memory");
}

struct fds {
	s64 zero, null, pipe[2];
};

static unsigned char iobuf[2][4096];
static unsigned char statbuf[2][256];
static int futex_word[2];

static void run_loops(struct fds *f, u64 iters, int cpu)
{
	unsigned char *buf = iobuf[cpu];
	unsigned char *st = statbuf[cpu];
	struct { s64 sec, nsec; } ts;
	u64 i;

	for (i = 0; i < iters; i++) {
		sc_getppid(0, 0, 0, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		sc_read_devzero(f->zero, (u64)buf, 64, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		sc_write_devnull(f->null, (u64)buf, 64, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		s64 fd = sc_openat((u64)AT_FDCWD, (u64)"/dev/null", O_RDONLY | O_CLOEXEC, 0, 0, 0);
		hand_over();
		sc_close(fd, 0, 0, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		sc_fstat(f->null, (u64)st, 0, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		sc_newfstatat((u64)AT_FDCWD, (u64)"/init", (u64)st, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		sc_pipe_write(f->pipe[1], (u64)buf, 64, 0, 0, 0);
		hand_over();
		sc_pipe_read(f->pipe[0], (u64)buf, 64, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		s64 p = sc_mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				(u64)-1, 0);
		hand_over();
		sc_munmap(p, 4096, 0, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		sc_clock_gettime(CLOCK_MONOTONIC, (u64)&ts, 0, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		sc_sched_yield(0, 0, 0, 0, 0, 0);
		hand_over();
	}
	for (i = 0; i < iters; i++) {
		sc_futex_wake((u64)&futex_word[cpu], FUTEX_WAKE | FUTEX_PRIVATE_FLAG, 1, 0, 0, 0);
		hand_over();
	}
}

static void stream_loops(u64 iters)
{
	u64 i;

	for (i = 0; i < iters; i++) {
		sc_getppid(0, 0, 0, 0, 0, 0);
		hand_over();
	}
}

static void open_fds(struct fds *f)
{
	f->zero = sc_ctl_open((u64)AT_FDCWD, (u64)"/dev/zero", O_RDONLY, 0, 0, 0);
	f->null = sc_ctl_open((u64)AT_FDCWD, (u64)"/dev/null", O_WRONLY, 0, 0, 0);
	int p[2];
	sc_ctl_pipe2((u64)p, 0, 0, 0, 0, 0);
	f->pipe[0] = p[0];
	f->pipe[1] = p[1];
	if (f->zero < 0 || f->null < 0 || p[0] < 0)
		say("KTM ERROR open\n");
}

static void pin(int cpu)
{
	u64 mask = 1UL << cpu;
	if (sc_ctl_setaffinity(0, sizeof(mask), (u64)&mask, 0, 0, 0) < 0)
		say_num("KTM ERROR setaffinity cpu", (u64)cpu, "\n");
}

/* Shared page: [0] child ready, [1] go. Shared futexes (no PRIVATE flag). */
static void wait_for(volatile int *word, int value)
{
	while (*word != value)
		sc_ctl_futex((u64)word, FUTEX_WAIT, (u64)*word, 0, 0, 0);
}

static void wake(volatile int *word, int value)
{
	*word = value;
	sc_ctl_futex((u64)word, FUTEX_WAKE, 1, 0, 0, 0);
}

static void power_off(void)
{
	sc_ctl_reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF, 0, 0,
		      0);
	for (;;)
		sc_ctl_yield(0, 0, 0, 0, 0, 0);
}

__attribute__((used)) void ktm_main(long argc, char **argv)
{
	char **envp = argv + argc + 1;
	u64 iters = env_num(envp, "ktm_iters", 200);
	u64 warmup = env_num(envp, "ktm_warmup", 20);
	u64 two_cpus = env_num(envp, "ktm_cpus", 2) >= 2;
	u64 stream = env_num(envp, "ktm_mode", 0) == 1;
	volatile int *shared = (volatile int *)sc_ctl_mmap(
		0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, (u64)-1, 0);
	struct fds f;
	s64 child = -1;
	char line[64];

	say_num("KTM START iters=", iters, "");
	say_num(" warmup=", warmup, "\n");
	if (two_cpus) {
		child = sc_ctl_clone(SIGCHLD, 0, 0, 0, 0, 0);
		if (child == 0) {
			pin(1);
			open_fds(&f);
			run_loops(&f, warmup, 1);
			wake(&shared[0], 1);
			wait_for(&shared[1], 1);
			if (stream)
				stream_loops(iters);
			else
				run_loops(&f, iters, 1);
			say("KTM END cpu1\n");
			sc_ctl_exit(0, 0, 0, 0, 0, 0);
		}
	}
	pin(0);
	open_fds(&f);
	run_loops(&f, warmup, 0);
	if (two_cpus)
		wait_for(&shared[0], 1);
	if (stream) {
		if (two_cpus)
			wake(&shared[1], 1);
		say("KTM STREAM\n");
		stream_loops(iters);
		say("KTM END cpu0\n");
		power_off();
	}
	say("KTM READY\n");
	sc_ctl_read(0, (u64)line, sizeof(line), 0, 0, 0);
	if (two_cpus)
		wake(&shared[1], 1);
	run_loops(&f, iters, 0);
	say("KTM END cpu0\n");
	if (two_cpus) {
		int status;
		sc_ctl_wait4((u64)child, (u64)&status, 0, 0, 0, 0);
	}
	say("KTM DONE\n");
	sc_ctl_read(0, (u64)line, sizeof(line), 0, 0, 0);
	power_off();
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	ldr x0, [sp]\n"   /* argc */
	"	add x1, sp, #8\n" /* argv */
	"	and sp, x1, #~15\n"
	"	bl ktm_main\n"
	"1:	b 1b\n");
