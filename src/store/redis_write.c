/* The Redis backend's group commit: exec_batch sends a batch's writes as
 * MULTI, one EVALSHA of the write script per write (redis_lua.c), EXEC,
 * in one round trip, and reads the replies. The script makes each write
 * all or nothing and answers its status; MULTI/EXEC makes the batch all
 * or nothing (a connection lost before EXEC discards it). With
 * appendfsync always, Redis answers EXEC only once its AOF is on disk,
 * so the batch is durable when the replies are in. */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

/* ---- the batch ---------------------------------------------------------------- */

/* Failure injection: 1 if one of the next ncmd commands must fail (the
 * countdown reaches it); the batch then fails before anything is sent. */
static int injected_fault(size_t ncmd)
{
    int v = atomic_load(&sg_store_fail_countdown);
    while (v > 0) {
        int next = (size_t)v <= ncmd ? 0 : v - (int)ncmd;
        if (atomic_compare_exchange_weak(&sg_store_fail_countdown, &v, next))
            return (size_t)v <= ncmd;
    }
    return 0;
}

/* Drops the writer's connection after a failure: its state (a MULTI
 * half sent, replies unread) is unknown; the next batch reconnects. */
static void drop_conn(sg_store_backend *b)
{
    if (b->w) redisFree(b->w);
    b->w = NULL;
}

/* A write's status from its script's answer (v); a purge's count goes to
 * its op (the caller's counter). */
static sg_status write_status(const sg_write *w, long long v)
{
    if (v >= SG_RD_PURGED) {
        for (size_t k = 0; k < w->nops; k++)
            if (w->ops[k].kind == SG_WOP_PURGE)
                *w->ops[k].u.purge.purged = (size_t)(v - SG_RD_PURGED);
        return SG_OK;
    }
    switch (v) {
    case 0:
        return SG_OK;
    case 1:
        return SG_ECONFLICT;
    case 2:
        return SG_ENOTFOUND;
    case 3:
        return SG_EINVAL;
    case 4:
        return SG_EFENCED;
    default:
        return SG_EIO;
    }
}

/* Reads the replies of MULTI, n queued commands and EXEC into results.
 * *noscript is set when the server had lost the scripts (restarted):
 * nothing was applied then, and the caller loads them and runs again.
 * *in_doubt is set when the connection broke before EXEC's reply came:
 * the batch may have committed. */
static sg_status read_replies(sg_store_backend *b, sg_write *const *writes, size_t n,
                              sg_status *results, int *noscript, int *in_doubt, char *err,
                              size_t errlen)
{
    redisReply *r = NULL;
    sg_status st = SG_EIO;
    size_t queued = n ? n : 1; /* a probe queues the lease's renewal */
    for (size_t i = 0; i < queued + 2; i++) {
        void *p = NULL;
        if (redisGetReply(b->w, &p) != REDIS_OK || !p) {
            snprintf(err, errlen, "Redis %s: %s", b->a.shown,
                     b->w->errstr[0] ? b->w->errstr : "connection lost");
            drop_conn(b);
            if (r) freeReplyObject(r);
            *in_doubt = 1; /* EXEC may have run: the caller finds out */
            return SG_EIO;
        }
        if (r) freeReplyObject(r);
        r = p;
        /* MULTI answers +OK, each command +QUEUED (or an error that makes
         * EXEC refuse the whole transaction: reported from EXEC). */
        if (i < queued + 1 && r->type == REDIS_REPLY_ERROR && !err[0]) {
            if (!strncmp(sg__rd_reply_text(r), "NOSCRIPT", 8)) *noscript = 1;
            snprintf(err, errlen, "Redis %s: %s", b->a.shown, sg__rd_reply_text(r));
        }
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != queued) {
        if (!err[0] || r->type == REDIS_REPLY_ERROR)
            snprintf(err, errlen, "Redis %s: EXEC: %s", b->a.shown, sg__rd_reply_text(r));
        goto out;
    }
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type == REDIS_REPLY_ERROR) {
            if (!strncmp(e->str, "NOSCRIPT", 8)) *noscript = 1;
            snprintf(err, errlen, "Redis %s: %s", b->a.shown, e->str);
            goto out;
        }
        if (e->type != REDIS_REPLY_INTEGER) {
            snprintf(err, errlen, "Redis %s: unexpected reply to a write", b->a.shown);
            goto out;
        }
        /* The lease script answers 0 for a lost lease, a write 4. */
        if (n ? e->integer == 4 : e->integer != 1) {
            st = SG_EFENCED;
            goto out;
        }
        if (n) results[i] = write_status(writes[i], e->integer);
    }
    st = SG_OK;
