/* The SQLite store backend.
 *
 * One connection per thread, opened with SQLITE_OPEN_NOMUTEX: the writer
 * connection belongs to the store's writer thread, and each reader has its
 * own. The database runs in WAL mode so readers never wait for the writer
 * and the writer never waits for readers. Prepared statements are cached
 * per connection and prepared on first use.
 *
 * Durability: synchronous=FULL (the default) fsyncs the WAL on every
 * commit, so a completion callback means the write survives power loss;
 * with synchronous_full = 0 (NORMAL) it survives a process crash only.
 *
 * Ownership: the writer side holds an exclusive flock() on "<path>.lock"
 * for the store's lifetime, so a second sagad on the same database fails
 * at open instead of resuming the same sagas. The lock lives on a sidecar
 * file, never on the database: closing any descriptor of the database
 * file would drop SQLite's own POSIX locks. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sg/alloc.h"
#include "sg/util.h"
#include "store/store_int.h"

#define SCHEMA_VERSION 1

/* Columns of a saga row, in the order row_to_saga reads them. */
#define SAGA_COLS                                                                                  \
    "id, def_name, request, idem_key, status, comp_status, error, created_us, updated_us, nsteps"
#define EVENT_COLS                                                                                 \
    "id, saga_id, topic, target, payload, created_us, deadline_us, compensation, step_index, "     \
    "status, attempts"

/* Every statement either connection may run; prepared lazily per
 * connection, so a reader never prepares the write statements. */
enum {
    Q_BEGIN_W,
    Q_BEGIN_R,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_SAVEPOINT,
    Q_RELEASE,
    Q_ROLLBACK_TO,
    Q_SAGA_INSERT,
    Q_STEP_INSERT,
    Q_SAGA_UPDATE,
    Q_STEP_UPDATE,
    Q_EVENT_INSERT,
    Q_EVENT_UPDATE,
    Q_COMP_DONE,
    Q_GET,
    Q_GET_IDEM,
    Q_STEPS,
    Q_LIST,
    Q_LIST_AFTER,
    Q_LIST_ST,
    Q_LIST_ST_AFTER,
    Q_UNFINISHED,
    Q_PENDING_EVENTS,
    Q_GET_EVENT,
    Q_COUNT
};

