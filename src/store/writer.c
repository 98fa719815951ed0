/* The store's writer thread: group commit, retry with backoff, and the
 * completions it hands back to the loop (done queue + uv_async_send).
 *
 * Group commit: the loop thread queues writes (sg_store_submit); the writer
 * takes everything queued (up to max_batch), runs it as a single
 * transaction through the backend's exec_batch, and hands the finished
 * writes back to the loop through a locked done queue and uv_async_send.
 * Only the loop thread touches the async handle's state; the writer only
 * calls uv_async_send, which libuv allows from any thread.
 *
 * Retry (retry_failed): when a whole transaction fails, the writer keeps
 * the batch, waits a capped exponential backoff on work_cv (so close
 * interrupts the wait), tops the batch up from the queue and runs it
 * again, until it commits or close has spent its retry budget. Writes
 * that insert a new saga are the exception: they fail at once (its
 * client is told 503 rather than kept waiting on a store that may stay
 * broken; nothing of it was stored or sent). With nothing left to retry,
 * the writer probes the store at the same pace with a transaction that
 * writes nothing new, so health comes back when the store does, not only
 * with the next write.
 *
 * In doubt (SG_EDOUBT: a COMMIT went unanswered and its outcome is not
 * known yet): the batch is run again exactly as it was, new sagas
 * included, since they may be stored; nothing joins it, and new sagas
 * submitted meanwhile fail at once as they would in a failing batch.
 *
 * Leases (shared stores): every transaction renews this process's lease
 * first; an idle writer runs an empty one every lease_ms / 3 for that
 * alone. A commit moves lease_until to its start + lease_ms. A
 * transaction fenced off (SG_EFENCED: another process owns the lease now)
 * zeroes lease_until for good, and this and every later write complete
 * with SG_EFENCED without reaching the store. */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <utlist.h>

#include "sg/alloc.h"
#include "sg/crash.h"
#include "sg/metrics.h"
#include "sg/util.h"
#include "store_priv.h"

static void set_health(sg_store *s, sg_status st, const char *err)
{
    s->healthy = st == SG_OK;
    if (st == SG_OK)
        s->why[0] = '\0';
    else
        snprintf(s->why, sizeof s->why, "%s", err[0] ? err : sg_status_text(st));
}

/* Hands writes[0..n) over with their results: sync waiters are woken,
 * asynchronous ones go to the done queue for the loop. Caller holds s->mu. */
static void complete_locked(sg_store *s, sg_write **writes, const sg_status *results, size_t n)
{
    int any_async = 0, any_sync = 0;
    for (size_t i = 0; i < n; i++) {
        sg_write *w = writes[i];
        assert(!w->prev && !w->next); /* taken off the queue, in no list */
        w->result = results[i];
        if (w->sync) {
            /* The waiting thread owns w again once done is set. */
            assert(!w->done);
            w->done = 1;
            any_sync = 1;
            continue;
        }
        /* sg_store_submit refuses asynchronous writes without a loop. */
        assert(s->async);
        DL_APPEND(s->done, w);
        any_async = 1;
    }
    if (any_sync) uv_cond_broadcast(&s->sync_cv);
    /* The handle outlives the writer: sg__store_writer_stop joins us
     * before closing it, so a failed send is a broken invariant, and
     * carrying on would strand every saga waiting for a completion. */
    if (any_async && uv_async_send(s->async) != 0) {
        fprintf(stderr, "sagad: store: cannot wake the loop for completed writes\n");
        abort();
    }
}

/* The writer's bookkeeping of a run of failed transactions (retry mode). */
typedef struct retry_state {
    unsigned failures;    /* consecutive failed transactions */
    uint64_t first_ns;    /* when the first of them failed */
    uint64_t backoff_ms;  /* next wait */
    uint64_t last_log_ns; /* rate limit: one line per second */
    unsigned unlogged;    /* failures since that line */
    unsigned close_tries; /* attempts started after close began */
    int give_up;          /* close budget spent: fail the rest */
} retry_state;

#define NS_PER_MS 1000000ull
#define LOG_INTERVAL_NS 1000000000ull

/* Decides what to do with a failed batch in retry mode and, if it is to be
 * retried, waits the backoff. ran writes were in the failed transaction
 * (0: a probe), n of them are kept. Returns 1 to retry, 0 to complete the
 * batch with SG_EIO. Caller holds s->mu (released while waiting). */
