/* The SQLite backend's write transaction: exec_batch (one transaction;
 * a savepoint per write only when a write fails by itself), the
 * statements of each write operation (run by sqlite_txn.c). */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "sg/util.h"
#include "sqlite_txn.h"

/* Binds a step's mutable state (status, attempts, started_us,
 * finished_us, error, response, next_us) to parameters first..first+6. */
static void bind_step_state(binder *b, int first, const sg_step_rec *s)
{
    bind_int(b, first, s->status);
    bind_int(b, first + 1, s->attempts);
    bind_int(b, first + 2, s->started_us);
    bind_int(b, first + 3, s->finished_us);
    bind_text(b, first + 4, s->error);
    bind_blob(b, first + 5, s->response, s->response_len);
    bind_int(b, first + 6, s->next_us);
}

/* Inserts the saga's step rows steps[first..first+k), k <= SG_SQ_STEP_ROWS,
 * with one statement. */
static sg_status insert_steps(txn *t, const char *saga_id, const sg_step_rec *steps, size_t first,
                              size_t k)
{
    binder b;
    if (!sg__sq_prep(t, Q_STEP_INSERT + (int)k - 1, &b)) return SG_EIO;
    bind_text(&b, 1, saga_id);
    for (size_t i = 0; i < k; i++) {
        int p = 2 + 9 * (int)i;
        bind_int(&b, p, (int64_t)(first + i));
        bind_text(&b, p + 1, steps[first + i].name);
        bind_step_state(&b, p + 2, &steps[first + i]);
    }
    return sg__sq_run(t, &b, 0);
}

static sg_status apply_saga_insert(txn *t, const sg_saga_rec *r)
{
    binder b;
    if (!sg__sq_prep(t, Q_SAGA_INSERT, &b)) return SG_EIO;
    bind_text(&b, 1, r->id);
    bind_text(&b, 2, r->def_name);
    bind_blob(&b, 3, r->request, r->request_len);
    bind_text(&b, 4, r->idem_key);
    bind_int(&b, 5, r->status);
    bind_int(&b, 6, r->comp_status);
    bind_text(&b, 7, r->error);
    bind_int(&b, 8, r->created_us);
    bind_int(&b, 9, r->updated_us);
    bind_int(&b, 10, (int64_t)r->nsteps);
    bind_int(&b, 11, r->def_version);
    bind_text(&b, 12, r->trace.trace_id[0] ? r->trace.trace_id : NULL);
    bind_int(&b, 13, r->trace.flags);
    bind_text(&b, 14, r->tracestate);
    sg_status st = sg__sq_run(t, &b, 0);
    for (size_t i = 0; i < r->nsteps && st == SG_OK; i += SG_SQ_STEP_ROWS) {
        size_t k = r->nsteps - i < SG_SQ_STEP_ROWS ? r->nsteps - i : SG_SQ_STEP_ROWS;
        st = insert_steps(t, r->id, r->steps, i, k);
    }
    return st;
}

/* An update to IN_PROGRESS (a step moved on: the saga was IN_PROGRESS
 * already, but for a redrive) tries Q_SAGA_TOUCH first, which leaves the
 * status index alone; if it matches nothing, and for any other status
 * (which is usually new), Q_SAGA_UPDATE. */
static sg_status apply_saga_update(txn *t, const sg_write_op *op)
{
    binder b;
    sg_status st = SG_ENOTFOUND;
    int first = op->u.saga_update.status == SG_SAGA_IN_PROGRESS ? Q_SAGA_TOUCH : Q_SAGA_UPDATE;
    for (int q = first; st == SG_ENOTFOUND; q = Q_SAGA_UPDATE) {
        if (!sg__sq_prep(t, q, &b)) return SG_EIO;
        bind_text(&b, 1, op->u.saga_update.id);
        bind_int(&b, 2, op->u.saga_update.status);
        bind_int(&b, 3, op->u.saga_update.comp);
        bind_text(&b, 4, op->u.saga_update.error);
        bind_int(&b, 5, op->u.saga_update.updated_us);
        st = sg__sq_run(t, &b, 1);
        if (q == Q_SAGA_UPDATE) break;
    }
    return st;
}

