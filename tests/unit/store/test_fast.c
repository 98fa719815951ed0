/* What the writer does to be cheap, and that it changes no result: a batch
 * runs without savepoints until a write fails by itself (then it runs
 * again with one per write, and every write gets the result it would have
 * had); a saga update that keeps the status leaves the status index alone
 * and one that changes it moves the saga between the listings; the
 * compensation rule still holds when the event is not a compensation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "store/helpers.h"
#include "store/store_int.h"

/* Statements that exec_batch runs for writes[0..n), counted with the
 * failure injection countdown set far beyond them. */
static int statements(sg_store_backend *b, sg_write **w, size_t n, sg_status *res)
{
    enum { FAR = 1000000 };
    char err[256] = "";
    atomic_store(&sg_store_fail_countdown, FAR);
    assert_int_equal(sg_store_sqlite_ops.exec_batch(b, w, n, res, err, sizeof err), SG_OK);
    int left = atomic_exchange(&sg_store_fail_countdown, 0);
    return FAR - left;
}

static sg_store_backend *open_backend(const tmpdb *t)
{
    sg_store_backend *b = NULL;
    char err[256] = "";
    assert_int_equal(sg_store_sqlite_ops.open(&b, t->path, t->path, NULL, err, sizeof err), SG_OK);
    return b;
}

/* Writes that succeed run with no savepoint: BEGIN, their statements,
 * COMMIT. One that fails by itself makes the batch run again, with a
 * savepoint per write: the first pass up to the failure and a rollback,
 * then BEGIN, SAVEPOINT/RELEASE around each write, ROLLBACK TO for the
 * failed one, COMMIT. */
static void test_no_savepoint_unless_a_write_fails(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store_backend *b = open_backend(&t);
    sg_saga_rec a, c, dup;
    make_saga(&a, "{}", 2, "key", 1); /* the saga, its 3 steps in one */
    make_saga(&c, "{}", 2, NULL, 2);
    make_saga(&dup, "{}", 2, "key", 3);
    sg_write *w[3] = {sg_write_create(), sg_write_create(), sg_write_create()};
    sg_status res[3];
    sg_write_saga_insert(w[0], &a);
    sg_write_saga_insert(w[1], &c);
    assert_int_equal(statements(b, w, 2, res), 1 + 2 + 2 + 1);
    assert_int_equal(res[0], SG_OK);
    assert_int_equal(res[1], SG_OK);

    sg_write_destroy(w[0]);
    sg_write_destroy(w[1]);
    w[0] = sg_write_create();
    w[1] = sg_write_create();
    sg_saga_rec_free(&a);
    make_saga(&a, "{}", 2, NULL, 4);
    sg_write_saga_insert(w[0], &a);
    sg_write_saga_insert(w[1], &dup); /* the key is taken: fails alone */
    sg_write_saga_insert(w[2], &c);   /* its id is taken: fails alone too */
    int first = 1 + 2 + 1 + 1;        /* BEGIN, a's 2, dup's insert, ROLLBACK */
    int second = 1 + (1 + 2 + 1) + (1 + 1 + 1 + 1) + (1 + 1 + 1 + 1) + 1;
    assert_int_equal(statements(b, w, 3, res), first + second);
    assert_int_equal(res[0], SG_OK);
    assert_int_equal(res[1], SG_ECONFLICT);
    assert_int_equal(res[2], SG_ECONFLICT);

    sg_store_breader *r = NULL;
    char err[256] = "";
    assert_int_equal(sg_store_sqlite_ops.reader_open(b, &r, err, sizeof err), SG_OK);
    sg_saga_rec got;
    memset(&got, 0, sizeof got);
    assert_int_equal(sg_store_sqlite_ops.get(r, a.id, &got, err, sizeof err), SG_OK);
    assert_saga_eq(&got, &a);
    sg_saga_rec_free(&got);
    assert_int_equal(sg_store_sqlite_ops.get(r, dup.id, &got, err, sizeof err), SG_ENOTFOUND);
    sg_store_sqlite_ops.reader_close(r);

    for (int i = 0; i < 3; i++)
        sg_write_destroy(w[i]);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&c);
    sg_saga_rec_free(&dup);
    sg_store_sqlite_ops.close(b);
    tmpdb_remove(&t);
}

/* A write that fails after part of it applied (its saga inserted, then an
 * update of a step it does not have): in the first pass that part is
 * already in the transaction; nothing of it may stay, and the writes
 * before and after it commit. */