static int retry_wait_locked(sg_store *s, retry_state *rs, size_t ran, size_t n, const char *why)
{
    uint64_t now = uv_hrtime();
    if (rs->failures++ == 0) {
        rs->first_ns = now;
        rs->backoff_ms = SG_STORE_RETRY_MIN_MS;
        rs->last_log_ns = 0;
        rs->unlogged = 0;
    }
    uint64_t close_end = s->close_ns + (uint64_t)SG_STORE_CLOSE_RETRY_MS * NS_PER_MS;
    if (s->closing && (rs->close_tries >= SG_STORE_CLOSE_RETRIES || now >= close_end)) {
        rs->give_up = 1;
        sg_log(SG_LOG_ERROR,
               "store: closing: giving up after %u failed attempts over %.1f s; %zu writes "
               "and everything still queued fail: %s",
               rs->failures, (double)(now - rs->first_ns) / 1e9, n, why);
        return 0;
    }
    uint64_t wait_ms = rs->backoff_ms;
    if (s->closing) {
        uint64_t left_ms = (close_end - now) / NS_PER_MS;
        if (wait_ms > left_ms) wait_ms = left_ms;
    }
    rs->unlogged++;
    if (rs->last_log_ns == 0 || now - rs->last_log_ns >= LOG_INTERVAL_NS) {
        char what[96] = "probe transaction";
        if (ran == n && ran)
            snprintf(what, sizeof what, "transaction of %zu writes", ran);
        else if (ran)
            snprintf(what, sizeof what, "transaction of %zu writes (%zu new sagas refused)", ran,
                     ran - n);
        if (rs->failures == 1)
            sg_log(SG_LOG_ERROR, "store: %s failed: %s; retrying", what, why);
        else
            sg_log(SG_LOG_ERROR,
                   "store: %s still failing (%u attempts, %u since the last report, %.1f s): "
                   "%s; retrying in %llu ms",
                   what, rs->failures, rs->unlogged, (double)(now - rs->first_ns) / 1e9, why,
                   (unsigned long long)wait_ms);
        rs->last_log_ns = now;
        rs->unlogged = 0;
    }
    /* Submissions signal work_cv too: keep waiting through them, but not
     * through the start of close, which shortens the budget. */
    int was_closing = s->closing;
    uint64_t until = now + wait_ms * NS_PER_MS;
    while (s->closing == was_closing) {
        now = uv_hrtime();
        if (now >= until) break;
        uv_cond_timedwait(&s->work_cv, &s->mu, until - now);
    }
    if (rs->backoff_ms < SG_STORE_RETRY_MAX_MS) {
        rs->backoff_ms *= 2;
        if (rs->backoff_ms > SG_STORE_RETRY_MAX_MS) rs->backoff_ms = SG_STORE_RETRY_MAX_MS;
    }
    return 1;
}

static int inserts_saga(const sg_write *w)
{
    for (size_t k = 0; k < w->nops; k++)
        if (w->ops[k].kind == SG_WOP_SAGA_INSERT) return 1;
    return 0;
}

/* Completes the writes of batch[0..*n) that insert a saga with SG_EIO and
 * keeps the others, in order, in batch[0..*n). spare has room for *n.
 * Caller holds s->mu. */
static void fail_new_sagas_locked(sg_store *s, sg_write **batch, size_t *n, sg_write **spare,
                                  sg_status *results)
{
    size_t keep = 0, nfail = 0;
    for (size_t i = 0; i < *n; i++) {
        if (inserts_saga(batch[i]))
            spare[nfail++] = batch[i];
        else
            batch[keep++] = batch[i];
    }
    for (size_t i = 0; i < nfail; i++)
        results[i] = SG_EIO;
    if (nfail) complete_locked(s, spare, results, nfail);
    *n = keep;
}

/* Completes the queued writes that insert a saga with SG_EIO (a batch in
 * doubt is being retried; they are not part of it). spare has room for
 * max_batch. Caller holds s->mu. */
static void fail_queued_new_sagas_locked(sg_store *s, sg_write **spare, sg_status *results)
{
    sg_write *w, *tmp;
    size_t nfail = 0;
    DL_FOREACH_SAFE(s->queue, w, tmp)
    {
        if (!inserts_saga(w)) continue;
        DL_DELETE(s->queue, w);
        w->prev = w->next = NULL;
        results[nfail] = SG_EIO;
        spare[nfail++] = w;
        if (nfail == s->max_batch) {
            complete_locked(s, spare, results, nfail);
            nfail = 0;
        }
    }
    if (nfail) complete_locked(s, spare, results, nfail);
}