/* Steps a (op) and b (pair) of one saga, adjacent, in one statement
 * (Q_STEP_UPDATE2). *both is set when it changed both rows; otherwise (a
 * row is missing, or a value refused) the caller runs each update alone,
 * in its place, which gives the write the very result it had before
 * (running one of them twice is harmless: an update sets its row to the
 * same values again). SG_EIO only when the transaction failed. */
static sg_status apply_step_pair(txn *t, const sg_write_op *op, const sg_write_op *pair, int *both)
{
    binder b;
    *both = 0;
    if (!sg__sq_prep(t, Q_STEP_UPDATE2, &b)) return SG_EIO;
    bind_text(&b, 1, op->u.step_update.saga_id);
    bind_int(&b, 2, (int64_t)op->u.step_update.index);
    bind_step_state(&b, 3, &op->u.step_update.step);
    bind_int(&b, 10, (int64_t)pair->u.step_update.index);
    bind_step_state(&b, 11, &pair->u.step_update.step);
    int rc = sg__sq_tx_run(t, b.q, b.st, b.rc);
    if (rc != SQLITE_OK) return sg__sq_classify(rc) == SG_EIO ? SG_EIO : SG_OK;
    *both = sqlite3_changes(t->c->db) == 2;
    return SG_OK;
}

/* The step update that op (a step update at w->ops[k]) may share a
 * statement with: the next step update of the write, when it is for the
 * same saga's step just before or after op's and nothing between them
 * touches the steps table (only a saga insert could: it adds rows).
 * Moving it forward is safe: no other operation reads steps. Its index
 * in w->ops, or 0 for none. */
static size_t step_pair(const sg_write *w, size_t k)
{
    const sg_write_op *op = &w->ops[k];
    if (op->u.step_update.index >= INT64_MAX) return 0;
    for (size_t j = k + 1; j < w->nops; j++) {
        const sg_write_op *o = &w->ops[j];
        if (o->kind == SG_WOP_SAGA_INSERT) return 0;
        if (o->kind != SG_WOP_STEP_UPDATE) continue;
        size_t a = op->u.step_update.index, b = o->u.step_update.index;
        if (strcmp(o->u.step_update.saga_id, op->u.step_update.saga_id) != 0) return 0;
        return (b == a + 1 || a == b + 1) ? j : 0;
    }
    return 0;
}

static sg_status apply_step_update(txn *t, const sg_write_op *op)
{
    binder b;
    if (op->u.step_update.index > INT64_MAX) return SG_ENOTFOUND;
    if (!sg__sq_prep(t, Q_STEP_UPDATE, &b)) return SG_EIO;
    bind_text(&b, 1, op->u.step_update.saga_id);
    bind_int(&b, 2, (int64_t)op->u.step_update.index);
    bind_step_state(&b, 3, &op->u.step_update.step);
    return sg__sq_run(t, &b, 1);
}

static sg_status apply_event_insert(txn *t, const sg_event_rec *e)
{
    binder b;
    if (!sg__sq_prep(t, Q_EVENT_INSERT, &b)) return SG_EIO;
    bind_text(&b, 1, e->id);
    bind_text(&b, 2, e->saga_id);
    bind_text(&b, 3, e->topic);
    bind_text(&b, 4, e->target);
    bind_blob(&b, 5, e->payload, e->payload_len);
    bind_int(&b, 6, e->created_us);
    bind_int(&b, 7, e->deadline_us);
    bind_int(&b, 8, e->compensation);
    bind_int(&b, 9, e->step_index);
    bind_int(&b, 10, e->status);
    bind_int(&b, 11, e->attempts);
    bind_text(&b, 12, e->last_error);
    bind_int(&b, 13, e->updated_us);
    bind_text(&b, 14, e->method);
    bind_text(&b, 15, e->headers);
    bind_int(&b, 16, e->timeout_ms);
    return sg__sq_run(t, &b, 0);
}

