/* SQLite schema 5 and the writer's cheaper statements: a file of schema 3
 * is upgraded in place (its rows byte for byte, the key still unique), a
 * failed upgrade leaves it at 3; a saga's steps are inserted with one
 * statement, two adjacent step updates of a write share one, and each
 * write still gets the result it had when every step was its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "store/helpers.h"
#include "store/sqlite_int.h"
#include "store/store_int.h"

/* Schema 3 as sagad created it, with two sagas (one with a key, one
 * without), a step event and a pending compensation. */
static const char v3_sql[] =
    "CREATE TABLE sagas( id TEXT PRIMARY KEY, def_name TEXT, def_version INTEGER NOT NULL "
    "DEFAULT 1, request BLOB NOT NULL, idem_key TEXT UNIQUE, status INTEGER NOT NULL, "
    "comp_status INTEGER NOT NULL, error TEXT, created_us INTEGER NOT NULL, updated_us INTEGER "
    "NOT NULL, nsteps INTEGER NOT NULL);"
    "CREATE TABLE steps( saga_id TEXT NOT NULL, idx INTEGER NOT NULL, name TEXT, status INTEGER "
    "NOT NULL, attempts INTEGER NOT NULL, started_us INTEGER NOT NULL, finished_us INTEGER NOT "
    "NULL, error TEXT, response BLOB, next_us INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(saga_id, "
    "idx)) WITHOUT ROWID;"
    "CREATE TABLE outbox( id TEXT PRIMARY KEY, saga_id TEXT NOT NULL, topic TEXT, target TEXT, "
    "payload BLOB, created_us INTEGER NOT NULL, deadline_us INTEGER NOT NULL, compensation "
    "INTEGER NOT NULL, step_index INTEGER NOT NULL, status INTEGER NOT NULL, attempts INTEGER NOT "
    "NULL, last_error TEXT, updated_us INTEGER NOT NULL DEFAULT 0, method TEXT, headers TEXT, "
    "timeout_ms INTEGER NOT NULL DEFAULT 0, started_us INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE definitions( name TEXT NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL, "
    "created_us INTEGER NOT NULL, PRIMARY KEY(name, version)) WITHOUT ROWID;"
    "CREATE INDEX sagas_created ON sagas(created_us, id);"
    "CREATE INDEX sagas_status ON sagas(status, created_us, id);"
    "CREATE INDEX sagas_type ON sagas(def_name, created_us, id);"
    "CREATE INDEX outbox_pending ON outbox(status) WHERE status=0;"
    "CREATE INDEX outbox_saga ON outbox(saga_id);"
    "CREATE INDEX outbox_created ON outbox(created_us, id);"
    "CREATE INDEX outbox_status ON outbox(status, created_us, id);"
    "INSERT INTO sagas(rowid, id, def_name, def_version, request, idem_key, status, comp_status,"
    " error, created_us, updated_us, nsteps) VALUES"
    " (7, '0f8fad5b-d9cb-469f-a165-70867728950e', 'sta', 1, X'7B2261223A225C7530303030227D',"
    " 'k1', 0, 0, NULL, 10, 12, 3),"
    " (9, '1f8fad5b-d9cb-469f-a165-70867728950e', 'order', 2, '{}', NULL, 2, 1, 'boom', 20,"
    " 25, 2);"
    "INSERT INTO steps VALUES"
    " ('0f8fad5b-d9cb-469f-a165-70867728950e', 0, 'anonymizer', 2, 1, 10, 11, NULL,"
    " X'7B2278223A317D', 0),"
    " ('0f8fad5b-d9cb-469f-a165-70867728950e', 1, 'tokenizer', 1, 1, 12, 0, NULL, NULL, 0),"
    " ('0f8fad5b-d9cb-469f-a165-70867728950e', 2, 'ai_model', 0, 0, 0, 0, NULL, NULL, 0),"
    " ('1f8fad5b-d9cb-469f-a165-70867728950e', 0, 'reserve', 2, 1, 20, 21, NULL, '{}', 0),"
    " ('1f8fad5b-d9cb-469f-a165-70867728950e', 1, 'charge', 3, 2, 22, 24, 'down', NULL, 0);"
    "INSERT INTO outbox VALUES"
    " ('2f8fad5b-d9cb-469f-a165-70867728950e', '0f8fad5b-d9cb-469f-a165-70867728950e',"
    " 'tokenizer_event', NULL, '{}', 12, 99, 0, 1, 0, 0, NULL, 12, NULL, NULL, 0, 0),"
    " ('3f8fad5b-d9cb-469f-a165-70867728950e', '1f8fad5b-d9cb-469f-a165-70867728950e', NULL,"
    " 'http://x/undo', '{}', 25, 0, 1, 0, 0, 1, 'refused', 26, 'DELETE', 'A: b', 500, 26);"
    "PRAGMA user_version=3;";

