/* The SQLite store backend: connections and their statements, creating or
 * upgrading the schema, the ownership lock file, open/close and the ops
 * table (sqlite_sql.c holds the SQL, sqlite_write.c runs the write
 * transaction, sqlite_read.c and sqlite_read_events.c the readers).
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

#include <uv.h>

#include "sg/alloc.h"
#include "sg/util.h"
#include "sqlite_int.h"

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
    /* The writer's WAL frames go out one write per commit (sqlite_vfs.c),
     * which needs every commit to end with a sync. */
    const char *vfs = !reader && be->sync_full ? sg__sq_vfs() : NULL;
    int rc = sqlite3_open_v2(be->path, &c->db, flags, vfs);
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
        sqlite3_prepare_v3(c->db, sg__sq_sql(q), -1, SQLITE_PREPARE_PERSISTENT, &c->stmt[q], NULL);
    if (rc != SQLITE_OK) {
        if (err)
            snprintf(err, errlen, "SQLite prepare %s: %s", sg__sq_name(q), sqlite3_errmsg(c->db));
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

/* Rebuilds ascending the listing indexes that an older sagad made with
 * descending columns (see sg__sq_relayout), inside the open's
 * transaction. Once per file: afterwards none is descending. */
static int relayout_indexes(conn *c, const char *path, char *err, size_t errlen)
{
    const char *name, *create;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db,
                                "SELECT 1 FROM sqlite_master WHERE type='index' AND name=?1 AND "
                                "instr(upper(sql), ' DESC')",
                                -1, &st, NULL);
    for (size_t i = 0; rc == SQLITE_OK && (name = sg__sq_relayout(i, &create)); i++) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
            continue;
        }
        if (rc != SQLITE_ROW) break;
        sg_log(SG_LOG_INFO, "store: %s: rebuilding index %s with ascending columns (once)", path,
               name);
        char drop[64];
        snprintf(drop, sizeof drop, "DROP INDEX %s", name);
        rc = exec_sql(c->db, drop, "rebuilding an index", err, errlen);
        if (rc == SQLITE_OK) rc = exec_sql(c->db, create, "rebuilding an index", err, errlen);
        if (rc != SQLITE_OK) {
            sqlite3_finalize(st);
            return rc;
        }
    }
    if (rc != SQLITE_OK)
        snprintf(err, errlen, "SQLite checking the indexes: %s", sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
    return rc;
}

/* Creates the schema in a new file, or upgrades an older sagad's file
 * step by step to the current version (and its indexes to the current
 * layout), all in one transaction: a failed upgrade leaves the file as it
 * was. A file from a newer sagad is refused
 * untouched (SG_EINVAL: this program cannot use it, retrying will not
 * help); other failures are SG_EIO. */
static sg_status create_schema(conn *c, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    sg_status res = SG_EIO;
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
    if (version > SG_SQ_SCHEMA_VERSION) {
        snprintf(err, errlen,
                 "database '%s' has schema version %d, newer than this sagad supports (%d): it "
                 "was written by a newer sagad; run that one, or point this one at another "
                 "database",
                 path, version, SG_SQ_SCHEMA_VERSION);
        res = SG_EINVAL;
        goto fail;
    }
    if (version < 0) {
        snprintf(err, errlen, "database '%s' has schema version %d, which no sagad writes", path,
                 version);
        res = SG_EINVAL;
        goto fail;
    }
    if (version == 0 && exec_sql(c->db, sg__sq_schema, "creating schema", err, errlen) != SQLITE_OK)
        goto fail;
    for (int v = version; v > 0 && v < SG_SQ_SCHEMA_VERSION; v++) {
        char what[64];
        snprintf(what, sizeof what, "upgrading schema from version %d", v);
        /* Once per file; the upgrade to 4 copies the sagas table, which
         * takes a while on a large file. */
        sg_log(SG_LOG_INFO, "store: %s: %s to %d (once)", path, what, v + 1);
        if (exec_sql(c->db, sg__sq_upgrade(v), what, err, errlen) != SQLITE_OK) goto fail;
    }
    if (relayout_indexes(c, path, err, errlen) != SQLITE_OK) goto fail;
    if (version < SG_SQ_SCHEMA_VERSION) {
        char pragma[64];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version=%d", SG_SQ_SCHEMA_VERSION);
        if (exec_sql(c->db, pragma, "setting schema version", err, errlen) != SQLITE_OK) goto fail;
    }
    if (exec_sql(c->db, "COMMIT", "commit", err, errlen) != SQLITE_OK) goto fail;
    return SG_OK;
fail:
    sqlite3_finalize(st);
    if (!sqlite3_get_autocommit(c->db)) sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return res;
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

/* Library-wide settings, made once before SQLite initialises (that is,
 * before the process's first connection; later, sqlite3_config refuses
 * with SQLITE_MISUSE and changes nothing, which is harmless).
 * MEMSTATUS off: with it on (SQLite's default) every allocation and free
 * takes one process-wide mutex to keep statistics nobody here reads,
 * which cost the writer ~9% of its instructions and made it contend with
 * the readers of the API threads. */
static uv_once_t configured = UV_ONCE_INIT;

static void configure_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* ---- the WAL checkpoint ---------------------------------------------------- */

/* SQLite's automatic checkpoint runs inside the COMMIT that crosses its
 * threshold, so every write of that batch, durable already, waited for
 * it as well (about a millisecond: the frames copied into the database
 * and its fsync). The writer connection's own hook replaces it (a WAL
 * hook turns the automatic checkpoint off) and only notes the WAL's
 * length; sq_after_batch checkpoints once the batch was handed back.
 * The checkpoint is the same one, on the same connection and thread, so
 * the WAL still restarts from its beginning after it. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db;
    (void)name;
    ((sg_store_backend *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

static void sq_after_batch(sg_store_backend *b)
{
    if (b->wal_frames < SG_SQ_CHECKPOINT_FRAMES) return;
    int rc = sqlite3_wal_checkpoint_v2(b->w.db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    /* What a reader's snapshot held back (SQLITE_BUSY, or done < log), or
     * a failure, is tried again after the next commit: its hook reports
     * the whole WAL again. */
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        sg_log(SG_LOG_WARN, "store: SQLite checkpoint of '%s': %s", b->path,
               sqlite3_errmsg(b->w.db));
    b->wal_frames = 0;
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
    uv_once(&configured, configure_sqlite);
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
    b->sync_full = !opt || opt->synchronous_full;
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
    const char *sync = b->sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL";
    if (exec_sql(b->w.db, sync, "synchronous", err, errlen) != SQLITE_OK) goto fail;
    if (exec_sql(b->w.db, "PRAGMA foreign_keys=OFF", "foreign_keys", err, errlen) != SQLITE_OK)
        goto fail;
    sqlite3_wal_hook(b->w.db, wal_hook, b);
    res = create_schema(&b->w, b->path, err, errlen);
    if (res != SG_OK) goto fail;
    rc = sqlite3_prepare_v2(b->w.db, "PRAGMA page_size", -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    b->page_size = rc == SQLITE_ROW ? sqlite3_column_int(st, 0) : 4096;
    sqlite3_finalize(st);
    st = NULL;
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
    .after_batch = sq_after_batch,
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
    .count_events = sg__sq_count_events,
    .load_defs = sg__sq_load_defs,
    .counts = sg__sq_counts,
};