static void test_partly_applied_write_is_undone(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store_backend *b = open_backend(&t);
    sg_saga_rec a, bad, c;
    sg_event_rec ev;
    make_saga(&a, "{}", 2, NULL, 1);
    make_saga(&bad, "{}", 2, NULL, 2);
    make_saga(&c, "{}", 2, NULL, 3);
    make_event(&ev, bad.id, "tokenizer_event", 0, 2);
    sg_write *w[3] = {sg_write_create(), sg_write_create(), sg_write_create()};
    sg_status res[3];
    sg_write_saga_insert(w[0], &a);
    sg_write_saga_insert(w[1], &bad);
    sg_write_event_insert(w[1], &ev);
    sg_write_step_update(w[1], bad.id, 7, &bad.steps[0]); /* no step 7 */
    sg_write_saga_insert(w[2], &c);
    char err[256] = "";
    assert_int_equal(sg_store_sqlite_ops.exec_batch(b, w, 3, res, err, sizeof err), SG_OK);
    assert_int_equal(res[0], SG_OK);
    assert_int_equal(res[1], SG_ENOTFOUND);
    assert_int_equal(res[2], SG_OK);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(count_rows(db, "sagas"), 2);
    assert_int_equal(count_rows(db, "steps"), 6);
    assert_int_equal(count_rows(db, "outbox"), 0);
    sqlite3_close(db);

    for (int i = 0; i < 3; i++)
        sg_write_destroy(w[i]);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&bad);
    sg_saga_rec_free(&c);
    sg_event_rec_free(&ev);
    sg_store_sqlite_ops.close(b);
    tmpdb_remove(&t);
}

static size_t list_ids(sg_store_reader *r, int status, char ids[][SG_ID_LEN + 1], size_t max)
{
    sg_list_query q = {status, 100, NULL, NULL};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(r, &q, &v, &n, next), SG_OK);
    assert_true(n <= max);
    for (size_t i = 0; i < n; i++) {
        memcpy(ids[i], v[i].id, SG_ID_LEN + 1);
        sg_saga_rec_free(&v[i]);
    }
    free(v);
    return n;
}

/* Saga updates that keep the status (a step moved on) and one that
 * changes it: every field reads back as written, and the status filter
 * (served by sagas_status) lists the saga under its status only. An
 * update of a saga that does not exist is SG_ENOTFOUND either way. */
static void test_saga_update_keeps_the_status_index(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec a, other;
    make_saga(&a, "{}", 2, NULL, 10);
    make_saga(&other, "{}", 2, NULL, 20);
    insert_sync(s, &a);
    insert_sync(s, &other);

    sg_write *w = sg_write_create();
    sg_write_saga_update(w, a.id, SG_SAGA_IN_PROGRESS, SG_COMP_PENDING, "half", 11);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(r, a.id, &got), SG_OK);
    assert_int_equal(got.status, SG_SAGA_IN_PROGRESS);
    assert_int_equal(got.comp_status, SG_COMP_PENDING);
    assert_string_equal(got.error, "half");
    assert_int_equal(got.updated_us, 11);
    sg_saga_rec_free(&got);

    w = sg_write_create();
    sg_write_saga_update(w, a.id, SG_SAGA_FAILED, SG_COMP_NONE, NULL, 12);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    assert_int_equal(sg_store_get(r, a.id, &got), SG_OK);
    assert_int_equal(got.status, SG_SAGA_FAILED);
    assert_int_equal(got.comp_status, SG_COMP_NONE);
    assert_null(got.error);
    assert_int_equal(got.updated_us, 12);
    sg_saga_rec_free(&got);

    char ids[4][SG_ID_LEN + 1];
    assert_int_equal(list_ids(r, SG_SAGA_FAILED, ids, 4), 1);
    assert_string_equal(ids[0], a.id);
    assert_int_equal(list_ids(r, SG_SAGA_IN_PROGRESS, ids, 4), 1);
    assert_string_equal(ids[0], other.id);

    /* Back to IN_PROGRESS (a redrive): the first try matches nothing (the
     * stored status differs), the full update moves it. */
    w = sg_write_create();
    sg_write_saga_update(w, a.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 14);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    assert_int_equal(list_ids(r, SG_SAGA_FAILED, ids, 4), 0);
    assert_int_equal(list_ids(r, SG_SAGA_IN_PROGRESS, ids, 4), 2);
    assert_int_equal(sg_store_get(r, a.id, &got), SG_OK);
    assert_int_equal(got.status, SG_SAGA_IN_PROGRESS);
    assert_int_equal(got.updated_us, 14);
    sg_saga_rec_free(&got);

    char missing[SG_ID_LEN + 1];
    sg_uuid_v7(missing);
    w = sg_write_create();
    sg_write_saga_update(w, missing, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 13);
    assert_int_equal(sg_store_commit_sync(s, w), SG_ENOTFOUND);
    w = sg_write_create();
    sg_write_saga_update(w, missing, SG_SAGA_COMPLETED, SG_COMP_NONE, NULL, 13);
    assert_int_equal(sg_store_commit_sync(s, w), SG_ENOTFOUND);

    sg_store_reader_close(r);
    sg_store_close(s);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&other);
    tmpdb_remove(&t);
}

