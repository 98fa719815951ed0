/* The SQLite store backend: connections and their statements, the schema,
 * the ownership lock file, open/close and the ops table (sqlite_write.c
 * runs the write transaction, sqlite_read.c the readers).
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sg/alloc.h"
#include "sg/util.h"
#include "sqlite_int.h"

#define SCHEMA_VERSION 2
#define STR_(x) #x
#define STR(x) STR_(x)

/* Columns of a saga row, in the order row_to_saga (sqlite_read.c) reads
 * them. */
#define SAGA_COLS                                                                                  \
    "id, def_name, request, idem_key, status, comp_status, error, created_us, updated_us, nsteps"
/* Columns of an outbox row, in the order row_to_event reads them. */
#define EVENT_COLS                                                                                 \
    "id, saga_id, topic, target, payload, created_us, deadline_us, compensation, step_index, "     \
    "status, attempts, last_error, updated_us"

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
                       "finished_us, error, response, next_us) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,"
                       "?10)"},
    [Q_SAGA_UPDATE] = {"update saga", "UPDATE sagas SET status=?2, comp_status=?3, error=?4, "
                                      "updated_us=?5 WHERE id=?1"},
    [Q_STEP_UPDATE] = {"update step",
                       "UPDATE steps SET status=?3, attempts=?4, started_us=?5, finished_us=?6, "
                       "error=?7, response=?8, next_us=?9 WHERE saga_id=?1 AND idx=?2"},
    [Q_EVENT_INSERT] = {"insert event", "INSERT INTO outbox(" EVENT_COLS
                                        ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13)"},
    [Q_EVENT_UPDATE] = {"update event", "UPDATE outbox SET status=?2, attempts=?3, last_error=?4, "
                                        "updated_us=?5 WHERE id=?1"},
    /* The compensation rule of sg_write_event_update: a saga's
     * comp_status follows its compensation events (?1 is one of them):
     * PARKED (3) while one is parked, else PENDING (1) while one is pending
     * (0), else COMPLETED (2). The unary + keeps the planner on outbox_saga
     * (a saga's few events) rather than a status index. */
    [Q_COMP_DONE] = {"settle compensation status",
                     "UPDATE sagas SET comp_status=c, updated_us=max(updated_us, ?2) FROM "
                     "(SELECT s.id AS sid, CASE WHEN EXISTS(SELECT 1 FROM outbox o WHERE "
                     "o.saga_id=s.id AND o.compensation=1 AND +o.status=3) THEN 3 WHEN "
                     "EXISTS(SELECT 1 FROM outbox o WHERE o.saga_id=s.id AND o.compensation=1 "
                     "AND +o.status=0) THEN 1 ELSE 2 END AS c FROM sagas s WHERE s.id=(SELECT "
                     "saga_id FROM outbox WHERE id=?1 AND compensation=1)) WHERE sagas.id=sid "
                     "AND comp_status<>c"},
    /* Guards: they match the row only in the expected state (a write whose
     * guard matches nothing fails alone with SG_ECONFLICT). */
    [Q_SAGA_EXPECT] = {"check saga state", "UPDATE sagas SET status=status WHERE id=?1 AND "
                                           "status=?2 AND comp_status=?3"},
    [Q_EVENT_EXPECT] = {"check event state",
                        "UPDATE outbox SET status=status WHERE id=?1 AND status=?2"},
    [Q_GET] = {"get saga", "SELECT " SAGA_COLS " FROM sagas WHERE id=?1"},
    [Q_GET_IDEM] = {"get saga by key", "SELECT " SAGA_COLS " FROM sagas WHERE idem_key=?1"},
    [Q_STEPS] = {"get steps", "SELECT idx, name, status, attempts, started_us, finished_us, "
                              "next_us, "
                              "error, response FROM steps WHERE saga_id=?1 ORDER BY idx"},
    /* Keyset pagination, newest first; the row value comparison lets
     * SQLite seek in the (created_us DESC, id DESC) indexes. */
    /* ?5: a definition name to filter on, or NULL (unbound) for all. */
    [Q_LIST] = {"list sagas", "SELECT " SAGA_COLS " FROM sagas WHERE (?5 IS NULL OR def_name=?5) "
                              "ORDER BY created_us DESC, id DESC LIMIT ?1"},
    [Q_LIST_AFTER] = {"list sagas", "SELECT " SAGA_COLS " FROM sagas WHERE (created_us, id) < "
                                    "(?2, ?3) AND (?5 IS NULL OR def_name=?5) ORDER BY "
                                    "created_us DESC, id DESC LIMIT ?1"},
    [Q_LIST_ST] = {"list sagas", "SELECT " SAGA_COLS " FROM sagas WHERE status=?4 AND (?5 IS NULL "
                                 "OR def_name=?5) ORDER BY created_us DESC, id DESC LIMIT ?1"},
    [Q_LIST_ST_AFTER] = {"list sagas",
                         "SELECT " SAGA_COLS " FROM sagas WHERE status=?4 AND (created_us, id) < "
                         "(?2, ?3) AND (?5 IS NULL OR def_name=?5) ORDER BY created_us DESC, "
                         "id DESC LIMIT ?1"},
    [Q_UNFINISHED] = {"load unfinished", "SELECT " SAGA_COLS " FROM sagas WHERE status=0 "
                                         "ORDER BY created_us, id"},
    /* status=0 spelled as a literal so the partial index applies. */
    [Q_PENDING_EVENTS] = {"load pending events", "SELECT " EVENT_COLS " FROM outbox WHERE "
                                                 "status=0 OR status=3 ORDER BY created_us, id"},
    [Q_GET_EVENT] = {"get event", "SELECT " EVENT_COLS " FROM outbox WHERE id=?1"},
    /* Recovery, a page at a time, oldest first (the keyset of the listing,
     * ascending), with each saga's unsettled step events. */
    [Q_UNFINISHED_PAGE] = {"load unfinished", "SELECT " SAGA_COLS " FROM sagas WHERE status=0 "
                                              "AND (created_us, id) > (?1, ?2) ORDER BY "
                                              "created_us, id LIMIT ?3"},
    [Q_STEP_EVENTS] = {"load step events", "SELECT " EVENT_COLS " FROM outbox WHERE saga_id=?1 "
                                           "AND compensation=0 AND status=0 ORDER BY "
                                           "created_us, id"},
    [Q_COMPENSATIONS] = {"load compensations",
                         "SELECT " EVENT_COLS " FROM outbox WHERE compensation=1 AND (status=0 "
                         "OR status=3) ORDER BY created_us, id"},
    /* A step event whose saga has ended was settled with it: withdrawn. */
    [Q_WITHDRAW_ORPHANS] = {"withdraw orphan events",
                            "UPDATE outbox SET status=2 WHERE status=0 AND compensation=0 AND "
                            "saga_id IN (SELECT id FROM sagas WHERE status<>0)"},
    [Q_ORPHANS_EXIST] = {"look for orphan events",
                         "SELECT 1 FROM outbox WHERE status=0 AND compensation=0 AND saga_id IN "
                         "(SELECT id FROM sagas WHERE status<>0) LIMIT 1"},
    /* Outbox listing, newest first, by the same keyset as the sagas. */
    [Q_EVENTS] = {"list events", "SELECT " EVENT_COLS " FROM outbox ORDER BY created_us DESC, "
                                 "id DESC LIMIT ?1"},
    [Q_EVENTS_AFTER] = {"list events",
                        "SELECT " EVENT_COLS " FROM outbox WHERE (created_us, id) < (?2, ?3) "
                        "ORDER BY created_us DESC, id DESC LIMIT ?1"},
    [Q_EVENTS_ST] = {"list events", "SELECT " EVENT_COLS " FROM outbox WHERE status=?4 ORDER BY "
                                    "created_us DESC, id DESC LIMIT ?1"},
    [Q_EVENTS_ST_AFTER] = {"list events",
                           "SELECT " EVENT_COLS " FROM outbox WHERE status=?4 AND (created_us, "
                           "id) < (?2, ?3) ORDER BY created_us DESC, id DESC LIMIT ?1"},
    /* Rewrites page 1 unchanged: a transaction that must write, to probe
     * a store that failed (an empty one commits even on a full disk). */
    [Q_PROBE] = {"probe", "PRAGMA user_version=" STR(SCHEMA_VERSION)},
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
    " next_us INTEGER NOT NULL DEFAULT 0," /* next attempt after a backoff */
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
    " attempts INTEGER NOT NULL,"
    " last_error TEXT,"
    " updated_us INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS sagas_created ON sagas(created_us DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS sagas_status ON sagas(status, created_us DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(status) WHERE status=0;"
    "CREATE INDEX IF NOT EXISTS outbox_saga ON outbox(saga_id);"
    "CREATE INDEX IF NOT EXISTS outbox_created ON outbox(created_us DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS outbox_status ON outbox(status, created_us DESC, id DESC);";

