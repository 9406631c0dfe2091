/*
 * The cache hierarchy of the cost model, at C speed: per CPU a private L1I,
 * L1D and unified L2; per node a last-level cache (an SLC slice), placed at
 * the memory's home node or at the requester.  Set-associative, true LRU.
 *
 * Fed three ways, all ending in sim_access():
 * - cache_block(), a UC_HOOK_BLOCK hook: every line of the block is fetched,
 *   its PA found through the accounting page table (accel.h);
 * - cache_data_sink(), called by the accounting's instruction hook
 *   (_accel.c, acct_charge) for every data access it decodes, with its PA:
 *   no memory hook, so Unicorn keeps its fast path for loads and stores;
 * - cache_feed(), a stream of (cpu, line, kind, home node) records given by
 *   Python (replay of real traces, tests).
 *
 * One sim_t drives several hierarchies (hier_t) fed the same stream: the
 * structural variants of a preset (next-line prefetch off and on) and the
 * set-sampled copies the fast model uses.  Python owns every array and the
 * structs (emu/hw/cachemodel.py mirrors the layouts in ctypes); a pure-Python
 * simulator there has the same semantics and the tests compare the two.
 *
 * Semantics, shared with the Python reference (ReferenceHierarchy):
 * - a line is PA >> line_shift; its home node is given (or the node of its
 *   RAM bank); keys stored are (line + 1) << 10 | home;
 * - set sampling: a hierarchy with sample_mask != 0 sees only the lines with
 *   ((line >> 3) & sample_mask) == 0 (one group of 8 lines in every
 *   sample_mask + 1), and indexes its caches, built with that many times
 *   fewer sets, by the line with those bits squeezed out: exactly the sampled
 *   sets of the full-size caches (Kessler, Hill and Wood, "A comparison of
 *   trace-sampling techniques for multi-megabyte caches", IEEE TC 43(6), 1994);
 * - a hit makes the line most recently used; a miss fills the lowest empty
 *   way, else evicts the least recently used;
 * - fetch: L1I, then L2, then the LLC (home: the home node's; requester: the
 *   CPU's node's), then DRAM of the home node (a "fill");
 * - data read/write: L1D (write-allocate; a write makes the line dirty), then
 *   as for a fetch.  After the missing line is looked up below, a dirty L1D
 *   victim is written into the L2 (allocated dirty on a miss, no read);
 * - an L2 victim: an inclusive L2 removes it from the CPU's L1D (a
 *   back-invalidation; a dirty L1D copy makes the victim dirty).  The L1I
 *   is only weakly inclusive (filled through the L2, never back-invalidated),
 *   as Arm documents for its DynamIQ-era cores' L1I/L2; a dirty
 *   victim is written into the LLC that holds its home (allocated dirty on a
 *   miss); a dirty LLC victim is written back to DRAM of its home node;
 * - next-line prefetch (hierarchies with prefetch set): an L1I demand miss of
 *   line L also looks up L + 1 in the L1I when both are in the same 4 KiB
 *   page (and, when sampling, the same group); a miss there fills it through
 *   L2/LLC/DRAM, counted as prefetch traffic, not as a demand miss;
 * - the LLC is non-inclusive and is not back-invalidated; no coherence
 *   between CPUs' private caches.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "accel.h"

typedef struct {
    uint64_t *tags;     /* sets * ways entries: (line + 1) << 10 | home, 0 = empty */
    uint64_t *stamps;   /* time of last use of each way (LRU) */
    uint8_t *dirty;
    uint64_t set_mask;  /* sets - 1 (sets is a power of two) */
    uint64_t ways;
    uint64_t clock;     /* advances on every lookup */
} cache_t;

#define HOME_BITS 10
#define HOME_MASK ((1u << HOME_BITS) - 1)

/* Access kinds (cache_feed's records, the statistics). */
enum { K_FETCH = 0, K_READ = 1, K_WRITE = 2 };
/* Classes a fill is charged to: demand fetch, demand data, prefetch. */
enum { C_FETCH = 0, C_DATA = 1, C_PREFETCH = 2 };

/* Per-CPU statistics row: these fixed counts (mirrored in cachestats.py), then,
 * kept apart and sparsely, per home node the CPU touched: LLC hits [class],
 * DRAM fills [class], DRAM write-backs (a node record, below). */
enum {
    ST_FETCH_LINES, ST_READ_LINES, ST_WRITE_LINES, ST_L1I_MISSES, ST_L1D_MISSES,
    ST_L2_FETCH_HITS, ST_L2_FETCH_MISSES, ST_L2_DATA_HITS, ST_L2_DATA_MISSES,
    ST_PREFETCHES, ST_PREFETCH_L1_HITS, ST_L2_PREFETCH_HITS,
    ST_L1D_WRITEBACKS, ST_L2_WRITEBACKS, ST_BACK_INVALIDATIONS, ST_LLC_WRITEBACKS, ST_FIXED
};
/* A node record: the home node, then its counts.  A CPU's records are in the
 * order it first touched each home (node_rows[cpu][slot]), found through
 * node_slot[cpu][home] (slot + 1, 0: none yet).  A CPU touches a few homes of
 * a 1024-node machine, so the arrays (anonymous memory, committed on first
 * touch) cost a page or two per CPU, not 7 counts x every node. */
