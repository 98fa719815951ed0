/* The PostgreSQL backend's write transaction (exec_batch).
 *
 * Shape: BEGIN, every statement of every write, COMMIT, sent as one
 * pipeline (libpq pipeline mode) and read back after one Sync: one round
 * trip for a whole batch (a Sync every PIPE_CHUNK statements keeps what
 * is in flight bounded). A write that must match a row fails on the
 * server (postgres_sql.c, MUST), so a failing write stops the pipeline
 * before COMMIT. Then, as in SQLite, the transaction is rolled back and
 * the batch runs again with a savepoint per write (one round trip per
 * write: this is the rare path), which gives every write its own result
 * while the others commit. Without pipelining (SAGAD_PG_PIPELINE=0) the
 * same statements run one round trip each.
 *
 * A lost connection fails the batch (SG_EIO; retry_failed decides) unless
 * its COMMIT was sent and unanswered: then the batch's mark, read on a new
 * connection, tells whether it committed. The next batch reconnects. */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

#define PIPE_CHUNK 256 /* statements per Sync in a pipelined pass */
#define NO_WRITE SIZE_MAX

/* A statement sent and not yet read back. */
typedef struct sent {
    int q;
    size_t w;       /* the write it belongs to, NO_WRITE for BEGIN, COMMIT... */
    sg_status zero; /* the write's failure if it matches no row (MUST) */
} sent;

/* State of one exec_batch call. */
typedef struct txn {
    sg_store_backend *be;
    PGconn *pg;
    int pipeline;
    char *err; /* the caller's; holds the first failure */
    size_t errlen;
    sent q[PIPE_CHUNK]; /* pipelined, awaiting their results */
    size_t nq;
    size_t cur;        /* the write being applied */
    int failed;        /* a statement failed since the last clear */
    sg_status fail_st; /* SG_EIO, or the failing write's own status */
    int broken;        /* the connection is in an unknown state: drop it */
    int commit_sent;   /* COMMIT went out... */
    int commit_ok;     /* ...and was answered: committed */
    int aborted;       /* a statement failed on a live connection: not committed */
} txn;

/* One statement and its parameters (borrowed from the sg_write, which
 * outlives the call that sends them). */
typedef struct binder {
    int q;
    int n;
    params p;
} binder;

static void b_init(binder *b, int q)
{
    memset(b, 0, sizeof *b);
    b->q = q;
    b->n = (int)strlen(sg__pg_params(q));
}

static void b_text(binder *b, int i, const char *s)
{
    sg__pg_p_text(&b->p, i, s, s ? strlen(s) : 0);
}

static void b_blob(binder *b, int i, const void *p, size_t n)
{
    sg__pg_p_text(&b->p, i, p, n);
}

static void b_int(binder *b, int i, int64_t v)
{
    sg__pg_p_int(&b->p, i, v);
}

/* Failure injection: 1 if the statement about to run must fail. */
static int injected_fault(void)
{
    int v = atomic_load(&sg_store_fail_countdown);
    while (v > 0) {
        if (atomic_compare_exchange_weak(&sg_store_fail_countdown, &v, v - 1)) return v == 1;
    }
    return 0;
}

/* Records a failure: the first one's text stays in err, but an SG_EIO
 * outranks a write's own failure (the transaction is lost either way). */
static void fail(txn *t, sg_status st, const char *what, const char *why)
{
    if (t->failed && (t->fail_st == SG_EIO || st != SG_EIO)) return;
    t->failed = 1;
    t->fail_st = st;
    snprintf(t->err, t->errlen, "PostgreSQL %s: %s", what, why);
}

/* What a failed statement means: a constraint or value problem belongs to
 * its write alone; anything else sinks the transaction (SG_EIO). */
static sg_status classify(const char *state, const sent *s)
{
    if (!state || s->w == NO_WRITE) return SG_EIO;
    if (strcmp(state, "23505") == 0) return SG_ECONFLICT; /* unique_violation */
    if (strcmp(state, "22012") == 0) return s->zero;      /* MUST matched no row */
    if (strcmp(state, "54000") == 0) return SG_ETOOBIG;   /* program_limit_exceeded */
    if (strncmp(state, "23", 2) == 0 || strncmp(state, "22", 2) == 0) return SG_EINVAL;
    return SG_EIO;
}

