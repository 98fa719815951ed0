/* SQLite backend internals shared by sqlite.c (connections, open),
 * sqlite_sql.c (the schema and the statements), sqlite_write.c (the write
 * transaction), sqlite_read.c (readers, sagas) and sqlite_read_events.c
 * (the outbox and definitions). */
#ifndef SG_STORE_SQLITE_INT_H
#define SG_STORE_SQLITE_INT_H

#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "store_int.h"

/* The schema this sagad writes (PRAGMA user_version): 1 the first, 2
 * retries and parking, 3 definitions with versions, 4 trace context, 5
 * fewer index entries per saga (idem_key indexed only when set, no
 * outbox_pending), 6 status indexes without the settled rows (no
 * COMPLETED saga in sagas_status, no DELIVERED event in outbox_status). */
#define SG_SQ_SCHEMA_VERSION 6

/* The status the status indexes leave out (schema 6): a COMPLETED saga's
 * and a DELIVERED event's, the same number. */
#define SG_SQ_SETTLED 1

/* Most step rows one statement inserts (Q_STEP_INSERT .. _INSERT4). */
#define SG_SQ_STEP_ROWS 4

/* Every statement either connection may run (SQL in sqlite_sql.c); prepared
 * lazily per connection, so a reader never prepares the write statements. */
enum {
    Q_BEGIN_W,
    Q_BEGIN_R,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_SAVEPOINT,
    Q_RELEASE,
    Q_ROLLBACK_TO,
    Q_SAGA_INSERT,
    Q_STEP_INSERT, /* one step row; Q_STEP_INSERT + k - 1 inserts k rows */
    Q_STEP_INSERT2,
    Q_STEP_INSERT3,
    Q_STEP_INSERT4,
    Q_SAGA_UPDATE,
    Q_SAGA_TOUCH,
    Q_STEP_UPDATE,
    Q_STEP_UPDATE2, /* two adjacent steps of one saga */
    Q_EVENT_INSERT,
    Q_EVENT_UPDATE,
    Q_STEP_EVENT_UPDATE,
    Q_COMP_DONE,
    Q_SAGA_EXPECT,
    Q_EVENT_EXPECT,
    Q_DEF_INSERT,
    Q_EVENT_TRIED,
    Q_PURGE_STEPS,  /* retention: a chunk of settled sagas' steps, */
    Q_PURGE_OUTBOX, /* their outbox rows, */
    Q_PURGE_SAGAS,  /* then the sagas (sg_write_purge) */
    Q_GET,
    Q_GET_IDEM,
    Q_STEPS,
    Q_COMPS,
    /* The saga list: all, after a cursor, by status, by type (_T). */
    Q_LIST,
    Q_LIST_AFTER,
    Q_LIST_ST,
    Q_LIST_ST_AFTER,
    Q_LIST_T,
    Q_LIST_T_AFTER,
    Q_LIST_ST_T,
    Q_LIST_ST_T_AFTER,
    Q_LIST_OPEN, /* by a status other than COMPLETED, through sagas_status */
    Q_LIST_OPEN_AFTER,
    Q_LIST_OPEN_T,
    Q_LIST_OPEN_T_AFTER,
    Q_UNFINISHED,
    Q_PENDING_EVENTS,
    Q_GET_EVENT,
    Q_EVENTS,
    Q_EVENTS_AFTER,
    Q_UNFINISHED_PAGE,
    Q_STEP_EVENTS,
    Q_COMPENSATIONS,
    Q_WITHDRAW_ORPHANS,
    Q_ORPHANS_EXIST,
    Q_EVENTS_ST,
    Q_EVENTS_ST_AFTER,
    Q_EVENTS_OPEN, /* by a status other than DELIVERED, through outbox_status */
    Q_EVENTS_OPEN_AFTER,
    Q_DEFS,
    Q_PROBE,
    Q_OUTBOX_COUNTS,
    Q_COUNT
};

/* One connection, used by one thread at a time. */
typedef struct conn {
    sqlite3 *db;                 /* owned */
    sqlite3_stmt *stmt[Q_COUNT]; /* owned; NULL until first use */
} conn;