static const struct {
    const char *name; /* for error messages */
    const char *sql;
} queries[Q_COUNT] = {
    [Q_BEGIN_W] = {"begin", "BEGIN IMMEDIATE"},
    [Q_BEGIN_R] = {"begin", "BEGIN"},
    [Q_COMMIT] = {"commit", "COMMIT"},
    [Q_ROLLBACK] = {"rollback", "ROLLBACK"},
    [Q_SAVEPOINT] = {"savepoint", "SAVEPOINT w"},
    [Q_RELEASE] = {"release", "RELEASE w"},
    [Q_ROLLBACK_TO] = {"rollback to", "ROLLBACK TO w"},
    [Q_SAGA_INSERT] = {"insert saga",
                       "INSERT INTO sagas(" SAGA_COLS ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"},
    [Q_STEP_INSERT] = {"insert step",
                       "INSERT INTO steps(saga_id, idx, name, status, attempts, started_us, "
                       "finished_us, error, response) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)"},
    [Q_SAGA_UPDATE] = {"update saga", "UPDATE sagas SET status=?2, comp_status=?3, error=?4, "
                                      "updated_us=?5 WHERE id=?1"},
    [Q_STEP_UPDATE] = {"update step",
                       "UPDATE steps SET status=?3, attempts=?4, started_us=?5, finished_us=?6, "
                       "error=?7, response=?8 WHERE saga_id=?1 AND idx=?2"},
    [Q_EVENT_INSERT] = {"insert event", "INSERT INTO outbox(" EVENT_COLS
                                        ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"},
    [Q_EVENT_UPDATE] = {"update event", "UPDATE outbox SET status=?2, attempts=?3 WHERE id=?1"},
    /* The compensation rule of sg_write_event_update: once the delivered
     * event ?1 was a compensation and none of its saga's compensation
     * events is still PENDING (0), the saga's comp_status is COMPLETED (2).
     * The unary + keeps the planner on outbox_saga (a saga's few events)
     * instead of outbox_pending, which grows large while a broker is down. */
    [Q_COMP_DONE] = {"complete compensation",
                     "UPDATE sagas SET comp_status=2, updated_us=max(updated_us, ?2) "
                     "WHERE id=(SELECT saga_id FROM outbox WHERE id=?1 AND compensation=1) "
                     "AND comp_status<>2 AND NOT EXISTS(SELECT 1 FROM outbox o WHERE "
                     "o.saga_id=sagas.id AND o.compensation=1 AND +o.status=0)"},
    [Q_GET] = {"get saga", "SELECT " SAGA_COLS " FROM sagas WHERE id=?1"},
    [Q_GET_IDEM] = {"get saga by key", "SELECT " SAGA_COLS " FROM sagas WHERE idem_key=?1"},
    [Q_STEPS] = {"get steps", "SELECT idx, name, status, attempts, started_us, finished_us, "
                              "error, response FROM steps WHERE saga_id=?1 ORDER BY idx"},
    /* Keyset pagination, newest first; the row value comparison lets
     * SQLite seek in the (created_us DESC, id DESC) indexes. */
    [Q_LIST] = {"list sagas",
                "SELECT " SAGA_COLS " FROM sagas ORDER BY created_us DESC, id DESC LIMIT ?1"},
    [Q_LIST_AFTER] = {"list sagas", "SELECT " SAGA_COLS " FROM sagas WHERE (created_us, id) < "
                                    "(?2, ?3) ORDER BY created_us DESC, id DESC LIMIT ?1"},
    [Q_LIST_ST] = {"list sagas", "SELECT " SAGA_COLS " FROM sagas WHERE status=?4 ORDER BY "
                                 "created_us DESC, id DESC LIMIT ?1"},
    [Q_LIST_ST_AFTER] = {"list sagas",
                         "SELECT " SAGA_COLS " FROM sagas WHERE status=?4 AND (created_us, id) < "
                         "(?2, ?3) ORDER BY created_us DESC, id DESC LIMIT ?1"},
    [Q_UNFINISHED] = {"load unfinished", "SELECT " SAGA_COLS " FROM sagas WHERE status=0 "
                                         "ORDER BY created_us, id"},
    /* status=0 spelled as a literal so the partial index applies. */
    [Q_PENDING_EVENTS] = {"load pending events", "SELECT " EVENT_COLS " FROM outbox WHERE "
                                                 "status=0 ORDER BY created_us, id"},
    [Q_GET_EVENT] = {"get event", "SELECT " EVENT_COLS " FROM outbox WHERE id=?1"},
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS sagas("
    " id TEXT PRIMARY KEY,"
    " def_name TEXT,"
    " request BLOB NOT NULL," /* exact bytes as posted */
    " idem_key TEXT UNIQUE,"  /* NULLs are distinct: many sagas without a key */
    " status INTEGER NOT NULL,"
    " comp_status INTEGER NOT NULL,"
    " error TEXT,"
    " created_us INTEGER NOT NULL,"
    " updated_us INTEGER NOT NULL,"
    " nsteps INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS steps("
    " saga_id TEXT NOT NULL,"
    " idx INTEGER NOT NULL,"
    " name TEXT,"
    " status INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL,"
    " started_us INTEGER NOT NULL,"
    " finished_us INTEGER NOT NULL,"
    " error TEXT,"
    " response BLOB,"
    " PRIMARY KEY(saga_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS outbox("
    " id TEXT PRIMARY KEY,"
    " saga_id TEXT NOT NULL,"
    " topic TEXT,"
    " target TEXT,"
    " payload BLOB,"
    " created_us INTEGER NOT NULL,"
    " deadline_us INTEGER NOT NULL,"
    " compensation INTEGER NOT NULL,"
    " step_index INTEGER NOT NULL,"
    " status INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS sagas_created ON sagas(created_us DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS sagas_status ON sagas(status, created_us DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status) WHERE status=0;"
    "CREATE INDEX IF NOT EXISTS outbox_saga ON outbox(saga_id);";

typedef struct conn {
    sqlite3 *db;                 /* owned */
    sqlite3_stmt *stmt[Q_COUNT]; /* owned; NULL until first use */
} conn;

struct sg_store_backend {
    char *path;  /* owned; immutable after open, so readers may read it */
    int busy_ms; /* busy timeout of every connection; immutable too */
    int lock_fd; /* owned; flock'd "<path>.lock", -1 if none */
    conn w;      /* the writer connection */
};

struct sg_store_breader {
    conn c;
};

/* ---- connections -------------------------------------------------------- */

static void conn_close(conn *c)
{
    for (int i = 0; i < Q_COUNT; i++)
        sqlite3_finalize(c->stmt[i]);
    /* Statements are finalized, so close cannot be refused as busy. */
    if (c->db) sqlite3_close(c->db);
    memset(c, 0, sizeof *c);
}

/* Explains a failed open: SQLite's "unable to open database file" does
 * not say that the directory is missing, which is the usual cause. */
static void open_error(const char *path, sqlite3 *db, int rc, char *err, size_t errlen)
{
    char *dir = sg_xstrdup(path); /* owned scratch copy cut at the last '/' */
    char *slash = strrchr(dir, '/');
    struct stat sb;
    int serr = 0;
    if (slash) {
        if (slash == dir)
            slash[1] = '\0';
        else
            *slash = '\0';
        serr = stat(dir, &sb) != 0 ? errno : S_ISDIR(sb.st_mode) ? 0 : ENOTDIR;
    }
    if (serr == ENOENT)
        snprintf(err, errlen, "cannot open SQLite database '%s': directory '%s' does not exist",
                 path, dir);
    else if (serr)
        snprintf(err, errlen, "cannot open SQLite database '%s': directory '%s': %s", path, dir,
                 strerror(serr));
    else
        snprintf(err, errlen, "cannot open SQLite database '%s': %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    free(dir);
}

/* Runs one or more statements without results (pragmas, DDL). */
static int exec_sql(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "SQLite %s: %s", what, msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

static sg_status conn_open(conn *c, const char *path, int create, int busy_ms, char *err,
                           size_t errlen)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    memset(c, 0, sizeof *c);
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        open_error(path, c->db, rc, err, errlen);
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    /* Another process (a backup, the sqlite3 shell) may hold a lock
     * briefly; wait rather than fail. */
    rc = sqlite3_busy_timeout(c->db, busy_ms);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "SQLite busy_timeout: %s", sqlite3_errmsg(c->db));
        goto fail;
    }
    return SG_OK;
fail:
    conn_close(c);
    return SG_EIO;
}

/* The statement for q on c, prepared on first use; NULL on failure (msg
 * in err). The statement stays owned by c. */
static sqlite3_stmt *conn_stmt(conn *c, int q, char *err, size_t errlen)
{
    if (c->stmt[q]) return c->stmt[q];
    int rc =
        sqlite3_prepare_v3(c->db, queries[q].sql, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[q], NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "SQLite prepare %s: %s", queries[q].name, sqlite3_errmsg(c->db));
        sqlite3_finalize(c->stmt[q]);
        c->stmt[q] = NULL;
    }
    return c->stmt[q];
}

/* ---- binding and reading columns --------------------------------------- */

/* Collects the first bind error so call sites can bind a whole row and
 * check once. Pointers bound are borrowed (SQLITE_STATIC): they belong to
 * the sg_write, which outlives the statement's execution. */
typedef struct binder {
    sqlite3_stmt *st;
    int rc;
} binder;

static void bind_text(binder *b, int i, const char *s)
{
    if (b->rc != SQLITE_OK) return;
    b->rc = s ? sqlite3_bind_text(b->st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(b->st, i);
}

static void bind_blob(binder *b, int i, const void *p, size_t n)
{
    if (b->rc != SQLITE_OK) return;
    /* A non-NULL empty value must stay an empty blob, not NULL. */
    b->rc = p ? sqlite3_bind_blob64(b->st, i, n ? p : "", n, SQLITE_STATIC)
              : sqlite3_bind_null(b->st, i);
}

static void bind_int(binder *b, int i, int64_t v)
{
    if (b->rc != SQLITE_OK) return;
    b->rc = sqlite3_bind_int64(b->st, i, v);
}

static void oom_abort(void)
{
    fprintf(stderr, "sagad: out of memory in SQLite\n");
    abort();
}

/* Owned copy of a text or blob column, or NULL for SQL NULL. */
static char *col_bytes(sqlite3_stmt *st, int i, size_t *len)
{
    size_t n = 0;
    char *out = NULL;
    int type = sqlite3_column_type(st, i);
    if (type != SQLITE_NULL) {
        /* Fetch the pointer first, then the size (SQLite's documented
         * order), as text and blob as the column was stored. */
        const void *p = type == SQLITE_BLOB ? sqlite3_column_blob(st, i)
                                            : (const void *)sqlite3_column_text(st, i);
        n = (size_t)sqlite3_column_bytes(st, i);
        if (!p && n) oom_abort();
        if (!p && sqlite3_errcode(sqlite3_db_handle(st)) == SQLITE_NOMEM) oom_abort();
        out = sg_xmemdup(p, n);
    }
    if (len) *len = n;
    return out;
}

static void col_id(sqlite3_stmt *st, int i, char out[SG_ID_LEN + 1])
{
    const unsigned char *t = sqlite3_column_text(st, i);
    size_t n = t ? (size_t)sqlite3_column_bytes(st, i) : 0;
    if (n > SG_ID_LEN) n = SG_ID_LEN;
    if (n) memcpy(out, t, n);
    out[n] = '\0';
}

static void row_to_saga(sqlite3_stmt *st, sg_saga_rec *r)
{
    memset(r, 0, sizeof *r);
    col_id(st, 0, r->id);
    r->def_name = col_bytes(st, 1, NULL);
    r->request = col_bytes(st, 2, &r->request_len);
    r->idem_key = col_bytes(st, 3, NULL);
    r->status = (sg_saga_status)sqlite3_column_int(st, 4);
    r->comp_status = (sg_comp_status)sqlite3_column_int(st, 5);
    r->error = col_bytes(st, 6, NULL);
    r->created_us = sqlite3_column_int64(st, 7);
    r->updated_us = sqlite3_column_int64(st, 8);
    int64_t n = sqlite3_column_int64(st, 9);
    r->nsteps = n > 0 && n < 100000 ? (size_t)n : 0; /* a sane bound on a corrupt row */
}

static void row_to_event(sqlite3_stmt *st, sg_event_rec *e)
{
    memset(e, 0, sizeof *e);
    col_id(st, 0, e->id);
    col_id(st, 1, e->saga_id);
    e->topic = col_bytes(st, 2, NULL);
    e->target = col_bytes(st, 3, NULL);
    e->payload = col_bytes(st, 4, &e->payload_len);
    e->created_us = sqlite3_column_int64(st, 5);
    e->deadline_us = sqlite3_column_int64(st, 6);
    e->compensation = sqlite3_column_int(st, 7);
    e->step_index = sqlite3_column_int(st, 8);
    e->status = (sg_event_status)sqlite3_column_int(st, 9);
    e->attempts = sqlite3_column_int(st, 10);
}

/* ---- open / close --------------------------------------------------------- */

static sg_status create_schema(conn *c, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int version = 0;
    /* IMMEDIATE: two processes opening one new file must not both create. */
    if (exec_sql(c->db, "BEGIN IMMEDIATE", "begin", err, errlen) != SQLITE_OK) goto fail;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "SQLite reading schema version: %s", sqlite3_errmsg(c->db));
        goto fail;
    }
    version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (version > SCHEMA_VERSION) {
        snprintf(err, errlen, "database schema version %d is newer than this sagad supports (%d)",
                 version, SCHEMA_VERSION);
        goto fail;
    }
    if (version < SCHEMA_VERSION) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", SCHEMA_VERSION);
        if (exec_sql(c->db, schema_sql, "creating schema", err, errlen) != SQLITE_OK) goto fail;
        if (exec_sql(c->db, pragma, "setting schema version", err, errlen) != SQLITE_OK) goto fail;
    }
    if (exec_sql(c->db, "COMMIT", "commit", err, errlen) != SQLITE_OK) goto fail;
    return SG_OK;
fail:
    sqlite3_finalize(st);
    if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return SG_EIO;
}