enum { NR_HOME, NR_LLC_HITS, NR_DRAM = NR_LLC_HITS + 3, NR_DRAM_WB = NR_DRAM + 3, NODE_REC };

typedef struct {
    cache_t *l1i;       /* [cpu] */
    cache_t *l1d;       /* [cpu] */
    cache_t *l2;        /* [cpu] */
    cache_t *llc;       /* [node] */
    uint64_t *stats;    /* [cpu][row_len]: the ST_* counts */
    uint64_t row_len;   /* ST_FIXED */
    uint64_t llc_at_home;   /* 1: the home node's LLC; 0: the requester's */
    uint64_t inclusive;     /* L2 inclusive of L1I and L1D */
    uint64_t prefetch;      /* next-line instruction prefetch */
    uint64_t sample_mask;   /* 0: every line; else see the header */
    uint64_t n_nodes;
    /* [cpu]: the key of the CPU's last L1I / L1D access while it is that
     * cache's most recently used line (LAST_DIRTY: and dirty), else NO_KEY.
     * Another access to it is a hit that changes no LRU order, so it is only
     * counted: the common case of a loop's line, at a few instructions. */
    uint64_t *last_fetch;
    uint64_t *last_data;
    uint16_t *node_slot;  /* [cpu][n_nodes]: slot + 1 of the home's record, 0: none */
    uint64_t *node_used;  /* [cpu]: records in use */
    uint64_t *node_rows;  /* [cpu][n_nodes][NODE_REC] */
} hier_t;

#define LAST_DIRTY (1ull << 63)

typedef struct {
    acct_t *acct;       /* the accounting page table (VA page -> PA page) */
    hier_t *hiers;
    uint64_t n_hiers;
    uint64_t cpu;       /* the current CPU ... */
    uint64_t node;      /* ... and its node */
    uint64_t line_shift;
    uint64_t n_nodes;
    uint64_t ram_base;
    uint64_t bank_size;
    uint64_t unknown_fetch_lines; /* fetches from pages never filled: must stay 0 */
    uint64_t unknown_data_lines;  /* data accesses outside RAM */
} sim_t;

#define NO_KEY 0

static inline uint64_t set_of(const hier_t *h, const cache_t *c, uint64_t line) {
    if (h->sample_mask) line = ((line >> 6) << 3) | (line & 7);
    return line & c->set_mask;
}

/* Look `key` up; on a miss install it.  Returns 1 on a hit.  On a miss
 * *victim is the evicted key (NO_KEY if the way was empty). */
static inline int cache_lookup(const hier_t *h, cache_t *c, uint64_t key, int make_dirty,
                               uint64_t *victim, int *victim_dirty) {
    uint64_t base = set_of(h, c, (key >> HOME_BITS) - 1) * c->ways;
    uint64_t *tags = c->tags + base;
    uint64_t *stamps = c->stamps + base;
    uint8_t *dirty = c->dirty + base;
    uint64_t now = ++c->clock;
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
    *victim = tags[chosen];
    *victim_dirty = tags[chosen] ? dirty[chosen] : 0;
    tags[chosen] = key;
    stamps[chosen] = now;
    dirty[chosen] = (uint8_t)make_dirty;
    return 0;
}

/* Drop `key` from `c` if present; returns 1 + its dirty bit, or 0 if absent. */
static int cache_remove(const hier_t *h, cache_t *c, uint64_t key) {
    uint64_t base = set_of(h, c, (key >> HOME_BITS) - 1) * c->ways, way;
    for (way = 0; way < c->ways; way++) {
        if (c->tags[base + way] == key) {
            c->tags[base + way] = 0;
            return 1 + c->dirty[base + way];
        }
    }
    return 0;
}

/* The current CPU's record of home node `home`, made on first use. */
static inline uint64_t *node_rec(const sim_t *s, hier_t *h, uint64_t home) {
    uint16_t *slot = &h->node_slot[s->cpu * h->n_nodes + home];
    uint64_t *rows = h->node_rows + s->cpu * h->n_nodes * NODE_REC;
    if (*slot == 0) {
        uint64_t used = h->node_used[s->cpu]++;
        *slot = (uint16_t)(used + 1);
        rows[used * NODE_REC + NR_HOME] = home;
    }
    return rows + (uint64_t)(*slot - 1) * NODE_REC;
}

