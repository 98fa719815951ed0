/* SQLite schema 6: the status indexes leave out the settled rows (a
 * COMPLETED saga, a DELIVERED event). A file of schema 5 is upgraded in
 * place; on it and on a new file every listing by status (the settled
 * one through the keyset index, the others through the partial index),
 * the event counts and recovery's reads give what they gave before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/helpers.h"
#include "store/sqlite_int.h"

enum { N = 13, NEV = 4 * 4 };

typedef struct fixture {
    tmpdb t;
    sg_saga_rec r[N];
    sg_event_rec e[NEV];
} fixture;

/* N sagas of the three statuses and NEV events of the four, created in
 * pairs at equal times (the id breaks the tie). */
static void fill(fixture *f)
{
    tmpdb_make(&f->t);
    sg_store *s = open_sync(f->t.path);
    sg_write *w = sg_write_create();
    for (int i = 0; i < N; i++) {
        make_saga(&f->r[i], "{}", 2, NULL, 1000 + i / 2);
        f->r[i].status = (sg_saga_status)(i % 3);
        sg_write_saga_insert(w, &f->r[i]);
    }
    for (int i = 0; i < NEV; i++) {
        make_event(&f->e[i], f->r[i % N].id, "tokenizer_event", i % 2, 2000 + i / 2);
        f->e[i].status = (sg_event_status)(i % 4);
        sg_write_event_insert(w, &f->e[i]);
    }
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    sg_store_close(s);
}

static void drain(fixture *f)
{
    for (int i = 0; i < N; i++)
        sg_saga_rec_free(&f->r[i]);
    for (int i = 0; i < NEV; i++)
        sg_event_rec_free(&f->e[i]);
    tmpdb_remove(&f->t);
}

static int newer(int64_t at, const char *a, int64_t bt, const char *b)
{
    return at > bt || (at == bt && strcmp(a, b) > 0);
}

/* Every saga of status st (-1: any) pages out newest first, 3 a page. */
static void check_sagas(sg_store_reader *rd, const fixture *f, int st)
{
    char after[SG_CURSOR_MAX] = "";
    const sg_saga_rec *prev = NULL;
    sg_saga_rec got[N];
    size_t n_got = 0;
    for (;;) {
        sg_list_query q = {st, 3, after[0] ? after : NULL, NULL};
        sg_saga_rec *v = NULL;
        size_t n = 0;
        char next[SG_CURSOR_MAX] = "";
        assert_int_equal(sg_store_list(rd, &q, &v, &n, next), SG_OK);
        for (size_t i = 0; i < n; i++) {
            assert_true(n_got < N);
            if (st >= 0) assert_int_equal(v[i].status, st);
            got[n_got++] = v[i];
        }
        free(v);
        if (!next[0]) break;
        memcpy(after, next, sizeof after);
    }
    size_t want = 0;
    for (int i = 0; i < N; i++)
        want += st < 0 || (int)f->r[i].status == st;
    assert_int_equal(n_got, want);
    for (size_t i = 0; i < n_got; i++) {
        if (prev) assert_true(newer(prev->created_us, prev->id, got[i].created_us, got[i].id));
        prev = &got[i];
    }
    for (size_t i = 0; i < n_got; i++)
        sg_saga_rec_free(&got[i]);
}

/* The events of status st, newest first, and the counts of each status. */
static void check_events(sg_store_reader *rd, const fixture *f, int st)
{
    sg_list_query q = {st, 100, NULL, NULL};
    sg_event_rec *ev = NULL;
    size_t n = 0, want = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list_events(rd, &q, &ev, &n, next), SG_OK);
    for (int i = 0; i < NEV; i++)
        want += (int)f->e[i].status == st;
    assert_int_equal(n, want);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ev[i].status, st);
        if (i) assert_true(newer(ev[i - 1].created_us, ev[i - 1].id, ev[i].created_us, ev[i].id));
        sg_event_rec_free(&ev[i]);
    }
    free(ev);
}

static void count_unfinished(void *arg, sg_saga_rec *rec)
{
    ++*(int *)arg;
    sg_saga_rec_free(rec);
    free(rec);
}

static void check_reads(const fixture *f)
{
    sg_store *s = open_sync(f->t.path);
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    for (int st = -1; st <= SG_SAGA_FAILED; st++)
        check_sagas(rd, f, st);
    for (int st = 0; st < SG_EVENT_STATUSES; st++)
        check_events(rd, f, st);
    uint64_t counts[SG_EVENT_STATUSES] = {0};
    assert_int_equal(sg_store_count_events(rd, counts), SG_OK);
    for (int st = 0; st < SG_EVENT_STATUSES; st++)
        assert_int_equal(counts[st], NEV / 4);
    int unfinished = 0;
    assert_int_equal(sg_store_load_unfinished(rd, count_unfinished, &unfinished), SG_OK);
    assert_int_equal(unfinished, (N + 2) / 3);
    sg_store_reader_close(rd);
    sg_store_close(s);

    /* The status indexes hold the rows that are not settled, and only those. */
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f->t.path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), SG_SQ_SCHEMA_VERSION);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sqlite_master WHERE type='index' AND "
                                   "name IN ('sagas_status','outbox_status') AND "
                                   "sql LIKE '%WHERE status<>1'"),
                     2);
    assert_int_equal(query_int(db, "SELECT count(*) FROM sagas INDEXED BY sagas_status WHERE "
                                   "status<>1 AND status>=0"),
                     N - (N + 1) / 3);
    assert_intact(db);
    sqlite3_close(db);
}

static void test_new_file(void **state)
{
    (void)state;
    if (test_store_url()) skip(); /* SQLite's schema */
    fixture f;
    fill(&f);
    check_reads(&f);
    drain(&f);
}

/* A schema 5 file (full status indexes) is upgraded in place, once. */
static void test_upgrade_from_v5(void **state)
{
    (void)state;
    if (test_store_url()) skip();
    fixture f;
    fill(&f);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(f.t.path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP INDEX sagas_status; DROP INDEX outbox_status;"
                                  "CREATE INDEX sagas_status ON sagas(status, created_us, id);"
                                  "CREATE INDEX outbox_status ON outbox(status, created_us, id);"
                                  "PRAGMA user_version=5;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    check_reads(&f);
    check_reads(&f); /* the second open finds nothing to do */
    drain(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_file),
        cmocka_unit_test(test_upgrade_from_v5),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