out:
    freeReplyObject(r);
    return st;
}

/* A write's fingerprint: two 64-bit FNV-1a hashes (different seeds) of
 * the owner id and the encoded operations (a->v[from..]), in hex. The
 * same write sent again (a retried batch) has the same one; another
 * write, or the same from another sagad process, has another. */
static void fingerprint(const sg_store_backend *b, const rd_args *a, size_t from,
                        char out[SG_RD_FP_LEN + 1])
{
    uint64_t h[2] = {14695981039346656037ull, 0x84222325cbf29ce4ull};
    const uint64_t prime = 1099511628211ull;
    for (int k = 0; k < 2; k++) {
        for (const char *p = b->owner; *p; p++)
            h[k] = (h[k] ^ (unsigned char)*p) * prime;
        for (size_t i = from; i < a->n; i++) {
            /* Length first, so that argument boundaries count. */
            for (int s = 0; s < 64; s += 8)
                h[k] = (h[k] ^ ((a->len[i] >> s) & 0xff)) * prime;
            for (size_t j = 0; j < a->len[i]; j++)
                h[k] = (h[k] ^ (unsigned char)a->v[i][j]) * prime;
        }
    }
    snprintf(out, SG_RD_FP_LEN + 1, "%016llx%016llx", (unsigned long long)h[0],
             (unsigned long long)h[1]);
}

/* One attempt: MULTI, the writes (or the lease's renewal for a probe),
 * EXEC. The first write renews the lease; every write checks it, so the
 * whole batch applies only while the lease is this process's. fps[i]
 * gets write i's fingerprint. */
static sg_status run_batch(sg_store_backend *b, sg_write *const *writes, size_t n,
                           sg_status *results, char (*fps)[SG_RD_FP_LEN + 1], int *noscript,
                           int *in_doubt, char *err, size_t errlen)
{
    char ep[24], ms[24], now[24], keep[16];
    snprintf(ep, sizeof ep, "%lld", (long long)b->epoch);
    snprintf(ms, sizeof ms, "%ld", b->lease_ms);
    snprintf(keep, sizeof keep, "%d", SG_RD_DONE_TTL_MS);
    snprintf(now, sizeof now, "%" PRId64, sg_now_us());
    if (redisAppendCommand(b->w, "MULTI") != REDIS_OK) goto fail;
    if (n == 0) {
        /* A probe: renewing the lease is a write (it goes through the
         * AOF) that changes no record. */
        const char *argv[] = {"EVALSHA", b->sha_lease, "0", "renew", b->owner, ep, ms};
        if (redisAppendCommandArgv(b->w, 7, argv, NULL) != REDIS_OK) goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        rd_args a = {0};
        sg__rd_add_str(&a, "EVALSHA");
        sg__rd_add_str(&a, b->sha_write);
        sg__rd_add_str(&a, "0");
        sg__rd_add_str(&a, b->owner);
        sg__rd_add_str(&a, ep);
        sg__rd_add_str(&a, now);
        sg__rd_add_str(&a, ""); /* the fingerprint, once the operations are encoded */
        sg__rd_add_str(&a, keep);
        sg__rd_add_str(&a, i == 0 ? ms : "0");
        for (size_t k = 0; k < writes[i]->nops; k++)
            sg__rd_enc_op(&a, &writes[i]->ops[k]);
        sg__rd_args_fix(&a);
        fingerprint(b, &a, 9, fps[i]);
        a.v[6] = fps[i];
        a.len[6] = strlen(fps[i]);
        int rc = redisAppendCommandArgv(b->w, (int)a.n, a.v, a.len);
        sg__rd_args_free(&a);
        if (rc != REDIS_OK) goto fail;
    }
    if (redisAppendCommand(b->w, "EXEC") != REDIS_OK) goto fail;
    atomic_fetch_add_explicit(&b->commands, n + 2 + (n == 0), memory_order_relaxed);
    return read_replies(b, writes, n, results, noscript, in_doubt, err, errlen);
fail:
    snprintf(err, errlen, "Redis %s: %s", b->a.shown,
             b->w->errstr[0] ? b->w->errstr : "out of memory");
    drop_conn(b);
    return SG_EIO;
}