/* Takes the store's ownership lock: an exclusive, non-blocking flock() on
 * "<path>.lock" (created 0644 if missing; left in place on close, since
 * unlinking a lock file races with the next owner opening it). flock
 * locks belong to the open file description, so a second open in this
 * same process conflicts too. Returns the descriptor, or -1 with err set
 * and *res the status to return. */
static int take_lock(const char *path, char *err, size_t errlen, sg_status *res)
{
    size_t n = strlen(path) + sizeof ".lock";
    char *lp = sg_xmalloc(n); /* owned scratch */
    snprintf(lp, n, "%s.lock", path);
    int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
    /* An existing lock file we may not write (another user created it)
     * still takes a lock when opened for reading. */
    if (fd < 0 && (errno == EACCES || errno == EROFS))
        fd = open(lp, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            open_error(path, NULL, SQLITE_CANTOPEN, err, errlen); /* names the directory */
        else
            snprintf(err, errlen, "cannot open lock file '%s': %s", lp, strerror(e));
        *res = SG_EIO;
        goto out;
    }
    int rc;
    do
        rc = flock(fd, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;
        if (e == EWOULDBLOCK) {
            snprintf(err, errlen, "store %s is in use by another sagad (lock file %s)", path, lp);
            *res = SG_EUNAVAIL;
        } else {
            snprintf(err, errlen, "cannot lock '%s': %s", lp, strerror(e));
            *res = SG_EIO;
        }
        close(fd);
        fd = -1;
    }
out:
    free(lp);
    return fd;
}