static void check(txn *t, PGresult *res, const sent *s)
{
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (s->q == P_COMMIT) t->commit_ok = 1;
        return;
    }
    if (st == PGRES_PIPELINE_ABORTED) {
        /* Skipped after an earlier failure, which is recorded already. */
        if (!t->failed) fail(t, SG_EIO, sg__pg_name(s->q), "pipeline aborted");
        return;
    }
    char m[200];
    sg__pg_msg(m, sizeof m, t->pg, res);
    fail(t, classify(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL, s), sg__pg_name(s->q),
         m);
    if (PQstatus(t->pg) != CONNECTION_OK)
        t->broken = 1;
    else
        t->aborted = 1;
}

/* Reads back the results of everything pipelined, through the Sync. */
static void tx_sync(txn *t)
{
    if (!t->pipeline || t->nq == 0) return;
    char m[200];
    if (!PQpipelineSync(t->pg)) {
        sg__pg_msg(m, sizeof m, t->pg, NULL);
        fail(t, SG_EIO, "sync", m);
        t->broken = 1;
        t->nq = 0;
        return;
    }
    size_t i = 0;
    int nulls = 0;
    for (;;) {
        PGresult *res = PQgetResult(t->pg);
        if (!res) {
            /* One NULL ends each statement's results; more in a row, or a
             * dead connection, means nothing else is coming. */
            if (PQstatus(t->pg) != CONNECTION_OK || ++nulls > 1) {
                sg__pg_msg(m, sizeof m, t->pg, NULL);
                fail(t, SG_EIO, "reading results", m);
                t->broken = 1;
                break;
            }
            continue;
        }
        nulls = 0;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            break;
        }
        if (i < t->nq) {
            check(t, res, &t->q[i++]);
        } else {
            fail(t, SG_EIO, "reading results", "more results than statements");
            t->broken = 1;
        }
        PQclear(res);
    }
    if (i < t->nq && !t->broken) {
        fail(t, SG_EIO, "reading results", "fewer results than statements");
        t->broken = 1;
    }
    t->nq = 0;
}

/* Sends (pipelined) or runs b's statement for the current write w. After
 * a failure nothing more is sent until the failure is cleared. */
static void tx_send(txn *t, const binder *b, size_t w, sg_status zero)
{
    if (t->failed) return;
    atomic_fetch_add_explicit(&t->be->statements, 1, memory_order_relaxed);
    if (injected_fault()) {
        fail(t, SG_EIO, sg__pg_name(b->q), "injected I/O error");
        return;
    }
    char name[16];
    snprintf(name, sizeof name, "q%d", b->q);
    sent s = {b->q, w, zero};
    if (b->q == P_COMMIT) t->commit_sent = 1;
    if (!t->pipeline) {
        PGresult *res = PQexecPrepared(t->pg, name, b->n, b->p.v, b->p.len, b->p.fmt, 1);
        check(t, res, &s);
        PQclear(res);
        return;
    }
    if (!PQsendQueryPrepared(t->pg, name, b->n, b->p.v, b->p.len, b->p.fmt, 1)) {
        char m[200];
        sg__pg_msg(m, sizeof m, t->pg, NULL);
        fail(t, SG_EIO, sg__pg_name(b->q), m);
        t->broken = 1;
        return;
    }
    t->q[t->nq++] = s;
    if (t->nq == PIPE_CHUNK) tx_sync(t);
}

static void send_simple(txn *t, int q)
{
    binder b;
    b_init(&b, q);
    tx_send(t, &b, NO_WRITE, SG_EIO);
}

/* BEGIN and the batch's mark (a new seq for each attempt). */
static void begin(txn *t)
{
    binder b;
    send_simple(t, P_BEGIN);
    b_init(&b, P_MARK);
    b_int(&b, 1, ++t->be->seq);
    tx_send(t, &b, NO_WRITE, SG_EIO);
}