/* After a lost EXEC reply: whether the writes committed, read from their
 * sagad:done:<fingerprint> keys on a new connection (waiting up to
 * SG_RD_RESOLVE_MS for the server to come back, as a restart takes a
 * moment). SG_OK with results filled if they did; SG_EIO if they did not
 * or if that cannot be known yet: then the batch is sent again later, and
 * a write that did commit answers its status from its key rather than
 * applying twice. */
static sg_status resolve(sg_store_backend *b, sg_write *const *writes,
                         char (*fps)[SG_RD_FP_LEN + 1], size_t n, sg_status *results, char *err)
{
    uint64_t until = uv_hrtime() + (uint64_t)SG_RD_RESOLVE_MS * 1000000u;
    char e2[256];
    while (!b->w && !(b->w = sg__rd_connect(&b->a, b, e2, sizeof e2))) {
        if (uv_hrtime() > until) return SG_EIO;
        uv_sleep(50);
    }
    rd_args a = {0};
    sg__rd_add_str(&a, "MGET");
    for (size_t i = 0; i < n; i++) {
        char key[SG_RD_FP_LEN + 16];
        int kl = snprintf(key, sizeof key, "sagad:done:%s", fps[i]);
        sg__rd_add_copy(&a, key, (size_t)kl);
    }
    sg__rd_args_fix(&a);
    redisReply *r = sg__rd_cmd(&b->w, (int)a.n, a.v, a.len, "MGET", e2, sizeof e2);
    sg__rd_args_free(&a);
    atomic_fetch_add_explicit(&b->commands, 1, memory_order_relaxed);
    if (!r) return SG_EIO;
    size_t ours = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == n) {
        for (size_t i = 0; i < n; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING) continue;
            results[i] = write_status(writes[i], strtol(e->str, NULL, 10));
            ours++;
        }
    }
    freeReplyObject(r);
    if (ours == n) {
        err[0] = '\0';
        return SG_OK;
    }
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    return SG_EIO;
}

/* Remembers the sagas that writes[0..n) insert: their batch's outcome is
 * unknown (see undo_doubts). */
static void add_doubts(sg_store_backend *b, sg_write *const *writes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < writes[i]->nops; k++) {
            if (writes[i]->ops[k].kind != SG_WOP_SAGA_INSERT) continue;
            if (b->ndoubt == b->doubt_cap) {
                b->doubt_cap = b->doubt_cap ? b->doubt_cap * 2 : 16;
                b->doubt = sg_xrealloc(b->doubt, b->doubt_cap * sizeof *b->doubt);
            }
            memcpy(b->doubt[b->ndoubt++], writes[i]->ops[k].u.saga_insert.id, SG_ID_LEN + 1);
        }
    }
}

/* A new saga's client is answered as soon as its insert fails (the
 * writer does not retry inserts), so an insert whose batch did commit
 * after all, unknown to us, would leave a saga nothing runs until the
 * next start. Once the server answers again, such sagas are removed
 * (with anything of theirs), which makes the store agree with what the
 * clients were told. SG_OK when none is left in doubt. */
