/* Opening: URL schemes, clear errors for bad URLs and paths, schema
 * creation and upgrades from older sagads, a newer sagad's file refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/helpers.h"
#include "store/sqlite_int.h"

static mode_t current_umask(void)
{
    mode_t m = umask(0);
    umask(m);
    return m;
}

/* Whether another process finds "<path>.lock" locked: 1 yes, 0 no, -1 if
 * util-linux flock(1) is not installed (the check is then skipped). */
static int locked_elsewhere(const char *path)
{
    if (access("/usr/bin/flock", X_OK) != 0) return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/flock -n -E 42 '%s.lock' true", path);
    int rc = system(cmd);
    assert_true(rc != -1 && WIFEXITED(rc));
    assert_true(WEXITSTATUS(rc) == 0 || WEXITSTATUS(rc) == 42);
    return WEXITSTATUS(rc) == 42;
}

static sg_status try_open(const char *url, char *err, size_t errlen)
{
    sg_store *s = (sg_store *)&s; /* must be reset to NULL on failure */
    err[0] = '\0';
    sg_status st = sg_store_open(&s, url, NULL, NULL, err, errlen);
    if (st == SG_OK) {
        assert_non_null(s);
        sg_store_close(s);
    } else {
        assert_null(s);
        assert_true(err[0] != '\0');
    }
    return st;
}

static void test_unsupported_scheme(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(try_open("mongodb://user@localhost/sagas", err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "unsupported store URL scheme"));
    assert_non_null(strstr(err, "mongodb"));
    assert_int_equal(try_open("mysql:x", err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "unsupported store URL scheme"));
    assert_int_equal(try_open("", err, sizeof err), SG_EINVAL);
    assert_int_equal(try_open("sqlite:", err, sizeof err), SG_EINVAL);
    assert_int_equal(try_open("sqlite://", err, sizeof err), SG_EINVAL);
    sg_store *s = NULL;
    assert_int_equal(sg_store_open(&s, NULL, NULL, NULL, err, sizeof err), SG_EINVAL);
    /* A NULL err buffer is allowed. */
    assert_int_equal(sg_store_open(&s, "nope://x", NULL, NULL, NULL, 0), SG_EINVAL);
    assert_null(s);
}

