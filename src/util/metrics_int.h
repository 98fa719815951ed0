/* The metrics' private layout, shared by metrics.c (counting: per-thread
 * blocks, label interning) and metrics_render.c (folding and the text
 * format). */
#ifndef SG_METRICS_INT_H
#define SG_METRICS_INT_H

#include <stdatomic.h>
#include <stdint.h>

#include "sg/metrics.h"

/* One counter cell. Only the thread that owns the block writes it (a
 * relaxed load and store, no read-modify-write); a scrape reads it
 * relaxed. A 64-bit cell never tears on the platforms we build for. */
typedef _Atomic uint64_t sg__cell;

#define SG__HIST_MAX 16 /* finite buckets at most */
typedef struct sg__hist {
    sg__cell b[SG__HIST_MAX + 1]; /* per bucket, not cumulative; [nb] is +Inf */
    sg__cell sum;                 /* nanoseconds, or plain units */
} sg__hist;

/* A histogram's buckets: upper bounds (in the unit observed) and how they
 * print as le; sum_ns: the sum is nanoseconds, printed as seconds. */
typedef struct sg__buckets {
    size_t n;
    uint64_t le[SG__HIST_MAX];
    const char *text[SG__HIST_MAX];
    int sum_ns;
} sg__buckets;

extern const sg__buckets sg__step_buckets, sg__commit_buckets, sg__batch_buckets;

#define SG__NCODES 501 /* [0]: a code outside 100..599; [c - 99]: code c */
#define SG__CACHE 512  /* a thread's label cache slots (a power of 2) */

typedef struct sg__cache_ent {
    const void *a, *b; /* the pointers a count was made with */
    int kind;          /* 0: empty */
    unsigned slot;
} sg__cache_ent;

typedef struct sg__block {
    atomic_int owned;       /* a live thread counts into it */
    struct sg__block *next; /* the list of every block; set before it is published */
    sg__cell started[SG_METRICS_MAX_TYPES];
    sg__cell finished[SG_METRICS_MAX_TYPES][2]; /* [0] COMPLETED, [1] FAILED */
    _Atomic int64_t inflight;                   /* this thread's net change */
    sg__cell purged;                            /* sagas deleted by retention */
    sg__hist steps[SG_METRICS_MAX_STEPS][SG_METRICS_OUTCOMES];
    sg__hist commit, batch;
    sg__cell http[SG_METRICS_MAX_ROUTES][SG__NCODES];
    /* Label pointers seen by this thread and their slots: slots never
     * change and the strings live forever, so a block handed to another
     * thread keeps a valid cache. */
    sg__cache_ent cache[SG__CACHE];
} sg__block;

/* Interned label values, by kind: slot 0 is "_other" (the overflow). */
enum { SG__T_TYPE = 1, SG__T_STEP, SG__T_ROUTE, SG__T_KINDS };

/* The number of slots in use of kind (acquire: the names below are set). */
size_t sg__metrics_slots(int kind);
/* Slot i's names (b: the step of a SG__T_STEP slot, else NULL). */
void sg__metrics_slot(int kind, size_t i, const char **a, const char **b);
/* The first block of the list (acquire). */
sg__block *sg__metrics_blocks(void);

static inline uint64_t sg__get(sg__cell *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