struct sg_store_backend {
    char *path;    /* owned; immutable after open, so readers may read it */
    int busy_ms;   /* busy timeout of every connection; immutable too */
    int sync_full; /* synchronous=FULL, not NORMAL; immutable too */
    int lock_fd;   /* owned; flock'd "<path>.lock", -1 if none */
    dev_t dev;     /* the database file opened: immutable after open */
    ino_t ino;
    conn w;              /* the writer connection */
    atomic_int in_batch; /* 1 while exec_batch runs: calls never overlap */
    int wal_frames;      /* in the WAL after the last commit (writer thread) */
    int page_size;       /* of the database, read at open */
    /* Counts of the writer's work (written by its thread, read by any):
     * statements run, pages written to the WAL. */
    _Atomic uint64_t statements;
    _Atomic uint64_t wal_pages;
};

/* WAL frames after which the writer checkpoints (SQLite's own default for
 * its automatic checkpoint, which sagad turns off: see sq_after_batch in
 * sqlite.c). */
#define SG_SQ_CHECKPOINT_FRAMES 1000

/* ---- sqlite_sql.c: the SQL ------------------------------------------------ */

const char *sg__sq_sql(int q);  /* statement q's SQL */
const char *sg__sq_name(int q); /* what it does, for messages ("insert saga") */
/* The whole current schema (CREATE ... IF NOT EXISTS), for a new file. */
extern const char sg__sq_schema[];
/* The statements that upgrade a file of schema `from` to from + 1, or
 * NULL for a version that has none (0, current or newer). */
const char *sg__sq_upgrade(int from);
/* The i-th index that sg__sq_relayout may rebuild: its name, and in
 * *create the statement that makes it as it should be (ascending); NULL
 * past the last. */
const char *sg__sq_relayout(size_t i, const char **create);

/* ---- sqlite_vfs.c: the writer's VFS -------------------------------------- */

#define SG_SQ_VFS_NAME "sagad-wal"
/* Most bytes of WAL frames it holds back before writing them. */
#define SG_SQ_VFS_RUN (4u << 20)

/* Registers (once, thread-safe) the VFS that writes a WAL commit's frames
 * as one write, and returns its name for sqlite3_open_v2, or NULL if it
 * could not be registered. Only for a connection that runs with
 * synchronous=FULL (see sqlite_vfs.c). The name is static. */
const char *sg__sq_vfs(void);

/* ---- sqlite.c: connections ------------------------------------------------ */

/* Opens c on be's database: the writer connection (reader = 0) creates
 * the file if needed; a reader's (reader = 1) never writes. On failure c
 * is zeroed and err says why. */
sg_status sg__sq_conn_open(conn *c, const sg_store_backend *be, int reader, char *err,
                           size_t errlen);
void sg__sq_conn_close(conn *c); /* leaves c zeroed */

/* The statement for q on c, prepared on first use and owned by c; NULL on
 * failure, with "SQLite prepare <name>: <why>" in err (err may be NULL). */
sqlite3_stmt *sg__sq_stmt(conn *c, int q, char *err, size_t errlen);
/* Runs the parameterless statement q once and resets it. Returns SQLite's
 * code (SQLITE_DONE on success); the message is sqlite3_errmsg(c->db). */
int sg__sq_run_simple(conn *c, int q);
/* SG_OK if be's path still names the file it opened. Otherwise the file
 * was removed, moved or replaced under us: writing on would put data
 * where the next start does not look (and this WAL could be applied to
 * another file), so the writer refuses until the file is back: SG_EIO
 * with err saying so. */
sg_status sg__sq_same_file(const sg_store_backend *be, char *err, size_t errlen);

/* ---- sqlite_write.c ------------------------------------------------------------ */

sg_status sg__sq_exec_batch(sg_store_backend *be, sg_write *const *writes, size_t n,
                            sg_status *results, char *err, size_t errlen);
/* The counts of the writer's work (sg_store_ops.counts). */
void sg__sq_counts(sg_store_backend *be, sg_store_counters *out);