/* From schema 1 (sagad before retries and parking) to 2. */
static const char migrate_v2_sql[] =
    "ALTER TABLE steps ADD COLUMN next_us INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE outbox ADD COLUMN last_error TEXT;"
    "ALTER TABLE outbox ADD COLUMN updated_us INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX IF NOT EXISTS outbox_created ON outbox(created_us DESC, id DESC);"
    "CREATE INDEX IF NOT EXISTS outbox_status ON outbox(status, created_us DESC, id DESC);";

/* ---- connections -------------------------------------------------------- */

void sg__sq_conn_close(conn *c)
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

sg_status sg__sq_conn_open(conn *c, const sg_store_backend *be, int reader, char *err,
                           size_t errlen)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (reader ? 0 : SQLITE_OPEN_CREATE);
    memset(c, 0, sizeof *c);
    int rc = sqlite3_open_v2(be->path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        open_error(be->path, c->db, rc, err, errlen);
        goto fail;
    }
    sqlite3_extended_result_codes(c->db, 1);
    /* Another process (a backup, the sqlite3 shell) may hold a lock
     * briefly; wait rather than fail. */
    rc = sqlite3_busy_timeout(c->db, be->busy_ms);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "SQLite busy_timeout: %s", sqlite3_errmsg(c->db));
        goto fail;
    }
    /* A reader must never write, whatever bug calls it. */
    if (reader && exec_sql(c->db, "PRAGMA query_only=1", "query_only", err, errlen) != SQLITE_OK)
        goto fail;
    return SG_OK;