/* Also applies the compensation rule (Q_COMP_DONE): a compensation's
 * status change moves its saga's comp_status with it. A step event (most
 * updates) is updated by Q_STEP_EVENT_UPDATE, and that is all; if that
 * matches nothing, the event is a compensation (or missing). */
static sg_status apply_event_update(txn *t, const sg_write_op *op)
{
    binder b;
    sg_status st = SG_ENOTFOUND;
    for (int q = Q_STEP_EVENT_UPDATE; st == SG_ENOTFOUND; q = Q_EVENT_UPDATE) {
        if (!sg__sq_prep(t, q, &b)) return SG_EIO;
        bind_text(&b, 1, op->u.event_update.id);
        bind_int(&b, 2, op->u.event_update.status);
        bind_int(&b, 3, op->u.event_update.attempts);
        bind_text(&b, 4, op->u.event_update.last_error);
        bind_int(&b, 5, op->u.event_update.updated_us);
        st = sg__sq_run(t, &b, 1);
        if (q == Q_STEP_EVENT_UPDATE && st == SG_OK) return SG_OK; /* a step event */
        if (q == Q_EVENT_UPDATE) break;
    }
    if (st != SG_OK || op->u.event_update.status == SG_EVENT_WITHDRAWN) return st;
    if (!sg__sq_prep(t, Q_COMP_DONE, &b)) return SG_EIO;
    bind_text(&b, 1, op->u.event_update.id);
    bind_int(&b, 2, sg_now_us());
    return sg__sq_run(t, &b, 0);
}

/* A guard: matches its row only in the expected state. */
static sg_status apply_expect(txn *t, const sg_write_op *op)
{
    binder b;
    if (op->kind == SG_WOP_SAGA_EXPECT) {
        if (!sg__sq_prep(t, Q_SAGA_EXPECT, &b)) return SG_EIO;
        bind_text(&b, 1, op->u.saga_expect.id);
        bind_int(&b, 2, op->u.saga_expect.status);
        bind_int(&b, 3, op->u.saga_expect.comp);
    } else {
        if (!sg__sq_prep(t, Q_EVENT_EXPECT, &b)) return SG_EIO;
        bind_text(&b, 1, op->u.event_expect.id);
        bind_int(&b, 2, op->u.event_expect.status);
    }
    sg_status st = sg__sq_run(t, &b, 1);
    return st == SG_ENOTFOUND ? SG_ECONFLICT : st;
}

/* A definition version: new, or already stored with the same text (the
 * upsert then changes its row to itself); another text under the same
 * name and version changes nothing, and the write fails alone. */
static sg_status apply_def_insert(txn *t, const sg_write_op *op)
{
    binder b;
    if (!sg__sq_prep(t, Q_DEF_INSERT, &b)) return SG_EIO;
    bind_text(&b, 1, op->u.def_insert.name);
    bind_int(&b, 2, op->u.def_insert.version);
    bind_text(&b, 3, op->u.def_insert.canonical);
    bind_int(&b, 4, op->u.def_insert.created_us);
    sg_status st = sg__sq_run(t, &b, 1);
    return st == SG_ENOTFOUND ? SG_ECONFLICT : st;
}

/* Retention: one chunk of settled sagas with their steps and outbox
 * rows (the rule: PURGE_PICK in sqlite_sql.c). The sagas go last, since
 * their rows decide which sagas are picked. */
static sg_status apply_purge(txn *t, const sg_write_op *op)
{
    for (int q = Q_PURGE_STEPS; q <= Q_PURGE_SAGAS; q++) {
        binder b;
        if (!sg__sq_prep(t, q, &b)) return SG_EIO;
        bind_int(&b, 1, op->u.purge.before_us);
        bind_int(&b, 2, (int64_t)op->u.purge.limit);
        sg_status st = sg__sq_run(t, &b, 0);
        if (st != SG_OK) return st;
    }
    *op->u.purge.purged = (size_t)sqlite3_changes(t->c->db);
    return SG_OK;
}

