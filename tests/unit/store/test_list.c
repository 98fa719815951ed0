/* sg_store_list: newest first, keyset cursors, status filter, strict
 * cursor syntax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/helpers.h"

#define NS 25

typedef struct fixture {
    tmpdb t;
    sg_store *s;
    sg_store_reader *rd;
    sg_saga_rec recs[NS]; /* sorted newest first after setup */
} fixture;

static int newest_first(const void *pa, const void *pb)
{
    const sg_saga_rec *a = pa, *b = pb;
    if (a->created_us != b->created_us) return a->created_us < b->created_us ? 1 : -1;
    return -strcmp(a->id, b->id);
}

static int setup(void **state)
{
    fixture *f = sg_xcalloc(1, sizeof *f);
    tmpdb_make(&f->t);
    f->s = open_sync(f->t.path);
    sg_write *w = sg_write_create();
    for (int i = 0; i < NS; i++) {
        /* Pairs share a timestamp so the id tie-break is exercised. */
        make_saga(&f->recs[i], "{}", 2, NULL, 1000 + i / 2);
        f->recs[i].status = (sg_saga_status)(i % 3);
        sg_write_saga_insert(w, &f->recs[i]);
    }
    assert_int_equal(sg_store_commit_sync(f->s, w), SG_OK);
    qsort(f->recs, NS, sizeof f->recs[0], newest_first);
    assert_int_equal(sg_store_reader_open(f->s, &f->rd, NULL, 0), SG_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sg_store_reader_close(f->rd);
    sg_store_close(f->s);
    for (int i = 0; i < NS; i++)
        sg_saga_rec_free(&f->recs[i]);
    tmpdb_remove(&f->t);
    free(f);
    return 0;
}

static void free_list(sg_saga_rec *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_saga_rec_free(&v[i]);
    free(v);
}

/* Pages through with the given filter and limit; checks the order and
 * that every matching saga is seen exactly once. */
static void page_through(fixture *f, int status, size_t limit)
{
    char cursor[SG_CURSOR_MAX] = "";
    size_t seen = 0, pages = 0, expect_idx = 0;
    size_t matching = 0;
    for (int i = 0; i < NS; i++)
        if (status < 0 || (int)f->recs[i].status == status) matching++;
    for (;;) {
        sg_list_query q = {status, limit, cursor[0] ? cursor : NULL, NULL};
        sg_saga_rec *v = NULL;
        size_t n = 0;
        char next[SG_CURSOR_MAX];
        assert_int_equal(sg_store_list(f->rd, &q, &v, &n, next), SG_OK);
        assert_true(n <= limit);
        pages++;
        for (size_t i = 0; i < n; i++) {
            while (status >= 0 && (int)f->recs[expect_idx].status != status)
                expect_idx++;
            assert_saga_eq(&v[i], &f->recs[expect_idx]);
            assert_int_equal(v[i].nsteps, 3);
            assert_string_equal(v[i].steps[2].name, "ai_model");
            expect_idx++;
            seen++;
        }
        free_list(v, n);
        if (!next[0]) break;
        assert_int_equal(n, limit); /* only full pages have a successor */
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    assert_int_equal(seen, matching);
    assert_int_equal(pages, matching / limit + (matching % limit || matching == 0 ? 1 : 0));
}

static void test_pages(void **state)
{
    fixture *f = *state;
    page_through(f, -1, 10);
    page_through(f, -1, 1);
    page_through(f, -1, 25); /* exactly one full page: no next */
    page_through(f, -1, 1000);
    page_through(f, SG_SAGA_FAILED, 3);
    page_through(f, SG_SAGA_IN_PROGRESS, 4);
    page_through(f, SG_SAGA_COMPLETED, 1000);
}

static void test_empty_and_unknown_cursor(void **state)
{
    fixture *f = *state;
    /* A well-formed cursor need not name an existing saga (keyset). */
    char cur[SG_CURSOR_MAX];
    snprintf(cur, sizeof cur, "1005.%s", "ffffffff-ffff-4fff-bfff-ffffffffffff");
    sg_list_query q = {-1, 100, cur, NULL};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(f->rd, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 12); /* created_us 1000..1005, two each */
    assert_string_equal(next, "");
    free_list(v, n);
    snprintf(cur, sizeof cur, "0.%s", "00000000-0000-4000-8000-000000000000");
    assert_int_equal(sg_store_list(f->rd, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 0);
    assert_string_equal(next, "");
    free_list(v, n);
}

static void test_bad_queries(void **state)
{
    fixture *f = *state;
    static const char *bad[] = {
        "",
        "abc",
        "123",
        "123.",
        ".8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f",
        "-5.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f",
        "+5.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f",
        "12a.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f",
        "12.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5",
        "12.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5fa",
        "12.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5g",
        "12.8f0e2d62x2a3b-4c1d-9e8f-0a1b2c3d4e5f",
        "12 .8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f",
        "99999999999999999999.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f",
        "9223372036854775808.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f",
        "12.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f' OR 1=1 --",
    };
    sg_saga_rec *v = (sg_saga_rec *)&v;
    size_t n = 7;
    char next[SG_CURSOR_MAX] = "x";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sg_list_query q = {-1, 10, bad[i], NULL};
        assert_int_equal(sg_store_list(f->rd, &q, &v, &n, next), SG_EINVAL);
        assert_null(v);
        assert_int_equal(n, 0);
        assert_string_equal(next, "");
    }
    /* The largest int64 is still a valid timestamp. */
    sg_list_query ok = {-1, 10, "9223372036854775807.8f0e2d62-2a3b-4c1d-9e8f-0a1b2c3d4e5f", NULL};
    assert_int_equal(sg_store_list(f->rd, &ok, &v, &n, next), SG_OK);
    assert_int_equal(n, 10);
    free_list(v, n);

    sg_list_query zero = {-1, 0, NULL, NULL}, big = {-1, 1001, NULL, NULL},
                  st = {7, 10, NULL, NULL};
    assert_int_equal(sg_store_list(f->rd, &zero, &v, &n, next), SG_EINVAL);
    assert_int_equal(sg_store_list(f->rd, &big, &v, &n, next), SG_EINVAL);
    assert_int_equal(sg_store_list(f->rd, &st, &v, &n, next), SG_EINVAL);
}

/* ?type= keeps the sagas of one definition, with status and cursor too. */
static void test_type_filter(void **state)
{
    fixture *f = *state;
    sg_saga_rec a, b;
    make_saga(&a, "{}", 2, NULL, 5000);
    make_saga(&b, "{}", 2, NULL, 5001);
    free(a.def_name);
    free(b.def_name);
    a.def_name = sg_xstrdup("order");
    b.def_name = sg_xstrdup("order");
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &a);
    sg_write_saga_insert(w, &b);
    assert_int_equal(sg_store_commit_sync(f->s, w), SG_OK);
    static const struct {
        const char *type;
        size_t n;
    } cases[] = {{"order", 2}, {"sta", NS}, {"nope", 0}};
    for (size_t c = 0; c < 3; c++) {
        sg_list_query q = {-1, 1000, NULL, cases[c].type};
        sg_saga_rec *v = NULL;
        size_t n = 0;
        char next[SG_CURSOR_MAX];
        assert_int_equal(sg_store_list(f->rd, &q, &v, &n, next), SG_OK);
        assert_int_equal(n, cases[c].n);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(v[i].def_name, cases[c].type);
        free_list(v, n);
    }
    /* Paged one by one, with a status: the cursor keeps the filter. */
    sg_list_query q = {SG_SAGA_IN_PROGRESS, 1, NULL, "order"};
    sg_saga_rec *v = NULL;
    size_t n = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list(f->rd, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, b.id);
    free_list(v, n);
    char cur[SG_CURSOR_MAX];
    memcpy(cur, next, sizeof cur);
    q.after = cur;
    assert_int_equal(sg_store_list(f->rd, &q, &v, &n, next), SG_OK);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].id, a.id);
    free_list(v, n);
    sg_saga_rec_free(&a);
    sg_saga_rec_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_and_unknown_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_type_filter, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
