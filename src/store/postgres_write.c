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
 * connection, tells whether it committed. The next batch reconnects. If
 * the server cannot be asked, the batch is in doubt (SG_EDOUBT) and is
 * remembered: the writer sends it again, and it is answered from its mark
 * once the server is back (its new sagas, which may be stored, are not
 * refused, and its updates are never applied twice). */
#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres_txn.h"
#include "sg/alloc.h"
#include "sg/util.h"

/* Failure injection: 1 if the statement about to run must fail. */
static int injected_fault(void)
{
    int v = atomic_load(&sg_store_fail_countdown);
    while (v > 0) {
        if (atomic_compare_exchange_weak(&sg_store_fail_countdown, &v, v - 1)) return v == 1;
    }
    return 0;
}

/* How much a failure says about the transaction: a lost lease outranks an
 * SG_EIO, which outranks a write's own failure. */
static int rank(sg_status st)
{
    return st == SG_EFENCED ? 2 : st == SG_EIO ? 1 : 0;
}

/* Records a failure: the first one's text stays in err unless a later one
 * outranks it. */
void sg__pg_tx_fail(txn *t, sg_status st, const char *what, const char *why)
{
    if (t->failed && rank(t->fail_st) >= rank(st)) return;
    t->failed = 1;
    t->fail_st = st;
    snprintf(t->err, t->errlen, "PostgreSQL %s: %s", what, why);
}

/* What a failed statement means: a constraint or value problem belongs to
 * its write alone; anything else sinks the transaction (SG_EIO). */
static sg_status classify(const char *state, const sent *s)
{
    if (s->w == LEASE_STMT) return state && strcmp(state, "22012") == 0 ? SG_EFENCED : SG_EIO;
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
        if (s->rows) *s->rows = (size_t)strtoull(PQcmdTuples(res), NULL, 10);
        return;
    }
    if (st == PGRES_PIPELINE_ABORTED) {
        /* Skipped after an earlier failure, which is recorded already. */
        if (!t->failed) sg__pg_tx_fail(t, SG_EIO, sg__pg_name(s->q), "pipeline aborted");
        return;
    }
    char m[200];
    sg__pg_msg(m, sizeof m, t->pg, res);
    sg__pg_tx_fail(t, classify(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL, s),
                   sg__pg_name(s->q), m);
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
        sg__pg_tx_fail(t, SG_EIO, "sync", m);
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
                sg__pg_tx_fail(t, SG_EIO, "reading results", m);
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
            sg__pg_tx_fail(t, SG_EIO, "reading results", "more results than statements");
            t->broken = 1;
        }
        PQclear(res);
    }
    if (i < t->nq && !t->broken) {
        sg__pg_tx_fail(t, SG_EIO, "reading results", "fewer results than statements");
        t->broken = 1;
    }
    t->nq = 0;
}

/* Sends (pipelined) or runs b's statement for the current write w. After
 * a failure nothing more is sent until the failure is cleared. */
void sg__pg_tx_send(txn *t, const binder *b, size_t w, sg_status zero)
{
    if (t->failed) return;
    atomic_fetch_add_explicit(&t->be->statements, 1, memory_order_relaxed);
    if (injected_fault()) {
        sg__pg_tx_fail(t, SG_EIO, sg__pg_name(b->q), "injected I/O error");
        return;
    }
    char name[16];
    snprintf(name, sizeof name, "q%d", b->q);
    sent s = {b->q, w, zero, b->rows};
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
        sg__pg_tx_fail(t, SG_EIO, sg__pg_name(b->q), m);
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
    sg__pg_tx_send(t, &b, NO_WRITE, SG_EIO);
}

/* BEGIN, then the lease renewed with the batch's mark (a new seq for
 * each attempt): nothing of the batch applies once the lease is lost. */