static sg_status sq_open(sg_store_backend **out, const char *url, const char *target,
                         const sg_store_options *opt, char *err, size_t errlen)
{
    sg_store_backend *b = NULL;
    sqlite3_stmt *st = NULL;
    sg_status res = SG_EIO;
    *out = NULL;
    if (!target[0]) {
        snprintf(err, errlen, "store URL '%s' names no database file", url);
        res = SG_EINVAL;
        goto fail;
    }
    /* NOMUTEX connections still need a library built thread-safe. */
    if (!sqlite3_threadsafe()) {
        snprintf(err, errlen, "the SQLite library was built without thread support");
        goto fail;
    }
    struct stat sb;
    if (stat(target, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(err, errlen, "cannot open SQLite database '%s': it is a directory", target);
        res = SG_EINVAL;
        goto fail;
    }
    b = sg_xcalloc(1, sizeof *b);
    b->path = sg_xstrdup(target);
    b->lock_fd = -1;
    b->busy_ms = opt && opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : SG_STORE_BUSY_TIMEOUT_MS;
    /* Ownership first: a second sagad must not touch the database at all
     * (not even set its journal mode) before it is refused. */
    b->lock_fd = take_lock(b->path, err, errlen, &res);
    if (b->lock_fd < 0) goto fail;
    res = SG_EIO;
    if (conn_open(&b->w, b->path, 1, b->busy_ms, err, errlen) != SG_OK) goto fail;

    /* journal_mode answers the mode it got: a file system without shared
     * memory keeps "delete", which still works, only with less
     * concurrency. */
    int rc = sqlite3_prepare_v2(b->w.db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        snprintf(err, errlen, "cannot use SQLite database '%s': %s", b->path,
                 sqlite3_errmsg(b->w.db));
        goto fail;
    }
    const char *mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0)
        sg_log(SG_LOG_WARN, "store: SQLite database '%s' is not in WAL mode (%s)", b->path,
               mode ? mode : "?");
    sqlite3_finalize(st);
    st = NULL;
    const char *sync =
        !opt || opt->synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
    if (exec_sql(b->w.db, sync, "synchronous", err, errlen) != SQLITE_OK) goto fail;
    if (exec_sql(b->w.db, "PRAGMA foreign_keys=OFF", "foreign_keys", err, errlen) != SQLITE_OK)
        goto fail;
    if (create_schema(&b->w, err, errlen) != SG_OK) goto fail;
    *out = b;
    return SG_OK;
fail:
    sqlite3_finalize(st);
    if (b) {
        conn_close(&b->w);
        if (b->lock_fd >= 0) close(b->lock_fd);
        free(b->path);
        free(b);
    }
    return res;
}