fail:
    sg__sq_conn_close(c);
    return SG_EIO;
}

sqlite3_stmt *sg__sq_stmt(conn *c, int q, char *err, size_t errlen)
{
    if (c->stmt[q]) return c->stmt[q];
    int rc =
        sqlite3_prepare_v3(c->db, queries[q].sql, -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[q], NULL);
    if (rc != SQLITE_OK) {
        if (err)
            snprintf(err, errlen, "SQLite prepare %s: %s", queries[q].name, sqlite3_errmsg(c->db));
        sqlite3_finalize(c->stmt[q]);
        c->stmt[q] = NULL;
    }
    return c->stmt[q];
}

int sg__sq_run_simple(conn *c, int q)
{
    sqlite3_stmt *st = sg__sq_stmt(c, q, NULL, 0);
    if (!st) return SQLITE_ERROR;
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc;
}

const char *sg__sq_name(int q)
{
    return queries[q].name;
}

sg_status sg__sq_same_file(const sg_store_backend *be, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(be->path, &sb) != 0) {
        snprintf(err, errlen, "database file '%s' is gone (%s): removed or moved while open",
                 be->path, strerror(errno));
        return SG_EIO;
    }
    if (sb.st_dev != be->dev || sb.st_ino != be->ino) {
        snprintf(err, errlen,
                 "database file '%s' was replaced while open (another file is at its path)",
                 be->path);
        return SG_EIO;
    }
    return SG_OK;
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
        const char *sql = version == 0 ? schema_sql : migrate_v2_sql;
        if (exec_sql(c->db, sql, version == 0 ? "creating schema" : "upgrading schema", err,
                     errlen) != SQLITE_OK)
            goto fail;
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
    if (sg__sq_conn_open(&b->w, b, 0, err, errlen) != SG_OK) goto fail;
    /* The file the connection opened, to notice it being replaced. */
    if (stat(b->path, &sb) != 0) {
        snprintf(err, errlen, "cannot use SQLite database '%s': %s", b->path, strerror(errno));
        goto fail;
    }
    b->dev = sb.st_dev;
    b->ino = sb.st_ino;

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
        sg__sq_conn_close(&b->w);
        if (b->lock_fd >= 0) close(b->lock_fd);
        free(b->path);
        free(b);
    }
    return res;
}

static void sq_close(sg_store_backend *b)
{
    if (!b) return;
    sg__sq_conn_close(&b->w);
    /* Released only after the connection is closed (and its WAL
     * checkpointed), so the next owner finds the database at rest. */
    if (b->lock_fd >= 0) close(b->lock_fd);
    free(b->path);
    free(b);
}

static const char *const sqlite_schemes[] = {"sqlite", "file", NULL};

const struct sg_store_ops sg_store_sqlite_ops = {
    .schemes = sqlite_schemes,
    .plain_paths = 1,
    .open = sq_open,
    .close = sq_close,
    .exec_batch = sg__sq_exec_batch,
    .reader_open = sg__sq_reader_open,
    .reader_close = sg__sq_reader_close,
    .get = sg__sq_get,
    .get_by_idem = sg__sq_get_by_idem,
    .list = sg__sq_list,
    .load_unfinished = sg__sq_load_unfinished,
    .load_pending_events = sg__sq_load_pending_events,
    .load_unfinished_page = sg__sq_load_unfinished_page,
    .load_compensations = sg__sq_load_compensations,
    .has_orphans = sg__sq_has_orphans,
    .get_event = sg__sq_get_event,
    .list_events = sg__sq_list_events,
};
