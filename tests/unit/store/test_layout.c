/* The listing indexes are ascending (new rows go at their right end): a
 * new file has them so; a file of the current schema version made by an
 * older sagad, with descending ones, has them rebuilt once at open, in
 * place and without a new version, and lists exactly as before, newest
 * first, page after page. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "store/helpers.h"
#include "store/sqlite_int.h"

static const char *const listing_indexes[] = {"sagas_created", "sagas_status", "sagas_type",
                                              "outbox_created", "outbox_status"};

/* How many of the listing indexes exist, and how many are descending. */
static void count_indexes(const char *path, int *present, int *descending)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    *present = *descending = 0;
    for (size_t i = 0; i < sizeof listing_indexes / sizeof listing_indexes[0]; i++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='%s'",
                 listing_indexes[i]);
        *present += query_int(db, sql);
        snprintf(sql, sizeof sql,
                 "SELECT count(*) FROM sqlite_master WHERE type='index' AND name='%s' AND "
                 "instr(upper(sql), ' DESC')",
                 listing_indexes[i]);
        *descending += query_int(db, sql);
    }
    sqlite3_close(db);
}

static void test_new_file_is_ascending(void **state)
{
    (void)state;
    tmpdb t;
    tmpdb_make(&t);
    sg_store_close(open_sync(t.path));
    int present, descending;
    count_indexes(t.path, &present, &descending);
    assert_int_equal(present, 5);
    assert_int_equal(descending, 0);
    tmpdb_remove(&t);
}

/* Lists every saga of status st (-1: any), newest first, 3 at a time,
 * into ids. */
static size_t list_all(sg_store_reader *r, int st, char ids[][SG_ID_LEN + 1], size_t max)
{
    char after[SG_CURSOR_MAX] = "";
    size_t got = 0;
    for (;;) {
        sg_list_query q = {st, 3, after[0] ? after : NULL, NULL};
        sg_saga_rec *v = NULL;
        size_t n = 0;
        char next[SG_CURSOR_MAX];
        assert_int_equal(sg_store_list(r, &q, &v, &n, next), SG_OK);
        for (size_t i = 0; i < n; i++) {
            assert_true(got < max);
            memcpy(ids[got++], v[i].id, SG_ID_LEN + 1);
            sg_saga_rec_free(&v[i]);
        }
        free(v);
        if (!next[0]) return got;
        memcpy(after, next, sizeof after);
    }
}

/* A file as the previous sagad left it: the current schema with descending indexes
 * and rows in them. Opening it rebuilds the five indexes ascending, keeps
 * the current user_version and every row; listings (all, by status, events) come
 * out newest first across pages; a second open changes nothing. */
static void test_descending_indexes_rebuilt(void **state)
{
    (void)state;
    enum { N = 10 };
    tmpdb t;
    tmpdb_make(&t);
    sg_store *s = open_sync(t.path);
    sg_saga_rec r[N];
    sg_event_rec e[N];
    sg_write *w = sg_write_create();
    for (int i = 0; i < N; i++) {
        /* Equal times in pairs: the id breaks the tie. */
        make_saga(&r[i], "{}", 2, NULL, 1000 + i / 2);
        r[i].status = i % 3 == 0 ? SG_SAGA_FAILED : SG_SAGA_IN_PROGRESS;
        sg_write_saga_insert(w, &r[i]);
        make_event(&e[i], r[i].id, "tokenizer_event", 0, 1000 + i / 2);
        sg_write_event_insert(w, &e[i]);
    }
    assert_int_equal(sg_store_commit_sync(s, w), SG_OK);
    sg_store_close(s);

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP INDEX sagas_created; DROP INDEX sagas_status;"
                                  "DROP INDEX sagas_type; DROP INDEX outbox_created;"
                                  "DROP INDEX outbox_status;"
                                  "CREATE INDEX sagas_created ON sagas(created_us DESC, id DESC);"
                                  "CREATE INDEX sagas_status ON sagas(status, created_us DESC, "
                                  "id DESC);"
                                  "CREATE INDEX sagas_type ON sagas(def_name, created_us DESC, "
                                  "id DESC);"
                                  "CREATE INDEX outbox_created ON outbox(created_us DESC, id "
                                  "DESC);"
                                  "CREATE INDEX outbox_status ON outbox(status, created_us "
                                  "DESC, id DESC);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
    int present, descending;
    count_indexes(t.path, &present, &descending);
    assert_int_equal(descending, 5);

    s = open_sync(t.path);
    count_indexes(t.path, &present, &descending);
    assert_int_equal(present, 5);
    assert_int_equal(descending, 0);
    assert_int_equal(sqlite3_open(t.path, &db), SQLITE_OK);
    assert_int_equal(query_int(db, "PRAGMA user_version"), SG_SQ_SCHEMA_VERSION);
    assert_intact(db);
    sqlite3_close(db);

    /* Expected orders: newest first by (created_us, id). */
    int order[N];
    for (int i = 0; i < N; i++)
        order[i] = i;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) {
            const sg_saga_rec *a = &r[order[i]], *b = &r[order[j]];
            if (b->created_us > a->created_us ||
                (b->created_us == a->created_us && strcmp(b->id, a->id) > 0)) {
                int x = order[i];
                order[i] = order[j];
                order[j] = x;
            }
        }
    sg_store_reader *rd = NULL;
    assert_int_equal(sg_store_reader_open(s, &rd, NULL, 0), SG_OK);
    char ids[N][SG_ID_LEN + 1];
    assert_int_equal(list_all(rd, -1, ids, N), N);
    for (int i = 0; i < N; i++)
        assert_string_equal(ids[i], r[order[i]].id);
    size_t k = list_all(rd, SG_SAGA_FAILED, ids, N), m = 0;
    for (int i = 0; i < N; i++)
        if (r[order[i]].status == SG_SAGA_FAILED) assert_string_equal(ids[m++], r[order[i]].id);
    assert_int_equal(k, m);

    /* Events, newest first, by the same keyset. */
    sg_list_query q = {-1, 100, NULL, NULL};
    sg_event_rec *ev = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list_events(rd, &q, &ev, &n, next), SG_OK);
    assert_int_equal(n, N);
    for (size_t i = 1; i < n; i++)
        assert_true(
            ev[i - 1].created_us > ev[i].created_us ||
            (ev[i - 1].created_us == ev[i].created_us && strcmp(ev[i - 1].id, ev[i].id) > 0));
    for (size_t i = 0; i < n; i++)
        sg_event_rec_free(&ev[i]);
    free(ev);
    sg_store_reader_close(rd);
    sg_store_close(s);

    /* Once: reopening leaves the file alone. */
    sg_store_close(open_sync(t.path));
    count_indexes(t.path, &present, &descending);
    assert_int_equal(present, 5);
    assert_int_equal(descending, 0);
    for (int i = 0; i < N; i++) {
        sg_saga_rec_free(&r[i]);
        sg_event_rec_free(&e[i]);
    }
    tmpdb_remove(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_file_is_ascending),
        cmocka_unit_test(test_descending_indexes_rebuilt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
