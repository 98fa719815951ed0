/* The writer's VFS (src/store/sqlite_vfs.c), which holds a commit's WAL
 * frames back and writes them as one: what a commit wrote is what another
 * connection (default VFS) reads at once, through small and large rows,
 * transactions past the held-back cap and past the page cache (spilled
 * frames read back), checkpoints and WAL restarts; a commit whose frames
 * cannot be written fails and leaves the file as it was; a process killed
 * at any moment leaves every acknowledged commit and an intact file; the
 * store's writer uses it with synchronous=FULL only, its readers never. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "store/helpers.h"
#include "store/sqlite_int.h"
#include "store/store_int.h"

/* The writer as sagad opens it: our VFS, WAL, synchronous=FULL. */
static sqlite3 *open_writer(const char *path, int autockpt)
{
    const char *vfs = sg__sq_vfs();
    assert_non_null(vfs);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
    assert_int_equal(rc, SQLITE_OK);
    char sql[160];
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=%d;"
             "CREATE TABLE IF NOT EXISTS t(k INTEGER PRIMARY KEY, v BLOB NOT NULL);",
             autockpt);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    return db;
}

static sqlite3 *open_reader(const char *path)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

/* A value whose bytes depend on k and its length. */
static void fill(unsigned char *p, size_t n, int64_t k)
{
    uint32_t x = (uint32_t)k * 2654435761u + (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (unsigned char)(x >> 16);
    }
}

static int insert(sqlite3 *db, int64_t k, size_t n)
{
    unsigned char *v = sg_xmalloc(n ? n : 1);
    fill(v, n, k);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT INTO t(k, v) VALUES(?1, ?2)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, k);
        sqlite3_bind_blob(st, 2, v, (int)n, SQLITE_STATIC);
        rc = sqlite3_step(st);
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    free(v);
    return rc;
}

/* Rows k in [lo, hi] are there, each with the bytes it was given; returns
 * how many rows t has in all. */
static int64_t check_rows(sqlite3 *db, int64_t lo, int64_t hi)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT k, v FROM t WHERE k BETWEEN ?1 AND ?2", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    int64_t want = lo, n;
    while (sqlite3_step(st) == SQLITE_ROW) {
        assert_int_equal(sqlite3_column_int64(st, 0), want);
        n = sqlite3_column_bytes(st, 1);
        unsigned char *v = sg_xmalloc(n ? (size_t)n : 1);
        fill(v, (size_t)n, want);
        assert_memory_equal(sqlite3_column_blob(st, 1), v, (size_t)n);
        free(v);
        want++;
    }
    assert_int_equal(want, hi + 1);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Row sizes from a few bytes to past the default VFS's 124-KiB write. */
static size_t size_of(int64_t k)
{
    static const size_t sizes[] = {10, 300, 4000, 4097, 20000, 130000, 300000, 77};
    return sizes[k % 8];
}

static void test_commits_reach_readers(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sqlite3 *w = open_writer(t.path, 1000);
    sqlite3 *r = open_reader(t.path);
    for (int64_t k = 1; k <= 300; k++) {
        assert_int_equal(insert(w, k, size_of(k)), SQLITE_OK); /* autocommit */
        /* Another connection sees the commit at once, every byte of it. */
        assert_int_equal(check_rows(r, k, k), k);
    }
    assert_int_equal(check_rows(r, 1, 300), 300);
    assert_intact(w);
    sqlite3_close(r);
    sqlite3_close(w);
    r = open_reader(t.path); /* after the last close checkpointed the WAL */
    assert_int_equal(check_rows(r, 1, 300), 300);
    sqlite3_close(r);
    tmpdb_remove(&t);
}

/* One transaction past the held-back cap, with a page cache small enough
 * that SQLite spills frames mid-transaction and reads them back. */
