/* Private to the SQLite backend's write transaction: the state of one
 * exec_batch call and the statement runner, shared by sqlite_txn.c (binding,
 * running, failure injection) and sqlite_write.c (the statements of each
 * write operation, the batch). Writer thread only. */
#ifndef SG_STORE_SQLITE_TXN_H
#define SG_STORE_SQLITE_TXN_H

#include <stdint.h>

#include "sqlite_int.h"

/* State of one exec_batch call. */
typedef struct txn {
    sg_store_backend *be;
    conn *c;
    char *err; /* the caller's; holds the first failure */
    size_t errlen;
} txn;

/* One statement being bound. It collects the first bind error so call
 * sites can bind a whole row and check once. Pointers bound are borrowed
 * (SQLITE_STATIC): they belong to the sg_write, which outlives the
 * statement's execution. */
typedef struct binder {
    int q;
    sqlite3_stmt *st;
    int rc;
} binder;

static inline void bind_text(binder *b, int i, const char *s)
{
    if (b->rc != SQLITE_OK) return;
    b->rc = s ? sqlite3_bind_text(b->st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(b->st, i);
}

static inline void bind_blob(binder *b, int i, const void *p, size_t n)
{
    if (b->rc != SQLITE_OK) return;
    /* A non-NULL empty value must stay an empty blob, not NULL. */
    b->rc = p ? sqlite3_bind_blob64(b->st, i, n ? p : "", n, SQLITE_STATIC)
              : sqlite3_bind_null(b->st, i);
}

static inline void bind_int(binder *b, int i, int64_t v)
{
    if (b->rc != SQLITE_OK) return;
    b->rc = sqlite3_bind_int64(b->st, i, v);
}

/* Runs statement q (st, bound by the caller; bind_rc is the first bind
 * failure) to completion and resets it. Returns the SQLite code
 * (SQLITE_OK on success); on failure t->err says which statement. */
int sg__sq_tx_run(txn *t, int q, sqlite3_stmt *st, int bind_rc);
/* Runs a statement without parameters (BEGIN, SAVEPOINT, ...). */
int sg__sq_tx_simple(txn *t, int q);
/* What a failed statement's code means for its write: SG_ECONFLICT,
 * SG_ETOOBIG and SG_EINVAL belong to that write alone; SG_EIO sinks the
 * transaction. */
sg_status sg__sq_classify(int rc);
/* Sets b up to bind statement q. Returns the statement, or NULL if it
 * cannot be prepared (t->err says why; the write then fails with SG_EIO). */
sqlite3_stmt *sg__sq_prep(txn *t, int q, binder *b);
/* Runs b's statement. SG_OK, or the write's failure: SG_ECONFLICT (a
 * unique key), SG_ETOOBIG, SG_EINVAL (another constraint), SG_EIO
 * (anything else sinks the transaction), or SG_ENOTFOUND when it must
 * change a row (an UPDATE) and matched none. */
sg_status sg__sq_run(txn *t, binder *b, int must_change);

#endif