#define SAGA_A "0f8fad5b-d9cb-469f-a165-70867728950e"
#define SAGA_B "1f8fad5b-d9cb-469f-a165-70867728950e"

/* Every row of the three tables, each column quoted (blobs in hex), in
 * key order: what an upgrade must leave exactly as it was. */
static const char rows_sql[] =
    "SELECT group_concat(r, '|') FROM ("
    " SELECT 'S' || quote(rowid) || quote(id) || quote(def_name) || quote(def_version) ||"
    " quote(request) || quote(idem_key) || quote(status) || quote(comp_status) || quote(error) ||"
    " quote(created_us) || quote(updated_us) || quote(nsteps) AS r FROM sagas"
    " UNION ALL SELECT 'T' || quote(saga_id) || quote(idx) || quote(name) || quote(status) ||"
    " quote(attempts) || quote(started_us) || quote(finished_us) || quote(error) ||"
    " quote(response) || quote(next_us) FROM steps"
    " UNION ALL SELECT 'O' || quote(id) || quote(saga_id) || quote(topic) || quote(target) ||"
    " quote(payload) || quote(created_us) || quote(deadline_us) || quote(compensation) ||"
    " quote(step_index) || quote(status) || quote(attempts) || quote(last_error) ||"
    " quote(updated_us) || quote(method) || quote(headers) || quote(timeout_ms) ||"
    " quote(started_us) FROM outbox"
    " ORDER BY 1)";

static char *query_text(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    const char *v = (const char *)sqlite3_column_text(st, 0);
    char *out = sg_xstrdup(v ? v : "");
    sqlite3_finalize(st);
    return out;
}

static char *file_rows(const tmpdb *t)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
    char *rows = query_text(db, rows_sql);
    sqlite3_close(db);
    return rows;
}

static void make_db(const tmpdb *t, const char *sql)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static sg_store *open_store(const tmpdb *t)
{
    sg_store *s = NULL;
    char err[512] = "";
    sg_status st = sg_store_open(&s, t->path, NULL, NULL, err, sizeof err);
    if (st != SG_OK) fprintf(stderr, "open: %s\n", err);
    assert_int_equal(st, SG_OK);
    return s;
}

static void count_event(void *arg, sg_event_rec *ev)
{
    (*(int *)arg)++;
    sg_event_rec_free(ev);
    free(ev);
}

/* A schema 3 file is upgraded to 4 on open: every row as it was (rowids
 * too), the key's index partial and still unique, outbox_pending gone,
 * and the old records read as before. Opening it again changes nothing. */
