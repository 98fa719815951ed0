/* The store front end: backend selection by URL scheme, open/close,
 * submission to the writer (writer.c runs the group commit), health, and
 * thin wrappers over the backend's read methods that keep each reader's
 * last error.
 *
 * Nothing here knows about SQLite: backends live behind struct sg_store_ops
 * (store_int.h). */
#include <assert.h>
#include <stdatomic.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utlist.h>

#include "sg/alloc.h"
#include "sg/util.h"
#include "store_priv.h"

#define DEFAULT_MAX_BATCH 512
#define MAX_MAX_BATCH 65536

_Atomic int sg_store_fail_countdown;

/* Backends, tried in order; the first with plain_paths takes plain paths. */
static const struct sg_store_ops *const backends[] = {
    &sg_store_sqlite_ops,
    &sg_store_redis_ops,
    &sg_store_postgres_ops,
};

struct sg_store_reader {
    const struct sg_store_ops *ops; /* borrowed from the store */
    sg_store_breader *br;           /* owned */
    char err[256];                  /* the last call's failure; "" after a success */
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
    if (o.lease_ms <= 0) o.lease_ms = SG_STORE_LEASE_MS;

    ops = find_backend(url, &target);
    if (!ops) {
        snprintf(err, errlen,
                 "unsupported store URL scheme '%.*s' in '%s' (use sqlite:PATH, a path, "
                 "postgres://... or redis://host:port/N)",
                 (int)scheme_len(url), url, url);
        goto fail;
    }

    s = sg_xcalloc(1, sizeof *s);
    s->ops = ops;
    s->max_batch = o.max_batch;
    s->retry_failed = o.retry_failed;
    s->healthy = 1;
    s->lease_ms = ops->shared ? (uint64_t)o.lease_ms : 0;
    s->lease_until = UINT64_MAX;
    if (uv_mutex_init(&s->mu) != 0) goto fail_sys;
    mu_ok = 1;
    if (uv_cond_init(&s->work_cv) != 0) goto fail_sys;
    work_ok = 1;
    if (uv_cond_init(&s->sync_cv) != 0) goto fail_sys;
    sync_ok = 1;

    /* A shared backend takes its lease in open: it lasts from before. */
    uint64_t t0 = uv_hrtime() / 1000000;
    st = ops->open(&s->be, url, target, &o, err, errlen);
    if (st != SG_OK) goto fail;
    if (ops->shared) s->lease_until = t0 + s->lease_ms;

