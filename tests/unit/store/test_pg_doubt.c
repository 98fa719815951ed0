/* A COMMIT the PostgreSQL server never answered (design §2: nothing
 * stored is lost, nothing is applied twice, and a client told "failed"
 * finds nothing stored). To make one on a real server: with a synchronous
 * standby required that does not exist, a commit is written locally and
 * then waits (wait_event SyncRep); the session is ended during that wait.
 * Runs on a throwaway server (unit/store/test_pg_doubt@postgres); without
 * SG_TEST_STORE_URL every case skips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/helpers.h"

#define NEED_SERVER() NEED_PG_SERVER("test_pg_doubt")

/* Commits on the server wait for a standby that never comes (1), or not
 * (0). */
static void require_standby(int on)
{
    pg_exec("postgres", on ? "ALTER SYSTEM SET synchronous_standby_names = 'sg_no_such_standby'"
                           : "ALTER SYSTEM RESET synchronous_standby_names");
    pg_exec("postgres", "SELECT pg_reload_conf()");
    usleep(300 * 1000); /* the reload reaches the sessions */
}

/* Waits until a session of t's database waits for the standby: 1 if one
 * does. */
static int commit_waiting(const tmpdb *t)
{
    long long waiting = 0;
    for (int i = 0; i < 100 && !waiting; i++) {
        usleep(50 * 1000);
        waiting = pg_exec_url(t->path, "SELECT count(*) FROM pg_stat_activity WHERE "
                                       "datname=current_database() AND wait_event='SyncRep'");
    }
    return waiting == 1;
}

/* Ends the waiting session: its COMMIT is durable and never answered. */
static void end_waiting(const tmpdb *t)
{
    char sql[256];
    snprintf(sql, sizeof sql,
             "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname='%s' "
             "AND wait_event='SyncRep'",
             t->db);
    pg_exec("postgres", sql);
}

static void allow_connections(const tmpdb *t, int on)
{
    char sql[160];
    /* Not waiting for the standby itself. */
    snprintf(sql, sizeof sql,
             "SET synchronous_commit = local; ALTER DATABASE %s ALLOW_CONNECTIONS %s", t->db,
             on ? "true" : "false");
    pg_exec("postgres", sql);
}

typedef struct doubt_arg {
    sg_store *s;
    sg_saga_rec r;
    sg_status st;
} doubt_arg;

static void insert_in_thread(void *arg)
{
    doubt_arg *d = arg;
    d->st = insert_one(d->s, &d->r, 7);
}

/* The COMMIT unanswered, and the server answers again at once: the writer
 * asks it (the batch's mark) and reports the write as committed, not as
 * failed. */
static void test_commit_in_doubt_asked(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    require_standby(1);
    doubt_arg d = {.s = s, .st = SG_EINVAL};
    uv_thread_t th;
    assert_int_equal(uv_thread_create(&th, insert_in_thread, &d), 0);
    int waiting = commit_waiting(&t);
    /* Ended while it waits (resetting the setting first would let the
     * commit be answered). */
    end_waiting(&t);
    require_standby(0);
    assert_true(waiting);
    uv_thread_join(&th);
    assert_int_equal(d.st, SG_OK);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);
    assert_int_equal(pg_count(t.path, "sagas"), 1);
    sg_saga_rec b;
    assert_int_equal(insert_one(s, &b, 8), SG_OK); /* and the writer goes on */
    assert_int_equal(pg_count(t.path, "sagas"), 2);
    sg_store_close(s);
    sg_saga_rec_free(&d.r);
    sg_saga_rec_free(&b);
    tmpdb_remove(&t);
}

/* Runs loop for ms milliseconds, or until *until (when not NULL) is set. */
static void run_for(uv_loop_t *loop, int ms, const int *until)
{
    for (int i = 0; i < ms / 10 && !(until && *until); i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(10 * 1000);
    }
}

/* The COMMIT unanswered, and the server cannot be asked either (its
 * database refuses connections) for longer than the writer asks at once:
 * the batch is in doubt. Its new saga is neither refused nor confirmed;
 * a write behind it waits; a new saga submitted meanwhile is refused at
 * once (it was never part of a transaction). Once the server can be asked,
 * the batch is answered from its mark (it did commit: nothing is applied
 * twice) and the write behind it follows. */
static void test_commit_in_doubt_until_asked(void **state)
{
    (void)state;
    NEED_SERVER();
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_retrying(t.path, &loop);
    sg_saga_rec a, b, c;
    assert_int_equal(insert_one(s, &a, 1), SG_OK);

    require_standby(1);
    int ndone = 0;
    done_rec db = {.counter = &ndone}, dev = {.counter = &ndone}, dc = {.counter = &ndone};
    make_saga(&b, "{}", 2, NULL, 2);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &b);
    assert_int_equal(sg_store_submit(s, w, on_done, &db), SG_OK);
    int waiting = commit_waiting(&t);
    /* Behind it: an event of saga a (a write that must not be lost). */
    sg_event_rec ev;
    make_event(&ev, a.id, "tokenizer_event", 0, 10);
    w = sg_write_create();
    sg_write_event_insert(w, &ev);
    sg_write_saga_update(w, a.id, SG_SAGA_IN_PROGRESS, SG_COMP_NONE, NULL, 10);
    assert_int_equal(sg_store_submit(s, w, on_done, &dev), SG_OK);
    allow_connections(&t, 0);
    end_waiting(&t);
    require_standby(0);
    assert_true(waiting);

    /* The writer asks for SG_PG_VERIFY_MS (5 s), then keeps the batch. */
    run_for(&loop, 5500, NULL);
    make_saga(&c, "{}", 2, NULL, 3);
    w = sg_write_create();
    sg_write_saga_insert(w, &c);
    assert_int_equal(sg_store_submit(s, w, on_done, &dc), SG_OK);
    run_for(&loop, 3000, &dc.ran);
    assert_int_equal(dc.ran, 1);
    assert_int_equal(dc.st, SG_EIO);
    assert_int_equal(db.ran, 0); /* neither refused nor confirmed */
    assert_int_equal(dev.ran, 0);
    char why[256];
    assert_int_not_equal(sg_store_health(s, why, sizeof why), SG_OK);
    assert_non_null(strstr(why, "doubt"));

    allow_connections(&t, 1);
    for (int i = 0; i < 1000 && ndone < 3; i++)
        run_for(&loop, 10, NULL);
    assert_int_equal(ndone, 3);
    assert_int_equal(db.st, SG_OK);
    assert_int_equal(dev.st, SG_OK);
    assert_int_equal(pg_count(t.path, "sagas"), 2); /* a and b: c was refused */
    assert_int_equal(pg_count(t.path, "outbox"), 1);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);
    sg_store_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    sg_event_rec_free(&ev);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&b);
    sg_saga_rec_free(&c);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_in_doubt_asked),
        cmocka_unit_test(test_commit_in_doubt_until_asked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
