/* retry_failed: a failed transaction keeps its writes and is retried until
 * it commits (failure injection at every statement of a batch, and a real
 * lock held by another connection past the busy timeout); per-write
 * failures still complete with their status; writes that insert a new
 * saga fail at once instead, and a probe brings health back without
 * another write; close gives up after a bounded number of attempts and
 * fails what is left with SG_EIO. The retried writes here are outbox
 * inserts (a duplicate id is a per-write conflict). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <stdatomic.h>

#include "store/helpers.h"
#include "store/store_int.h"

#define BUSY_MS 20 /* busy timeout of the stores under test */

static sg_store *open_retry(const char *path, uv_loop_t *loop, size_t max_batch)
{
    sg_store *s = NULL;
    char err[256] = "";
    sg_store_options opt = {.max_batch = max_batch,
                            .synchronous_full = 1,
                            .retry_failed = 1,
                            .busy_timeout_ms = BUSY_MS};
    sg_status st = sg_store_open(&s, path, loop, &opt, err, sizeof err);
    if (st != SG_OK) fprintf(stderr, "open %s: %s\n", path, err);
    assert_int_equal(st, SG_OK);
    return s;
}

static void close_loop(sg_store *s, uv_loop_t *loop)
{
    sg_store_close(s);
    uv_run(loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(loop), 0);
}

static void run_until(uv_loop_t *loop, const int *counter, int want)
{
    while (*counter < want)
        uv_run(loop, UV_RUN_ONCE);
}

static void on_timer(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs the loop for about ms milliseconds (callbacks that arrive run). */
static void run_for(uv_loop_t *loop, uint64_t ms)
{
    uv_timer_t t;
    int fired = 0;
    assert_int_equal(uv_timer_init(loop, &t), 0);
    t.data = &fired;
    assert_int_equal(uv_timer_start(&t, on_timer, ms, 0), 0);
    while (!fired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* the close callback */
}

static sg_write *saga_write(sg_saga_rec *r, const char *key, int64_t created)
{
    make_saga(r, "{}", 2, key, created);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, r);
    return w;
}

/* An outbox insert; with same_as, under that event's id (a conflict). */
static sg_write *event_write(sg_event_rec *e, const sg_event_rec *same_as, int64_t created)
{
    make_event(e, "00000000-0000-4000-8000-000000000000", "tokenizer_event", 0, created);
    if (same_as) memcpy(e->id, same_as->id, sizeof e->id);
    sg_write *w = sg_write_create();
    sg_write_event_insert(w, e);
    return w;
}

static int count_table(const char *path, const char *table)
{
    if (pg_path(path)) return pg_count(path, table);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    int n = count_rows(db, table);
    sqlite3_close(db);
    return n;
}

static int count_sagas(const char *path)
{
    return count_table(path, "sagas");
}

static int count_events(const char *path)
{
    return count_table(path, "outbox");
}

/* Failure injection at the Nth statement, for N = 1, 2, ... until the
 * fault no longer fires: whichever statement fails, the writes come back
 * exactly as without a failure (OK, ECONFLICT for the duplicate key, OK),
 * never SG_EIO, and each is applied once. */
static void test_retry_countdown(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_retry(t.path, &loop, 512);

    int fired_past_end = 0, n, total = 0;
    for (n = 1; n < 100 && !fired_past_end; n++) {
        sg_event_rec r[3];
        done_rec d[3];
        int counter = 0;
        atomic_store(&sg_store_fail_countdown, n);
        for (int i = 0; i < 3; i++) {
            sg_write *w = event_write(&r[i], i == 1 ? &r[0] : NULL, n * 10 + i);
            d[i] = (done_rec){0, SG_EIO, &counter};
            assert_int_equal(sg_store_submit(s, w, on_done, &d[i]), SG_OK);
        }
        run_until(&loop, &counter, 3);
        fired_past_end = atomic_load(&sg_store_fail_countdown) > 0;
        atomic_store(&sg_store_fail_countdown, 0);
        assert_int_equal(d[0].st, SG_OK);
        assert_int_equal(d[1].st, SG_ECONFLICT);
        assert_int_equal(d[2].st, SG_OK);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(d[i].ran, 1);
            sg_event_rec_free(&r[i]);
        }
        total += 2;
        assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);
        assert_int_equal(count_events(t.path), total);
    }
    assert_true(fired_past_end);
    assert_true(n > 8); /* the fault hit several distinct statements */

    /* commit_sync (no loop needed) is retried the same way. */
    sg_event_rec a;
    atomic_store(&sg_store_fail_countdown, 1); /* BEGIN */
    assert_int_equal(sg_store_commit_sync(s, event_write(&a, NULL, 1)), SG_OK);
    assert_int_equal(atomic_load(&sg_store_fail_countdown), 0);
    sg_event_rec_free(&a);
    assert_int_equal(count_events(t.path), total + 1);
    close_loop(s, &loop);
    tmpdb_remove(&t);
}

/* A second connection holds the write lock (BEGIN IMMEDIATE) far longer
 * than the busy timeout: no callback fires, the store reports unhealthy
 * with SQLite's message, writes submitted meanwhile wait too; once the
 * lock is released everything commits with its own status. */