    if (sg__store_writer_start(s, loop) != SG_OK) goto fail_sys;
    *out = s;
    return SG_OK;

fail_sys:
    st = SG_EIO;
    if (!err[0]) snprintf(err, errlen, "store: cannot create thread, lock or async handle");
fail:
    if (s) {
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
    sg__store_writer_stop(s);
    sg_store_counters c;
    sg_store_counts(s, &c);
    if (c.transactions)
        sg_log(SG_LOG_INFO,
               "store: closed after %llu transactions of %llu writes: %llu statements, %llu "
               "pages (%llu bytes) written to the WAL",
               (unsigned long long)c.transactions, (unsigned long long)c.writes,
               (unsigned long long)c.statements, (unsigned long long)c.wal_pages,
               (unsigned long long)c.wal_bytes);
    s->ops->close(s->be);
    uv_cond_destroy(&s->sync_cv);
    uv_cond_destroy(&s->work_cv);
    uv_mutex_destroy(&s->mu);
    free(s);
}

/* ---- leases ----------------------------------------------------------------- */

int sg_store_shared(const sg_store *s)
{
    return s && s->ops->shared;
}

uint64_t sg_store_lease_until(sg_store *s)
{
    return s ? atomic_load(&s->lease_until) : 0;
}

uint64_t sg_store_lease_ms(const sg_store *s)
{
    return s ? s->lease_ms : 0;
}

void sg_store_owner(sg_store *s, char out[SG_OWNER_MAX])
{
    char id[SG_ID_LEN + 1] = "";
    int64_t epoch = 0;
    out[0] = '\0';
    if (!sg_store_shared(s) || !s->ops->owner) return;
    s->ops->owner(s->be, id, &epoch);
    snprintf(out, SG_OWNER_MAX, "%s/%lld", id, (long long)epoch);
}

/* Appends w to the submission queue, unless the store is closing
 * (SG_ECLOSED). Caller holds s->mu. */
static sg_status enqueue_locked(sg_store *s, sg_write *w)
{
    if (s->closing) return SG_ECLOSED;
    assert(!w->prev && !w->next); /* a write is queued at most once */
    DL_APPEND(s->queue, w);
    uv_cond_signal(&s->work_cv);
    return SG_OK;
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
    st = enqueue_locked(s, w);
    uv_mutex_unlock(&s->mu);
    if (st == SG_OK) return SG_OK;
fail:
    sg_write_destroy(w); /* taken even on failure */
    return st;
}

sg_status sg_store_commit_sync(sg_store *s, sg_write *w)
{
    sg_status st = SG_EINVAL;
    if (!s || !w) goto out;
    /* Route through the writer so its connection stays single-threaded;
     * the write may share a transaction with queued asynchronous ones. */
    w->cb = NULL;
    w->sync = 1;
    w->done = 0;
    uv_mutex_lock(&s->mu);
    st = enqueue_locked(s, w);
    if (st == SG_OK) {
        while (!w->done)
            uv_cond_wait(&s->sync_cv, &s->mu);
        st = w->result;
    }
    uv_mutex_unlock(&s->mu);
out:
    sg_write_destroy(w);
    return st;
}

sg_status sg_store_health(sg_store *s, char *why, size_t n)
{
    if (why && n) why[0] = '\0';
    if (!s) return SG_EINVAL;
    uv_mutex_lock(&s->mu);
    int ok = s->healthy;
    if (!ok && why && n) snprintf(why, n, "%s", s->why);
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

void sg_store_counts(sg_store *s, sg_store_counters *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!s) return;
    if (s->ops->counts) s->ops->counts(s->be, out);
    sg_store_stats(s, &out->transactions, &out->writes);
}

/* ---- reads ------------------------------------------------------------------ */

sg_status sg_store_reader_open(sg_store *s, sg_store_reader **out, char *err, size_t errlen)
{
    sg_store_breader *br = NULL;
    char dummy[8];
    if (!err || errlen == 0) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (out) *out = NULL;
    if (!s || !out) {
        snprintf(err, errlen, "%s", sg_status_text(SG_EINVAL));
        return SG_EINVAL;
    }
    sg_status st = s->ops->reader_open(s->be, &br, err, errlen);
    if (st != SG_OK) {
        if (!err[0]) snprintf(err, errlen, "%s", sg_status_text(st));
        return st;
    }
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

const char *sg_store_reader_error(const sg_store_reader *r)
{
    return r ? r->err : "";
}

/* Every read call on r starts here: the previous call's text goes. 0 if
 * there is no reader to call. */
static int begin(sg_store_reader *r)
{
    if (!r) return 0;
    r->err[0] = '\0';
    return 1;
}

/* Every read call on r ends here: a failure always leaves a text (the
 * backend's, else the status's), a success none (a load's callbacks may
 * have used r meanwhile). */
static sg_status finish(sg_store_reader *r, sg_status st)
{
    if (st == SG_OK)
        r->err[0] = '\0';
    else if (!r->err[0])
        snprintf(r->err, sizeof r->err, "%s", sg_status_text(st));
    return st;
}

sg_status sg_store_get(sg_store_reader *r, const char *id, sg_saga_rec *out)
{
    if (out) memset(out, 0, sizeof *out);
    if (!begin(r)) return SG_EINVAL;
    if (!id || !out) return finish(r, SG_EINVAL);
    return finish(r, r->ops->get(r->br, id, out, r->err, sizeof r->err));
}

sg_status sg_store_get_by_idem(sg_store_reader *r, const char *key, sg_saga_rec *out)
{
    if (out) memset(out, 0, sizeof *out);
    if (!begin(r)) return SG_EINVAL;
    if (!key || !out) return finish(r, SG_EINVAL);
    return finish(r, r->ops->get_by_idem(r->br, key, out, r->err, sizeof r->err));
}

sg_status sg_store_list(sg_store_reader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                        char next[SG_CURSOR_MAX])
{
    if (out) *out = NULL;
    if (n) *n = 0;
    if (next) next[0] = '\0';
    if (!begin(r)) return SG_EINVAL;
    if (!q || !out || !n || !next) return finish(r, SG_EINVAL);
    if (q->limit < 1 || q->limit > 1000) return finish(r, SG_EINVAL);
    if (q->status < -1 || q->status > SG_SAGA_FAILED) return finish(r, SG_EINVAL);
    return finish(r, r->ops->list(r->br, q, out, n, next, r->err, sizeof r->err));
}

sg_status sg_store_load_unfinished(sg_store_reader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                   void *arg)
{
    if (!begin(r)) return SG_EINVAL;
    if (!cb) return finish(r, SG_EINVAL);
    return finish(r, r->ops->load_unfinished(r->br, cb, arg, r->err, sizeof r->err));
}

sg_status sg_store_load_unfinished_page(sg_store_reader *r, const char *after, size_t limit,
                                        sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX])
{
    if (next) next[0] = '\0';
    if (!begin(r)) return SG_EINVAL;
    if (!cb || !next || limit < 1 || limit > 1000 || !r->ops->load_unfinished_page)
        return finish(r, SG_EINVAL);
    return finish(r, r->ops->load_unfinished_page(r->br, after && after[0] ? after : NULL, limit,
                                                  cb, arg, next, r->err, sizeof r->err));
}

sg_status sg_store_has_orphans(sg_store_reader *r, int *yes)
{
    if (yes) *yes = 0;
    if (!begin(r)) return SG_EINVAL;
    if (!yes || !r->ops->has_orphans) return finish(r, SG_EINVAL);
    return finish(r, r->ops->has_orphans(r->br, yes, r->err, sizeof r->err));
}

sg_status sg_store_load_compensations(sg_store_reader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                      void *arg)
{
    if (!begin(r)) return SG_EINVAL;
    if (!cb || !r->ops->load_compensations) return finish(r, SG_EINVAL);
    return finish(r, r->ops->load_compensations(r->br, cb, arg, r->err, sizeof r->err));
}

sg_status sg_store_load_pending_events(sg_store_reader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                       void *arg)
{
    if (!begin(r)) return SG_EINVAL;
    if (!cb) return finish(r, SG_EINVAL);
    return finish(r, r->ops->load_pending_events(r->br, cb, arg, r->err, sizeof r->err));
}

sg_status sg_store_list_events(sg_store_reader *r, const sg_list_query *q, sg_event_rec **out,
                               size_t *n, char next[SG_CURSOR_MAX])
{
    if (out) *out = NULL;
    if (n) *n = 0;
    if (next) next[0] = '\0';
    if (!begin(r)) return SG_EINVAL;
    if (!q || !out || !n || !next || !r->ops->list_events) return finish(r, SG_EINVAL);
    if (q->limit < 1 || q->limit > 1000) return finish(r, SG_EINVAL);
    if (q->status < -1 || q->status > SG_EVENT_PARKED) return finish(r, SG_EINVAL);
    return finish(r, r->ops->list_events(r->br, q, out, n, next, r->err, sizeof r->err));
}

sg_status sg_store_load_defs(sg_store_reader *r, sg_def_row_cb cb, void *arg)
{
    if (!begin(r)) return SG_EINVAL;
    if (!cb || !r->ops->load_defs) return finish(r, SG_EINVAL);
    return finish(r, r->ops->load_defs(r->br, cb, arg, r->err, sizeof r->err));
}

sg_status sg_store_get_event(sg_store_reader *r, const char *id, sg_event_rec *out)
{
    if (out) memset(out, 0, sizeof *out);
    if (!begin(r)) return SG_EINVAL;
    if (!id || !out || !r->ops->get_event) return finish(r, SG_EINVAL);
    return finish(r, r->ops->get_event(r->br, id, out, r->err, sizeof r->err));
}

sg_status sg_store_count_events(sg_store_reader *r, uint64_t counts[SG_EVENT_STATUSES])
{
    if (counts) memset(counts, 0, SG_EVENT_STATUSES * sizeof counts[0]);
    if (!begin(r)) return SG_EINVAL;
    if (!counts || !r->ops->count_events) return finish(r, SG_EINVAL);
    sg_status st = r->ops->count_events(r->br, counts, r->err, sizeof r->err);
    if (st != SG_OK) memset(counts, 0, SG_EVENT_STATUSES * sizeof counts[0]);
    return finish(r, st);
}

sg_status sg_store_adopt(sg_store_reader *r, size_t *taken)
{
    if (taken) *taken = 0;
    if (!begin(r)) return SG_EINVAL;
    if (!taken || !r->ops->shared || !r->ops->adopt) return finish(r, SG_EINVAL);
    return finish(r, r->ops->adopt(r->br, taken, r->err, sizeof r->err));
}