static void test_big_transaction(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sqlite3 *w = open_writer(t.path, 1000);
    sqlite3 *r = open_reader(t.path);
    assert_int_equal(sqlite3_exec(w, "PRAGMA cache_size=20", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(w, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    int64_t n = (int64_t)(SG_SQ_VFS_RUN / 3000) * 2; /* about twice the cap */
    for (int64_t k = 1; k <= n; k++)
        assert_int_equal(insert(w, k, 3000), SQLITE_OK);
    /* Read back through the same connection before the commit. */
    assert_int_equal(check_rows(w, 1, n), n);
    assert_int_equal(check_rows(r, 1, 0), 0);
    assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(check_rows(r, 1, n), n);
    assert_intact(r);
    sqlite3_close(r);
    sqlite3_close(w);
    tmpdb_remove(&t);
}

/* A checkpoint every few pages: the WAL is read back, the database
 * written, and the WAL restarted from its start over and over. */
static void test_checkpoints(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sqlite3 *w = open_writer(t.path, 8);
    sqlite3 *r = open_reader(t.path);
    for (int64_t k = 1; k <= 600; k++) {
        assert_int_equal(insert(w, k, k % 3 ? 900 : 9000), SQLITE_OK);
        if (k % 50 == 0) {
            assert_int_equal(check_rows(r, 1, k), k);
            assert_int_equal(
                sqlite3_wal_checkpoint_v2(w, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL),
                SQLITE_OK);
        }
    }
    assert_int_equal(check_rows(r, 1, 600), 600);
    assert_intact(w);
    sqlite3_close(r);
    sqlite3_close(w);
    tmpdb_remove(&t);
}

/* In a child, so the file-size limit is its own: a commit whose frames
 * the file system refuses fails, nothing of it is seen, and once the
 * limit is lifted the next commit and all before it are whole. */
static void failing_write_child(const char *path)
{
    signal(SIGXFSZ, SIG_IGN); /* a write past the limit fails with EFBIG */
    sqlite3 *w = open_writer(path, 0);
    sqlite3 *r = open_reader(path);
    for (int64_t k = 1; k <= 20; k++)
        if (insert(w, k, 1000) != SQLITE_OK) _exit(10);
    struct stat sb;
    char wal[300];
    snprintf(wal, sizeof wal, "%s-wal", path);
    if (stat(wal, &sb) != 0) _exit(11);
    struct rlimit lim;
    getrlimit(RLIMIT_FSIZE, &lim);
    struct rlimit low = {.rlim_cur = (rlim_t)sb.st_size + 50000, .rlim_max = lim.rlim_max};
    if (setrlimit(RLIMIT_FSIZE, &low) != 0) _exit(12);
    /* 200 KB of frames: past the limit, refused at the commit's sync. */
    int rc = insert(w, 21, 200000);
    if (rc == SQLITE_OK) _exit(13);
    if (sqlite3_get_autocommit(w) == 0) sqlite3_exec(w, "ROLLBACK", NULL, NULL, NULL);
    if (check_rows(r, 1, 20) != 20) _exit(14);
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(15);
    if (insert(w, 21, 200000) != SQLITE_OK) _exit(16);
    if (insert(w, 22, 10) != SQLITE_OK) _exit(17);
    if (check_rows(r, 1, 22) != 22) _exit(18);
    sqlite3_close(r);
    sqlite3_close(w);
    _exit(0);
}

static void test_failed_write(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) failing_write_child(t.path);
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    sqlite3 *r = open_reader(t.path);
    assert_int_equal(check_rows(r, 1, 22), 22);
    assert_intact(r);
    sqlite3_close(r);
    tmpdb_remove(&t);
}

/* A child commits rows 1, 2, ... and reports each once its COMMIT
 * returned; it is killed at some moment mid-stream. Every reported row is
 * in the file afterwards (a process crash loses nothing that committed),
 * at most the one in flight besides, and the file is intact. */
static void test_kill_mid_commit(void **state)
{
    (void)state;
    for (int round = 0; round < 4; round++) {
        tmpdb t;
        tmpdb_make(&t);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            sqlite3 *w = open_writer(t.path, 30);
            for (int64_t k = 1;; k++) {
                if (insert(w, k, size_of(k)) != SQLITE_OK) _exit(20);
                if (write(fds[1], &k, sizeof k) != sizeof k) _exit(21);
            }
        }
        close(fds[1]);
        int64_t acked = 0, k;
        int64_t stop_at = 40 + round * 97;
        while (acked < stop_at && read(fds[0], &k, sizeof k) == sizeof k)
            acked = k;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        while (read(fds[0], &k, sizeof k) == sizeof k) /* reported before it died */
            acked = k;
        close(fds[0]);
        assert_int_equal(acked >= stop_at, 1);
        sqlite3 *r = open_reader(t.path);
        int64_t n = check_rows(r, 1, acked);
        assert_true(n == acked || n == acked + 1);
        assert_intact(r);
        sqlite3_close(r);
        tmpdb_remove(&t);
    }
}

/* Only WAL files are held back: the database file and a rollback journal
 * (journal_mode=DELETE) go straight through and stay readable. */
static void test_rollback_journal(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sqlite3 *w = NULL;
    assert_int_equal(
        sqlite3_open_v2(t.path, &w, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, sg__sq_vfs()),
        SQLITE_OK);
    assert_int_equal(sqlite3_exec(w,
                                  "PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL;"
                                  "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB NOT NULL);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    for (int64_t k = 1; k <= 40; k++)
        assert_int_equal(insert(w, k, size_of(k)), SQLITE_OK);
    sqlite3 *r = open_reader(t.path);
    assert_int_equal(check_rows(r, 1, 40), 40);
    sqlite3_close(r);
    sqlite3_close(w);
    tmpdb_remove(&t);
}

static const char *vfs_of(sqlite3 *db)
{
    sqlite3_vfs *v = NULL;
    assert_int_equal(sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &v), SQLITE_OK);
    assert_non_null(v);
    return v->zName;
}

/* The store opens its writer through this VFS with synchronous=FULL only,
 * and its readers never. */
static void test_store_uses_it(void **state)
{
    (void)state;
    for (int full = 0; full <= 1; full++) {
        tmpdb t;
        tmpdb_make(&t);
        char err[256];
        sg_store_options o = {.synchronous_full = full};
        sg_store_backend *b = NULL;
        sg_store_breader *r = NULL;
        assert_int_equal(sg_store_sqlite_ops.open(&b, t.path, t.path, &o, err, sizeof err), SG_OK);
        assert_int_equal(sg_store_sqlite_ops.reader_open(b, &r, err, sizeof err), SG_OK);
        if (full)
            assert_string_equal(vfs_of(b->w.db), SG_SQ_VFS_NAME);
        else
            assert_string_not_equal(vfs_of(b->w.db), SG_SQ_VFS_NAME);
        assert_string_not_equal(vfs_of(r->c.db), SG_SQ_VFS_NAME);
        sg_store_sqlite_ops.reader_close(r);
        sg_store_sqlite_ops.close(b);
        tmpdb_remove(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commits_reach_readers), cmocka_unit_test(test_big_transaction),
        cmocka_unit_test(test_checkpoints),           cmocka_unit_test(test_failed_write),
        cmocka_unit_test(test_kill_mid_commit),       cmocka_unit_test(test_rollback_journal),
        cmocka_unit_test(test_store_uses_it),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