static sg_status undo_doubts(sg_store_backend *b, char *err, size_t errlen)
{
    char ep[24], now[24];
    snprintf(ep, sizeof ep, "%lld", (long long)b->epoch);
    snprintf(now, sizeof now, "%" PRId64, sg_now_us());
    char fp[SG_ID_LEN + 1];
    sg_uuid_v4(fp); /* one of its own: this write is never a replay */
    rd_args a = {0};
    sg__rd_add_str(&a, "EVALSHA");
    sg__rd_add_str(&a, b->sha_write);
    sg__rd_add_str(&a, "0");
    sg__rd_add_str(&a, b->owner);
    sg__rd_add_str(&a, ep);
    sg__rd_add_str(&a, now);
    sg__rd_add_str(&a, fp);
    sg__rd_add_str(&a, "1000");
    sg__rd_add_str(&a, "0");
    for (size_t i = 0; i < b->ndoubt; i++) {
        sg__rd_add_str(&a, "UI");
        sg__rd_add_str(&a, b->doubt[i]);
    }
    sg__rd_args_fix(&a);
    redisReply *r = sg__rd_cmd(&b->w, (int)a.n, a.v, a.len, "removing sagas in doubt", err, errlen);
    sg__rd_args_free(&a);
    atomic_fetch_add_explicit(&b->commands, 1, memory_order_relaxed);
    if (!r) return SG_EIO;
    sg_status st = SG_EIO;
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 4) {
        snprintf(err, errlen, "store lease lost");
        st = SG_EFENCED;
    } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        sg_log(SG_LOG_WARN,
               "store: %s: %zu new sagas whose insert had an unknown outcome (the reply was "
               "lost) are removed if they were stored: their clients were told it failed",
               b->a.shown, b->ndoubt);
        b->ndoubt = 0;
        st = SG_OK;
    } else {
        snprintf(err, errlen, "Redis %s: removing sagas in doubt: %s", b->a.shown,
                 sg__rd_reply_text(r));
    }
    freeReplyObject(r);
    return st;
}

sg_status sg__rd_exec_batch(sg_store_backend *b, sg_write *const *writes, size_t n,
                            sg_status *results, char *err, size_t errlen)
{
    sg_status st = SG_EIO;
    if (b->fenced) goto fenced; /* for good: another process may run its sagas */
    char(*fps)[SG_RD_FP_LEN + 1] = n ? sg_xcalloc(n, sizeof *fps) : NULL; /* owned */
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    err[0] = '\0';
    if (injected_fault(n + 2)) {
        snprintf(err, errlen, "Redis %s: injected I/O error", b->a.shown);
        free(fps);
        return SG_EIO;
    }
    for (int attempt = 0; attempt < 2; attempt++) {
        int noscript = 0, in_doubt = 0;
        if (!b->w && !(b->w = sg__rd_connect(&b->a, b, err, errlen))) break;
        err[0] = '\0';
        if (b->ndoubt && (st = undo_doubts(b, err, errlen)) != SG_OK) {
            if (st != SG_EFENCED) st = SG_EIO;
            break;
        }
        st = run_batch(b, writes, n, results, fps, &noscript, &in_doubt, err, errlen);
        if (in_doubt && n > 0) {
            /* Find out at once if the server is back soon: a batch that
             * did commit completes now rather than after a retry. */
            if (resolve(b, writes, fps, n, results, err) == SG_OK)
                st = SG_OK;
            else
                add_doubts(b, writes, n);
            break;
        }
        if (st == SG_OK || !noscript) break;
        /* The server lost its scripts (a restart, SCRIPT FLUSH): nothing
         * ran; load them on a new connection and send the batch again. */
        drop_conn(b);
    }
    free(fps);
    if (st == SG_EFENCED) {
        b->fenced = 1;
        goto fenced;
    }
    if (st != SG_OK)
        for (size_t i = 0; i < n; i++)
            results[i] = SG_EIO;
    return st;
fenced:
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EFENCED;
    snprintf(err, errlen,
             "store lease %s/%lld lost: another sagad may run its sagas now; nothing of this "
             "batch was stored",
             b->owner, (long long)b->epoch);
    return SG_EFENCED;
}

void sg__rd_counts(sg_store_backend *b, sg_store_counters *out)
{
    out->statements = atomic_load_explicit(&b->commands, memory_order_relaxed);
}
