/*
 * The detailed NUMA cost model's caches, at C speed: per-CPU L1I and L1D and
 * one shared last-level cache per node, set-associative with true LRU.
 *
 * Unicorn calls cache_block() at the start of every translated block and
 * cache_mem() on every data access.  Instruction fetches are looked up by
 * physical address through the accounting page table (accel.h: the TLB-fill
 * hook records the PA page of every virtual page the current CPU executes
 * from); data accesses arrive with their physical address already, since
 * Unicorn runs in virtual-TLB mode (platform-notes.md).
 *
 * Python owns every array and the sim_t itself (emu/hw/cachemodel.py mirrors
 * the layouts in ctypes and repoints the "current" pointers when the machine
 * switches CPU); a pure-Python simulator there has the same semantics and the
 * tests compare the two access for access.
 *
 * Semantics, shared with the Python reference:
 * - a line is identified by PA >> line_shift; its set is (line & set_mask);
 * - a lookup that hits makes the line most recently used; a miss fills an
 *   empty way (the lowest-numbered) or else evicts the least recently used;
 * - fetch: L1I, then on a miss the CPU's node's LLC, then on a miss DRAM of
 *   the line's node (a "fill").  I-cache lines are never dirty;
 * - data read/write: L1D (write-allocate, a write makes the line dirty),
 *   then as for a fetch (LLC, DRAM).  After the missing line is looked up in
 *   the LLC, a dirty L1D victim is written back into the LLC (a hit marks it
 *   dirty; a miss allocates it dirty without reading DRAM);
 * - a dirty LLC victim is written back to DRAM of its node;
 * - no coherence between CPUs' L1s, no prefetching, inclusion not enforced.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "accel.h"

typedef struct {
    uint64_t *tags;     /* sets * ways entries: line + 1, 0 = empty */
    uint64_t *stamps;   /* time of last use of each way (LRU) */
    uint8_t *dirty;
    uint64_t set_mask;  /* sets - 1 (sets is a power of two) */
    uint64_t ways;
    uint64_t clock;     /* advances on every lookup */
} cache_t;

/* Per-CPU statistics row: these, then fills for fetches [node], fills for
 * data [node] and write-backs to DRAM [node].  Mirrored in cachemodel.py. */
enum {
    ST_FETCH_LINES, ST_L1I_MISSES, ST_READ_LINES, ST_WRITE_LINES, ST_L1D_MISSES,
    ST_LLC_FETCH_HITS, ST_LLC_FETCH_MISSES, ST_LLC_DATA_HITS, ST_LLC_DATA_MISSES,
    ST_L1D_WRITEBACKS, ST_LLC_WRITEBACKS, ST_FIXED
};

typedef struct {
    acct_t *acct;       /* the accounting page table (VA page -> PA page) */
    cache_t *l1i;       /* the current CPU's */
    cache_t *l1d;
    cache_t *llc;       /* the current CPU's node's */
    uint64_t *row;      /* the current CPU's statistics */
    uint64_t line_shift;
    uint64_t n_nodes;
    uint64_t ram_base;
    uint64_t bank_size;
    uint64_t unknown_fetch_lines; /* fetches from pages never filled: must stay 0 */
    uint64_t unknown_data_lines;  /* data accesses outside RAM */
} sim_t;

#define NO_LINE UINT64_MAX

/* Look `line` up; on a miss install it.  Returns 1 on a hit.  On a miss
 * *victim is the evicted line (NO_LINE if the way was empty). */
static inline int cache_lookup(cache_t *c, uint64_t line, int make_dirty, uint64_t *victim,
                               int *victim_dirty) {
    uint64_t base = (line & c->set_mask) * c->ways;
    uint64_t *tags = c->tags + base;
    uint64_t *stamps = c->stamps + base;
    uint8_t *dirty = c->dirty + base;
    uint64_t key = line + 1, now = ++c->clock;
    uint64_t way, chosen = 0, oldest = UINT64_MAX;
    for (way = 0; way < c->ways; way++) {
        if (tags[way] == key) {
            stamps[way] = now;
            if (make_dirty) dirty[way] = 1;
            return 1;
        }
        /* stamps are >= 1, so oldest == 0 means "an empty way was found" */
        if (tags[way] == 0) {
            if (oldest != 0) {
                oldest = 0;
                chosen = way;
            }
        } else if (stamps[way] < oldest) {
            oldest = stamps[way];
            chosen = way;
        }
    }
    *victim = tags[chosen] ? tags[chosen] - 1 : NO_LINE;
    *victim_dirty = tags[chosen] ? dirty[chosen] : 0;
    tags[chosen] = key;
    stamps[chosen] = now;
    dirty[chosen] = (uint8_t)make_dirty;
    return 0;
}