/* A step event's status change leaves its saga's comp_status and
 * updated_us alone; a compensation's moves them, in the same batch. */
static void test_comp_rule_only_for_compensations(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec a;
    sg_event_rec step, comp;
    make_saga(&a, "{}", 2, NULL, 10);
    a.comp_status = SG_COMP_PENDING;
    make_event(&step, a.id, "tokenizer_event", 0, 10);
    make_event(&comp, a.id, "tokenizer_compensation", 1, 10);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &a);
    sg_write_event_insert(w, &step);
    sg_write_event_insert(w, &comp);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);

    w = sg_write_create();
    sg_write_event_update(w, step.id, SG_EVENT_DELIVERED, 1, NULL, 20);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    sg_saga_rec got;
    assert_int_equal(sg_store_get(r, a.id, &got), SG_OK);
    assert_int_equal(got.comp_status, SG_COMP_PENDING);
    assert_int_equal(got.updated_us, 10);
    sg_saga_rec_free(&got);

    sg_event_rec ev;
    assert_int_equal(sg_store_get_event(r, step.id, &ev), SG_OK);
    assert_int_equal(ev.status, SG_EVENT_DELIVERED);
    assert_int_equal(ev.attempts, 1);
    assert_int_equal(ev.updated_us, 20);
    sg_event_rec_free(&ev);

    /* A compensation parked with a reason, then delivered. */
    w = sg_write_create();
    sg_write_event_update(w, comp.id, SG_EVENT_PARKED, 3, "refused", 25);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    assert_int_equal(sg_store_get(r, a.id, &got), SG_OK);
    assert_int_equal(got.comp_status, SG_COMP_PARKED);
    sg_saga_rec_free(&got);
    assert_int_equal(sg_store_get_event(r, comp.id, &ev), SG_OK);
    assert_int_equal(ev.status, SG_EVENT_PARKED);
    assert_int_equal(ev.attempts, 3);
    assert_string_equal(ev.last_error, "refused");
    assert_int_equal(ev.updated_us, 25);
    sg_event_rec_free(&ev);
    w = sg_write_create();
    sg_write_event_update(w, comp.id, SG_EVENT_DELIVERED, 1, NULL, 30);
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    assert_int_equal(sg_store_get(r, a.id, &got), SG_OK);
    assert_int_equal(got.comp_status, SG_COMP_COMPLETED);
    assert_true(got.updated_us > 10); /* now: never backwards */
    sg_saga_rec_free(&got);

    /* No such event: SG_ENOTFOUND, whichever statement looked. */
    char missing[SG_ID_LEN + 1];
    sg_uuid_v7(missing);
    w = sg_write_create();
    sg_write_event_update(w, missing, SG_EVENT_DELIVERED, 1, NULL, 40);
    assert_int_equal(sg_store_commit_sync(s, w), SG_ENOTFOUND);

    sg_store_reader_close(r);
    sg_store_close(s);
    sg_saga_rec_free(&a);
    sg_event_rec_free(&step);
    sg_event_rec_free(&comp);
    tmpdb_remove(&t);
}

/* sg_store_counts: the writer's transactions, writes, statements and
 * the pages it wrote to the WAL, with their bytes (4 KiB pages, a 24-byte
 * header each). */
static void test_counts(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_store_counters c;
    sg_store_counts(s, &c);
    assert_int_equal(c.transactions, 0);
    assert_int_equal(c.statements, 0);
    assert_int_equal(c.wal_pages, 0);
    sg_saga_rec a;
    make_saga(&a, "{}", 2, NULL, 1);
    insert_sync(s, &a); /* BEGIN, the saga, its 3 steps (one statement), COMMIT */
    sg_store_counts(s, &c);
    assert_int_equal(c.transactions, 1);
    assert_int_equal(c.writes, 1);
    assert_int_equal(c.statements, 4);
    assert_true(c.wal_pages >= 2); /* the sagas and steps tables at least */
    assert_int_equal(c.wal_bytes, c.wal_pages * (4096 + 24));
    sg_store_counts(NULL, &c);
    assert_int_equal(c.transactions + c.statements + c.wal_pages, 0);
    sg_store_close(s);
    sg_saga_rec_free(&a);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_savepoint_unless_a_write_fails),
        cmocka_unit_test(test_partly_applied_write_is_undone),
        cmocka_unit_test(test_saga_update_keeps_the_status_index),
        cmocka_unit_test(test_comp_rule_only_for_compensations),
        cmocka_unit_test(test_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
