/* The store front end: backend selection by URL scheme, group commit, and
 * thin wrappers over the backend's read methods.
 *
 * Group commit: the loop thread queues writes (sg_store_submit); one writer
 * thread takes everything queued (up to max_batch), runs it as a single
 * transaction through the backend's exec_batch, and hands the finished
 * writes back to the loop through a locked done-queue and uv_async_send.
 * Only the loop thread touches the async handle's state; the writer only
 * calls uv_async_send, which libuv allows from any thread.
 *
 * Retry (retry_failed): when a whole transaction fails, the writer keeps
 * the batch, waits a capped exponential backoff on work_cv (so close
 * interrupts the wait), tops the batch up from the queue and runs it
 * again, until it commits or close has spent its retry budget.
 *
 * Nothing here knows about SQLite: backends live behind struct sg_store_ops
 * (store_int.h). */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sg/alloc.h"
#include "sg/util.h"
#include "store/store_int.h"

#define DEFAULT_MAX_BATCH 512
#define MAX_MAX_BATCH 65536

_Atomic int sg_store_fail_countdown;

/* Backends, tried in order; the first with plain_paths takes plain paths.
 * PostgreSQL will be listed here once src/store/postgres.c exists. */
static const struct sg_store_ops *const backends[] = {
    &sg_store_sqlite_ops,
};

struct sg_store {
    const struct sg_store_ops *ops; /* static, borrowed */
    sg_store_backend *be;           /* owned; the writer thread's after open */
    size_t max_batch;
    int retry_failed;  /* sg_store_options.retry_failed */
    uv_loop_t *loop;   /* borrowed; NULL = no asynchronous submissions */
    uv_async_t *async; /* owned; freed in its close callback, not here */

    uv_thread_t writer;
    int writer_started;
    uv_mutex_t mu;     /* guards everything below */
    uv_cond_t work_cv; /* writer waits here for writes or stop */
    uv_cond_t sync_cv; /* commit_sync callers wait here for their write */
    sg_write *q_head;  /* submitted, not yet taken by the writer (owned) */
    sg_write *q_tail;
    sg_write *done_head; /* finished, callback not yet run (owned) */
    sg_write *done_tail;
    int closing;       /* no new submissions; the writer drains the queue and exits */
    uint64_t close_ns; /* uv_hrtime() when closing was set */

    int healthy;
    char why[256];
    uint64_t transactions;
    uint64_t writes;
};

struct sg_store_reader {
    const struct sg_store_ops *ops; /* borrowed from the store */
    sg_store_breader *br;           /* owned */
};

/* ---- URL parsing --------------------------------------------------------- */

/* Length of a leading RFC 3986 scheme followed by ':', or 0 if url has
 * none (then it is a plain path). */
static size_t scheme_len(const char *url)
{
    if (!isalpha((unsigned char)url[0])) return 0;
    size_t i = 1;
    while (isalnum((unsigned char)url[i]) || url[i] == '+' || url[i] == '-' || url[i] == '.')
        i++;
    return url[i] == ':' ? i : 0;
}

static const struct sg_store_ops *find_backend(const char *url, const char **target)
{
    size_t n = scheme_len(url);
    size_t nb = sizeof backends / sizeof backends[0];
    for (size_t i = 0; i < nb; i++) {
        const struct sg_store_ops *ops = backends[i];
        if (n == 0) {
            if (!ops->plain_paths) continue;
            *target = url;
            return ops;
        }
        for (const char *const *sc = ops->schemes; sc && *sc; sc++) {
            if (strlen(*sc) != n || strncasecmp(*sc, url, n) != 0) continue;
            const char *t = url + n + 1;
            if (t[0] == '/' && t[1] == '/') t += 2;
            *target = t;
            return ops;
        }
    }
    return NULL;
}

/* ---- cursors -------------------------------------------------------------- */

sg_status sg_store_cursor_parse(const char *cursor, int64_t *created_us, char id[SG_ID_LEN + 1])
{
    const char *p = cursor;
    int64_t v = 0;
    size_t digits = 0;
    if (!cursor) return SG_EINVAL;
    /* 19 digits may still overflow int64_t, so check before multiplying. */
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10) return SG_EINVAL;
        v = v * 10 + d;
    }
    if (digits == 0 || *p != '.') return SG_EINVAL;
    p++;
    if (strlen(p) != SG_ID_LEN || !sg_uuid_valid(p, SG_ID_LEN)) return SG_EINVAL;
    *created_us = v;
    memcpy(id, p, SG_ID_LEN + 1);
    return SG_OK;
}

void sg_store_cursor_format(char out[SG_CURSOR_MAX], int64_t created_us, const char *id)
{
    snprintf(out, SG_CURSOR_MAX, "%lld.%s", (long long)created_us, id);
}