static void test_bad_paths(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    char url[256], err[512];

    snprintf(url, sizeof url, "%s/missing/sub/saga.db", t.dir);
    assert_int_equal(try_open(url, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "does not exist"));
    assert_non_null(strstr(err, "missing/sub"));

    /* The parent is a regular file. */
    char file[128];
    snprintf(file, sizeof file, "%s/plain", t.dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fputs("this is not a database, but it is long enough to have a header page...........", fp);
    fclose(fp);
    snprintf(url, sizeof url, "%s/saga.db", file);
    assert_int_equal(try_open(url, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "Not a directory"));

    /* The path is a file that is not a database. */
    assert_int_equal(try_open(file, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "not a database"));

    /* The path is a directory. */
    assert_int_equal(try_open(t.dir, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "is a directory"));
    tmpdb_remove(&t);
}

/* Every spelling of a SQLite URL reaches the same file. */
static void test_url_forms(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    char url[256], err[256];
    sg_saga_rec r;
    make_saga(&r, "{}", 2, "k", 1);
    sg_store *s = open_sync(t.path);
    insert_sync(s, &r);
    sg_store_close(s);

    const char *forms[] = {"sqlite:%s", "sqlite://%s", "SQLite:%s", "file:%s", "file://%s", "%s"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        snprintf(url, sizeof url, forms[i], t.path);
        s = NULL;
        assert_int_equal(sg_store_open(&s, url, NULL, NULL, err, sizeof err), SG_OK);
        sg_store_reader *rd = NULL;
        assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
        sg_saga_rec got;
        assert_int_equal(sg_store_get(rd, r.id, &got), SG_OK);
        sg_saga_rec_free(&got);
        sg_store_reader_close(rd);
        sg_store_close(s);
    }
    sg_saga_rec_free(&r);
    tmpdb_remove(&t);
}

static void test_schema(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store_close(open_sync(t.path));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), SG_SQ_SCHEMA_VERSION);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                                   "name IN ('sagas_created','sagas_status','sagas_type',"
                                   "'sagas_idem','outbox_saga','outbox_created',"
                                   "'outbox_status')"),
                     7);
    /* Schema 4: the key is indexed only when set; no outbox_pending. */
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                                   "name='sagas_idem' AND sql LIKE '%UNIQUE%' AND "
                                   "sql LIKE '%WHERE idem_key IS NOT NULL%'"),
                     1);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                                   "name='outbox_pending'"),
                     0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND "
                                   "name='definitions' AND sql LIKE '%WITHOUT ROWID%'"),
                     1);
    /* WAL is a property of the file. */
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);

    /* A database from a newer sagad is refused, not damaged: SG_EINVAL
     * (this program cannot use it; retrying will not help), saying which
     * version it found and which it supports. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[512], want[512];
    assert_int_equal(try_open(t.path, err, sizeof err), SG_EINVAL);
    snprintf(want, sizeof want,
             "database '%s' has schema version 99, newer than this sagad supports (%d)", t.path,
             SG_SQ_SCHEMA_VERSION);
    assert_non_null(strstr(err, want));
    assert_non_null(strstr(err, "written by a newer sagad"));
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 99);
    assert_int_equal(query_int(db, "SELECT count(*) FROM pragma_table_info('sagas')"), 14);
    /* A negative version is no sagad's. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=-1", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(try_open(t.path, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "schema version -1"));

    /* Reopening an existing current database leaves it alone. */
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=6", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(try_open(t.path, err, sizeof err), SG_OK);
    tmpdb_remove(&t);
}

/* Schema 1 as the first sagad created it (before retries and parking),
 * with one saga of 2 steps, a step event and a compensation of step 0. */
static const char v1_sql[] =
    "CREATE TABLE sagas(id TEXT PRIMARY KEY, def_name TEXT, request BLOB NOT NULL,"
    " idem_key TEXT UNIQUE, status INTEGER NOT NULL, comp_status INTEGER NOT NULL,"
    " error TEXT, created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL,"
    " nsteps INTEGER NOT NULL);"
    "CREATE TABLE steps(saga_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT,"
    " status INTEGER NOT NULL, attempts INTEGER NOT NULL, started_us INTEGER NOT NULL,"
    " finished_us INTEGER NOT NULL, error TEXT, response BLOB,"
    " PRIMARY KEY(saga_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE outbox(id TEXT PRIMARY KEY, saga_id TEXT NOT NULL, topic TEXT,"
    " target TEXT, payload BLOB, created_us INTEGER NOT NULL, deadline_us INTEGER NOT NULL,"
    " compensation INTEGER NOT NULL, step_index INTEGER NOT NULL, status INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL);"
    "CREATE INDEX sagas_created ON sagas(created_us DESC, id DESC);"
    "CREATE INDEX sagas_status ON sagas(status, created_us DESC, id DESC);"
    "CREATE INDEX outbox_pending ON outbox(status) WHERE status=0;"
    "CREATE INDEX outbox_saga ON outbox(saga_id);"
    "INSERT INTO sagas VALUES('0f8fad5b-d9cb-469f-a165-70867728950e','sta','{}','k1',2,1,"
    "'boom',1,1,2);"
    "INSERT INTO steps VALUES('0f8fad5b-d9cb-469f-a165-70867728950e',0,'anonymizer',2,1,1,2,"
    "NULL,NULL);"
    "INSERT INTO steps VALUES('0f8fad5b-d9cb-469f-a165-70867728950e',1,'tokenizer',3,1,3,4,"
    "'down',NULL);"
    "INSERT INTO outbox VALUES('1f8fad5b-d9cb-469f-a165-70867728950e',"
    "'0f8fad5b-d9cb-469f-a165-70867728950e','t',NULL,'{}',1,0,0,1,2,1);"
    "INSERT INTO outbox VALUES('2f8fad5b-d9cb-469f-a165-70867728950e',"
    "'0f8fad5b-d9cb-469f-a165-70867728950e','t_comp',NULL,'{}',5,0,1,0,0,2);"
    "PRAGMA user_version=1;";