/* ---- the statements of each operation ---------------------------------- */

static void bind_step_state(binder *b, int first, const sg_step_rec *s)
{
    b_int(b, first, s->status);
    b_int(b, first + 1, s->attempts);
    b_int(b, first + 2, s->started_us);
    b_int(b, first + 3, s->finished_us);
    b_blob(b, first + 4, s->error, s->error ? strlen(s->error) : 0);
    b_blob(b, first + 5, s->response, s->response_len);
    b_int(b, first + 6, s->next_us);
}

static void saga_insert(txn *t, const sg_saga_rec *r)
{
    binder b;
    b_init(&b, P_SAGA_INSERT);
    b_text(&b, 1, r->id);
    b_text(&b, 2, r->def_name);
    b_blob(&b, 3, r->request, r->request_len);
    b_blob(&b, 4, r->idem_key, r->idem_key ? strlen(r->idem_key) : 0);
    b_int(&b, 5, r->status);
    b_int(&b, 6, r->comp_status);
    b_blob(&b, 7, r->error, r->error ? strlen(r->error) : 0);
    b_int(&b, 8, r->created_us);
    b_int(&b, 9, r->updated_us);
    b_int(&b, 10, (int64_t)r->nsteps);
    b_int(&b, 11, r->def_version);
    tx_send(t, &b, t->cur, SG_EIO);
    for (size_t i = 0; i < r->nsteps; i++) {
        const sg_step_rec *s = &r->steps[i];
        b_init(&b, P_STEP_INSERT);
        b_text(&b, 1, r->id);
        b_int(&b, 2, (int64_t)i);
        b_text(&b, 3, s->name);
        bind_step_state(&b, 4, s);
        tx_send(t, &b, t->cur, SG_EIO);
    }
}

static void event_insert(txn *t, const sg_event_rec *e)
{
    binder b;
    b_init(&b, P_EVENT_INSERT);
    b_text(&b, 1, e->id);
    b_text(&b, 2, e->saga_id);
    b_text(&b, 3, e->topic);
    b_blob(&b, 4, e->target, e->target ? strlen(e->target) : 0);
    b_blob(&b, 5, e->payload, e->payload_len);
    b_int(&b, 6, e->created_us);
    b_int(&b, 7, e->deadline_us);
    b_int(&b, 8, e->compensation);
    b_int(&b, 9, e->step_index);
    b_int(&b, 10, e->status);
    b_int(&b, 11, e->attempts);
    b_blob(&b, 12, e->last_error, e->last_error ? strlen(e->last_error) : 0);
    b_int(&b, 13, e->updated_us);
    b_text(&b, 14, e->method);
    b_blob(&b, 15, e->headers, e->headers ? strlen(e->headers) : 0);
    b_int(&b, 16, e->timeout_ms);
    tx_send(t, &b, t->cur, SG_EIO);
}

