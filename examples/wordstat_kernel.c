/* The kernel build of wordstat.c: sys_wordstat, system call 15 (see wordstat.c). */
#define WORDSTAT_KERNEL
#include "wordstat.c"
