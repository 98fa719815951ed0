/* The SQLite writer's WAL checkpoint runs after a batch, not inside its
 * COMMIT: a commit past the threshold leaves the WAL as it is (its
 * writes are handed back at once), after_batch checkpoints, and the next
 * commit starts the WAL again from its beginning. Through the store's
 * writer thread the WAL stays bounded however much is written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include "store/helpers.h"
#include "store/sqlite_int.h"

/* One saga of `kb` KiB of request (overflow pages: that many frames). */
static sg_write *big_saga(sg_saga_rec *r, size_t kb, int64_t at)
{
    static char body[256 * 1024];
    memset(body, 'x', sizeof body);
    body[0] = '"';
    body[kb * 1024 - 1] = '"';
    make_saga(r, body, kb * 1024, NULL, at);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, r);
    return w;
}

static void commit(sg_store_backend *b, sg_write *w)
{
    char err[256] = "";
    sg_status res;
    assert_int_equal(sg_store_sqlite_ops.exec_batch(b, &w, 1, &res, err, sizeof err), SG_OK);
    assert_int_equal(res, SG_OK);
    sg_write_destroy(w);
}

static void test_after_the_batch(void **state)
{
    (void)state;
    if (test_store_url()) skip(); /* SQLite's WAL */
    tmpdb t;
    tmpdb_make(&t);
    sg_store_backend *b = NULL;
    char err[256] = "";
    sg_store_options o = {.synchronous_full = 1};
    assert_int_equal(sg_store_sqlite_ops.open(&b, t.path, t.path, &o, err, sizeof err), SG_OK);
    assert_non_null(sg_store_sqlite_ops.after_batch);
    enum { MAX = 40 };
    sg_saga_rec r[MAX];
    int n = 0;
    /* 250 KiB sagas up to the threshold: the COMMIT did not checkpoint. */
    while (b->wal_frames < SG_SQ_CHECKPOINT_FRAMES && n < MAX - 3) {
        commit(b, big_saga(&r[n], 250, n));
        n++;
    }
    assert_true(b->wal_frames >= SG_SQ_CHECKPOINT_FRAMES);
    int before = b->wal_frames;
    commit(b, big_saga(&r[n], 1, n));
    n++;
    assert_true(b->wal_frames > before); /* the same WAL, longer */

    sg_store_sqlite_ops.after_batch(b);
    commit(b, big_saga(&r[n], 1, n));
    n++;
    assert_true(b->wal_frames < 100);   /* restarted from its beginning */
    sg_store_sqlite_ops.after_batch(b); /* under the threshold: nothing */
    commit(b, big_saga(&r[n], 1, n));
    n++;
    assert_true(b->wal_frames < 200);
    sg_store_sqlite_ops.close(b);

    /* Every saga is in the database. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(count_rows(db, "sagas"), n);
    sqlite3_close(db);
    for (int i = 0; i < n; i++)
        sg_saga_rec_free(&r[i]);
    tmpdb_remove(&t);
}

/* 40 MB through the writer thread, a batch at a time: the WAL never
 * holds much more than the threshold and one batch. */
static void test_wal_stays_bounded(void **state)
{
    (void)state;
    if (test_store_url()) skip();
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    char wal[4200];
    snprintf(wal, sizeof wal, "%s-wal", t.path);
    off_t most = 0;
    for (int i = 0; i < 200; i++) {
        sg_saga_rec r;
        assert_int_equal(sg_store_commit_sync(s, big_saga(&r, 200, i)), SG_OK);
        sg_saga_rec_free(&r);
        struct stat sb;
        assert_int_equal(stat(wal, &sb), 0);
        if (sb.st_size > most) most = sb.st_size;
    }
    sg_store_close(s);
    off_t frame = 4096 + 24;
    if (most > (SG_SQ_CHECKPOINT_FRAMES + 2 * 60) * frame)
        fail_msg("WAL grew to %lld frames", (long long)(most / frame));
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(count_rows(db, "sagas"), 200);
    sqlite3_close(db);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_after_the_batch),
        cmocka_unit_test(test_wal_stays_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