static void test_retry_real_lock(void **state)
{
    (void)state;
    SKIP_ON_POSTGRES(); /* SQLite locks and files; see test_pg for PostgreSQL */
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_retry(t.path, &loop, 512);

    sqlite3 *holder = NULL;
    assert_int_equal(sqlite3_open(t.path, &holder), SQLITE_OK);
    assert_int_equal(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    sg_event_rec r[3];
    done_rec d[3];
    int counter = 0;
    d[0] = (done_rec){0, SG_EIO, &counter};
    assert_int_equal(sg_store_submit(s, event_write(&r[0], NULL, 1), on_done, &d[0]), SG_OK);
    run_for(&loop, 300); /* about ten busy timeouts and backoffs */
    assert_int_equal(counter, 0);
    char why[256];
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_EIO);
    assert_non_null(strstr(why, "locked"));

    /* They join the retried batch or queue behind it. */
    d[1] = (done_rec){0, SG_EIO, &counter};
    d[2] = (done_rec){0, SG_EIO, &counter};
    assert_int_equal(sg_store_submit(s, event_write(&r[1], &r[0], 2), on_done, &d[1]), SG_OK);
    assert_int_equal(sg_store_submit(s, event_write(&r[2], NULL, 3), on_done, &d[2]), SG_OK);
    run_for(&loop, 200);
    assert_int_equal(counter, 0);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_EIO);

    /* Readers are not blocked by the held write lock. */
    sg_store_reader *rd = NULL;
    sg_event_rec got;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    assert_int_equal(sg_store_get_event(rd, r[2].id, &got), SG_ENOTFOUND);

    assert_int_equal(sqlite3_exec(holder, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    run_until(&loop, &counter, 3); /* within the 1 s backoff cap */
    assert_int_equal(d[0].st, SG_OK);
    assert_int_equal(d[1].st, SG_ECONFLICT);
    assert_int_equal(d[2].st, SG_OK);
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_OK);
    assert_string_equal(why, "");
    uint64_t tx, nw;
    sg_store_stats(s, &tx, &nw);
    assert_int_equal(nw, 3);
    assert_true(tx >= 1 && tx <= 2);

    assert_int_equal(sg_store_get_event(rd, r[0].id, &got), SG_OK);
    sg_event_rec_free(&got);
    assert_int_equal(sg_store_get_event(rd, r[2].id, &got), SG_OK);
    sg_event_rec_free(&got);
    assert_int_equal(count_events(t.path), 2);
    sg_store_reader_close(rd);
    for (int i = 0; i < 3; i++)
        sg_event_rec_free(&r[i]);
    sqlite3_close(holder);
    close_loop(s, &loop);
    tmpdb_remove(&t);
}

/* Close against a store that stays locked: the writer stops retrying after
 * a bounded number of attempts (about SG_STORE_CLOSE_RETRY_MS), the batch
 * being retried and everything queued behind it (more than max_batch)
 * complete with SG_EIO, and nothing was applied. The close interrupts a
 * backoff that has grown to its 1 s cap. */