/* Schema 2 as sagad created it before definitions had versions, with
 * the same rows; its compensation is PARKED with an error. */
static const char v2_sql[] =
    "CREATE TABLE sagas(id TEXT PRIMARY KEY, def_name TEXT, request BLOB NOT NULL,"
    " idem_key TEXT UNIQUE, status INTEGER NOT NULL, comp_status INTEGER NOT NULL,"
    " error TEXT, created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL,"
    " nsteps INTEGER NOT NULL);"
    "CREATE TABLE steps(saga_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT,"
    " status INTEGER NOT NULL, attempts INTEGER NOT NULL, started_us INTEGER NOT NULL,"
    " finished_us INTEGER NOT NULL, error TEXT, response BLOB,"
    " next_us INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(saga_id, idx)) WITHOUT ROWID;"
    "CREATE TABLE outbox(id TEXT PRIMARY KEY, saga_id TEXT NOT NULL, topic TEXT,"
    " target TEXT, payload BLOB, created_us INTEGER NOT NULL, deadline_us INTEGER NOT NULL,"
    " compensation INTEGER NOT NULL, step_index INTEGER NOT NULL, status INTEGER NOT NULL,"
    " attempts INTEGER NOT NULL, last_error TEXT, updated_us INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX sagas_created ON sagas(created_us DESC, id DESC);"
    "CREATE INDEX sagas_status ON sagas(status, created_us DESC, id DESC);"
    "CREATE INDEX outbox_pending ON outbox(status) WHERE status=0;"
    "CREATE INDEX outbox_saga ON outbox(saga_id);"
    "CREATE INDEX outbox_created ON outbox(created_us DESC, id DESC);"
    "CREATE INDEX outbox_status ON outbox(status, created_us DESC, id DESC);"
    "INSERT INTO sagas VALUES('0f8fad5b-d9cb-469f-a165-70867728950e','sta','{}','k1',2,3,"
    "'boom',1,1,2);"
    "INSERT INTO steps VALUES('0f8fad5b-d9cb-469f-a165-70867728950e',0,'anonymizer',2,1,1,2,"
    "NULL,NULL,0);"
    "INSERT INTO steps VALUES('0f8fad5b-d9cb-469f-a165-70867728950e',1,'tokenizer',3,1,3,4,"
    "'down',NULL,0);"
    "INSERT INTO outbox VALUES('1f8fad5b-d9cb-469f-a165-70867728950e',"
    "'0f8fad5b-d9cb-469f-a165-70867728950e','t',NULL,'{}',1,0,0,1,2,1,NULL,0);"
    "INSERT INTO outbox VALUES('2f8fad5b-d9cb-469f-a165-70867728950e',"
    "'0f8fad5b-d9cb-469f-a165-70867728950e','t_comp',NULL,'{}',5,0,1,0,3,2,'refused',9);"
    "PRAGMA user_version=2;";

#define OLD_SAGA "0f8fad5b-d9cb-469f-a165-70867728950e"
#define OLD_EVENT "1f8fad5b-d9cb-469f-a165-70867728950e"