static void apply_op(txn *t, const sg_write_op *op)
{
    binder b;
    switch (op->kind) {
    case SG_WOP_SAGA_INSERT:
        saga_insert(t, &op->u.saga_insert);
        return;
    case SG_WOP_SAGA_UPDATE:
        b_init(&b, P_SAGA_UPDATE);
        b_text(&b, 1, op->u.saga_update.id);
        b_int(&b, 2, op->u.saga_update.status);
        b_int(&b, 3, op->u.saga_update.comp);
        b_blob(&b, 4, op->u.saga_update.error,
               op->u.saga_update.error ? strlen(op->u.saga_update.error) : 0);
        b_int(&b, 5, op->u.saga_update.updated_us);
        tx_send(t, &b, t->cur, SG_ENOTFOUND);
        return;
    case SG_WOP_STEP_UPDATE:
        if (op->u.step_update.index > INT64_MAX) {
            fail(t, SG_ENOTFOUND, "update step", "no such step");
            return;
        }
        b_init(&b, P_STEP_UPDATE);
        b_text(&b, 1, op->u.step_update.saga_id);
        b_int(&b, 2, (int64_t)op->u.step_update.index);
        bind_step_state(&b, 3, &op->u.step_update.step);
        tx_send(t, &b, t->cur, SG_ENOTFOUND);
        return;
    case SG_WOP_EVENT_INSERT:
        event_insert(t, &op->u.event_insert);
        return;
    case SG_WOP_EVENT_UPDATE:
        b_init(&b, P_EVENT_UPDATE);
        b_text(&b, 1, op->u.event_update.id);
        b_int(&b, 2, op->u.event_update.status);
        b_int(&b, 3, op->u.event_update.attempts);
        b_blob(&b, 4, op->u.event_update.last_error,
               op->u.event_update.last_error ? strlen(op->u.event_update.last_error) : 0);
        b_int(&b, 5, op->u.event_update.updated_us);
        tx_send(t, &b, t->cur, SG_ENOTFOUND);
        /* The compensation rule; a step event's saga is not found. */
        if (op->u.event_update.status == SG_EVENT_WITHDRAWN) return;
        b_init(&b, P_COMP_DONE);
        b_text(&b, 1, op->u.event_update.id);
        b_int(&b, 2, sg_now_us());
        tx_send(t, &b, t->cur, SG_EIO);
        return;
    case SG_WOP_SAGA_EXPECT:
        b_init(&b, P_SAGA_EXPECT);
        b_text(&b, 1, op->u.saga_expect.id);
        b_int(&b, 2, op->u.saga_expect.status);
        b_int(&b, 3, op->u.saga_expect.comp);
        tx_send(t, &b, t->cur, SG_ECONFLICT);
        return;
    case SG_WOP_EVENT_EXPECT:
        b_init(&b, P_EVENT_EXPECT);
        b_text(&b, 1, op->u.event_expect.id);
        b_int(&b, 2, op->u.event_expect.status);
        tx_send(t, &b, t->cur, SG_ECONFLICT);
        return;
    case SG_WOP_DEF_INSERT:
        b_init(&b, P_DEF_INSERT);
        b_text(&b, 1, op->u.def_insert.name);
        b_int(&b, 2, op->u.def_insert.version);
        b_text(&b, 3, op->u.def_insert.canonical);
        b_int(&b, 4, op->u.def_insert.created_us);
        tx_send(t, &b, t->cur, SG_ECONFLICT);
        return;
    case SG_WOP_EVENT_TRIED:
        b_init(&b, P_EVENT_TRIED);
        b_text(&b, 1, op->u.event_tried.id);
        b_int(&b, 2, op->u.event_tried.us);
        tx_send(t, &b, t->cur, SG_EIO);
        return;
    case SG_WOP_WITHDRAW_ORPHANS:
        b_init(&b, P_WITHDRAW_ORPHANS);
        tx_send(t, &b, t->cur, SG_EIO);
        return;
    }
    fail(t, SG_EINVAL, "write", "unknown operation");
}

static void apply_write(txn *t, const sg_write *w, size_t i)
{
    t->cur = i;
    for (size_t k = 0; k < w->nops && !t->failed; k++)
        apply_op(t, &w->ops[k]);
}

/* ---- passes --------------------------------------------------------------- */

/* The fast pass: the whole batch and its COMMIT at once. SG_OK when it
 * committed, or (with *redo set) when a write failed by itself and the
 * transaction was rolled back; SG_EIO when the transaction failed. */
static sg_status fast_pass(txn *t, sg_write *const *writes, size_t n, sg_status *results, int *redo)
{
    begin(t);
    if (n == 0) send_simple(t, P_PROBE);
    for (size_t i = 0; i < n; i++)
        apply_write(t, writes[i], i);
    send_simple(t, P_COMMIT);
    tx_sync(t);
    if (!t->failed) {
        for (size_t i = 0; i < n; i++)
            results[i] = SG_OK;
        return SG_OK;
    }
    if (t->fail_st == SG_EIO) return SG_EIO;
    t->failed = 0;
    send_simple(t, P_ROLLBACK);
    tx_sync(t);
    if (t->failed) return SG_EIO;
    *redo = 1;
    return SG_OK;
}