static void test_upgrade_from_v3(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    make_db(&t, v3_sql);
    char *before = file_rows(&t);
    sg_store *s = open_store(&t);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);

    sg_saga_rec rec;
    assert_int_equal(sg_store_get(rd, SAGA_A, &rec), SG_OK);
    assert_bytes_eq(rec.request, rec.request_len, "{\"a\":\"\\u0000\"}", 14);
    assert_string_equal(rec.idem_key, "k1");
    assert_int_equal(rec.status, SG_SAGA_IN_PROGRESS);
    assert_int_equal(rec.nsteps, 3);
    assert_string_equal(rec.steps[2].name, "ai_model");
    assert_bytes_eq(rec.steps[0].response, rec.steps[0].response_len, "{\"x\":1}", 7);
    sg_saga_rec_free(&rec);
    assert_int_equal(sg_store_get_by_idem(rd, "k1", &rec), SG_OK);
    assert_string_equal(rec.id, SAGA_A);
    sg_saga_rec_free(&rec);
    assert_int_equal(sg_store_get(rd, SAGA_B, &rec), SG_OK);
    assert_null(rec.idem_key);
    assert_int_equal(rec.def_version, 2);
    assert_string_equal(rec.error, "boom");
    assert_int_equal(rec.steps[0].comp.present, 1);
    assert_string_equal(rec.steps[0].comp.error, "refused");
    assert_int_equal(rec.steps[1].comp.present, 0);
    sg_saga_rec_free(&rec);

    /* Listings by status and by type, and recovery, see the old rows. */
    sg_list_query q = {SG_SAGA_FAILED, 10, NULL, NULL};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(rd, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, SAGA_B);
    sg_store_free_sagas(v, n);
    sg_list_query qt = {-1, 10, NULL, "sta"};
    assert_int_equal(sg_store_list(rd, &qt, &v, &n, next), SG_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, SAGA_A);
    sg_store_free_sagas(v, n);
    int pending = 0;
    assert_int_equal(sg_store_load_pending_events(rd, count_event, &pending), SG_OK);
    assert_int_equal(pending, 2);

    /* The key stays unique; sagas without one do not collide. */
    sg_saga_rec dup, k0, k1;
    make_saga(&dup, "{}", 2, "k1", 30);
    make_saga(&k0, "{}", 2, NULL, 31);
    make_saga(&k1, "{}", 2, NULL, 32);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &dup);
    assert_int_equal(sg_store_commit_sync(s, w), SG_ECONFLICT);
    w = sg_write_create();
    sg_write_saga_insert(w, &k0);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    w = sg_write_create();
    sg_write_saga_insert(w, &k1);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    assert_int_equal(sg_store_get(rd, dup.id, &rec), SG_ENOTFOUND);
    sg_saga_rec_free(&dup);
    sg_saga_rec_free(&k0);
    sg_saga_rec_free(&k1);
    sg_store_reader_close(rd);
    sg_store_close(s);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), SG_SQ_SCHEMA_VERSION);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                                   "name='sagas_idem' AND sql LIKE '%UNIQUE%' AND "
                                   "sql LIKE '%WHERE idem_key IS NOT NULL%'"),
                     1);
    /* The sagas' indexes: its id, the key (partial) and the three listings. */
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                                   "tbl_name='sagas'"),
                     5);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                   "('outbox_pending','sagas_v4')"),
                     0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                                   "sql LIKE '% DESC%'"),
                     0);
    /* The old rows are as they were; the two new sagas come after them. */
    assert_int_equal(sqlite3_exec(db,
                                  "DELETE FROM steps WHERE saga_id NOT IN ('" SAGA_A "','" SAGA_B
                                  "'); DELETE FROM sagas WHERE rowid > 9",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    char *after = query_text(db, rows_sql);
    assert_string_equal(after, before);
    char *check = query_text(db, "PRAGMA integrity_check");
    assert_string_equal(check, "ok");
    free(check);
    sqlite3_close(db);
    free(after);
    free(before);

    /* Opening the upgraded file again changes nothing. */
    before = file_rows(&t);
    sg_store_close(open_store(&t));
    after = file_rows(&t);
    assert_string_equal(after, before);
    free(after);
    free(before);
    tmpdb_remove(&t);
}

/* The upgrades are one transaction: when the second fails (here a table
 * in the way of the rebuilt sagas) the file stays at schema 3 exactly,
 * without the first's columns either. */
static void test_upgrade_from_v3_atomic(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    make_db(&t, v3_sql);
    make_db(&t, "CREATE TABLE sagas_v5(x)");
    char *before = file_rows(&t);
    sg_store *s = NULL;
    char err[512] = "";
    assert_int_equal(sg_store_open(&s, t.path, NULL, NULL, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "upgrading schema from version 4"));
    assert_non_null(strstr(err, "sagas_v5 already exists"));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), 3);
    assert_int_equal(query_int(db, "SELECT count(*) FROM pragma_table_info('sagas') WHERE "
                                   "name='trace_id'"),
                     0);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                                   "('outbox_pending','sqlite_autoindex_sagas_2')"),
                     2);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE name='sagas_idem'"),
                     0);
    char *after = query_text(db, rows_sql);
    assert_string_equal(after, before);
    sqlite3_close(db);
    free(after);
    free(before);
    tmpdb_remove(&t);
}

