/* Counting for GET /metrics (sg/metrics.h): per-thread blocks of cells and
 * the interning of label values into bounded tables. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_int.h"
#include "sg/alloc.h"

/* ---- buckets ------------------------------------------------------------- */

#define MS 1000000ull
/* A downstream call or a publish: 1 ms to the longest step timeouts. */
const sg__buckets sg__step_buckets = {14,
                                      {1 * MS, 2500000, 5 * MS, 10 * MS, 25 * MS, 50 * MS, 100 * MS,
                                       250 * MS, 500 * MS, 1000 * MS, 2500 * MS, 5000 * MS,
                                       10000 * MS, 30000 * MS},
                                      {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
                                       "0.25", "0.5", "1", "2.5", "5", "10", "30"},
                                      1};
/* A group commit: 100 µs (SQLite in WAL, no fsync wait) to seconds (a
 * struggling disk or a remote database). */
const sg__buckets sg__commit_buckets = {14,
                                        {100000, 250000, 500000, 1 * MS, 2500000, 5 * MS, 10 * MS,
                                         25 * MS, 50 * MS, 100 * MS, 250 * MS, 500 * MS, 1000 * MS,
                                         2500 * MS},
                                        {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                         "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5"},
                                        1};
/* Writes per transaction: powers of two up to the largest batches. */
const sg__buckets sg__batch_buckets = {
    13,
    {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096},
    {"1", "2", "4", "8", "16", "32", "64", "128", "256", "512", "1024", "2048", "4096"},
    0};

/* ---- interned labels ---------------------------------------------------------- */

typedef struct table {
    size_t cap;
    const char *a[SG_METRICS_MAX_STEPS]; /* owned copies, never freed */
    const char *b[SG_METRICS_MAX_STEPS];
    atomic_size_t n; /* slots in use; a slot's names are set before n covers it */
} table;

static pthread_mutex_t tables_mu = PTHREAD_MUTEX_INITIALIZER;
static table tables[SG__T_KINDS] = {
    [SG__T_TYPE] = {.cap = SG_METRICS_MAX_TYPES, .a = {"_other"}, .n = 1},
    [SG__T_STEP] = {.cap = SG_METRICS_MAX_STEPS, .a = {"_other"}, .b = {"_other"}, .n = 1},
    [SG__T_ROUTE] = {.cap = SG_METRICS_MAX_ROUTES, .a = {"_other"}, .n = 1},
};

static int same(const char *x, const char *y)
{
    return (!x && !y) || (x && y && strcmp(x, y) == 0);
}

/* The slot of (a, b) in kind's table, added if new and there is room; 0
 * (the overflow) otherwise. Rare: each thread caches the answer. */
static unsigned intern(int kind, const char *a, const char *b)
{
    table *t = &tables[kind];
    if (!a) a = "";
    if (kind == SG__T_STEP && !b) b = "";
    pthread_mutex_lock(&tables_mu);
    size_t n = atomic_load_explicit(&t->n, memory_order_relaxed);
    unsigned slot = 0;
    for (size_t i = 1; i < n && !slot; i++)
        if (strcmp(t->a[i], a) == 0 && same(t->b[i], b)) slot = (unsigned)i;
    if (!slot && n < t->cap) {
        t->a[n] = sg_xstrdup(a);
        t->b[n] = b ? sg_xstrdup(b) : NULL;
        atomic_store_explicit(&t->n, n + 1, memory_order_release);
        slot = (unsigned)n;
    }
    pthread_mutex_unlock(&tables_mu);
    return slot;
}

size_t sg__metrics_slots(int kind)
{
    return atomic_load_explicit(&tables[kind].n, memory_order_acquire);
}

void sg__metrics_slot(int kind, size_t i, const char **a, const char **b)
{
    *a = tables[kind].a[i];
    *b = tables[kind].b[i];
}

/* ---- per-thread blocks ------------------------------------------------------- */

static _Atomic(sg__block *) blocks;
static pthread_key_t block_key;
static pthread_once_t block_once = PTHREAD_ONCE_INIT;
static _Thread_local sg__block *mine;

/* The thread is gone: a later one may count into its block (the counts
 * stay, sums are all a scrape wants). */