/* Shared stores: how long an idle writer may wait before it renews the
 * lease (at due_ms, monotonic), in ns; 0 = now. UINT64_MAX when there is
 * no lease to keep. */
static uint64_t renew_wait_ns(sg_store *s, uint64_t due_ms)
{
    if (!s->lease_ms || !atomic_load(&s->lease_until)) return UINT64_MAX;
    uint64_t now = uv_hrtime() / 1000000;
    return due_ms > now ? (due_ms - now) * 1000000 : 0;
}

/* Completes writes[0..n) with SG_EFENCED. Caller holds s->mu. */
static void fence_locked(sg_store *s, sg_write **writes, sg_status *results, size_t n)
{
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EFENCED;
    complete_locked(s, writes, results, n);
}

static void writer_main(void *arg)
{
    sg_store *s = arg;
    /* Owned scratch arrays sized once: a batch never exceeds max_batch.
     * batch[0..n) are the writes taken from the queue and not completed
     * yet; in retry mode they survive a failed transaction. */
    sg_write **batch = sg_xcalloc(s->max_batch, sizeof *batch);
    sg_write **spare = sg_xcalloc(s->max_batch, sizeof *spare);
    sg_status *results = sg_xcalloc(s->max_batch, sizeof *results);
    char err[256];
    size_t n = 0;
    int doubt = 0; /* batch[0..n) is a transaction in doubt: run it again as is */
    retry_state rs = {0};
    /* The next renewal of an idle writer: a third of the lease after the
     * last one (open took it), sooner again after a failed attempt. */
    uint64_t renew_due_ms = uv_hrtime() / 1000000 + s->lease_ms / 3;

    /* Named so that per-thread CPU figures (/proc/PID/task/TID/comm, top -H,
     * perf) tell the writer from the loop thread (the main thread, "sagad")
     * and libmicrohttpd's "MHD-*" threads. At most 15 characters. */
    pthread_setname_np(pthread_self(), "sagad-writer");

    uv_mutex_lock(&s->mu);
    for (;;) {
        /* A failing store with nothing to retry runs an empty batch: the
         * probe (retry_wait_locked has waited the backoff already). */
        int probe = s->retry_failed && rs.failures && !rs.give_up;
        while (n == 0 && !s->queue && !s->closing && !probe) {
            uint64_t wait_ns = renew_wait_ns(s, renew_due_ms);
            if (wait_ns == UINT64_MAX)
                uv_cond_wait(&s->work_cv, &s->mu);
            else if (wait_ns == 0 || uv_cond_timedwait(&s->work_cv, &s->mu, wait_ns) != 0)
                probe = 1; /* the lease is due: an empty transaction renews it */
        }
        if (n == 0 && !s->queue && s->closing) break; /* closing and drained */

        /* Top up: writes submitted while a batch was being retried join it. */
        while (!doubt && s->queue && n < s->max_batch) {
            sg_write *w = s->queue;
            DL_DELETE(s->queue, w);
            w->prev = w->next = NULL;
            batch[n++] = w;
        }

        if (s->lease_ms && !atomic_load(&s->lease_until)) {
            fence_locked(s, batch, results, n); /* fenced off for good */
            n = 0;
            doubt = 0;
            continue;
        }
        if (rs.give_up) {
            /* Close spent its retry budget on a failing store: everything
             * still queued fails without another attempt. */
            for (size_t i = 0; i < n; i++)
                results[i] = SG_EIO;
            complete_locked(s, batch, results, n);
            n = 0;
            continue;
        }
        if (s->closing) rs.close_tries++;
        uv_mutex_unlock(&s->mu);

        err[0] = '\0';
        uint64_t t0_ns = uv_hrtime(), t0_ms = t0_ns / 1000000;
        sg_status st = s->ops->exec_batch(s->be, batch, n, results, err, sizeof err);
        if (st == SG_OK && n) sg_metrics_store_commit(uv_hrtime() - t0_ns, n); /* not probes */
        if (st == SG_EFENCED) {
            sg_log(SG_LOG_ERROR, "store: %s", err[0] ? err : sg_status_text(st));
            uv_mutex_lock(&s->mu);
            atomic_store(&s->lease_until, 0);
            set_health(s, st, err);
            fence_locked(s, batch, results, n);
            n = 0;
            doubt = 0;
            continue;
        }
        assert(st != SG_EDOUBT || n > 0); /* exec_batch's contract: a probe is never in doubt */
        if (s->lease_ms) {
            renew_due_ms = t0_ms + (st == SG_OK ? s->lease_ms / 3 : s->lease_ms / 20 + 1);
            if (st == SG_OK) atomic_store(&s->lease_until, t0_ms + s->lease_ms);
        }
        if (st != SG_OK) {
            /* The backend promises this already; be certain no write
             * reports success for a transaction that did not commit. */
            for (size_t i = 0; i < n; i++)
                results[i] = SG_EIO;
            if (!s->retry_failed && n) /* a failed lease renewal shows in health */
                sg_log(SG_LOG_ERROR, "store: transaction of %zu writes failed: %s", n,
                       err[0] ? err : sg_status_text(st));
        }

        if (st == SG_OK) sg_crash_point("store_committed");
        uv_mutex_lock(&s->mu);
        set_health(s, st, err);
        if (st == SG_OK) {
            s->transactions++;
            s->writes += n;
            if (rs.failures)
                sg_log(SG_LOG_INFO,
                       "store: transaction committed again after %u failed attempts (%.1f s)",
                       rs.failures, (double)(uv_hrtime() - rs.first_ns) / 1e9);
            rs.failures = 0;
        } else if (s->retry_failed) {
            size_t ran = n;
            doubt = st == SG_EDOUBT;
            if (doubt)
                fail_queued_new_sagas_locked(s, spare, results);
            else
                fail_new_sagas_locked(s, batch, &n, spare, results);
            if (retry_wait_locked(s, &rs, ran, n, err[0] ? err : sg_status_text(st)))
                continue; /* keep batch[0..n) and run it again (n == 0: probe) */
            if (doubt)
                sg_log(SG_LOG_ERROR,
                       "store: closing: a transaction of %zu writes stays in doubt; what it "
                       "may have stored resumes at the next start",
                       n);
        }
        doubt = 0;
        complete_locked(s, batch, results, n);
        n = 0;
        if (st == SG_OK && s->ops->after_batch) {
            /* The batch's writers carry on meanwhile; only the writes
             * queued from now on wait for it. */
            uv_mutex_unlock(&s->mu);
            s->ops->after_batch(s->be);
            uv_mutex_lock(&s->mu);
        }
    }
    uv_mutex_unlock(&s->mu);
    free(batch);
    free(spare);
    free(results);
}

