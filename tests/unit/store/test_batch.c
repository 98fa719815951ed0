/* Group commit: submissions share transactions, a failing write is undone
 * alone (with its outbox event), a failing transaction fails every write
 * in it, and close commits whatever is still queued. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "store/helpers.h"
#include "store/store_int.h"

#define NW 40

/* The backend under test: PostgreSQL's in the @postgres runs. */
static const struct sg_store_ops *backend(void)
{
    return test_pg_url() ? &sg_store_postgres_ops : &sg_store_sqlite_ops;
}

/* Rows in table, through a connection of the test's own. */
static int rows(sqlite3 *check, const tmpdb *t, const char *table)
{
    return check ? count_rows(check, table) : pg_count(t->path, table);
}

static void run_until(uv_loop_t *loop, const int *counter, int want)
{
    /* The store's async handle keeps the loop alive, so each UV_RUN_ONCE
     * blocks until the writer hands back another batch. */
    while (*counter < want)
        uv_run(loop, UV_RUN_ONCE);
}

static sg_store *open_loop(const char *path, uv_loop_t *loop)
{
    sg_store *s = NULL;
    char err[256] = "";
    assert_int_equal(sg_store_open(&s, path, loop, NULL, err, sizeof err), SG_OK);
    return s;
}

/* Finishes a test that used a loop: the store's async handle is closed by
 * sg_store_close and freed once the loop runs its close callback. */
static void close_loop(sg_store *s, uv_loop_t *loop)
{
    sg_store_close(s);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

/* Saga + outbox event in one write; a conflicting idem_key undoes the
 * whole write including its event; the others commit; writes share
 * transactions. */
static void test_submit_conflict(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_loop(t.path, &loop);

    sg_saga_rec recs[NW];
    sg_event_rec evs[NW];
    done_rec done[NW];
    int counter = 0;
    for (int i = 0; i < NW; i++) {
        char key[32];
        /* Writes 0 and 1 compete for the same key; 0 is queued first. */
        snprintf(key, sizeof key, "key-%d", i == 1 ? 0 : i);
        make_saga(&recs[i], "{\"n\":1}", 7, key, 1000 + i);
        make_event(&evs[i], recs[i].id, "tokenizer_event", 0, 1000 + i);
        sg_write *w = sg_write_create();
        sg_write_saga_insert(w, &recs[i]);
        sg_write_event_insert(w, &evs[i]);
        done[i] = (done_rec){0, SG_EIO, &counter};
        assert_int_equal(sg_store_submit(s, w, on_done, &done[i]), SG_OK);
    }
    run_until(&loop, &counter, NW);

    for (int i = 0; i < NW; i++) {
        assert_int_equal(done[i].ran, 1);
        assert_int_equal(done[i].st, i == 1 ? SG_ECONFLICT : SG_OK);
    }
    uint64_t tx = 0, nw = 0;
    sg_store_stats(s, &tx, &nw);
    assert_int_equal(nw, NW);
    assert_true(tx >= 1 && tx < NW); /* group commit: fewer transactions than writes */
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);

    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    for (int i = 0; i < NW; i++) {
        sg_saga_rec got;
        sg_event_rec ev;
        sg_status want = i == 1 ? SG_ENOTFOUND : SG_OK;
        assert_int_equal(sg_store_get(r, recs[i].id, &got), want);
        assert_int_equal(sg_store_get_event(r, evs[i].id, &ev), want);
        if (want == SG_OK) {
            assert_saga_eq(&got, &recs[i]);
            assert_event_eq(&ev, &evs[i]);
        }
        sg_saga_rec_free(&got);
        sg_event_rec_free(&ev);
    }
    sg_saga_rec got;
    assert_int_equal(sg_store_get_by_idem(r, "key-0", &got), SG_OK);
    assert_string_equal(got.id, recs[0].id);
    sg_saga_rec_free(&got);
    sg_store_reader_close(r);

    for (int i = 0; i < NW; i++) {
        sg_saga_rec_free(&recs[i]);
        sg_event_rec_free(&evs[i]);
    }
    close_loop(s, &loop);
    tmpdb_remove(&t);
}

/* The same, at the backend level with one exact batch, so the "rolled back
 * alone inside a shared transaction" case is certain. */