static void test_retry_close_gives_up(void **state)
{
    (void)state;
    SKIP_ON_POSTGRES(); /* SQLite locks and files; see test_pg for PostgreSQL */
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_retry(t.path, &loop, 2);

    sqlite3 *holder = NULL;
    assert_int_equal(sqlite3_open(t.path, &holder), SQLITE_OK);
    assert_int_equal(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    enum { N = 5 };
    sg_event_rec r[N];
    done_rec d[N];
    int counter = 0;
    for (int i = 0; i < N; i++) {
        d[i] = (done_rec){0, SG_OK, &counter};
        assert_int_equal(sg_store_submit(s, event_write(&r[i], NULL, i), on_done, &d[i]), SG_OK);
    }
    run_for(&loop, 1800); /* the backoff reaches its cap */
    assert_int_equal(counter, 0);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_EIO);

    uint64_t t0 = uv_hrtime();
    sg_store_close(s); /* runs the callbacks itself */
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    assert_int_equal(counter, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(d[i].ran, 1);
        assert_int_equal(d[i].st, SG_EIO);
        sg_event_rec_free(&r[i]);
    }
    /* 3 more attempts within about 2 s, each at most a busy timeout. */
    assert_true(secs < (SG_STORE_CLOSE_RETRY_MS + 1500) / 1000.0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);

    assert_int_equal(sqlite3_exec(holder, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(holder);
    assert_int_equal(count_events(t.path), 0);
    tmpdb_remove(&t);
}

/* Close while the store is healthy again: the retried batch committed,
 * nothing is lost (close during a short outage that ends in time). */
static void test_retry_close_recovers(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_retry(t.path, &loop, 512);
    int counter = 0;
    sg_event_rec r;
    done_rec d = {0, SG_EIO, &counter};
    atomic_store(&sg_store_fail_countdown, 2);
    assert_int_equal(sg_store_submit(s, event_write(&r, NULL, 1), on_done, &d), SG_OK);
    close_loop(s, &loop);
    atomic_store(&sg_store_fail_countdown, 0);
    assert_int_equal(d.ran, 1);
    assert_int_equal(d.st, SG_OK);
    assert_int_equal(count_events(t.path), 1);
    sg_event_rec_free(&r);
    tmpdb_remove(&t);
}

/* A new saga is not retried: when its transaction fails it completes with
 * SG_EIO at once (its client can be told), while the other writes of the
 * batch wait for the store; nothing of it is stored. With nothing left to
 * retry, a probe brings health back once the store takes writes, without
 * another write. */
static void test_retry_new_sagas_fail_fast(void **state)
{
    (void)state;
    SKIP_ON_POSTGRES(); /* SQLite locks and files; see test_pg for PostgreSQL */
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_retry(t.path, &loop, 512);

    sqlite3 *holder = NULL;
    assert_int_equal(sqlite3_open(t.path, &holder), SQLITE_OK);
    assert_int_equal(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    sg_saga_rec a;
    sg_event_rec e;
    done_rec da = {0, SG_OK, NULL}, de = {0, SG_EIO, NULL};
    int counter = 0;
    da.counter = de.counter = &counter;
    assert_int_equal(sg_store_submit(s, saga_write(&a, NULL, 1), on_done, &da), SG_OK);
    assert_int_equal(sg_store_submit(s, event_write(&e, NULL, 2), on_done, &de), SG_OK);
    run_until(&loop, &counter, 1);
    assert_int_equal(da.ran, 1);
    assert_int_equal(da.st, SG_EIO);
    assert_int_equal(de.ran, 0);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_EIO);
    assert_int_equal(sqlite3_exec(holder, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    run_until(&loop, &counter, 2);
    assert_int_equal(de.st, SG_OK);
    assert_int_equal(count_sagas(t.path), 0);
    assert_int_equal(count_events(t.path), 1);

    /* A lone new saga fails; the store heals; the probe notices. */
    sg_saga_rec b;
    done_rec db = {0, SG_OK, &counter};
    assert_int_equal(sqlite3_exec(holder, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(sg_store_submit(s, saga_write(&b, NULL, 3), on_done, &db), SG_OK);
    run_until(&loop, &counter, 3);
    assert_int_equal(db.st, SG_EIO);
    run_for(&loop, 100);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_EIO);
    assert_int_equal(sqlite3_exec(holder, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    uint64_t t0 = uv_hrtime();
    while (sg_store_health(s, NULL, 0) != SG_OK && uv_hrtime() - t0 < 3000000000ull)
        run_for(&loop, 20);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK); /* within the 1 s backoff cap */
    assert_int_equal(count_sagas(t.path), 0);

    sg_saga_rec_free(&a);
    sg_saga_rec_free(&b);
    sg_event_rec_free(&e);
    sqlite3_close(holder);
    close_loop(s, &loop);
    tmpdb_remove(&t);
}

/* The database file replaced under the store (moved away, another file
 * put at its path): writes wait, health names the cause, a new reader is
 * refused; with the original back, everything commits into it. */
static void test_retry_file_replaced(void **state)
{
    (void)state;
    SKIP_ON_POSTGRES(); /* SQLite locks and files; see test_pg for PostgreSQL */
    tmpdb t;
    tmpdb_make(&t);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_store *s = open_retry(t.path, &loop, 512);
    char moved[320], why[256];
    snprintf(moved, sizeof moved, "%s.moved", t.path);
    assert_int_equal(rename(t.path, moved), 0);
    FILE *f = fopen(t.path, "w");
    assert_non_null(f);
    fclose(f);

    sg_event_rec e;
    int counter = 0;
    done_rec d = {0, SG_EIO, &counter};
    assert_int_equal(sg_store_submit(s, event_write(&e, NULL, 1), on_done, &d), SG_OK);
    run_for(&loop, 100);
    assert_int_equal(counter, 0);
    assert_int_equal(sg_store_health(s, why, sizeof why), SG_EIO);
    assert_non_null(strstr(why, "replaced"));
    sg_store_reader *rd = NULL;
    char err[256];
    assert_int_equal(sg_store_reader_open(s, &rd, err, sizeof err), SG_EIO);
    assert_non_null(strstr(err, "replaced"));
    struct stat sb;
    assert_int_equal(stat(t.path, &sb), 0);
    assert_int_equal(sb.st_size, 0); /* nothing was written into the stranger */

    assert_int_equal(rename(moved, t.path), 0);
    run_until(&loop, &counter, 1);
    assert_int_equal(d.st, SG_OK);
    assert_int_equal(sg_store_health(s, NULL, 0), SG_OK);
    assert_int_equal(count_events(t.path), 1);
    sg_event_rec_free(&e);
    close_loop(s, &loop);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_countdown),
        cmocka_unit_test(test_retry_real_lock),
        cmocka_unit_test(test_retry_close_gives_up),
        cmocka_unit_test(test_retry_close_recovers),
        cmocka_unit_test(test_retry_new_sagas_fail_fast),
        cmocka_unit_test(test_retry_file_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
