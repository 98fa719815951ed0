/* The error convention of reads: a failing call returns its sg_status and
 * leaves the reason in sg_store_reader_error (SQLite's message for SQLite
 * failures); a call that succeeds leaves "". Opening a reader reports into
 * the caller's buffer, and the store's health is a status with a reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/helpers.h"

/* Runs sql on the database through a connection of its own, behind the
 * store's back. */
static void exec_raw(const char *path, const char *sql)
{
    if (pg_path(path)) {
        (void)pg_exec_url(path, sql);
        return;
    }
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

static void count_event(void *arg, sg_event_rec *ev)
{
    (*(int *)arg)++;
    sg_event_rec_free(ev);
    free(ev);
}

/* A read that fails in SQLite (its steps table is gone) returns SG_EIO and
 * the reader names the failure; the next successful call clears it. */
static void test_read_fails(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec r;
    make_saga(&r, "{}", 2, "k", 1);
    insert_sync(s, &r);

    sg_store_reader *rd = NULL;
    char err[256] = "unchanged";
    assert_int_equal(sg_store_reader_open(s, &rd, err, sizeof err), SG_OK);
    assert_string_equal(err, "");
    assert_string_equal(sg_store_reader_error(rd), "");
    sg_saga_rec got;
    assert_int_equal(sg_store_get(rd, r.id, &got), SG_OK);
    assert_string_equal(sg_store_reader_error(rd), "");
    sg_saga_rec_free(&got);

    exec_raw(t.path, "DROP TABLE steps");
    assert_int_equal(sg_store_get(rd, r.id, &got), SG_EIO);
    const char *why = sg_store_reader_error(rd);
    assert_non_null(why);
    assert_non_null(strstr(why, STORE_NAME));
    assert_non_null(strstr(why, "steps"));
    assert_null(got.steps); /* out stays zeroed on failure */
    assert_string_equal(got.id, "");

    sg_list_query q = {-1, 10, NULL, NULL};
    sg_saga_rec *v = (sg_saga_rec *)&v;
    size_t n = 99;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(rd, &q, &v, &n, next), SG_EIO);
    assert_null(v);
    assert_int_equal(n, 0);
    assert_non_null(strstr(sg_store_reader_error(rd), STORE_NAME));

    assert_int_equal(sg_store_get_by_idem(rd, "k", &got), SG_EIO);
    assert_non_null(strstr(sg_store_reader_error(rd), "steps"));

    /* Events do not need the steps table: the next call succeeds and the
     * text goes away. */
    int nevents = 0;
    assert_int_equal(sg_store_load_pending_events(rd, count_event, &nevents), SG_OK);
    assert_int_equal(nevents, 0);
    assert_string_equal(sg_store_reader_error(rd), "");

    sg_store_reader_close(rd);
    assert_string_equal(sg_store_reader_error(NULL), "");
    sg_saga_rec_free(&r);
    sg_store_close(s);
    tmpdb_remove(&t);
}

/* Failures that are not SQLite's also leave a text: a malformed cursor,
 * a missing saga, bad arguments. */
static void test_other_failures(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);

    sg_saga_rec got;
    char missing[SG_ID_LEN + 1];
    sg_uuid_v4(missing);
    assert_int_equal(sg_store_get(rd, missing, &got), SG_ENOTFOUND);
    assert_true(sg_store_reader_error(rd)[0] != '\0');

    sg_list_query q = {-1, 10, "not-a-cursor", NULL};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(rd, &q, &v, &n, next), SG_EINVAL);
    assert_non_null(strstr(sg_store_reader_error(rd), "cursor"));
    q.after = NULL;
    q.limit = 0;
    assert_int_equal(sg_store_list(rd, &q, &v, &n, next), SG_EINVAL);
    assert_true(sg_store_reader_error(rd)[0] != '\0');

    q.limit = 10;
    assert_int_equal(sg_store_list(rd, &q, &v, &n, next), SG_OK);
    assert_string_equal(sg_store_reader_error(rd), "");
    assert_int_equal(n, 0);
    free(v);

    sg_store_reader_close(rd);
    sg_store_close(s);
    tmpdb_remove(&t);
}

typedef struct nested {
    sg_store_reader *rd;
    int calls;
} nested;

/* A load callback that makes a failing call on the same reader. */
static void take_and_fail(void *arg, sg_saga_rec *rec)
{
    nested *x = arg;
    sg_saga_rec got;
    x->calls++;
    assert_int_equal(sg_store_get(x->rd, "no-such-id", &got), SG_ENOTFOUND);
    sg_saga_rec_free(rec);
    free(rec);
}

/* The text belongs to the last call: a load that succeeds leaves "" even
 * when its callbacks' own calls on the reader failed. */
static void test_last_call_wins(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec r;
    make_saga(&r, "{}", 2, NULL, 1);
    insert_sync(s, &r);
    nested x = {NULL, 0};
    assert_int_equal(sg_store_reader_open(s, &x.rd, NULL, 0), SG_OK);
    assert_int_equal(sg_store_load_unfinished(x.rd, take_and_fail, &x), SG_OK);
    assert_int_equal(x.calls, 1);
    assert_string_equal(sg_store_reader_error(x.rd), "");
    sg_store_reader_close(x.rd);
    sg_saga_rec_free(&r);
    sg_store_close(s);
    tmpdb_remove(&t);
}

/* Opening a reader on a database that is gone fails with the reason in
 * the caller's buffer; NULL buffers are allowed. */
static void test_reader_open_fails(void **state)
{
    (void)state;
    SKIP_ON_POSTGRES(); /* a removed file; test_pg covers a server that is down */
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    assert_int_equal(unlink(t.path), 0);

    sg_store_reader *rd = (sg_store_reader *)&rd; /* must be reset to NULL */
    char err[512] = "";
    assert_int_equal(sg_store_reader_open(s, &rd, err, sizeof err), SG_EIO);
    assert_null(rd);
    assert_non_null(strstr(err, "cannot open SQLite database"));
    assert_non_null(strstr(err, t.path));
    rd = (sg_store_reader *)&rd;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_EIO);
    assert_null(rd);

    assert_int_equal(sg_store_reader_open(NULL, &rd, err, sizeof err), SG_EINVAL);
    assert_true(err[0] != '\0');
    sg_store_close(s);
    tmpdb_remove(&t);
}

/* Health is a status with a reason, not a truth value. */
static void test_health_status(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    char why[64] = "unchanged";
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_OK);
    assert_string_equal(why, "");
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);
    assert_int_equal(sg_store_health(NULL, why, sizeof why), SG_EINVAL);
    sg_store_close(s);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_fails),     cmocka_unit_test(test_other_failures),
        cmocka_unit_test(test_last_call_wins), cmocka_unit_test(test_reader_open_fails),
        cmocka_unit_test(test_health_status),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