static sg_status apply_op(txn *t, const sg_write_op *op)
{
    switch (op->kind) {
    case SG_WOP_SAGA_INSERT:
        return apply_saga_insert(t, &op->u.saga_insert);
    case SG_WOP_SAGA_UPDATE:
        return apply_saga_update(t, op);
    case SG_WOP_STEP_UPDATE:
        return apply_step_update(t, op);
    case SG_WOP_EVENT_INSERT:
        return apply_event_insert(t, &op->u.event_insert);
    case SG_WOP_EVENT_UPDATE:
        return apply_event_update(t, op);
    case SG_WOP_SAGA_EXPECT:
    case SG_WOP_EVENT_EXPECT:
        return apply_expect(t, op);
    case SG_WOP_DEF_INSERT:
        return apply_def_insert(t, op);
    case SG_WOP_EVENT_TRIED: {
        binder b;
        if (!sg__sq_prep(t, Q_EVENT_TRIED, &b)) return SG_EIO;
        bind_text(&b, 1, op->u.event_tried.id);
        bind_int(&b, 2, op->u.event_tried.us);
        return sg__sq_run(t, &b, 0);
    }
    case SG_WOP_WITHDRAW_ORPHANS: {
        binder b;
        if (!sg__sq_prep(t, Q_WITHDRAW_ORPHANS, &b)) return SG_EIO;
        return sg__sq_run(t, &b, 0);
    }
    case SG_WOP_SAGA_CLAIM:
        return SG_OK; /* one process owns every saga */
    case SG_WOP_PURGE:
        return apply_purge(t, op);
    }
    return SG_EINVAL;
}

/* One pass of exec_batch's transaction over writes[0..n). With
 * savepoints (the careful pass) each write runs inside its own, and a
 * write that fails by itself is rolled back to it alone. Without (the
 * fast pass, tried first) a write that fails by itself ends the pass:
 * the transaction is rolled back and *redo set, so that the caller runs
 * the careful pass; nothing of the fast pass stays. Returns SG_OK when
 * the pass committed (or must be redone), SG_EIO when the transaction
 * failed. */
static sg_status batch_pass(txn *t, sg_write *const *writes, size_t n, sg_status *results,
                            int savepoints, int *redo)
{
    if (sg__sq_tx_simple(t, Q_BEGIN_W) != SQLITE_OK) return SG_EIO;
    if (n == 0 && sg__sq_tx_simple(t, Q_PROBE) != SQLITE_OK) return SG_EIO;
    for (size_t i = 0; i < n; i++) {
        const sg_write *w = writes[i];
        sg_status ws = SG_OK;
        if (savepoints && sg__sq_tx_simple(t, Q_SAVEPOINT) != SQLITE_OK) return SG_EIO;
        size_t skip = 0; /* an op done already, with an earlier one */
        for (size_t k = 0; k < w->nops && ws == SG_OK; k++) {
            if (skip && k == skip) continue;
            size_t j = w->ops[k].kind == SG_WOP_STEP_UPDATE ? step_pair(w, k) : 0;
            int both = 0;
            if (j) ws = apply_step_pair(t, &w->ops[k], &w->ops[j], &both);
            if (both)
                skip = j;
            else if (ws == SG_OK)
                ws = apply_op(t, &w->ops[k]);
        }
        if (ws == SG_EIO) return SG_EIO;
        if (ws != SG_OK && !savepoints) {
            /* Part of this write may have applied: undo the whole pass. */
            if (sg__sq_tx_simple(t, Q_ROLLBACK) != SQLITE_OK) return SG_EIO;
            *redo = 1;
            return SG_OK;
        }
        /* A write that failed by itself is undone alone; the savepoint is
         * released either way so the next write starts clean. */
        if (ws != SG_OK && sg__sq_tx_simple(t, Q_ROLLBACK_TO) != SQLITE_OK) return SG_EIO;
        if (savepoints && sg__sq_tx_simple(t, Q_RELEASE) != SQLITE_OK) return SG_EIO;
        results[i] = ws;
    }
    if (sg__sq_tx_simple(t, Q_COMMIT) != SQLITE_OK) return SG_EIO;
    return SG_OK;
}