static void test_backend_batch_savepoints(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    const struct sg_store_ops *ops = backend();
    sg_store_backend *b = NULL;
    char err[256] = "";
    sg_store_options opt = {.max_batch = 512, .synchronous_full = 1};
    assert_int_equal(ops->open(&b, t.path, t.path, &opt, err, sizeof err), SG_OK);

    sg_saga_rec a, dup, c;
    sg_event_rec ea, edup;
    make_saga(&a, "{}", 2, "same", 1);
    make_saga(&dup, "{}", 2, "same", 2);
    make_saga(&c, "{}", 2, NULL, 3);
    make_event(&ea, a.id, "tokenizer_event", 0, 1);
    make_event(&edup, dup.id, "tokenizer_event", 0, 2);
    sg_write *w[3] = {sg_write_create(), sg_write_create(), sg_write_create()};
    sg_write_saga_insert(w[0], &a);
    sg_write_event_insert(w[0], &ea);
    /* The event goes first so that the conflict must undo it. */
    sg_write_event_insert(w[1], &edup);
    sg_write_saga_insert(w[1], &dup);
    sg_write_saga_insert(w[2], &c);
    sg_status res[3];
    assert_int_equal(ops->exec_batch(b, w, 3, res, err, sizeof err), SG_OK);
    assert_int_equal(res[0], SG_OK);
    assert_int_equal(res[1], SG_ECONFLICT);
    assert_int_equal(res[2], SG_OK);

    sg_store_breader *r = NULL;
    assert_int_equal(ops->reader_open(b, &r, err, sizeof err), SG_OK);
    sg_saga_rec got;
    sg_event_rec ev;
    memset(&got, 0, sizeof got);
    assert_int_equal(ops->get(r, a.id, &got, err, sizeof err), SG_OK);
    sg_saga_rec_free(&got);
    assert_int_equal(ops->get(r, c.id, &got, err, sizeof err), SG_OK);
    sg_saga_rec_free(&got);
    assert_int_equal(ops->get(r, dup.id, &got, err, sizeof err), SG_ENOTFOUND);
    assert_int_equal(ops->get_event(r, ea.id, &ev, err, sizeof err), SG_OK);
    sg_event_rec_free(&ev);
    assert_int_equal(ops->get_event(r, edup.id, &ev, err, sizeof err), SG_ENOTFOUND);
    ops->reader_close(r);

    for (int i = 0; i < 3; i++)
        sg_write_destroy(w[i]);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&dup);
    sg_saga_rec_free(&c);
    sg_event_rec_free(&ea);
    sg_event_rec_free(&edup);
    ops->close(b);
    tmpdb_remove(&t);
}

/* Failure injection by countdown: fail the Nth statement of a batch, for
 * N = 1, 2, ... until the batch runs out of statements. Each failure must
 * leave nothing applied, report SG_EIO for every write, and leave the
 * connection usable for the next batch. */
static void test_backend_fault_countdown(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    const struct sg_store_ops *ops = backend();
    sg_store_backend *b = NULL;
    char err[256] = "";
    assert_int_equal(ops->open(&b, t.path, t.path, NULL, err, sizeof err), SG_OK);
    sqlite3 *check = NULL;
    if (!test_pg_url()) assert_int_equal(sqlite3_open(t.path, &check), SQLITE_OK);

    int committed = 0, failures = 0;
    for (int n = 1; n < 100 && !committed; n++) {
        sg_saga_rec a, dup, c;
        sg_event_rec ea;
        make_saga(&a, "{}", 2, "k", 1);
        make_saga(&dup, "{}", 2, "k", 2); /* conflicts: exercises ROLLBACK TO */
        make_saga(&c, "{}", 2, NULL, 3);
        make_event(&ea, a.id, "tokenizer_compensation", 1, 1);
        sg_write *w[3] = {sg_write_create(), sg_write_create(), sg_write_create()};
        sg_write_saga_insert(w[0], &a);
        sg_write_event_insert(w[0], &ea);
        sg_write_event_update(w[0], ea.id, SG_EVENT_DELIVERED, 1, NULL, 0);
        sg_write_saga_insert(w[1], &dup);
        sg_write_saga_insert(w[2], &c);
        sg_write_def_insert(w[2], "order", 1, "{}", 3);
        sg_status res[3];
        err[0] = '\0';
        atomic_store(&sg_store_fail_countdown, n);
        sg_status st = ops->exec_batch(b, w, 3, res, err, sizeof err);
        if (st == SG_OK) {
            /* n is past the last statement: the fault never fired. */
            assert_true(atomic_load(&sg_store_fail_countdown) > 0);
            committed = 1;
            assert_int_equal(res[0], SG_OK);
            assert_int_equal(res[1], SG_ECONFLICT);
            assert_int_equal(res[2], SG_OK);
            assert_int_equal(rows(check, &t, "sagas"), 2);
            assert_int_equal(rows(check, &t, "outbox"), 1);
            assert_int_equal(rows(check, &t, "definitions"), 1);
        } else {
            failures++;
            assert_int_equal(st, SG_EIO);
            for (int i = 0; i < 3; i++)
                assert_int_equal(res[i], SG_EIO);
            assert_non_null(strstr(err, "injected"));
            assert_int_equal(rows(check, &t, "sagas"), 0);
            assert_int_equal(rows(check, &t, "outbox"), 0);
            assert_int_equal(rows(check, &t, "steps"), 0);
            assert_int_equal(rows(check, &t, "definitions"), 0);
        }
        atomic_store(&sg_store_fail_countdown, 0);
        for (int i = 0; i < 3; i++)
            sg_write_destroy(w[i]);
        sg_saga_rec_free(&a);
        sg_saga_rec_free(&dup);
        sg_saga_rec_free(&c);
        sg_event_rec_free(&ea);
    }
    assert_true(committed);
    /* BEGIN, 3 savepoints, 3 releases, a rollback-to, the inserts, COMMIT. */
    assert_true(failures > 10);
    if (check) sqlite3_close(check);
    ops->close(b);
    tmpdb_remove(&t);
}