/* Runs the callbacks of finished writes; loop thread (or the thread in
 * sg__store_writer_stop once the writer is gone). */
static void run_done(sg_store *s)
{
    sg_write *list, *w, *tmp;
    uv_mutex_lock(&s->mu);
    list = s->done; /* the whole list at once */
    s->done = NULL;
    uv_mutex_unlock(&s->mu);
    DL_FOREACH_SAFE(list, w, tmp)
    {
        assert(!w->sync); /* commit_sync's writes are freed by their waiter */
        if (w->cb) w->cb(w->arg, w->result);
        sg_write_destroy(w);
    }
}

static void on_async(uv_async_t *h)
{
    if (h->data) run_done(h->data);
}

static void on_async_closed(uv_handle_t *h)
{
    free(h);
}

/* Closes the async handle; it is freed in its close callback, and a
 * pending async callback must not reach the store. */
static void close_async(sg_store *s)
{
    s->async->data = NULL;
    uv_close((uv_handle_t *)s->async, on_async_closed);
    s->async = NULL;
}

sg_status sg__store_writer_start(sg_store *s, uv_loop_t *loop)
{
    if (loop) {
        s->async = sg_xcalloc(1, sizeof *s->async);
        if (uv_async_init(loop, s->async, on_async) != 0) {
            free(s->async); /* never initialised: no close callback to wait for */
            s->async = NULL;
            return SG_EIO;
        }
        s->async->data = s;
    }
    if (uv_thread_create(&s->writer, writer_main, s) != 0) {
        if (s->async) close_async(s);
        return SG_EIO;
    }
    return SG_OK;
}

void sg__store_writer_stop(sg_store *s)
{
    uv_mutex_lock(&s->mu);
    s->closing = 1;
    s->close_ns = uv_hrtime();
    uv_cond_signal(&s->work_cv);
    uv_mutex_unlock(&s->mu);
    /* The writer commits everything still queued before it exits (in
     * retry mode it gives up on a failing store after a bounded number of
     * attempts). */
    uv_thread_join(&s->writer);
    run_done(s);
    if (s->async) close_async(s);
}