/* ---- sqlite_read.c, sqlite_read_events.c: helpers shared by the reads ---------- */

struct sg_store_breader {
    conn c;
};

/* One read call: the reader's connection and the caller's buffer for the
 * text of its failure (left alone on success). */
typedef struct rd {
    conn *c;
    char *err;
    size_t errlen;
} rd;

/* Owned copy of a text or blob column, or NULL for SQL NULL. */
char *sg__sq_col_bytes(sqlite3_stmt *st, int i, size_t *len);
/* An id column into out (cut at SG_ID_LEN; "" for NULL). */
void sg__sq_col_id(sqlite3_stmt *st, int i, char out[SG_ID_LEN + 1]);
/* Records why statement q failed ("SQLite get steps: no such table:
 * steps") in k->err; call it before the statement is reset. SG_EIO. */
sg_status sg__sq_rd_fail(rd *k, int q);
/* Statement q on the reader's connection (k->err says why on NULL). */
sqlite3_stmt *sg__sq_rd_stmt(rd *k, int q);
/* The statement of one keyset page of q, bound: qs holds the query ids
 * {all, all after a cursor, by the settled status (COMPLETED, DELIVERED:
 * 1), the same after a cursor, by another status, the same after a
 * cursor}, then the same six by type when q->type may be set (12 ids). One row more
 * than asked is fetched: it tells whether a next page exists. *qi gets
 * the query used and *rc the first bind failure; NULL (with *res, and the
 * reason in k->err) when there is no statement to run. */
sqlite3_stmt *sg__sq_page_stmt(rd *k, const sg_list_query *q, const int *qs, int *qi, int *rc,
                               sg_status *res);
/* Steps statement q (st, bound by the caller; bind_rc its first bind
 * failure) for up to max event rows (0 = all) into *v and *n, which the
 * caller frees (sg_store_free_events) even on failure. One statement, so
 * one snapshot without a read transaction. The statement is reset and
 * its bindings cleared. */
sg_status sg__sq_collect_events(rd *k, int q, sqlite3_stmt *st, int bind_rc, size_t max,
                                sg_event_rec **v, size_t *n);

/* ---- the read methods (sqlite_read.c, sqlite_read_events.c) ----------------------- */

sg_status sg__sq_reader_open(sg_store_backend *be, sg_store_breader **out, char *err,
                             size_t errlen);
void sg__sq_reader_close(sg_store_breader *r);
sg_status sg__sq_get(sg_store_breader *r, const char *id, sg_saga_rec *out, char *err,
                     size_t errlen);
sg_status sg__sq_get_by_idem(sg_store_breader *r, const char *key, sg_saga_rec *out, char *err,
                             size_t errlen);
sg_status sg__sq_list(sg_store_breader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                      char next[SG_CURSOR_MAX], char *err, size_t errlen);
sg_status sg__sq_load_unfinished(sg_store_breader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                 void *arg, char *err, size_t errlen);
sg_status sg__sq_load_pending_events(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                     void *arg, char *err, size_t errlen);
/* GET /metrics: outbox entries by status (counts[sg_event_status]). */
sg_status sg__sq_count_events(sg_store_breader *r, uint64_t counts[SG_EVENT_STATUSES], char *err,
                              size_t errlen);
sg_status sg__sq_get_event(sg_store_breader *r, const char *id, sg_event_rec *out, char *err,
                           size_t errlen);
sg_status sg__sq_load_unfinished_page(sg_store_breader *r, const char *after, size_t limit,
                                      sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX],
                                      char *err, size_t errlen);
sg_status sg__sq_has_orphans(sg_store_breader *r, int *yes, char *err, size_t errlen);
sg_status sg__sq_load_compensations(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                    void *arg, char *err, size_t errlen);
sg_status sg__sq_list_events(sg_store_breader *r, const sg_list_query *q, sg_event_rec **out,
                             size_t *n, char next[SG_CURSOR_MAX], char *err, size_t errlen);
sg_status sg__sq_load_defs(sg_store_breader *r, sg_def_row_cb cb, void *arg, char *err,
                           size_t errlen);

#endif