static void make_old_db(const tmpdb *t, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void count_def(void *arg, const char *name, int version, const char *canonical)
{
    (void)name;
    (void)version;
    (void)canonical;
    (*(int *)arg)++;
}

/* After an upgrade from `from`: the old rows read as before, as version 1
 * of their type, the new columns with their defaults; the new table,
 * columns and index work. */
static void check_upgraded(const tmpdb *t, int from)
{
    sg_store *s = open_sync(t->path);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    sg_saga_rec rec;
    assert_int_equal(sg_store_get(rd, OLD_SAGA, &rec), SG_OK);
    assert_string_equal(rec.def_name, "sta");
    assert_int_equal(rec.def_version, 1);
    assert_int_equal(rec.status, SG_SAGA_FAILED);
    assert_string_equal(rec.error, "boom");
    assert_int_equal(rec.nsteps, 2);
    assert_string_equal(rec.steps[0].name, "anonymizer");
    assert_int_equal(rec.steps[0].next_us, 0);
    assert_string_equal(rec.steps[1].error, "down");
    /* Step 0's compensation, seen through the view; step 1 has none. */
    assert_int_equal(rec.steps[0].comp.present, 1);
    assert_int_equal(rec.steps[0].comp.attempts, 2);
    assert_int_equal(rec.steps[0].comp.created_us, 5);
    assert_int_equal(rec.steps[0].comp.status, from == 1 ? SG_EVENT_PENDING : SG_EVENT_PARKED);
    assert_int_equal(rec.steps[0].comp.updated_us, from == 1 ? 0 : 9);
    assert_str_eq_or_null(rec.steps[0].comp.error, from == 1 ? NULL : "refused");
    assert_int_equal(rec.steps[1].comp.present, 0);
    sg_saga_rec_free(&rec);

    sg_event_rec ev;
    assert_int_equal(sg_store_get_event(rd, OLD_EVENT, &ev), SG_OK);
    assert_int_equal(ev.attempts, 1);
    assert_null(ev.last_error);
    assert_int_equal(ev.updated_us, 0);
    assert_null(ev.method);
    assert_null(ev.headers);
    assert_int_equal(ev.timeout_ms, 0);
    sg_event_rec_free(&ev);

    /* The type filter finds the old saga by its type. */
    sg_list_query q = {-1, 10, NULL, "sta"};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(rd, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(v[0].def_version, 1);
    sg_saga_rec_free(&v[0]);
    free(v);

    /* The new table starts empty and takes definitions; new sagas keep
     * their version in the added column. */
    int ndefs = 0;
    assert_int_equal(sg_store_load_defs(rd, count_def, &ndefs), SG_OK);
    assert_int_equal(ndefs, 0);
    sg_write *w = sg_write_create();
    sg_write_def_insert(w, "sta", 2, "{\"steps\":[]}", 10);
    sg_saga_rec nr;
    make_saga(&nr, "{}", 2, NULL, 11);
    nr.def_version = 2;
    sg_write_saga_insert(w, &nr);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    assert_int_equal(sg_store_load_defs(rd, count_def, &ndefs), SG_OK);
    assert_int_equal(ndefs, 1);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(rd, nr.id, &got), SG_OK);
    assert_int_equal(got.def_version, 2);
    sg_saga_rec_free(&got);
    sg_saga_rec_free(&nr);
    sg_store_reader_close(rd);
    sg_store_close(s);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), SG_SQ_SCHEMA_VERSION);
    assert_int_equal(query_int(db,
                               "SELECT count(*) FROM sqlite_master WHERE type='index' AND name IN "
                               "('sagas_type','outbox_created','outbox_status')"),
                     3);
    sqlite3_close(db);
    /* Opening the upgraded file again changes nothing. */
    sg_store_close(open_sync(t->path));
}

/* A database written by a sagad before retries and parking (schema 1) is
 * upgraded in place, through schemas 2 and 3, to 4. */
static void test_schema_upgrade_v1(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    make_old_db(&t, v1_sql);
    check_upgraded(&t, 1);
    tmpdb_remove(&t);
}

/* A database written before definitions had versions (schema 2). */
static void test_schema_upgrade_v2(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    make_old_db(&t, v2_sql);
    check_upgraded(&t, 2);
    tmpdb_remove(&t);
}

