/* What only the PostgreSQL backend has: leases for several processes on
 * one database, the schema version table, password-free messages, and
 * connections lost under the store (the server ended them, as on a
 * restart): the failed batch follows retry_failed, the writer and the
 * readers connect again on their next call, the lease outlives the
 * session (a COMMIT lost unanswered: test_pg_doubt). Runs on a throwaway server
 * (unit/store/test_pg@postgres); without SG_TEST_STORE_URL every case skips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdatomic.h>

#include "store/helpers.h"
#include "store/store_int.h"

#define NEED_SERVER() NEED_PG_SERVER("test_pg")

static sg_status try_open(const char *url, const sg_store_options *o, sg_store **out, char *err,
                          size_t n)
{
    err[0] = '\0';
    return sg_store_open(out, url, NULL, o, err, n);
}

/* Ends every other session on t's database, as a server restart would. */
static void kill_sessions(const tmpdb *t)
{
    pg_exec_url(t->path, "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE "
                         "datname=current_database() AND pid<>pg_backend_pid()");
}

/* Unfinished sagas s's recovery would resume: its own only. */
static int count_unfinished(sg_store *s)
{
    sg_store_reader *r = NULL;
    char next[SG_CURSOR_MAX];
    int n = 0;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    assert_int_equal(sg_store_load_unfinished_page(r, NULL, 1000, count_cb, &n, next), SG_OK);
    sg_store_reader_close(r);
    return n;
}

static long long epoch_of(sg_store *s)
{
    char o[SG_OWNER_MAX];
    sg_store_owner(s, o);
    const char *slash = strchr(o, '/');
    assert_non_null(slash);
    return strtoll(slash + 1, NULL, 10);
}

/* Several processes on one database (design §7): each its own lease and
 * its own sagas; a lease lost fences every later write; the expired
 * lease's sagas are adopted by another, once; a clean close hands them
 * over at once. */
static void test_leases(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *a = open_sync(t.path), *b = NULL;
    char url[400], err[512];
    /* postgresql:// is the same backend and the same database. */
    snprintf(url, sizeof url, "postgresql://%s", t.path + strlen("postgres://"));
    assert_int_equal(try_open(url, NULL, &b, err, sizeof err), SG_OK);
    assert_true(sg_store_shared(a) && sg_store_shared(b));
    char oa[SG_OWNER_MAX], ob[SG_OWNER_MAX];
    sg_store_owner(a, oa);
    sg_store_owner(b, ob);
    assert_string_not_equal(oa, ob);
    assert_true(epoch_of(b) > epoch_of(a)); /* the fencing token only grows */
    assert_true(sg_store_lease_until(a) > uv_hrtime() / 1000000);

    sg_saga_rec x, y;
    assert_int_equal(insert_one(a, &x, 1), SG_OK);
    assert_int_equal(count_unfinished(a), 1);
    assert_int_equal(count_unfinished(b), 0); /* a's, not b's */
    assert_int_equal(adopt(b), 0);            /* a's lease holds */

    /* a's lease runs out (a paused process): b takes its saga over. */
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE sg_leases SET expires_us=0 WHERE owner='%.36s'", oa);
    pg_exec_url(t.path, sql);
    assert_int_equal(adopt(b), 1);
    assert_int_equal(adopt(b), 0); /* once */
    assert_int_equal(count_unfinished(b), 1);
    assert_int_equal(pg_exec_url(t.path, "SELECT count(*) FROM sg_leases"), 1);

    /* a wakes: nothing it writes lands, ever again. */
    sg_write *w = sg_write_create();
    sg_write_saga_update(w, x.id, SG_SAGA_FAILED, SG_COMP_NONE, "late", 5);
    assert_int_equal(sg_store_commit_sync(a, w), SG_EFENCED);
    assert_int_equal(sg_store_lease_until(a), 0);
    assert_int_equal(sg_store_health(a, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "lease"));
    assert_int_equal(insert_one(a, &y, 2), SG_EFENCED);
    assert_int_equal(pg_exec_url(t.path, "SELECT count(*) FROM sagas"), 1);
    assert_int_equal(pg_exec_url(t.path, "SELECT count(*) FROM sagas WHERE status=0"), 1);
    sg_store_close(a);

    /* b finishes it; a FAILED saga is claimed by whoever redrives it. */
    w = sg_write_create();
    sg_write_saga_update(w, x.id, SG_SAGA_FAILED, SG_COMP_NONE, "failed", 6);
    assert_int_equal(sg_store_commit_sync(b, w), SG_OK);
    sg_store *c = open_sync(t.path);
    w = sg_write_create();
    sg_write_saga_update(w, x.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 7);
    assert_int_equal(sg_store_commit_sync(c, w), SG_ENOTFOUND); /* b's, not c's */
    w = sg_write_create();
    sg_write_saga_expect(w, x.id, SG_SAGA_FAILED, SG_COMP_NONE);
    sg_write_saga_claim(w, x.id);
    sg_write_saga_update(w, x.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 7);
    assert_int_equal(sg_store_commit_sync(c, w), SG_OK);
    assert_int_equal(count_unfinished(c), 1);
    assert_int_equal(count_unfinished(b), 0);

    /* A clean close gives the lease up: the next store takes over at once. */
    sg_store_close(c);
    sg_store *d = open_sync(t.path);
    assert_int_equal(count_unfinished(d), 1);
    sg_store_close(d);
    sg_store_close(b);
    sg_saga_rec_free(&x);
    sg_saga_rec_free(&y);
    tmpdb_remove(&t);
}