static void release_block(void *p)
{
    sg__block *b = p;
    atomic_store_explicit(&b->owned, 0, memory_order_release);
}

static void make_key(void)
{
    if (pthread_key_create(&block_key, release_block) != 0) abort();
}

static sg__block *claim_block(void)
{
    pthread_once(&block_once, make_key);
    sg__block *b = atomic_load_explicit(&blocks, memory_order_acquire);
    for (; b; b = b->next) {
        int free_ = 0;
        if (atomic_compare_exchange_strong_explicit(&b->owned, &free_, 1, memory_order_acq_rel,
                                                    memory_order_relaxed))
            break;
    }
    if (!b) {
        /* Large but mostly untouched: calloc maps it, and a page only
         * costs memory once this thread counts into it. */
        b = sg_xcalloc(1, sizeof *b);
        atomic_init(&b->owned, 1);
        sg__block *head = atomic_load_explicit(&blocks, memory_order_relaxed);
        do
            b->next = head;
        while (!atomic_compare_exchange_weak_explicit(&blocks, &head, b, memory_order_release,
                                                      memory_order_relaxed));
    }
    pthread_setspecific(block_key, b);
    mine = b;
    return b;
}

sg__block *sg__metrics_blocks(void)
{
    return atomic_load_explicit(&blocks, memory_order_acquire);
}

static inline sg__block *my_block(void)
{
    return mine ? mine : claim_block();
}

static inline void add(sg__cell *c, uint64_t v)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + v,
                          memory_order_relaxed);
}

/* The slot of (kind, a, b) through this thread's cache. */
static unsigned slot_of(sg__block *k, int kind, const char *a, const char *b)
{
    uintptr_t h = ((uintptr_t)a * 0x9E3779B97F4A7C15ull) ^ ((uintptr_t)b * 0xC2B2AE3D27D4EB4Full);
    h ^= h >> 29;
    sg__cache_ent *e = &k->cache[(h + (uintptr_t)kind) & (SG__CACHE - 1)];
    if (e->kind == kind && e->a == a && e->b == b) return e->slot;
    unsigned slot = intern(kind, a, b);
    *e = (sg__cache_ent){a, b, kind, slot};
    return slot;
}

static void observe(sg__hist *h, const sg__buckets *bk, uint64_t v)
{
    size_t i = 0;
    while (i < bk->n && v > bk->le[i])
        i++;
    add(&h->b[i], 1);
    add(&h->sum, v);
}

/* ---- the hooks -------------------------------------------------------------- */

void sg_metrics_saga_started(const char *type)
{
    sg__block *k = my_block();
    add(&k->started[slot_of(k, SG__T_TYPE, type, NULL)], 1);
}

void sg_metrics_saga_finished(const char *type, int failed)
{
    sg__block *k = my_block();
    add(&k->finished[slot_of(k, SG__T_TYPE, type, NULL)][failed ? 1 : 0], 1);
}

void sg_metrics_inflight_add(int delta)
{
    sg__block *k = my_block();
    int64_t v = atomic_load_explicit(&k->inflight, memory_order_relaxed);
    atomic_store_explicit(&k->inflight, v + delta, memory_order_relaxed);
}

void sg_metrics_sagas_purged(size_t n)
{
    add(&my_block()->purged, n);
}

void sg_metrics_step(const char *type, const char *step, sg_metrics_outcome o, uint64_t ns)
{
    if ((unsigned)o >= SG_METRICS_OUTCOMES) return;
    sg__block *k = my_block();
    observe(&k->steps[slot_of(k, SG__T_STEP, type, step)][o], &sg__step_buckets, ns);
}

void sg_metrics_store_commit(uint64_t ns, size_t writes)
{
    sg__block *k = my_block();
    observe(&k->commit, &sg__commit_buckets, ns);
    observe(&k->batch, &sg__batch_buckets, writes);
}

void sg_metrics_http(const char *route, unsigned code)
{
    sg__block *k = my_block();
    unsigned c = code >= 100 && code <= 599 ? code - 99 : 0;
    add(&k->http[slot_of(k, SG__T_ROUTE, route, NULL)][c], 1);
}