static void begin(txn *t)
{
    binder b;
    send_simple(t, P_BEGIN);
    b_init(&b, P_LEASE);
    b_text(&b, 1, t->be->owner);
    b_int(&b, 2, t->be->epoch);
    b_int(&b, 3, t->be->lease_ms);
    b_int(&b, 4, ++t->be->seq);
    sg__pg_tx_send(t, &b, LEASE_STMT, SG_EFENCED);
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
        sg__pg_apply_write(t, writes[i], i);
    send_simple(t, P_COMMIT);
    tx_sync(t);
    if (!t->failed) {
        for (size_t i = 0; i < n; i++)
            results[i] = SG_OK;
        return SG_OK;
    }
    if (rank(t->fail_st)) return t->fail_st;
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
        sg__pg_apply_write(t, writes[i], i);
        send_simple(t, P_RELEASE);
        tx_sync(t);
        if (!t->failed) {
            results[i] = SG_OK;
            continue;
        }
        if (rank(t->fail_st)) return t->fail_st;
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

/* ---- a batch in doubt ------------------------------------------------------- */

void sg__pg_doubt_clear(sg_store_backend *be)
{
    free(be->doubt.writes);
    free(be->doubt.results);
    memset(&be->doubt, 0, sizeof be->doubt);
}

/* Remembers writes[0..n), marked be->seq, with the results they have if
 * their transaction committed. */
static void doubt_keep(sg_store_backend *be, sg_write *const *writes, size_t n,
                       const sg_status *results)
{
    sg__pg_doubt_clear(be);
    be->doubt.seq = be->seq;
    be->doubt.n = n;
    be->doubt.writes = sg_xcalloc(n, sizeof *be->doubt.writes);
    be->doubt.results = sg_xcalloc(n, sizeof *be->doubt.results);
    memcpy(be->doubt.writes, writes, n * sizeof *writes);
    memcpy(be->doubt.results, results, n * sizeof *results);
}

/* Learns the outcome of the batch in doubt before anything else runs.
 * With *run = 0: SG_OK with results filled when writes[0..n) is that
 * batch and it committed, or SG_EDOUBT (the same batch) / SG_EIO (another)
 * when the server still cannot be asked. With *run = 1 (SG_OK) the
 * writes must run: the batch in doubt did not commit, or it was another
 * one. */
static sg_status doubt_resolve(sg_store_backend *be, sg_write *const *writes, size_t n,
                               sg_status *results, int *run, char *err, size_t errlen)
{
    int same = n == be->doubt.n && memcmp(writes, be->doubt.writes, n * sizeof *writes) == 0;
    *run = 0;
    /* The writer waits its backoff between tries: one attempt here. */
    int landed = sg__pg_commit_landed(be, be->doubt.seq, 0, err, errlen);
    if (landed < 0) return same ? SG_EDOUBT : SG_EIO;
    if (landed && same) memcpy(results, be->doubt.results, n * sizeof *results);
    if (landed && !same)
        sg_log(SG_LOG_WARN,
               "store: a transaction of %zu writes given up in doubt did commit; what it stored "
               "resumes at the next start",
               be->doubt.n);
    sg__pg_doubt_clear(be);
    err[0] = '\0';
    *run = !(landed && same);
    return SG_OK;
}

static sg_status run_batch(sg_store_backend *be, sg_write *const *writes, size_t n,
                           sg_status *results, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    if (be->doubt.seq) {
        int run = 0;
        sg_status st = doubt_resolve(be, writes, n, results, &run, err, errlen);
        if (!run) return st;
    }
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
        for (size_t i = 0; i < n && !redo; i++)
            results[i] = SG_OK; /* had it committed; the careful pass set its own */
        int landed = sg__pg_commit_landed(be, be->seq, SG_PG_VERIFY_MS, err, errlen);
        if (landed == 1) {
            err[0] = '\0';
            return SG_OK;
        }
        if (landed < 0 && n > 0) {
            doubt_keep(be, writes, n, results);
            for (size_t i = 0; i < n; i++)
                results[i] = SG_EIO;
            return SG_EDOUBT;
        }
        goto fail_early;
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
    if (st == SG_EFENCED) {
        for (size_t i = 0; i < n; i++)
            results[i] = SG_EFENCED;
        snprintf(err, errlen,
                 "store lease %s/%lld lost: another sagad may run its sagas now; nothing of "
                 "this transaction was stored",
                 be->owner, (long long)be->epoch);
        return SG_EFENCED;
    }
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
