/* Private to the PostgreSQL backend's write transaction: the state of one
 * exec_batch call and the statement sender, shared by postgres_write.c
 * (sending, reading back, the passes) and postgres_ops.c (the statements
 * of each write operation). Writer thread only. */
#ifndef SG_STORE_POSTGRES_TXN_H
#define SG_STORE_POSTGRES_TXN_H

#include <stdint.h>
#include <string.h>

#include "postgres_int.h"

#define PIPE_CHUNK 256 /* statements per Sync in a pipelined pass */
#define NO_WRITE SIZE_MAX
#define LEASE_STMT (SIZE_MAX - 1) /* the lease's renewal: its failure fences the batch */

/* A statement sent and not yet read back. */
typedef struct sent {
    int q;
    size_t w;       /* the write it belongs to, NO_WRITE for BEGIN, COMMIT... */
    sg_status zero; /* the write's failure if it matches no row (MUST) */
    size_t *rows;   /* borrowed, or NULL: gets the rows the statement changed */
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
    size_t *rows; /* borrowed, or NULL: gets the rows the statement changed */
} binder;

/* b gets statement q with no parameters set yet. */
static inline void b_init(binder *b, int q)
{
    memset(b, 0, sizeof *b);
    b->q = q;
    b->n = (int)strlen(sg__pg_params(q));
}

/* Parameter i (from 1); pointers are borrowed until the statement is sent. */
static inline void b_text(binder *b, int i, const char *s)
{
    sg__pg_p_text(&b->p, i, s, s ? strlen(s) : 0);
}

static inline void b_blob(binder *b, int i, const void *p, size_t n)
{
    sg__pg_p_text(&b->p, i, p, n);
}

static inline void b_int(binder *b, int i, int64_t v)
{
    sg__pg_p_int(&b->p, i, v);
}

/* Sends (pipelined) or runs b's statement for write w (NO_WRITE: BEGIN,
 * COMMIT...); zero is the write's failure if it matches no row (MUST).
 * After a failure nothing more is sent until the failure is cleared. */
void sg__pg_tx_send(txn *t, const binder *b, size_t w, sg_status zero);
/* Records a failure (the most telling one stays: postgres_write.c). */
void sg__pg_tx_fail(txn *t, sg_status st, const char *what, const char *why);

/* postgres_ops.c: sends the statements of write i (all its operations). */
void sg__pg_apply_write(txn *t, const sg_write *w, size_t i);

#endif