/* The careful pass: a savepoint per write, and a round trip per write to
 * learn whether to keep it. */
static sg_status careful_pass(txn *t, sg_write *const *writes, size_t n, sg_status *results)
{
    begin(t);
    for (size_t i = 0; i < n; i++) {
        send_simple(t, P_SAVEPOINT);
        apply_write(t, writes[i], i);
        send_simple(t, P_RELEASE);
        tx_sync(t);
        if (!t->failed) {
            results[i] = SG_OK;
            continue;
        }
        if (t->fail_st == SG_EIO) return SG_EIO;
        results[i] = t->fail_st;
        t->failed = 0;
        send_simple(t, P_ROLLBACK_TO);
        send_simple(t, P_RELEASE);
        tx_sync(t);
        if (t->failed) return SG_EIO;
    }
    send_simple(t, P_COMMIT);
    tx_sync(t);
    return t->failed ? SG_EIO : SG_OK;
}

static sg_status run_batch(sg_store_backend *be, sg_write *const *writes, size_t n,
                           sg_status *results, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    if (sg__pg_writer_ready(be, err, errlen) != SG_OK) goto fail_early;
    txn *t = sg_xcalloc(1, sizeof *t);
    t->be = be;
    t->pg = be->w.pg;
    t->pipeline = be->pipeline;
    t->err = err;
    t->errlen = errlen;
    int redo = 0;
    sg_status st = fast_pass(t, writes, n, results, &redo);
    if (st == SG_OK && redo) st = careful_pass(t, writes, n, results);
    tx_sync(t); /* whatever a failure left in flight */
    int broken = t->broken;
    int doubt = st != SG_OK && t->commit_sent && !t->commit_ok && !t->aborted;
    free(t);
    if (doubt) {
        /* The server may have committed before the connection went: ask
         * it, rather than fail (and maybe retry) writes that are stored. */
        sg__pg_disconnect(&be->w);
        if (sg__pg_commit_landed(be, be->seq, err, errlen) != 1) goto fail_early;
        for (size_t i = 0; i < n && !redo; i++)
            results[i] = SG_OK; /* the careful pass set its own */
        err[0] = '\0';
        return SG_OK;
    }
    if (be->pipeline && !broken && !PQexitPipelineMode(be->w.pg)) broken = 1;
    if (st == SG_OK && !broken) return SG_OK;
    if (st == SG_OK) {
        /* Committed, but the connection is in doubt: start afresh. */
        sg__pg_disconnect(&be->w);
        return SG_OK;
    }
    /* A transaction left open would fail every later batch: end it, or
     * drop the connection (which ends it on the server). */
    if (!broken && PQstatus(be->w.pg) == CONNECTION_OK &&
        PQtransactionStatus(be->w.pg) != PQTRANS_IDLE) {
        PGresult *res = PQexec(be->w.pg, "ROLLBACK");
        if (PQresultStatus(res) != PGRES_COMMAND_OK) broken = 1;
        PQclear(res);
    }
    if (broken || PQstatus(be->w.pg) != CONNECTION_OK) sg__pg_disconnect(&be->w);
fail_early:
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    if (!err[0]) snprintf(err, errlen, "PostgreSQL transaction failed");
    return SG_EIO;
}

sg_status sg__pg_exec_batch(sg_store_backend *be, sg_write *const *writes, size_t n,
                            sg_status *results, char *err, size_t errlen)
{
    int overlapping = atomic_exchange(&be->in_batch, 1);
    assert(!overlapping);
    (void)overlapping;
    sg_status st = run_batch(be, writes, n, results, err, errlen);
    atomic_store(&be->in_batch, 0);
    return st;
}

void sg__pg_counts(sg_store_backend *be, sg_store_counters *out)
{
    out->statements = atomic_load_explicit(&be->statements, memory_order_relaxed);
}