static void test_schema_version(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_store_close(s);
    assert_int_equal(pg_exec_url(t.path, "SELECT version FROM sg_schema WHERE id=1"), 2);
    pg_exec_url(t.path, "UPDATE sg_schema SET version=99 WHERE id=1");
    char err[512];
    assert_int_equal(try_open(t.path, NULL, &s, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "schema version 99, newer than this sagad supports"));
    pg_exec_url(t.path, "UPDATE sg_schema SET version=2 WHERE id=1");
    /* The refused open left nothing behind. */
    s = open_sync(t.path);
    sg_store_close(s);
    /* A database of schema 1 (before trace context) gets its columns. */
    pg_exec_url(t.path, "ALTER TABLE sagas DROP COLUMN trace_id, DROP COLUMN trace_flags, DROP "
                        "COLUMN tracestate");
    pg_exec_url(t.path, "UPDATE sg_schema SET version=1 WHERE id=1");
    s = open_sync(t.path);
    sg_store_close(s);
    assert_int_equal(pg_exec_url(t.path, "SELECT version FROM sg_schema WHERE id=1"), 2);
    assert_int_equal(pg_exec_url(t.path, "SELECT count(*) FROM information_schema.columns WHERE "
                                         "table_name='sagas' AND column_name IN ('trace_id', "
                                         "'trace_flags', 'tracestate')"),
                     3);
    tmpdb_remove(&t);
}

static void test_no_server(void **state)
{
    (void)state;
    NEED_SERVER();
    char err[512];
    sg_store *s = NULL;
    /* Port 1: nothing listens there. */
    assert_int_equal(try_open("postgres://sagad:s3cret@127.0.0.1:1/x?connect_timeout=2", NULL, &s,
                              err, sizeof err),
                     SG_EIO);
    assert_null(s);
    assert_non_null(strstr(err, "cannot connect to PostgreSQL"));
    assert_null(strstr(err, "s3cret")); /* never the password */
    assert_non_null(strstr(err, "sagad:***@"));
}

/* The server ends every session: the batch in flight fails (SG_EIO,
 * retry_failed off), health says why; the next batch connects again and
 * commits, health recovers, and the owner lock is held again. A reader's
 * next call fails, the one after succeeds. */