/* ---- the writer's statements ---------------------------------------------- */

static sg_store_backend *open_backend(const tmpdb *t)
{
    sg_store_backend *b = NULL;
    char err[256] = "";
    assert_int_equal(sg_store_sqlite_ops.open(&b, t->path, t->path, NULL, err, sizeof err), SG_OK);
    return b;
}

/* Runs writes[0..n) as one batch; returns the statements it ran (the
 * failure injection countdown set far beyond them counts them). */
static int run_batch(sg_store_backend *b, sg_write **w, size_t n, sg_status *res)
{
    enum { FAR = 1000000 };
    char err[256] = "";
    atomic_store(&sg_store_fail_countdown, FAR);
    assert_int_equal(sg_store_sqlite_ops.exec_batch(b, w, n, res, err, sizeof err), SG_OK);
    int left = atomic_exchange(&sg_store_fail_countdown, 0);
    for (size_t i = 0; i < n; i++)
        sg_write_destroy(w[i]);
    return FAR - left;
}

static int run_one(sg_store_backend *b, sg_write *w, sg_status want)
{
    sg_status res = SG_EIO;
    int n = run_batch(b, &w, 1, &res);
    assert_int_equal(res, want);
    return n;
}

static void get(sg_store_backend *b, const char *id, sg_saga_rec *out)
{
    sg_store_breader *r = NULL;
    char err[256] = "";
    assert_int_equal(sg_store_sqlite_ops.reader_open(b, &r, err, sizeof err), SG_OK);
    memset(out, 0, sizeof *out);
    assert_int_equal(sg_store_sqlite_ops.get(r, id, out, err, sizeof err), SG_OK);
    sg_store_sqlite_ops.reader_close(r);
}

static sg_step_rec step_state(sg_step_status status, int attempts, int64_t t, const char *resp)
{
    sg_step_rec s = {0};
    s.status = status;
    s.attempts = attempts;
    s.started_us = t;
    s.finished_us = status == SG_STEP_COMPLETED ? t + 1 : 0;
    s.response = (char *)resp;
    s.response_len = resp ? strlen(resp) : 0;
    return s;
}

/* The four writes of an STA saga that succeeds take 10 statements (and a
 * BEGIN and COMMIT each): the saga and its steps 2, each step move 3 (the
 * two steps in one, the event, the saga), the end 2. The saga reads back
 * exactly as written. */
