/* Threads: commit_sync from several threads at once shares the writer
 * (and its transactions); readers on their own threads see committed
 * state while writes go on. Run under ASan/UBSan (SG_SANITIZE=ON). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdatomic.h>

#include "store/helpers.h"

#define NWRITERS 4
#define PER_WRITER 50

typedef struct shared {
    sg_store *s;
    atomic_int writers_done;
    char ids[NWRITERS][PER_WRITER][SG_ID_LEN + 1];
    int failures; /* set by threads; cmocka asserts are main-thread only */
    uv_mutex_t mu;
} shared;

typedef struct worker {
    shared *sh;
    int n;
} worker;

static void fail_once(shared *sh)
{
    uv_mutex_lock(&sh->mu);
    sh->failures++;
    uv_mutex_unlock(&sh->mu);
}

static void writer_thread(void *arg)
{
    worker *wk = arg;
    for (int i = 0; i < PER_WRITER; i++) {
        sg_saga_rec r;
        make_saga(&r, "{\"t\":1}", 7, NULL, sg_now_us());
        memcpy(wk->sh->ids[wk->n][i], r.id, sizeof r.id);
        sg_write *w = sg_write_create();
        sg_write_saga_insert(w, &r);
        if (sg_store_commit_sync(wk->sh->s, w) != SG_OK) fail_once(wk->sh);
        sg_saga_rec_free(&r);
    }
    atomic_fetch_add(&wk->sh->writers_done, 1);
}

static void reader_thread(void *arg)
{
    shared *sh = arg;
    sg_store_reader *rd = NULL;
    if (sg_store_reader_open(sh->s, &rd, NULL, 0) != SG_OK) {
        fail_once(sh);
        return;
    }
    size_t last = 0;
    while (atomic_load(&sh->writers_done) < NWRITERS) {
        sg_list_query q = {-1, 1000, NULL, NULL};
        sg_saga_rec *v = NULL;
        size_t n = 0;
        char next[SG_CURSOR_MAX];
        if (sg_store_list(rd, &q, &v, &n, next) != SG_OK) fail_once(sh);
        /* Committed rows never disappear. */
        if (n < last) fail_once(sh);
        last = n;
        for (size_t i = 0; i < n; i++) {
            if (v[i].nsteps != 3 || !v[i].steps[0].name) fail_once(sh);
            sg_saga_rec_free(&v[i]);
        }
        free(v);
    }
    sg_store_reader_close(rd);
}

static void test_threads(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    shared *sh = sg_xcalloc(1, sizeof *sh);
    assert_int_equal(uv_mutex_init(&sh->mu), 0);
    sh->s = open_sync(t.path);
    uv_thread_t wt[NWRITERS], rt[2];
    worker wk[NWRITERS];
    for (int i = 0; i < 2; i++)
        assert_int_equal(uv_thread_create(&rt[i], reader_thread, sh), 0);
    for (int i = 0; i < NWRITERS; i++) {
        wk[i] = (worker){sh, i};
        assert_int_equal(uv_thread_create(&wt[i], writer_thread, &wk[i]), 0);
    }
    for (int i = 0; i < NWRITERS; i++)
        uv_thread_join(&wt[i]);
    for (int i = 0; i < 2; i++)
        uv_thread_join(&rt[i]);
    assert_int_equal(sh->failures, 0);

    uint64_t tx, nw;
    sg_store_stats(sh->s, &tx, &nw);
    assert_int_equal(nw, NWRITERS * PER_WRITER);
    assert_true(tx <= nw);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(sh->s, &rd, NULL, 0), SG_OK);
    for (int i = 0; i < NWRITERS; i++)
        for (int k = 0; k < PER_WRITER; k++) {
            sg_saga_rec got;
            assert_int_equal(sg_store_get(rd, sh->ids[i][k], &got), SG_OK);
            sg_saga_rec_free(&got);
        }
    sg_store_reader_close(rd);
    sg_store_close(sh->s);
    uv_mutex_destroy(&sh->mu);
    free(sh);
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