/* A failed transaction turns the store unhealthy with the reason; the next
 * good one makes it healthy again. */
static void test_health(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    char why[256];
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_OK);
    assert_string_equal(why, "");

    sg_saga_rec a;
    make_saga(&a, "{}", 2, NULL, 1);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &a);
    atomic_store(&sg_store_fail_countdown, 2); /* the SAVEPOINT after BEGIN */
    assert_int_equal(sg_store_commit_sync(s, w), SG_EIO);
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_EIO);
    assert_non_null(strstr(why, "injected I/O error"));
    uint64_t tx, nw;
    sg_store_stats(s, &tx, &nw);
    assert_int_equal(tx, 0);
    assert_int_equal(nw, 0);

    insert_sync(s, &a);
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_OK);
    sg_store_stats(s, &tx, &nw);
    assert_int_equal(tx, 1);
    assert_int_equal(nw, 1);
    sg_saga_rec_free(&a);
    sg_store_close(s);
    tmpdb_remove(&t);
}

typedef struct resubmit {
    sg_store *s;
    int ran;
    sg_status first;
    sg_status second;
} resubmit;

static void on_done_resubmit(void *arg, sg_status st)
{
    resubmit *rs = arg;
    rs->ran++;
    rs->first = st;
    /* Runs inside sg_store_close: new work must be refused. */
    rs->second = sg_store_submit(rs->s, sg_write_create(), on_done_resubmit, NULL);
}

static void on_done_count(void *arg, sg_status st)
{
    int *n = arg;
    if (st == SG_OK) (*n)++;
}

/* Close commits everything queued and runs the callbacks itself; writes
 * submitted while closing are refused with SG_ECLOSED. */
static void test_close_drains(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_loop(t.path, &loop);
    sg_saga_rec recs[NW];
    int ok = 0;
    for (int i = 0; i < NW; i++) {
        make_saga(&recs[i], "{}", 2, NULL, i);
        sg_write *w = sg_write_create();
        sg_write_saga_insert(w, &recs[i]);
        assert_int_equal(sg_store_submit(s, w, on_done_count, &ok), SG_OK);
    }
    resubmit rs = {s, 0, SG_EIO, SG_OK};
    assert_int_equal(sg_store_submit(s, sg_write_create(), on_done_resubmit, &rs), SG_OK);
    close_loop(s, &loop); /* the loop never ran before close */
    assert_int_equal(ok, NW);
    assert_int_equal(rs.ran, 1);
    assert_int_equal(rs.first, SG_OK);
    assert_int_equal(rs.second, SG_ECLOSED);

    s = open_sync(t.path);
    sg_store_reader *r = NULL;
    assert_int_equal(sg_store_reader_open(s, &r, NULL, 0), SG_OK);
    for (int i = 0; i < NW; i++) {
        sg_saga_rec got;
        assert_int_equal(sg_store_get(r, recs[i].id, &got), SG_OK);
        sg_saga_rec_free(&got);
        sg_saga_rec_free(&recs[i]);
    }
    sg_store_reader_close(r);
    /* Without a loop there is nobody to run callbacks: submit refuses. */
    assert_int_equal(sg_store_submit(s, sg_write_create(), on_done_count, &ok), SG_EINVAL);
    sg_store_close(s);
    tmpdb_remove(&t);
}

/* max_batch bounds a transaction. */
static void test_max_batch(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = NULL;
    char err[256];
    sg_store_options opt = {.max_batch = 3, .synchronous_full = 0};
    assert_int_equal(sg_store_open(&s, t.path, &loop, &opt, err, sizeof err), SG_OK);
    int ok = 0;
    for (int i = 0; i < 20; i++)
        assert_int_equal(sg_store_submit(s, sg_write_create(), on_done_count, &ok), SG_OK);
    while (ok < 20)
        uv_run(&loop, UV_RUN_ONCE);
    uint64_t tx, nw;
    sg_store_stats(s, &tx, &nw);
    assert_int_equal(nw, 20);
    assert_true(tx >= 7); /* ceil(20 / 3) */
    close_loop(s, &loop);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_submit_conflict),
        cmocka_unit_test(test_backend_batch_savepoints),
        cmocka_unit_test(test_backend_fault_countdown),
        cmocka_unit_test(test_health),
        cmocka_unit_test(test_close_drains),
        cmocka_unit_test(test_max_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