void sg_store_cursor(const sg_saga_rec *r, char out[SG_CURSOR_MAX])
{
    sg_store_cursor_format(out, r->created_us, r->id);
}

/* ---- writer thread -------------------------------------------------------- */

static void set_health(sg_store *s, sg_status st, const char *err)
{
    s->healthy = st == SG_OK;
    if (st == SG_OK)
        s->why[0] = '\0';
    else
        snprintf(s->why, sizeof s->why, "%s", err[0] ? err : sg_status_text(st));
}

/* Hands writes[0..n) over with their results: sync waiters are woken,
 * asynchronous ones go to the done-queue for the loop. Caller holds s->mu. */
static void complete_locked(sg_store *s, sg_write **writes, const sg_status *results, size_t n)
{
    int any_async = 0, any_sync = 0;
    for (size_t i = 0; i < n; i++) {
        sg_write *w = writes[i];
        w->result = results[i];
        w->next = NULL;
        if (w->sync) {
            /* The waiting thread owns w again once done is set. */
            w->done = 1;
            any_sync = 1;
            continue;
        }
        if (s->done_tail)
            s->done_tail->next = w;
        else
            s->done_head = w;
        s->done_tail = w;
        any_async = 1;
    }
    if (any_sync) uv_cond_broadcast(&s->sync_cv);
    /* The handle outlives the writer: sg_store_close joins us before
     * closing it. */
    if (any_async && s->async) uv_async_send(s->async);
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
 * retried, waits the backoff. Returns 1 to retry, 0 to complete the batch
 * with SG_EIO. Caller holds s->mu (released while waiting). */
static int retry_wait_locked(sg_store *s, retry_state *rs, size_t n, const char *why)
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
        if (rs->failures == 1)
            sg_log(SG_LOG_ERROR, "store: transaction of %zu writes failed: %s; retrying", n, why);
        else
            sg_log(SG_LOG_ERROR,
                   "store: transaction of %zu writes still failing (%u attempts, %u since the "
                   "last report, %.1f s): %s; retrying in %llu ms",
                   n, rs->failures, rs->unlogged, (double)(now - rs->first_ns) / 1e9, why,
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

static void writer_main(void *arg)
{
    sg_store *s = arg;
    /* Owned scratch arrays sized once: a batch never exceeds max_batch.
     * batch[0..n) are the writes taken from the queue and not completed
     * yet; in retry mode they survive a failed transaction. */
    sg_write **batch = sg_xcalloc(s->max_batch, sizeof *batch);
    sg_status *results = sg_xcalloc(s->max_batch, sizeof *results);
    char err[256];
    size_t n = 0;
    retry_state rs = {0};

    uv_mutex_lock(&s->mu);
    for (;;) {
        while (n == 0 && !s->q_head && !s->closing)
            uv_cond_wait(&s->work_cv, &s->mu);
        if (n == 0 && !s->q_head) break; /* closing and drained */

        /* Top up: writes submitted while a batch was being retried join it. */
        while (s->q_head && n < s->max_batch) {
            batch[n++] = s->q_head;
            s->q_head = s->q_head->next;
        }
        if (!s->q_head) s->q_tail = NULL;

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
        sg_status st = s->ops->exec_batch(s->be, batch, n, results, err, sizeof err);
        if (st != SG_OK) {
            /* The backend promises this already; be certain no write
             * reports success for a transaction that did not commit. */
            for (size_t i = 0; i < n; i++)
                results[i] = SG_EIO;
            if (!s->retry_failed)
                sg_log(SG_LOG_ERROR, "store: transaction of %zu writes failed: %s", n,
                       err[0] ? err : sg_status_text(st));
        }

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
        } else if (s->retry_failed &&
                   retry_wait_locked(s, &rs, n, err[0] ? err : sg_status_text(st))) {
            continue; /* keep batch[0..n) and run it again */
        }
        complete_locked(s, batch, results, n);
        n = 0;
    }
    uv_mutex_unlock(&s->mu);
    free(batch);
    free(results);
}

/* Runs the callbacks of finished writes; loop thread (or the thread in
 * sg_store_close once the writer is gone). */
static void run_done(sg_store *s)
{
    uv_mutex_lock(&s->mu);
    sg_write *w = s->done_head;
    s->done_head = s->done_tail = NULL;
    uv_mutex_unlock(&s->mu);
    while (w) {
        sg_write *next = w->next;
        if (w->cb) w->cb(w->arg, w->result);
        sg_write_destroy(w);
        w = next;
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

/* ---- lifecycle ------------------------------------------------------------ */

sg_status sg_store_open(sg_store **out, const char *url, uv_loop_t *loop,
                        const sg_store_options *opt, char *err, size_t errlen)
{
    sg_store_options o = {.max_batch = DEFAULT_MAX_BATCH, .synchronous_full = 1};
    const struct sg_store_ops *ops = NULL;
    const char *target = NULL;
    sg_store *s = NULL;
    sg_status st = SG_EINVAL;
    char dummy[8];
    int mu_ok = 0, work_ok = 0, sync_ok = 0;

    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (out) *out = NULL;
    if (!out || !url || !url[0]) {
        snprintf(err, errlen, "store URL is empty");
        goto fail;
    }
    if (opt) o = *opt;
    if (o.max_batch == 0) o.max_batch = DEFAULT_MAX_BATCH;
    /* The writer allocates max_batch slots up front; past this size a
     * bigger transaction only delays every callback in it. */
    if (o.max_batch > MAX_MAX_BATCH) o.max_batch = MAX_MAX_BATCH;
    if (o.busy_timeout_ms <= 0) o.busy_timeout_ms = SG_STORE_BUSY_TIMEOUT_MS;
    o.retry_failed = o.retry_failed != 0;

    ops = find_backend(url, &target);
    if (!ops) {
        snprintf(err, errlen,
                 "unsupported store URL scheme '%.*s' in '%s' (use sqlite:PATH or a path)",
                 (int)scheme_len(url), url, url);
        goto fail;
    }

    s = sg_xcalloc(1, sizeof *s);
    s->ops = ops;
    s->max_batch = o.max_batch;
    s->retry_failed = o.retry_failed;
    s->loop = loop;
    s->healthy = 1;
    if (uv_mutex_init(&s->mu) != 0) goto fail_sys;
    mu_ok = 1;
    if (uv_cond_init(&s->work_cv) != 0) goto fail_sys;
    work_ok = 1;
    if (uv_cond_init(&s->sync_cv) != 0) goto fail_sys;
    sync_ok = 1;

    st = ops->open(&s->be, url, target, &o, err, errlen);
    if (st != SG_OK) goto fail;

    if (loop) {
        s->async = sg_xcalloc(1, sizeof *s->async);
        if (uv_async_init(loop, s->async, on_async) != 0) {
            free(s->async); /* never initialised: no close callback to wait for */
            s->async = NULL;
            goto fail_sys;
        }
        s->async->data = s;
    }
    if (uv_thread_create(&s->writer, writer_main, s) != 0) goto fail_sys;
    s->writer_started = 1;
    *out = s;
    return SG_OK;

fail_sys:
    st = SG_EIO;
    if (!err[0]) snprintf(err, errlen, "store: cannot create thread, lock or async handle");
fail:
    if (s) {
        if (s->async) {
            s->async->data = NULL;
            uv_close((uv_handle_t *)s->async, on_async_closed);
        }
        if (s->be) ops->close(s->be);
        if (sync_ok) uv_cond_destroy(&s->sync_cv);
        if (work_ok) uv_cond_destroy(&s->work_cv);
        if (mu_ok) uv_mutex_destroy(&s->mu);
        free(s);
    }
    return st;
}

void sg_store_close(sg_store *s)
{
    if (!s) return;
    uv_mutex_lock(&s->mu);
    s->closing = 1;
    s->close_ns = uv_hrtime();
    uv_cond_signal(&s->work_cv);
    uv_mutex_unlock(&s->mu);
    /* The writer commits everything still queued before it exits (in
     * retry mode it gives up on a failing store after a bounded number of
     * attempts). */
    if (s->writer_started) uv_thread_join(&s->writer);
    run_done(s);
    if (s->async) {
        /* A pending async callback must not reach the freed store. */
        s->async->data = NULL;
        uv_close((uv_handle_t *)s->async, on_async_closed);
    }
    s->ops->close(s->be);
    uv_cond_destroy(&s->sync_cv);
    uv_cond_destroy(&s->work_cv);
    uv_mutex_destroy(&s->mu);
    free(s);
}

/* Appends w to the submission queue; caller holds s->mu. */
static void enqueue_locked(sg_store *s, sg_write *w)
{
    w->next = NULL;
    if (s->q_tail)
        s->q_tail->next = w;
    else
        s->q_head = w;
    s->q_tail = w;
    uv_cond_signal(&s->work_cv);
}

sg_status sg_store_submit(sg_store *s, sg_write *w, sg_store_done_cb cb, void *arg)
{
    sg_status st = SG_EINVAL;
    if (!s || !w) goto fail;
    /* Without a loop there is no thread to run cb on. */
    if (!s->async) goto fail;
    w->cb = cb;
    w->arg = arg;
    w->sync = w->done = 0;
    uv_mutex_lock(&s->mu);
    if (s->closing) {
        uv_mutex_unlock(&s->mu);
        st = SG_ECLOSED;
        goto fail;
    }
    enqueue_locked(s, w);
    uv_mutex_unlock(&s->mu);
    return SG_OK;

fail:
    sg_write_destroy(w); /* taken even on failure */
    return st;
}

sg_status sg_store_commit_sync(sg_store *s, sg_write *w)
{
    sg_status st = SG_EINVAL;
    if (!s || !w) goto fail;
    /* Route through the writer so its connection stays single-threaded;
     * the write may share a transaction with queued asynchronous ones. */
    w->cb = NULL;
    w->sync = 1;
    w->done = 0;
    uv_mutex_lock(&s->mu);
    if (s->closing) {
        uv_mutex_unlock(&s->mu);
        st = SG_ECLOSED;
        goto fail;
    }
    enqueue_locked(s, w);
    while (!w->done)
        uv_cond_wait(&s->sync_cv, &s->mu);
    st = w->result;
    uv_mutex_unlock(&s->mu);
fail:
    sg_write_destroy(w);
    return st;
}

sg_status sg_store_health(sg_store *s, char *why, size_t n)
{
    if (!s) return SG_EINVAL;
    uv_mutex_lock(&s->mu);
    int ok = s->healthy;
    if (why && n) snprintf(why, n, "%s", ok ? "" : s->why);
    uv_mutex_unlock(&s->mu);
    return ok ? SG_OK : SG_EIO;
}

void sg_store_stats(sg_store *s, uint64_t *transactions, uint64_t *writes)
{
    uint64_t t = 0, w = 0;
    if (s) {
        uv_mutex_lock(&s->mu);
        t = s->transactions;
        w = s->writes;
        uv_mutex_unlock(&s->mu);
    }
    if (transactions) *transactions = t;
    if (writes) *writes = w;
}

/* ---- reads ------------------------------------------------------------------ */

const char *sg_store_reader_error(const sg_store_reader *r)
{
    (void)r;
    return "SHIM";
}

sg_status sg_store_reader_open(sg_store *s, sg_store_reader **out, char *err, size_t errlen)
{
    snprintf(err, errlen, "SHIM");
    sg_store_breader *br = NULL;
    if (!out) return SG_EINVAL;
    *out = NULL;
    if (!s || !s->ops->reader_open) return SG_EINVAL;
    sg_status st = s->ops->reader_open(s->be, &br);
    if (st != SG_OK) return st;
    sg_store_reader *r = sg_xcalloc(1, sizeof *r);
    r->ops = s->ops;
    r->br = br;
    *out = r;
    return SG_OK;
}

void sg_store_reader_close(sg_store_reader *r)
{
    if (!r) return;
    r->ops->reader_close(r->br);
    free(r);
}

sg_status sg_store_get(sg_store_reader *r, const char *id, sg_saga_rec *out)
{
    if (!out) return SG_EINVAL;
    memset(out, 0, sizeof *out);
    if (!r || !id || !r->ops->get) return SG_EINVAL;
    return r->ops->get(r->br, id, out);
}

sg_status sg_store_get_by_idem(sg_store_reader *r, const char *key, sg_saga_rec *out)
{
    if (!out) return SG_EINVAL;
    memset(out, 0, sizeof *out);
    if (!r || !key || !r->ops->get_by_idem) return SG_EINVAL;
    return r->ops->get_by_idem(r->br, key, out);
}

sg_status sg_store_list(sg_store_reader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                        char next[SG_CURSOR_MAX])
{
    if (out) *out = NULL;
    if (n) *n = 0;
    if (next) next[0] = '\0';
    if (!r || !q || !out || !n || !next || !r->ops->list) return SG_EINVAL;
    if (q->limit < 1 || q->limit > 1000) return SG_EINVAL;
    if (q->status < -1 || q->status > SG_SAGA_FAILED) return SG_EINVAL;
    return r->ops->list(r->br, q, out, n, next);
}

sg_status sg_store_load_unfinished(sg_store_reader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                   void *arg)
{
    if (!r || !cb || !r->ops->load_unfinished) return SG_EINVAL;
    return r->ops->load_unfinished(r->br, cb, arg);
}

sg_status sg_store_load_pending_events(sg_store_reader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                       void *arg)
{
    if (!r || !cb || !r->ops->load_pending_events) return SG_EINVAL;
    return r->ops->load_pending_events(r->br, cb, arg);
}

sg_status sg_store_get_event(sg_store_reader *r, const char *id, sg_event_rec *out)
{
    if (!out) return SG_EINVAL;
    memset(out, 0, sizeof *out);
    if (!r || !id || !r->ops->get_event) return SG_EINVAL;
    return r->ops->get_event(r->br, id, out);
}