static inline int64_t node_of_line(const sim_t *s, uint64_t line) {
    uint64_t pa = line << s->line_shift, node;
    if (pa < s->ram_base) return -1;
    node = (pa - s->ram_base) / s->bank_size;
    return node < s->n_nodes ? (int64_t)node : -1;
}

static void writeback_to_dram(sim_t *s, uint64_t line) {
    int64_t node = node_of_line(s, line);
    s->row[ST_LLC_WRITEBACKS]++;
    if (node >= 0) s->row[ST_FIXED + 2 * s->n_nodes + (uint64_t)node]++;
}

static void llc_read(sim_t *s, uint64_t line, int data) {
    uint64_t victim;
    int victim_dirty;
    int64_t node;
    if (cache_lookup(s->llc, line, 0, &victim, &victim_dirty)) {
        s->row[data ? ST_LLC_DATA_HITS : ST_LLC_FETCH_HITS]++;
        return;
    }
    s->row[data ? ST_LLC_DATA_MISSES : ST_LLC_FETCH_MISSES]++;
    node = node_of_line(s, line);
    if (node >= 0) s->row[ST_FIXED + (data ? s->n_nodes : 0) + (uint64_t)node]++;
    if (victim_dirty) writeback_to_dram(s, victim);
}

static void llc_write(sim_t *s, uint64_t line) {
    uint64_t victim;
    int victim_dirty;
    if (!cache_lookup(s->llc, line, 1, &victim, &victim_dirty) && victim_dirty)
        writeback_to_dram(s, victim);
}

static void fetch_line(sim_t *s, uint64_t line) {
    uint64_t victim;
    int victim_dirty;
    s->row[ST_FETCH_LINES]++;
    if (cache_lookup(s->l1i, line, 0, &victim, &victim_dirty)) return;
    s->row[ST_L1I_MISSES]++;
    llc_read(s, line, 0);
}

static void data_line(sim_t *s, uint64_t line, int write) {
    uint64_t victim;
    int victim_dirty;
    s->row[write ? ST_WRITE_LINES : ST_READ_LINES]++;
    if (cache_lookup(s->l1d, line, write, &victim, &victim_dirty)) return;
    s->row[ST_L1D_MISSES]++;
    llc_read(s, line, 1);
    if (victim_dirty) {
        s->row[ST_L1D_WRITEBACKS]++;
        llc_write(s, victim);
    }
}

/* UC_HOOK_BLOCK: every line the block covers is fetched once. */
void cache_block(void *uc, uint64_t address, uint32_t size, void *user) {
    sim_t *s = (sim_t *)user;
    const acct_t *a = s->acct;
    uint64_t shift = s->line_shift, line, last, page_key = 0, pa_page = 0;
    int known = 0;
    (void)uc;
    if (size == 0) return;
    last = (address + size - 1) >> shift;
    for (line = address >> shift; line <= last; line++) {
        uint64_t va = line << shift, key = (va >> 12) + 1, pa;
        if (key != page_key) {
            page_key = key;
            if (key == a->cached_key) {
                /* the accounting hook's one-entry cache; record() resets it */
                pa_page = a->cached_pa;
                known = 1;
            } else {
                int64_t i = acct_find(a, va);
                known = i >= 0;
                if (known) pa_page = a->pas[i];
            }
        }
        pa = (pa_page << 12) | (va & 0xfff);
        if (!known || node_of_line(s, pa >> shift) < 0) {
            s->unknown_fetch_lines++;
            continue;
        }
        fetch_line(s, pa >> shift);
    }
}

/* UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE: `address` is physical. */
void cache_mem(void *uc, int type, uint64_t address, int size, int64_t value, void *user) {
    sim_t *s = (sim_t *)user;
    uint64_t line, last;
    int write = type == 17; /* UC_MEM_WRITE; UC_MEM_READ is 16 */
    (void)uc;
    (void)value;
    if (size < 1) size = 1;
    last = (address + (uint64_t)size - 1) >> s->line_shift;
    for (line = address >> s->line_shift; line <= last; line++) {
        if (node_of_line(s, line) < 0) {
            s->unknown_data_lines++;
            continue;
        }
        data_line(s, line, write);
    }
}

static PyObject *addresses(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:K,s:K,s:n,s:n,s:n}",
                         "cache_block", (unsigned long long)(uintptr_t)&cache_block,
                         "cache_mem", (unsigned long long)(uintptr_t)&cache_mem,
                         "sim_size", (Py_ssize_t)sizeof(sim_t),
                         "cache_size", (Py_ssize_t)sizeof(cache_t),
                         "stat_fixed", (Py_ssize_t)ST_FIXED);
}

static PyMethodDef methods[] = {
    {"addresses", addresses, METH_NOARGS, "Addresses of the C hooks and the struct sizes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cachesim", "C-speed cache model hooks for Unicorn.", -1, methods,
};

PyMODINIT_FUNC PyInit__cachesim(void) { return PyModule_Create(&module); }