static void sq_close(sg_store_backend *b)
{
    if (!b) return;
    conn_close(&b->w);
    /* Released only after the connection is closed (and its WAL
     * checkpointed), so the next owner finds the database at rest. */
    if (b->lock_fd >= 0) close(b->lock_fd);
    free(b->path);
    free(b);
}

/* ---- the write transaction ------------------------------------------------ */

/* State of one exec_batch call. */
typedef struct txn {
    conn *c;
    char *err;
    size_t errlen;
} txn;

/* Failure injection: 1 if the statement about to run must fail. */
static int injected_fault(void)
{
    int v = atomic_load(&sg_store_fail_countdown);
    while (v > 0) {
        if (atomic_compare_exchange_weak(&sg_store_fail_countdown, &v, v - 1)) return v == 1;
    }
    return 0;
}

/* Runs a bound statement to completion and resets it. Returns the SQLite
 * code (SQLITE_OK on success); on failure err says which statement. */
static int tx_run(txn *t, int q, sqlite3_stmt *st, const binder *b)
{
    int rc = b ? b->rc : SQLITE_OK;
    const char *msg = NULL;
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
    if (rc != SQLITE_OK) snprintf(t->err, t->errlen, "SQLite %s: %s", queries[q].name, msg);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Runs a statement without parameters. */
static int tx_simple(txn *t, int q)
{
    sqlite3_stmt *st = conn_stmt(t->c, q, t->err, t->errlen);
    return st ? tx_run(t, q, st, NULL) : SQLITE_ERROR;
}

/* What a failed statement means for its write: a constraint or size
 * problem belongs to that write alone; anything else (I/O, full disk,
 * corruption, a lost lock) sinks the transaction and maps to SG_EIO. */
static sg_status classify(int rc)
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

#define PREP(q)                                                                                    \
    do {                                                                                           \
        st = conn_stmt(t->c, q, t->err, t->errlen);                                                \
        if (!st) return SG_EIO;                                                                    \
        b.st = st;                                                                                 \
        b.rc = SQLITE_OK;                                                                          \
    } while (0)

/* Runs the statement and returns from the calling apply function on
 * failure; a write whose UPDATE matched no row is SG_ENOTFOUND. */
#define RUN(q, must_change)                                                                        \
    do {                                                                                           \
        int rc_ = tx_run(t, q, st, &b);                                                            \
        if (rc_ != SQLITE_OK) return classify(rc_);                                                \
        if ((must_change) && sqlite3_changes(t->c->db) == 0) return SG_ENOTFOUND;                  \
    } while (0)

static sg_status apply_saga_insert(txn *t, const sg_saga_rec *r)
{
    sqlite3_stmt *st;
    binder b;
    PREP(Q_SAGA_INSERT);
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
    RUN(Q_SAGA_INSERT, 0);
    for (size_t i = 0; i < r->nsteps; i++) {
        const sg_step_rec *s = &r->steps[i];
        PREP(Q_STEP_INSERT);
        bind_text(&b, 1, r->id);
        bind_int(&b, 2, (int64_t)i);
        bind_text(&b, 3, s->name);
        bind_int(&b, 4, s->status);
        bind_int(&b, 5, s->attempts);
        bind_int(&b, 6, s->started_us);
        bind_int(&b, 7, s->finished_us);
        bind_text(&b, 8, s->error);
        bind_blob(&b, 9, s->response, s->response_len);
        RUN(Q_STEP_INSERT, 0);
    }
    return SG_OK;
}

static sg_status apply_op(txn *t, const sg_write_op *op)
{
    sqlite3_stmt *st;
    binder b;
    switch (op->kind) {
    case SG_WOP_SAGA_INSERT:
        return apply_saga_insert(t, &op->u.saga_insert);
    case SG_WOP_SAGA_UPDATE:
        PREP(Q_SAGA_UPDATE);
        bind_text(&b, 1, op->u.saga_update.id);
        bind_int(&b, 2, op->u.saga_update.status);
        bind_int(&b, 3, op->u.saga_update.comp);
        bind_text(&b, 4, op->u.saga_update.error);
        bind_int(&b, 5, op->u.saga_update.updated_us);
        RUN(Q_SAGA_UPDATE, 1);
        return SG_OK;
    case SG_WOP_STEP_UPDATE: {
        const sg_step_rec *s = &op->u.step_update.step;
        if (op->u.step_update.index > INT64_MAX) return SG_ENOTFOUND;
        PREP(Q_STEP_UPDATE);
        bind_text(&b, 1, op->u.step_update.saga_id);
        bind_int(&b, 2, (int64_t)op->u.step_update.index);
        bind_int(&b, 3, s->status);
        bind_int(&b, 4, s->attempts);
        bind_int(&b, 5, s->started_us);
        bind_int(&b, 6, s->finished_us);
        bind_text(&b, 7, s->error);
        bind_blob(&b, 8, s->response, s->response_len);
        RUN(Q_STEP_UPDATE, 1);
        return SG_OK;
    }
    case SG_WOP_EVENT_INSERT: {
        const sg_event_rec *e = &op->u.event_insert;
        PREP(Q_EVENT_INSERT);
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
        RUN(Q_EVENT_INSERT, 0);
        return SG_OK;
    }
    case SG_WOP_EVENT_UPDATE:
        PREP(Q_EVENT_UPDATE);
        bind_text(&b, 1, op->u.event_update.id);
        bind_int(&b, 2, op->u.event_update.status);
        bind_int(&b, 3, op->u.event_update.attempts);
        RUN(Q_EVENT_UPDATE, 1);
        if (op->u.event_update.status != SG_EVENT_DELIVERED) return SG_OK;
        PREP(Q_COMP_DONE);
        bind_text(&b, 1, op->u.event_update.id);
        bind_int(&b, 2, sg_now_us());
        RUN(Q_COMP_DONE, 0);
        return SG_OK;
    }
    return SG_EINVAL;
}

#undef PREP
#undef RUN

static sg_status sq_exec_batch(sg_store_backend *be, sg_write *const *writes, size_t n,
                               sg_status *results, char *err, size_t errlen)
{
    txn t = {&be->w, err, errlen};
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    /* A transaction a failed batch could not roll back would make every
     * later BEGIN fail (and a retried batch fail forever): end it first. */
    if (!sqlite3_get_autocommit(be->w.db)) sqlite3_exec(be->w.db, "ROLLBACK", NULL, NULL, NULL);
    if (tx_simple(&t, Q_BEGIN_W) != SQLITE_OK) goto fail;
    for (size_t i = 0; i < n; i++) {
        const sg_write *w = writes[i];
        sg_status ws = SG_OK;
        if (tx_simple(&t, Q_SAVEPOINT) != SQLITE_OK) goto fail;
        for (size_t k = 0; k < w->nops && ws == SG_OK; k++)
            ws = apply_op(&t, &w->ops[k]);
        if (ws == SG_EIO) goto fail;
        /* A write that failed by itself is undone alone; the savepoint is
         * released either way so the next write starts clean. */
        if (ws != SG_OK && tx_simple(&t, Q_ROLLBACK_TO) != SQLITE_OK) goto fail;
        if (tx_simple(&t, Q_RELEASE) != SQLITE_OK) goto fail;
        results[i] = ws;
    }
    if (tx_simple(&t, Q_COMMIT) != SQLITE_OK) goto fail;
    return SG_OK;

fail:
    /* SQLite may already have rolled back by itself (after an I/O error or
     * a full disk); only roll back what is still open. The error message
     * in err stays that of the first failure. */
    if (!sqlite3_get_autocommit(be->w.db)) {
        char ignored[16];
        sqlite3_stmt *st = conn_stmt(&be->w, Q_ROLLBACK, ignored, sizeof ignored);
        int rc = st ? sqlite3_step(st) : SQLITE_ERROR;
        if (st) sqlite3_reset(st);
        /* A transaction left open would block every later batch: say so. */
        if (rc != SQLITE_DONE)
            sg_log(SG_LOG_ERROR, "store: SQLite rollback failed: %s", sqlite3_errmsg(be->w.db));
    }
    for (size_t i = 0; i < n; i++)
        results[i] = SG_EIO;
    if (!err[0]) snprintf(err, errlen, "SQLite transaction failed");
    return SG_EIO;
}

/* ---- readers ---------------------------------------------------------------- */

static sg_status sq_reader_open(sg_store_backend *be, sg_store_breader **out)
{
    char err[256];
    sg_store_breader *r = sg_xcalloc(1, sizeof *r);
    *out = NULL;
    if (conn_open(&r->c, be->path, 0, be->busy_ms, err, sizeof err) != SG_OK) goto fail;
    /* A reader must never write, whatever bug calls it. */
    if (exec_sql(r->c.db, "PRAGMA query_only=1", "query_only", err, sizeof err) != SQLITE_OK)
        goto fail;
    *out = r;
    return SG_OK;
fail:
    sg_log(SG_LOG_ERROR, "store: cannot open reader: %s", err);
    conn_close(&r->c);
    free(r);
    return SG_EIO;
}

static void sq_reader_close(sg_store_breader *r)
{
    if (!r) return;
    conn_close(&r->c);
    free(r);
}

static void read_error(conn *c, int q)
{
    sg_log(SG_LOG_ERROR, "store: SQLite %s: %s", queries[q].name, sqlite3_errmsg(c->db));
}

/* Read transactions give the saga row and its steps one snapshot. */
static sg_status rd_begin(conn *c)
{
    char err[256];
    sqlite3_stmt *st = conn_stmt(c, Q_BEGIN_R, err, sizeof err);
    if (!st) goto fail;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        snprintf(err, sizeof err, "begin: %s", sqlite3_errmsg(c->db));
        goto fail;
    }
    return SG_OK;
fail:
    sg_log(SG_LOG_ERROR, "store: SQLite %s", err);
    return SG_EIO;
}