static inline cache_t *llc_for(const sim_t *s, const hier_t *h, uint64_t key) {
    return h->llc_at_home ? &h->llc[key & HOME_MASK] : &h->llc[s->node];
}

static void llc_write(const sim_t *s, hier_t *h, uint64_t *row, uint64_t key) {
    uint64_t victim;
    int victim_dirty;
    if (!cache_lookup(h, llc_for(s, h, key), key, 1, &victim, &victim_dirty) && victim_dirty) {
        row[ST_LLC_WRITEBACKS]++;
        node_rec(s, h, victim & HOME_MASK)[NR_DRAM_WB]++;
    }
}

static void l2_victim(const sim_t *s, hier_t *h, uint64_t *row, uint64_t key, int dirty) {
    if (h->inclusive) {
        int in_d = cache_remove(h, &h->l1d[s->cpu], key);
        if (in_d) row[ST_BACK_INVALIDATIONS]++;
        if (in_d == 2) dirty = 1;
    }
    if (dirty) {
        row[ST_L2_WRITEBACKS]++;
        llc_write(s, h, row, key);
    }
}

/* A line missing the L1: L2, LLC, DRAM.  `cls` is C_FETCH, C_DATA or C_PREFETCH. */
static void l2_read(const sim_t *s, hier_t *h, uint64_t *row, uint64_t key, int cls) {
    uint64_t victim, llc_victim, home = key & HOME_MASK;
    int victim_dirty, llc_victim_dirty;
    if (cache_lookup(h, &h->l2[s->cpu], key, 0, &victim, &victim_dirty)) {
        row[cls == C_FETCH ? ST_L2_FETCH_HITS : cls == C_DATA ? ST_L2_DATA_HITS
                                                             : ST_L2_PREFETCH_HITS]++;
    } else {
        if (cls != C_PREFETCH) row[cls == C_FETCH ? ST_L2_FETCH_MISSES : ST_L2_DATA_MISSES]++;
        if (cache_lookup(h, llc_for(s, h, key), key, 0, &llc_victim, &llc_victim_dirty)) {
            node_rec(s, h, home)[NR_LLC_HITS + cls]++;
        } else {
            node_rec(s, h, home)[NR_DRAM + cls]++;
            if (llc_victim_dirty) {
                row[ST_LLC_WRITEBACKS]++;
                node_rec(s, h, llc_victim & HOME_MASK)[NR_DRAM_WB]++;
            }
        }
        if (victim != NO_KEY) l2_victim(s, h, row, victim, victim_dirty);
    }
}

static void l1_victim_written_back(const sim_t *s, hier_t *h, uint64_t *row, uint64_t key) {
    uint64_t victim;
    int victim_dirty;
    row[ST_L1D_WRITEBACKS]++;
    if (!cache_lookup(h, &h->l2[s->cpu], key, 1, &victim, &victim_dirty) && victim != NO_KEY)
        l2_victim(s, h, row, victim, victim_dirty);
}

static inline int sampled(const hier_t *h, uint64_t line) {
    return ((line >> 3) & h->sample_mask) == 0;
}

/* One access of the current CPU to `line` (home node `home`) in hierarchy h. */
static void hier_access(const sim_t *s, hier_t *h, uint64_t line, uint64_t home, int kind) {
    uint64_t *row = h->stats + s->cpu * h->row_len;
    uint64_t key = ((line + 1) << HOME_BITS) | home, victim;
    int victim_dirty;
    uint64_t *last, invalidations;
    if (!sampled(h, line)) return;
    if (kind == K_FETCH) {
        last = &h->last_fetch[s->cpu];
        row[ST_FETCH_LINES]++;
        if (*last == key) return;
        *last = key;
        if (cache_lookup(h, &h->l1i[s->cpu], key, 0, &victim, &victim_dirty)) return;
        row[ST_L1I_MISSES]++;
        invalidations = row[ST_BACK_INVALIDATIONS];
        l2_read(s, h, row, key, C_FETCH);
        if (h->prefetch) {
            *last = NO_KEY; /* the prefetch fill could share the line's set */
            uint64_t next = line + 1;
            uint64_t page_lines_mask = (4096u >> s->line_shift) - 1;
            if ((next & page_lines_mask) != 0 && (!h->sample_mask || (next & 7) != 0)) {
                uint64_t next_key = ((next + 1) << HOME_BITS) | home;
                row[ST_PREFETCHES]++;
                if (cache_lookup(h, &h->l1i[s->cpu], next_key, 0, &victim, &victim_dirty))
                    row[ST_PREFETCH_L1_HITS]++;
                else
                    l2_read(s, h, row, next_key, C_PREFETCH);
            }
        }
        /* an inclusive L2's eviction may have taken the last data line out of the L1D */
        if (row[ST_BACK_INVALIDATIONS] != invalidations) h->last_data[s->cpu] = NO_KEY;
        return;
    }
    last = &h->last_data[s->cpu];
    row[kind == K_WRITE ? ST_WRITE_LINES : ST_READ_LINES]++;
    if (*last == (key | LAST_DIRTY) || (kind != K_WRITE && *last == key)) return;
    *last = kind == K_WRITE ? key | LAST_DIRTY : key;
    if (cache_lookup(h, &h->l1d[s->cpu], key, kind == K_WRITE, &victim, &victim_dirty)) return;
    row[ST_L1D_MISSES]++;
    invalidations = row[ST_BACK_INVALIDATIONS];
    l2_read(s, h, row, key, C_DATA);
    if (victim_dirty) l1_victim_written_back(s, h, row, victim);
    /* an inclusive L2's eviction may have taken the line out of the L1D */
    if (row[ST_BACK_INVALIDATIONS] != invalidations) *last = NO_KEY;
}

