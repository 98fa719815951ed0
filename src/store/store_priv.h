/* The store front end's own state, shared by store.c (open/close, submit,
 * health, reads) and writer.c (the writer thread and the completions it
 * hands back). Backends and tests never include it: they see store_int.h. */
#ifndef SG_STORE_PRIV_H
#define SG_STORE_PRIV_H

#include <stdint.h>
#include <uv.h>

#include "store_int.h"

struct sg_store {
    const struct sg_store_ops *ops; /* static, borrowed */
    sg_store_backend *be;           /* owned; the writer thread's after open */
    size_t max_batch;
    int retry_failed;  /* sg_store_options.retry_failed */
    uv_async_t *async; /* owned; NULL without a loop; freed in its close callback */

    uv_thread_t writer;
    uv_mutex_t mu;     /* guards everything below */
    uv_cond_t work_cv; /* writer waits here for writes or stop */
    uv_cond_t sync_cv; /* commit_sync callers wait here for their write */
    sg_write *queue;   /* utlist DL: submitted, not yet taken by the writer (owned) */
    sg_write *done;    /* utlist DL: finished asynchronous writes, callback not run (owned) */
    int closing;       /* no new submissions; the writer drains the queue and exits */
    uint64_t close_ns; /* uv_hrtime() when closing was set */

    /* Shared stores: lease_ms, and the monotonic ms the lease lasts until
     * (sg_store_lease_until); UINT64_MAX for others. */
    uint64_t lease_ms;
    _Atomic uint64_t lease_until;

    int healthy; /* the last transaction committed (or none ran yet) */
    char why[256];
    uint64_t transactions;
    uint64_t writes;
};

/* ---- writer.c ---------------------------------------------------------------- */

/* Starts the writer thread and, with a loop (borrowed), the async handle
 * that brings completions back to it. s is otherwise open (backend, lock,
 * condition variables). SG_EIO if either cannot be created; then neither
 * is left behind. */
sg_status sg__store_writer_start(sg_store *s, uv_loop_t *loop);
/* Refuses new work, lets the writer commit everything queued, joins it,
 * runs the remaining callbacks on the calling (loop) thread and closes the
 * async handle. */
void sg__store_writer_stop(sg_store *s);

#endif