/* Ends the read transaction; nothing was written, so only report. */
static void rd_end(conn *c)
{
    char err[256];
    if (sqlite3_get_autocommit(c->db)) return;
    sqlite3_stmt *st = conn_stmt(c, Q_COMMIT, err, sizeof err);
    if (st) {
        if (sqlite3_step(st) != SQLITE_DONE) read_error(c, Q_COMMIT);
        sqlite3_reset(st);
    }
    /* Whatever happened, never leave a snapshot open: it would pin the
     * WAL and stop checkpoints. */
    if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Fills r->steps from the steps table (r->nsteps already set). */
static sg_status load_steps(conn *c, sg_saga_rec *r)
{
    char err[256];
    sqlite3_stmt *st = conn_stmt(c, Q_STEPS, err, sizeof err);
    sg_status res = SG_EIO;
    int rc;
    if (!st) {
        sg_log(SG_LOG_ERROR, "store: SQLite %s", err);
        return SG_EIO;
    }
    r->steps = r->nsteps ? sg_xcalloc(r->nsteps, sizeof *r->steps) : NULL;
    rc = sqlite3_bind_text(st, 1, r->id, -1, SQLITE_STATIC);
    if (rc != SQLITE_OK) goto fail;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t idx = sqlite3_column_int64(st, 0);
        if (idx < 0 || (uint64_t)idx >= r->nsteps) continue; /* not part of this saga's shape */
        sg_step_rec *s = &r->steps[idx];
        sg_step_rec_free(s); /* (saga_id, idx) is unique, but be safe */
        s->name = col_bytes(st, 1, NULL);
        s->status = (sg_step_status)sqlite3_column_int(st, 2);
        s->attempts = sqlite3_column_int(st, 3);
        s->started_us = sqlite3_column_int64(st, 4);
        s->finished_us = sqlite3_column_int64(st, 5);
        s->error = col_bytes(st, 6, NULL);
        s->response = col_bytes(st, 7, &s->response_len);
    }
    if (rc != SQLITE_DONE) goto fail;
    res = SG_OK;
fail:
    if (res != SG_OK) read_error(c, Q_STEPS);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

/* Runs query q (parameters bound by the caller) and appends every saga
 * row with its steps to *v (an owned, growing array of *n). At most max
 * rows; max 0 = all. */
static sg_status collect_sagas(conn *c, int q, sqlite3_stmt *st, sg_saga_rec **v, size_t *n,
                               size_t max)
{
    size_t cap = 0;
    sg_status res = SG_EIO;
    int rc = SQLITE_DONE;
    while ((max == 0 || *n < max) && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *v = sg_xrealloc(*v, cap * sizeof **v);
        }
        row_to_saga(st, &(*v)[(*n)++]);
    }
    if (max != 0 && *n == max) rc = SQLITE_DONE;
    if (rc != SQLITE_DONE) {
        read_error(c, q);
        goto fail;
    }
    /* Steps in a second pass: the saga statement is done by then. */
    sqlite3_reset(st);
    for (size_t i = 0; i < *n; i++)
        if (load_steps(c, &(*v)[i]) != SG_OK) goto fail;
    res = SG_OK;
fail:
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

static void free_sagas(sg_saga_rec *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_saga_rec_free(&v[i]);
    free(v);
}

/* One saga by a text key (id or idem_key). */
static sg_status get_one(sg_store_breader *r, int q, const char *key, sg_saga_rec *out)
{
    char err[256];
    sg_saga_rec *v = NULL;
    size_t n = 0;
    sg_status res = SG_EIO;
    sqlite3_stmt *st = conn_stmt(&r->c, q, err, sizeof err);
    if (!st) {
        sg_log(SG_LOG_ERROR, "store: SQLite %s", err);
        return SG_EIO;
    }
    if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK) {
        read_error(&r->c, q);
        sqlite3_clear_bindings(st);
        return SG_EIO;
    }
    if (rd_begin(&r->c) != SG_OK) {
        sqlite3_clear_bindings(st);
        return SG_EIO;
    }
    res = collect_sagas(&r->c, q, st, &v, &n, 1);
    rd_end(&r->c);
    if (res != SG_OK) goto fail;
    if (n == 0) {
        res = SG_ENOTFOUND;
        goto fail;
    }
    *out = v[0]; /* the record's members move to the caller */
    free(v);
    return SG_OK;
fail:
    free_sagas(v, n);
    return res;
}

