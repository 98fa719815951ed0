/* The SQLite backend's statement runner (sqlite_txn.h): running a bound
 * statement, what its failure means for its write, and the failure
 * injection countdown that reaches every error path of a batch. */
#include <stdatomic.h>
#include <stdio.h>

#include "sqlite_txn.h"

/* Failure injection: 1 if the statement about to run must fail. */
static int injected_fault(void)
{
    int v = atomic_load(&sg_store_fail_countdown);
    while (v > 0) {
        if (atomic_compare_exchange_weak(&sg_store_fail_countdown, &v, v - 1)) return v == 1;
    }
    return 0;
}

/* Runs statement q (st, bound by the caller; bind_rc is the first bind
 * failure) to completion and resets it. Returns the SQLite code
 * (SQLITE_OK on success); on failure err says which statement. */
int sg__sq_tx_run(txn *t, int q, sqlite3_stmt *st, int bind_rc)
{
    int rc = bind_rc;
    const char *msg = NULL;
    atomic_fetch_add_explicit(&t->be->statements, 1, memory_order_relaxed);
    if (rc != SQLITE_OK) {
        msg = sqlite3_errstr(rc);
    } else if (injected_fault()) {
        rc = SQLITE_IOERR;
        msg = "injected I/O error";
    } else {
        /* A write yields no rows; drain any a pragma might. */
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            continue;
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
        else
            msg = sqlite3_errmsg(t->c->db);
    }
    /* Read the message before reset may replace it. */
    if (rc != SQLITE_OK) snprintf(t->err, t->errlen, "SQLite %s: %s", sg__sq_name(q), msg);
    /* The bindings stay: every use binds each parameter again before it
     * steps (SQLite never reads a binding until then), so clearing them
     * would be work for nothing on every statement. */
    sqlite3_reset(st);
    return rc;
}

/* Runs a statement without parameters (BEGIN, SAVEPOINT, ...). */
int sg__sq_tx_simple(txn *t, int q)
{
    sqlite3_stmt *st = sg__sq_stmt(t->c, q, t->err, t->errlen);
    return st ? sg__sq_tx_run(t, q, st, SQLITE_OK) : SQLITE_ERROR;
}

/* What a failed statement means for its write: a constraint or size
 * problem belongs to that write alone; anything else (I/O, full disk,
 * corruption, a lost lock) sinks the transaction and maps to SG_EIO. */
sg_status sg__sq_classify(int rc)
{
    switch (rc) {
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_PRIMARYKEY:
        return SG_ECONFLICT;
    case SQLITE_TOOBIG:
        return SG_ETOOBIG;
    default:
        break;
    }
    if ((rc & 0xff) == SQLITE_CONSTRAINT) return SG_EINVAL; /* e.g. a NULL request */
    return SG_EIO;
}

/* Sets b up to bind statement q. Returns the statement, or NULL if it
 * cannot be prepared (err says why; the write then fails with SG_EIO). */
sqlite3_stmt *sg__sq_prep(txn *t, int q, binder *b)
{
    b->q = q;
    b->rc = SQLITE_OK;
    b->st = sg__sq_stmt(t->c, q, t->err, t->errlen);
    return b->st;
}

/* Runs b's statement. SG_OK, or the write's failure: classify's status,
 * or SG_ENOTFOUND when it must change a row (an UPDATE) and matched none. */
sg_status sg__sq_run(txn *t, binder *b, int must_change)
{
    int rc = sg__sq_tx_run(t, b->q, b->st, b->rc);
    if (rc != SQLITE_OK) return sg__sq_classify(rc);
    if (must_change && sqlite3_changes(t->c->db) == 0) return SG_ENOTFOUND;
    return SG_OK;
}