/* exec_batch's transaction; see sg_store_ops.exec_batch.
 *
 * A savepoint per write costs: every page a write touches is copied to
 * the sub-journal first, and each write runs two more statements. But a
 * write almost never fails by itself (a taken idempotency key, a guard,
 * a changed definition), so the batch first runs without savepoints; only
 * when a write does fail alone is that transaction rolled back and the
 * batch run again with a savepoint per write, which gives every write the
 * result it would have had, and the others commit. A failure of the
 * transaction itself (I/O, full disk, a lost lock) fails it either way. */
static sg_status run_batch(sg_store_backend *be, sg_write *const *writes, size_t n,
                           sg_status *results, char *err, size_t errlen)
{
    txn t = {be, &be->w, err, errlen};
    int redo = 0;
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    if (sg__sq_same_file(be, err, errlen) != SG_OK) goto fail;
    /* A transaction a failed batch could not roll back would make every
     * later BEGIN fail (and a retried batch fail forever): end it first. */
    if (!sqlite3_get_autocommit(be->w.db)) sqlite3_exec(be->w.db, "ROLLBACK", NULL, NULL, NULL);
    if (batch_pass(&t, writes, n, results, 0, &redo) != SG_OK) goto fail;
    if (redo && batch_pass(&t, writes, n, results, 1, &redo) != SG_OK) goto fail;
    return SG_OK;

fail:
    /* SQLite may already have rolled back by itself (after an I/O error or
     * a full disk); only roll back what is still open. The error message
     * in err stays that of the first failure. A transaction left open
     * would block every later batch: say so. */
    if (!sqlite3_get_autocommit(be->w.db) && sg__sq_run_simple(&be->w, Q_ROLLBACK) != SQLITE_DONE)
        sg_log(SG_LOG_ERROR, "store: SQLite rollback failed: %s", sqlite3_errmsg(be->w.db));
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    if (!err[0]) snprintf(err, errlen, "SQLite transaction failed");
    return SG_EIO;
}

sg_status sg__sq_exec_batch(sg_store_backend *be, sg_write *const *writes, size_t n,
                            sg_status *results, char *err, size_t errlen)
{
    /* The writer connection has no lock of its own: it relies on calls
     * never overlapping (the store's writer thread is the only caller). */
    int overlapping = atomic_exchange(&be->in_batch, 1);
    assert(!overlapping);
    (void)overlapping;
    sg_status st = run_batch(be, writes, n, results, err, errlen);
    /* Pages written to the WAL (a failed transaction's too), read and
     * reset: SQLite counts them per connection. */
    int pages = 0, hi = 0;
    if (sqlite3_db_status(be->w.db, SQLITE_DBSTATUS_CACHE_WRITE, &pages, &hi, 1) == SQLITE_OK &&
        pages > 0)
        atomic_fetch_add_explicit(&be->wal_pages, (uint64_t)pages, memory_order_relaxed);
    atomic_store(&be->in_batch, 0);
    return st;
}

void sg__sq_counts(sg_store_backend *be, sg_store_counters *out)
{
    out->statements = atomic_load_explicit(&be->statements, memory_order_relaxed);
    out->wal_pages = atomic_load_explicit(&be->wal_pages, memory_order_relaxed);
    /* Each WAL frame is a 24-byte header and the page. */
    out->wal_bytes = out->wal_pages * ((uint64_t)be->page_size + 24);
}