static sg_status sq_get(sg_store_breader *r, const char *id, sg_saga_rec *out)
{
    return get_one(r, Q_GET, id, out);
}

static sg_status sq_get_by_idem(sg_store_breader *r, const char *key, sg_saga_rec *out)
{
    return get_one(r, Q_GET_IDEM, key, out);
}

static sg_status sq_list(sg_store_breader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                         char next[SG_CURSOR_MAX])
{
    char err[256];
    char cid[SG_ID_LEN + 1];
    int64_t cus = 0;
    sg_saga_rec *v = NULL;
    size_t got = 0;
    sg_status res = SG_EINVAL;
    int after = q->after != NULL;
    if (after && sg_store_cursor_parse(q->after, &cus, cid) != SG_OK) goto fail;

    int qi =
        q->status < 0 ? (after ? Q_LIST_AFTER : Q_LIST) : (after ? Q_LIST_ST_AFTER : Q_LIST_ST);
    res = SG_EIO;
    sqlite3_stmt *st = conn_stmt(&r->c, qi, err, sizeof err);
    if (!st) {
        sg_log(SG_LOG_ERROR, "store: SQLite %s", err);
        goto fail;
    }
    /* One row more than asked tells whether a next page exists. */
    int rc = sqlite3_bind_int64(st, 1, (int64_t)q->limit + 1);
    if (rc == SQLITE_OK && after) rc = sqlite3_bind_int64(st, 2, cus);
    if (rc == SQLITE_OK && after) rc = sqlite3_bind_text(st, 3, cid, -1, SQLITE_TRANSIENT);
    if (rc == SQLITE_OK && q->status >= 0) rc = sqlite3_bind_int(st, 4, q->status);
    if (rc != SQLITE_OK) {
        read_error(&r->c, qi);
        sqlite3_clear_bindings(st);
        goto fail;
    }
    if (rd_begin(&r->c) != SG_OK) {
        sqlite3_clear_bindings(st);
        goto fail;
    }
    res = collect_sagas(&r->c, qi, st, &v, &got, q->limit + 1);
    rd_end(&r->c);
    if (res != SG_OK) goto fail;
    if (got > q->limit) {
        sg_saga_rec_free(&v[q->limit]);
        got = q->limit;
        sg_store_cursor_format(next, v[got - 1].created_us, v[got - 1].id);
    }
    *out = v;
    *n = got;
    return SG_OK;
fail:
    free_sagas(v, got);
    return res;
}

