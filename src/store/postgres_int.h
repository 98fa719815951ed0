/* PostgreSQL backend internals shared by postgres.c (connections, the
 * schema, open), postgres_sql.c (the SQL), postgres_write.c (the write
 * transaction), postgres_read.c (readers, sagas) and
 * postgres_read_events.c (the outbox and definitions).
 *
 * Wire format: every parameter and every result column travels in binary
 * (integers as BIGINT, big-endian; TEXT and BYTEA as their bytes), so a
 * record reads back byte for byte as it was written, with no quoting or
 * hex decoding on either side. */
#ifndef SG_STORE_POSTGRES_INT_H
#define SG_STORE_POSTGRES_INT_H

#include <libpq-fe.h>
#include <stdatomic.h>

#include "store_int.h"

/* The schema this sagad writes (table sg_schema; its own numbering,
 * independent of SQLite's user_version): 1 the first, 2 trace context. */
#define SG_PG_SCHEMA_VERSION 2
/* The statements that upgrade schema 1 to 2. */
extern const char sg__pg_upgrade_v2[];

/* Every statement a connection may prepare (SQL in postgres_sql.c). */
enum {
    P_BEGIN,
    P_COMMIT,
    P_ROLLBACK,
    P_SAVEPOINT,
    P_RELEASE,
    P_ROLLBACK_TO,
    P_SAGA_INSERT,
    P_STEP_INSERT,
    P_SAGA_UPDATE,
    P_STEP_UPDATE,
    P_EVENT_INSERT,
    P_EVENT_UPDATE,
    P_COMP_DONE,
    P_SAGA_EXPECT,
    P_EVENT_EXPECT,
    P_DEF_INSERT,
    P_EVENT_TRIED,
    P_WITHDRAW_ORPHANS,
    P_SAGA_CLAIM,
    P_PURGE,
    P_LEASE,
    P_PROBE,
    /* reads */
    P_BEGIN_R,
    P_GET,
    P_GET_IDEM,
    P_STEPS,
    P_COMPS,
    P_LIST,
    P_LIST_AFTER,
    P_LIST_ST,
    P_LIST_ST_AFTER,
    P_LIST_T,
    P_LIST_T_AFTER,
    P_LIST_ST_T,
    P_LIST_ST_T_AFTER,
    P_UNFINISHED,
    P_UNFINISHED_PAGE,
    P_STEP_EVENTS,
    P_PENDING_EVENTS,
    P_COMPENSATIONS,
    P_ORPHANS_EXIST,
    P_GET_EVENT,
    P_EVENTS,
    P_EVENTS_AFTER,
    P_EVENTS_ST,
    P_EVENTS_ST_AFTER,
    P_DEFS,
    P_OUTBOX_COUNTS,
    P_COUNT
};

/* Statement q: its SQL, what it does (for messages) and its parameter
 * types, one letter each: 'i' BIGINT, 't' TEXT, 'b' BYTEA. */
const char *sg__pg_sql(int q);
const char *sg__pg_name(int q);
const char *sg__pg_params(int q);
/* The current schema (CREATE ... IF NOT EXISTS), statements separated. */
extern const char sg__pg_schema[];

/* One connection, used by one thread at a time. */
typedef struct pgc {
    PGconn *pg;                   /* owned; NULL when not connected */
    unsigned char ready[P_COUNT]; /* 1: statement prepared on pg */
} pgc;

struct sg_store_backend {
    char *url;       /* owned; immutable after open, so readers may read it */
    int busy_ms;     /* lock_timeout of every connection; immutable too */
    int sync_commit; /* synchronous_commit on (1) or off (0) */
    int pipeline;    /* exec_batch pipelines its statements; immutable */
    pgc w;           /* the writer connection */
    int64_t seq;     /* the last batch's mark (sg_leases.seq); writer thread only */
    /* A batch whose COMMIT went unanswered and whose outcome is not known
     * yet (exec_batch answered SG_EDOUBT); writer thread only. */
    struct pg_doubt {
        int64_t seq;        /* its mark; 0: no batch in doubt */
        size_t n;           /* its writes */
        sg_write **writes;  /* owned array of borrowed pointers: to know it again */
        sg_status *results; /* owned: its results, had it committed */
    } doubt;
    /* This process's lease (design §7), taken at open; immutable after. */
    char owner[SG_ID_LEN + 1];
    int64_t epoch;
    int64_t lease_ms;
    atomic_int in_batch;
    _Atomic uint64_t statements;
};

struct sg_store_breader {
    sg_store_backend *be; /* borrowed: its url and busy_ms */
    pgc c;
};

/* ---- postgres.c ---------------------------------------------------------- */

/* Connects c to be's database (closing what c had): the session settings
 * every connection gets; the writer's (writer = 1) also ends a transaction
 * left idle past the lease, so that a paused process never holds the rows
 * others need to take its sagas over. On failure c is closed and err says
 * why. */
sg_status sg__pg_connect(pgc *c, const sg_store_backend *be, int writer, char *err, size_t errlen);
void sg__pg_disconnect(pgc *c); /* leaves c zeroed */
/* Prepares statement q on c unless done. 0 on success, else -1 with err. */
int sg__pg_prepare(pgc *c, int q, char *err, size_t errlen);
/* Connects the writer if it has no live connection, prepares the write statements and enters
 * pipeline mode when the backend pipelines. SG_EIO with err on failure. */
sg_status sg__pg_writer_ready(sg_store_backend *be, char *err, size_t errlen);
/* After the connection was lost with a COMMIT unanswered: connects the
 * writer again (trying for up to wait_ms) and reads the batch mark. 1 if
 * the batch marked seq committed, 0 if not, -1 if the server could not be
 * asked (err says why). */