static inline void sim_access(sim_t *s, uint64_t line, uint64_t home, int kind) {
    uint64_t i;
    for (i = 0; i < s->n_hiers; i++) hier_access(s, &s->hiers[i], line, home, kind);
}

static inline int64_t node_of_line(const sim_t *s, uint64_t line) {
    uint64_t pa = line << s->line_shift, node;
    if (pa < s->ram_base) return -1;
    node = (pa - s->ram_base) / s->bank_size;
    return node < s->n_nodes ? (int64_t)node : -1;
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
        int64_t node;
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
        node = known ? node_of_line(s, pa >> shift) : -1;
        if (node < 0) {
            s->unknown_fetch_lines++;
            continue;
        }
        sim_access(s, pa >> shift, (uint64_t)node, K_FETCH);
    }
}

/* Every line of the data access [pa, pa + size), as the accounting decodes it. */
void cache_data_sink(void *user, uint64_t pa, uint32_t size, uint32_t write) {
    sim_t *s = (sim_t *)user;
    uint64_t line, last;
    if (size < 1) size = 1;
    last = (pa + size - 1) >> s->line_shift;
    for (line = pa >> s->line_shift; line <= last; line++) {
        int64_t node = node_of_line(s, line);
        if (node < 0) {
            s->unknown_data_lines++;
            continue;
        }
        sim_access(s, line, (uint64_t)node, write ? K_WRITE : K_READ);
    }
}

/* UC_HOOK_MEM_READ | UC_HOOK_MEM_WRITE (the Python-free fallback when the
 * accounting has no C instruction hook): `address` is physical. */
void cache_mem(void *uc, int type, uint64_t address, int size, int64_t value, void *user) {
    (void)uc;
    (void)value;
    cache_data_sink(user, address, size < 1 ? 1u : (uint32_t)size, type == 17 /* UC_MEM_WRITE */);
}

/* A stream of records: cpu, line, kind (K_*), home node, each an array of n.
 * Returns the index of the first bad record (cpu or home out of range, bad
 * kind) or n when all were fed.  Leaves the current CPU as it found it. */
int64_t cache_feed(sim_t *s, const uint32_t *cpus, const uint64_t *lines, const uint8_t *kinds,
                   const uint16_t *homes, int64_t n, const uint64_t *cpu_nodes, uint64_t n_cpus) {
    uint64_t saved_cpu = s->cpu, saved_node = s->node;
    int64_t i;
    for (i = 0; i < n; i++) {
        if (cpus[i] >= n_cpus || homes[i] >= s->n_nodes || kinds[i] > K_WRITE) break;
        s->cpu = cpus[i];
        s->node = cpu_nodes[cpus[i]];
        sim_access(s, lines[i], homes[i], kinds[i]);
    }
    s->cpu = saved_cpu;
    s->node = saved_node;
    return i;
}

static PyObject *addresses(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:n,s:n,s:n,s:n,s:n}",
                         "cache_block", (unsigned long long)(uintptr_t)&cache_block,
                         "cache_mem", (unsigned long long)(uintptr_t)&cache_mem,
                         "cache_data_sink", (unsigned long long)(uintptr_t)&cache_data_sink,
                         "cache_feed", (unsigned long long)(uintptr_t)&cache_feed,
                         "sim_size", (Py_ssize_t)sizeof(sim_t),
                         "hier_size", (Py_ssize_t)sizeof(hier_t),
                         "cache_size", (Py_ssize_t)sizeof(cache_t),
                         "stat_fixed", (Py_ssize_t)ST_FIXED,
                         "node_rec", (Py_ssize_t)NODE_REC);
}

static PyMethodDef methods[] = {
    {"addresses", addresses, METH_NOARGS, "Addresses of the C hooks and the struct sizes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cachesim", "C-speed cache hierarchy for the cost model.", -1, methods,
};

PyMODINIT_FUNC PyInit__cachesim(void) { return PyModule_Create(&module); }