static void test_sta_saga_statements(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store_backend *b = open_backend(&t);
    sg_saga_rec a;
    make_saga(&a, "{\"image_id\":\"img_123\"}", 22, NULL, 1);
    a.steps[0] = (sg_step_rec){
        .name = a.steps[0].name, .status = SG_STEP_RUNNING, .attempts = 1, .started_us = 1};
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &a);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 2);

    sg_event_rec ev;
    make_event(&ev, a.id, "tokenizer_event", 0, 2);
    sg_step_rec s0 = step_state(SG_STEP_COMPLETED, 1, 1, "{\"anonymized\":true}");
    sg_step_rec s1 = step_state(SG_STEP_RUNNING, 1, 2, NULL);
    w = sg_write_create();
    sg_write_step_update(w, a.id, 0, &s0);
    sg_write_event_insert(w, &ev);
    sg_write_step_update(w, a.id, 1, &s1);
    sg_write_saga_update(w, a.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 2);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 3);

    s1 = step_state(SG_STEP_COMPLETED, 1, 2, NULL);
    sg_step_rec s2 = step_state(SG_STEP_RUNNING, 1, 3, NULL);
    w = sg_write_create();
    sg_write_step_update(w, a.id, 1, &s1);
    sg_write_event_update(w, ev.id, SG_EVENT_DELIVERED, 1, NULL, 3);
    sg_write_step_update(w, a.id, 2, &s2);
    sg_write_saga_update(w, a.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 3);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 3);

    s2 = step_state(SG_STEP_COMPLETED, 1, 3, "{\"label\":\"cat\"}");
    w = sg_write_create();
    sg_write_step_update(w, a.id, 2, &s2);
    sg_write_saga_update(w, a.id, SG_SAGA_COMPLETED, SG_COMP_NONE, NULL, 4);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 2);

    sg_saga_rec got;
    get(b, a.id, &got);
    assert_int_equal(got.status, SG_SAGA_COMPLETED);
    assert_int_equal(got.updated_us, 4);
    const sg_step_rec *want[3] = {&s0, &s1, &s2};
    for (int i = 0; i < 3; i++) {
        assert_string_equal(got.steps[i].name, a.steps[i].name);
        assert_int_equal(got.steps[i].status, SG_STEP_COMPLETED);
        assert_int_equal(got.steps[i].attempts, 1);
        assert_int_equal(got.steps[i].started_us, want[i]->started_us);
        assert_int_equal(got.steps[i].finished_us, want[i]->finished_us);
        assert_bytes_eq(got.steps[i].response, got.steps[i].response_len, want[i]->response,
                        want[i]->response_len);
    }
    sg_saga_rec_free(&got);
    sg_saga_rec_free(&a);
    sg_event_rec_free(&ev);
    sg_store_sqlite_ops.close(b);
    tmpdb_remove(&t);
}

/* A saga of 9 steps: rows go in by 4, 4 and 1, in order, names kept. */
static void test_many_steps(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store_backend *b = open_backend(&t);
    sg_saga_rec a;
    make_saga(&a, "{}", 2, NULL, 1);
    for (size_t i = 0; i < a.nsteps; i++)
        free(a.steps[i].name);
    free(a.steps);
    a.nsteps = 9;
    a.steps = sg_xcalloc(a.nsteps, sizeof *a.steps);
    for (size_t i = 0; i < a.nsteps; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%zu", i);
        a.steps[i].name = sg_xstrdup(name);
        a.steps[i].attempts = (int)i;
        a.steps[i].next_us = (int64_t)i * 10;
    }
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &a);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 1 + 3);
    sg_saga_rec got;
    get(b, a.id, &got);
    assert_saga_eq(&got, &a);
    sg_saga_rec_free(&got);
    sg_saga_rec_free(&a);
    sg_store_sqlite_ops.close(b);
    tmpdb_remove(&t);
}

/* Step updates share a statement only when they may: adjacent steps of
 * one saga, in either order; otherwise each runs alone. A pair with a
 * missing step fails the write (SG_ENOTFOUND, nothing of it kept) as
 * before, and the other writes of the batch commit. */