#define SG_PG_VERIFY_MS 5000
int sg__pg_commit_landed(sg_store_backend *be, int64_t seq, unsigned wait_ms, char *err,
                         size_t errlen);
/* Forgets the batch in doubt, if any. */
void sg__pg_doubt_clear(sg_store_backend *be);
/* The first line of libpq's message for c (or res when non-NULL). */
void sg__pg_msg(char *out, size_t n, PGconn *pg, const PGresult *res);

/* ---- postgres_lease.c ------------------------------------------------------ */

/* The database's clock in microseconds, as SQL: every expiry is on it, so
 * the processes' clocks never need to agree. */
#define SG_PG_NOW_US "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000)::BIGINT"
/* Takes a new lease for be on the writer connection: a fresh owner id, the
 * next epoch, an expiry lease_ms from now. SG_EIO with err on failure. */
sg_status sg__pg_lease_take(sg_store_backend *be, char *err, size_t errlen);
/* Gives the lease up (it expires now), so others adopt at once. */
void sg__pg_lease_drop(sg_store_backend *be);
void sg__pg_owner(sg_store_backend *be, char id[SG_ID_LEN + 1], int64_t *epoch);
sg_status sg__pg_adopt(sg_store_breader *r, size_t *taken, char *err, size_t errlen);
/* At open, on the writer connection: takes over what expired leases left
 * (a previous sagad that closed cleanly, or died a lease ago), so that the
 * start-up recovery reads find it at once. */
sg_status sg__pg_adopt_at_open(sg_store_backend *be, char *err, size_t errlen);

/* ---- postgres_write.c ---------------------------------------------------- */

sg_status sg__pg_exec_batch(sg_store_backend *be, sg_write *const *writes, size_t n,
                            sg_status *results, char *err, size_t errlen);
void sg__pg_counts(sg_store_backend *be, sg_store_counters *out);

/* ---- postgres_read.c ----------------------------------------------------- */

/* Binary column decoding shared by the readers. */
int64_t sg__pg_int(const PGresult *res, int row, int col);
char *sg__pg_bytes(const PGresult *res, int row, int col, size_t *len); /* NULL for SQL NULL */
void sg__pg_id(const PGresult *res, int row, int col, char out[SG_ID_LEN + 1]);

/* One read call: the reader and the caller's buffer for its failure. */
typedef struct rd {
    sg_store_breader *r;
    char *err;
    size_t errlen;
} rd;

/* Parameters of one read statement, all binary; unset ones are NULL. */
typedef struct params {
    const char *v[16];
    int len[16];
    int fmt[16];
    unsigned char ib[16][8]; /* BIGINTs, big-endian */
} params;

/* Parameter i (from 1): n bytes at s (TEXT or BYTEA; NULL is SQL NULL, a
 * non-NULL empty value stays empty), or a BIGINT. */
void sg__pg_p_text(params *p, int i, const void *s, size_t n);
void sg__pg_p_int(params *p, int i, int64_t v);
/* Runs statement q with p (NULL: none); the result (rows or a command's
 * status) is the caller's to PQclear. NULL on failure, with err set; a
 * lost connection is dropped, and the next call connects again. */
PGresult *sg__pg_rd_exec(rd *k, int q, const params *p);
/* The parameters of one keyset page ($1 limit + 1, $2 and $3 the cursor,
 * $4 status, $5 type) and the query of qs for them (qs as SQLite's
 * sg__sq_page_stmt). SG_EINVAL for a malformed cursor. */
sg_status sg__pg_page_params(rd *k, const sg_list_query *q, const int *qs, int *qi, params *p,
                             char cid[SG_ID_LEN + 1]);
/* Runs event query q and appends up to max rows (0 = all) to *v, *n,
 * which the caller frees (sg_store_free_events) even on failure. */
sg_status sg__pg_collect_events(rd *k, int q, const params *p, size_t max, sg_event_rec **v,
                                size_t *n);

sg_status sg__pg_reader_open(sg_store_backend *be, sg_store_breader **out, char *err,
                             size_t errlen);
void sg__pg_reader_close(sg_store_breader *r);
sg_status sg__pg_get(sg_store_breader *r, const char *id, sg_saga_rec *out, char *err,
                     size_t errlen);
sg_status sg__pg_get_by_idem(sg_store_breader *r, const char *key, sg_saga_rec *out, char *err,
                             size_t errlen);
sg_status sg__pg_list(sg_store_breader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                      char next[SG_CURSOR_MAX], char *err, size_t errlen);
sg_status sg__pg_load_unfinished(sg_store_breader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                 void *arg, char *err, size_t errlen);
sg_status sg__pg_load_unfinished_page(sg_store_breader *r, const char *after, size_t limit,
                                      sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX],
                                      char *err, size_t errlen);
sg_status sg__pg_has_orphans(sg_store_breader *r, int *yes, char *err, size_t errlen);
sg_status sg__pg_load_compensations(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                    void *arg, char *err, size_t errlen);
sg_status sg__pg_load_pending_events(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                     void *arg, char *err, size_t errlen);
sg_status sg__pg_list_events(sg_store_breader *r, const sg_list_query *q, sg_event_rec **out,
                             size_t *n, char next[SG_CURSOR_MAX], char *err, size_t errlen);
/* GET /metrics: outbox entries by status (counts[sg_event_status]). */
sg_status sg__pg_count_events(sg_store_breader *r, uint64_t counts[SG_EVENT_STATUSES], char *err,
                              size_t errlen);
sg_status sg__pg_get_event(sg_store_breader *r, const char *id, sg_event_rec *out, char *err,
                           size_t errlen);
sg_status sg__pg_load_defs(sg_store_breader *r, sg_def_row_cb cb, void *arg, char *err,
                           size_t errlen);

#endif