/* The upgrade is one transaction: when a statement of it fails (here an
 * outbox that somehow already has a `headers` column), the open fails and
 * the file is left exactly at schema 2, without half of the upgrade. */
static void test_schema_upgrade_atomic(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    make_old_db(&t, v2_sql);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(db, "ALTER TABLE outbox ADD COLUMN headers TEXT", NULL, NULL, NULL),
        SQLITE_OK);
    char err[512];
    assert_int_equal(try_open(t.path, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "upgrading schema from version 2"));
    assert_non_null(strstr(err, "duplicate column name: headers"));
    assert_int_equal(query_int(db, "PRAGMA user_version"), 2);
    assert_int_equal(query_int(db, "SELECT count(*) FROM pragma_table_info('sagas') WHERE "
                                   "name='def_version'"),
                     0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE "
                                   "name='definitions'"),
                     0);
    sqlite3_close(db);
    tmpdb_remove(&t);
}

/* One owner per database: a second open of the same path (here, in the
 * same process: flock locks belong to the open file description, so it
 * conflicts too) is refused with SG_EUNAVAIL and a clear message, without
 * disturbing the first store; once the first closes, the path opens. */
static void test_exclusive_owner(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *first = open_sync(t.path);
    sg_saga_rec a, b;
    make_saga(&a, "{}", 2, "a", 1);
    make_saga(&b, "{}", 2, "b", 2);
    insert_sync(first, &a);

    char err[1024], want[1024], url[320];
    snprintf(want, sizeof want, "store %s is in use by another sagad (lock file %s.lock)", t.path,
             t.path);
    assert_int_equal(try_open(t.path, err, sizeof err), SG_EUNAVAIL);
    assert_string_equal(err, want);
    /* Every spelling of the URL names the same file, so the same lock. */
    snprintf(url, sizeof url, "sqlite://%s", t.path);
    assert_int_equal(try_open(url, err, sizeof err), SG_EUNAVAIL);
    assert_string_equal(err, want);

    /* Another process is refused as well. */
    assert_int_not_equal(locked_elsewhere(t.path), 0);

    /* The refused opens touched no descriptor of the database: the first
     * store still writes (its SQLite locks are intact) and reads. */
    insert_sync(first, &b);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(first, &rd, NULL, 0), SG_OK);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(rd, b.id, &got), SG_OK);
    sg_saga_rec_free(&got);
    sg_store_reader_close(rd);
    sg_store_close(first);

    /* Released on close: the next owner opens and sees both sagas. */
    sg_store *second = open_sync(t.path);
    assert_int_equal(sg_store_reader_open(second, &rd, NULL, 0), SG_OK);
    assert_int_equal(sg_store_get(rd, a.id, &got), SG_OK);
    sg_saga_rec_free(&got);
    assert_int_equal(sg_store_get(rd, b.id, &got), SG_OK);
    sg_saga_rec_free(&got);
    sg_store_reader_close(rd);
    assert_int_not_equal(locked_elsewhere(t.path), 0);
    sg_store_close(second);
    assert_int_not_equal(locked_elsewhere(t.path), 1);
    /* The lock file stays (0644); it is never unlinked. */
    struct stat sb;
    char lp[320];
    snprintf(lp, sizeof lp, "%s.lock", t.path);
    assert_int_equal(stat(lp, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644 & ~current_umask());

    /* A failed open (bad schema version) releases the lock again. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=99", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(try_open(t.path, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "newer"));
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=6", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(try_open(t.path, err, sizeof err), SG_OK);

    sg_saga_rec_free(&a);
    sg_saga_rec_free(&b);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unsupported_scheme),
        cmocka_unit_test(test_bad_paths),
        cmocka_unit_test(test_url_forms),
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_schema_upgrade_v1),
        cmocka_unit_test(test_schema_upgrade_v2),
        cmocka_unit_test(test_schema_upgrade_atomic),
        cmocka_unit_test(test_exclusive_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