static void test_step_pairs(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store_backend *b = open_backend(&t);
    sg_saga_rec a, c;
    make_saga(&a, "{}", 2, NULL, 1);
    make_saga(&c, "{}", 2, NULL, 2);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &a);
    sg_write_saga_insert(w, &c);
    run_one(b, w, SG_OK);

    /* Descending: one statement. */
    sg_step_rec x = step_state(SG_STEP_RUNNING, 2, 5, "{\"r\":2}");
    sg_step_rec y = step_state(SG_STEP_FAILED, 3, 6, NULL);
    y.error = (char *)"down";
    w = sg_write_create();
    sg_write_step_update(w, a.id, 2, &x);
    sg_write_step_update(w, a.id, 1, &y);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 1);
    a.steps[2].status = x.status, a.steps[2].attempts = 2, a.steps[2].started_us = 5;
    a.steps[2].response = sg_xstrdup("{\"r\":2}"), a.steps[2].response_len = 7;
    a.steps[1].status = y.status, a.steps[1].attempts = 3, a.steps[1].started_us = 6;
    a.steps[1].error = sg_xstrdup("down");

    /* Not adjacent, other sagas, the same step twice (the last wins):
     * each alone. */
    sg_step_rec z = step_state(SG_STEP_COMPLETED, 1, 7, NULL);
    w = sg_write_create();
    sg_write_step_update(w, c.id, 0, &z);
    sg_write_step_update(w, c.id, 2, &z);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 2);
    w = sg_write_create();
    sg_write_step_update(w, c.id, 1, &x);
    sg_write_step_update(w, a.id, 0, &x);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 2);
    w = sg_write_create();
    sg_write_step_update(w, c.id, 1, &y);
    sg_write_step_update(w, c.id, 1, &z);
    assert_int_equal(run_one(b, w, SG_OK), 2 + 2);
    a.steps[0].status = x.status, a.steps[0].attempts = 2, a.steps[0].started_us = 5;
    a.steps[0].response = sg_xstrdup("{\"r\":2}"), a.steps[0].response_len = 7;
    for (int i = 0; i < 3; i++) {
        c.steps[i].status = SG_STEP_COMPLETED;
        c.steps[i].attempts = 1;
        c.steps[i].started_us = 7;
        c.steps[i].finished_us = 8;
    }

    /* Step 2 and a step 3 that does not exist: the write fails as a
     * whole, the one after it in the batch commits. */
    sg_write *ws[2] = {sg_write_create(), sg_write_create()};
    sg_status res[2];
    sg_write_step_update(ws[0], a.id, 2, &z);
    sg_write_step_update(ws[0], a.id, 3, &z);
    sg_write_saga_update(ws[1], c.id, SG_SAGA_COMPLETED, SG_COMP_NONE, NULL, 9);
    run_batch(b, ws, 2, res);
    assert_int_equal(res[0], SG_ENOTFOUND);
    assert_int_equal(res[1], SG_OK);
    c.status = SG_SAGA_COMPLETED;
    c.updated_us = 9;

    /* A pair one of whose values is refused (here over the length limit)
     * runs alone again in its place: the write's result is that of its
     * first failing operation, as before, the taken event id. */
    sg_event_rec ev;
    make_event(&ev, a.id, "tokenizer_event", 0, 3);
    w = sg_write_create();
    sg_write_event_insert(w, &ev);
    run_one(b, w, SG_OK);
    char big[200];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sg_step_rec huge = step_state(SG_STEP_COMPLETED, 1, 9, big);
    sqlite3_limit(b->w.db, SQLITE_LIMIT_LENGTH, 100);
    w = sg_write_create();
    sg_write_step_update(w, a.id, 0, &z);
    sg_write_event_insert(w, &ev);
    sg_write_step_update(w, a.id, 1, &huge);
    run_one(b, w, SG_ECONFLICT);
    w = sg_write_create();
    sg_write_step_update(w, a.id, 0, &z);
    sg_write_step_update(w, a.id, 1, &huge);
    run_one(b, w, SG_ETOOBIG);
    sqlite3_limit(b->w.db, SQLITE_LIMIT_LENGTH, 1000000000);
    sg_event_rec_free(&ev);

    sg_saga_rec got;
    get(b, a.id, &got);
    assert_saga_eq(&got, &a);
    sg_saga_rec_free(&got);
    get(b, c.id, &got);
    assert_saga_eq(&got, &c);
    sg_saga_rec_free(&got);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&c);
    sg_store_sqlite_ops.close(b);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_upgrade_from_v3),     cmocka_unit_test(test_upgrade_from_v3_atomic),
        cmocka_unit_test(test_sta_saga_statements), cmocka_unit_test(test_many_steps),
        cmocka_unit_test(test_step_pairs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