static sg_status sq_load_unfinished(sg_store_breader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                    void *arg)
{
    char err[256];
    sg_saga_rec *v = NULL;
    size_t n = 0;
    sg_status res = SG_EIO;
    sqlite3_stmt *st = conn_stmt(&r->c, Q_UNFINISHED, err, sizeof err);
    if (!st) {
        sg_log(SG_LOG_ERROR, "store: SQLite %s", err);
        return SG_EIO;
    }
    if (rd_begin(&r->c) != SG_OK) return SG_EIO;
    res = collect_sagas(&r->c, Q_UNFINISHED, st, &v, &n, 0);
    rd_end(&r->c);
    if (res != SG_OK) {
        free_sagas(v, n);
        return res;
    }
    /* Callbacks run outside the read transaction, so they may use the
     * reader themselves. Each takes a heap record it must free. */
    for (size_t i = 0; i < n; i++) {
        sg_saga_rec *rec = sg_xmalloc(sizeof *rec);
        *rec = v[i];
        cb(arg, rec);
    }
    free(v);
    return SG_OK;
}

static sg_status sq_load_pending_events(sg_store_breader *r,
                                        void (*cb)(void *arg, sg_event_rec *ev), void *arg)
{
    char err[256];
    sg_event_rec *v = NULL;
    size_t n = 0, cap = 0;
    sg_status res = SG_EIO;
    int rc;
    sqlite3_stmt *st = conn_stmt(&r->c, Q_PENDING_EVENTS, err, sizeof err);
    if (!st) {
        sg_log(SG_LOG_ERROR, "store: SQLite %s", err);
        return SG_EIO;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = sg_xrealloc(v, cap * sizeof *v);
        }
        row_to_event(st, &v[n++]);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        read_error(&r->c, Q_PENDING_EVENTS);
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        sg_event_rec *ev = sg_xmalloc(sizeof *ev);
        *ev = v[i];
        cb(arg, ev);
    }
    free(v);
    return SG_OK;
fail:
    for (size_t i = 0; i < n; i++)
        sg_event_rec_free(&v[i]);
    free(v);
    return res;
}

static sg_status sq_get_event(sg_store_breader *r, const char *id, sg_event_rec *out)
{
    char err[256];
    sg_status res = SG_EIO;
    sqlite3_stmt *st = conn_stmt(&r->c, Q_GET_EVENT, err, sizeof err);
    if (!st) {
        sg_log(SG_LOG_ERROR, "store: SQLite %s", err);
        return SG_EIO;
    }
    int rc = sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        row_to_event(st, out);
        res = SG_OK;
    } else if (rc == SQLITE_DONE) {
        res = SG_ENOTFOUND;
    } else {
        read_error(&r->c, Q_GET_EVENT);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return res;
}

static const char *const sqlite_schemes[] = {"sqlite", "file", NULL};

const struct sg_store_ops sg_store_sqlite_ops = {
    .version = SG_STORE_OPS_VERSION,
    .name = "sqlite",
    .schemes = sqlite_schemes,
    .plain_paths = 1,
    .open = sq_open,
    .close = sq_close,
    .exec_batch = sq_exec_batch,
    .reader_open = sq_reader_open,
    .reader_close = sq_reader_close,
    .get = sq_get,
    .get_by_idem = sq_get_by_idem,
    .list = sq_list,
    .load_unfinished = sq_load_unfinished,
    .load_pending_events = sq_load_pending_events,
    .get_event = sq_get_event,
};