static void test_connection_lost(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    sg_saga_rec a, b, c, got;
    assert_int_equal(insert_one(s, &a, 1), SG_OK);
    assert_int_equal(sg_store_get(rd, a.id, &got), SG_OK);
    sg_saga_rec_free(&got);

    kill_sessions(&t);
    assert_int_equal(insert_one(s, &b, 2), SG_EIO);
    char why[256];
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_EIO);
    assert_non_null(strstr(why, "PostgreSQL"));
    assert_int_equal(insert_one(s, &c, 3), SG_OK);
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_OK);

    assert_int_equal(sg_store_get(rd, a.id, &got), SG_EIO);
    assert_non_null(strstr(sg_store_reader_error(rd), "PostgreSQL"));
    assert_int_equal(sg_store_get(rd, c.id, &got), SG_OK);
    sg_saga_rec_free(&got);
    assert_int_equal(sg_store_get(rd, b.id, &got), SG_ENOTFOUND);

    /* The lease outlived the session: the new one renews it. */
    assert_true(sg_store_lease_until(s) > uv_hrtime() / 1000000);
    assert_int_equal(pg_exec_url(t.path, "SELECT count(*) FROM sg_leases"), 1);

    sg_store_reader_close(rd);
    sg_store_close(s);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&b);
    sg_saga_rec_free(&c);
    tmpdb_remove(&t);
}

typedef struct counted {
    int done;
    int ok;
} counted;

static void on_counted(void *arg, sg_status st)
{
    counted *c = arg;
    c->done++;
    c->ok += st == SG_OK;
}

/* With retry_failed (what sagad runs with), writes caught by the lost
 * connection are retried on a new one: none fails, none is lost. */
static void test_connection_lost_retried(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_retrying(t.path, &loop);
    sg_saga_rec a;
    assert_int_equal(insert_one(s, &a, 1), SG_OK);

    kill_sessions(&t);
    enum { N = 20 };
    sg_event_rec ev[N];
    counted c = {0, 0};
    for (int i = 0; i < N; i++) {
        make_event(&ev[i], a.id, "tokenizer_event", 0, 10 + i);
        sg_write *w = sg_write_create();
        sg_write_event_insert(w, &ev[i]);
        sg_write_saga_update(w, a.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 10 + i);
        assert_int_equal(sg_store_submit(s, w, on_counted, &c), SG_OK);
    }
    while (c.done < N)
        uv_run(&loop, UV_RUN_ONCE);
    assert_int_equal(c.ok, N);
    assert_int_equal(pg_count(t.path, "outbox"), N);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);
    sg_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    for (int i = 0; i < N; i++)
        sg_event_rec_free(&ev[i]);
    sg_saga_rec_free(&a);
    tmpdb_remove(&t);
}

/* Values that TEXT would refuse (NUL, invalid UTF-8) in the byte columns
 * come back as they went in. */
static void test_any_bytes(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec r, got;
    static const char req[] = "{\"a\":\"\xff\xfe\"}\0tail";
    make_saga(&r, req, sizeof req, "key-\xc3\x28", 5);
    r.steps[0].response = sg_xmemdup("\x00\x01\xff", 3);
    r.steps[0].response_len = 3;
    r.steps[0].error = sg_xstrdup("bad \xe2\x82 byte");
    insert_sync(s, &r);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    assert_int_equal(sg_store_get_by_idem(rd, "key-\xc3\x28", &got), SG_OK);
    assert_saga_eq(&r, &got);
    sg_saga_rec_free(&got);
    sg_store_reader_close(rd);
    sg_store_close(s);
    sg_saga_rec_free(&r);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leases),
        cmocka_unit_test(test_schema_version),
        cmocka_unit_test(test_no_server),
        cmocka_unit_test(test_connection_lost),
        cmocka_unit_test(test_connection_lost_retried),
        cmocka_unit_test(test_any_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
