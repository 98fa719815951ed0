/* GET /sagas pages within a byte budget (sg_api_page_*), with the real
 * store cursor: a page cut short must continue right after its last
 * record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_int.h"
#include "sg/alloc.h"
#include "sg/buf.h"
#include "sg/json.h"
#include "api/render.h"
#include "store/store_int.h"

#define T0 INT64_C(1795860000000000)

/* Record i of a listing, newest first: a request of about `size` bytes. */
static void make_rec(sg_saga_rec *r, int i, size_t size)
{
    memset(r, 0, sizeof *r);
    snprintf(r->id, sizeof r->id, "%08x-d9cb-469f-a165-70867728950e", (unsigned)i);
    r->def_name = sg_xstrdup("no-such-definition");
    char *req = sg_xmalloc(size + 16);
    int n = snprintf(req, size + 16, "{\"p\":\"");
    memset(req + n, 'x', size);
    strcpy(req + n + size, "\"}");
    r->request = req;
    r->request_len = strlen(req);
    r->status = SG_SAGA_COMPLETED;
    r->created_us = r->updated_us = T0 - i;
    r->nsteps = 1;
    r->steps = sg_xcalloc(1, sizeof *r->steps);
    r->steps[0].name = sg_xstrdup("s1");
    r->steps[0].status = SG_STEP_PENDING;
}

static size_t rendered_size(const sg_saga_rec *r)
{
    sg_buf b;
    sg_buf_init(&b, SIZE_MAX);
    assert_int_equal(sg_render_saga(&b, r, NULL), SG_OK);
    size_t n = b.len;
    sg_buf_free(&b);
    return n;
}

/* The finished page: valid JSON, with exactly `count` records. */
static void check_doc(sg_api_page *p, size_t count)
{
    char err[128];
    assert_int_equal(sg_json_validate(p->out.ptr, p->out.len, err, sizeof err), SG_OK);
    assert_int_equal(p->count, count);
    size_t ids = 0;
    for (const char *s = p->out.ptr; (s = strstr(s, "{\"id\":")); s++)
        ids++;
    assert_int_equal(ids, count);
}

/* The page's next cursor (a JSON string), parsed by the store. */
static void check_next_is(const sg_api_page *p, const sg_saga_rec *last)
{
    const char *tail = strstr(p->out.ptr, "],\"next\":\"");
    assert_non_null(tail);
    char cursor[SG_CURSOR_MAX + 8];
    snprintf(cursor, sizeof cursor, "%s", tail + 10);
    char *q = strchr(cursor, '"');
    assert_non_null(q);
    *q = '\0';
    int64_t us = 0;
    char id[SG_ID_LEN + 1];
    assert_int_equal(sg_store_cursor_parse(cursor, &us, id), SG_OK);
    assert_true(us == last->created_us);
    assert_string_equal(id, last->id);
    assert_string_equal(p->last, cursor);
}

/* sg_api_page_add as 1 (added), 0 (did not fit: page full) or -1 (a first
 * record over one_max). */
static int add(sg_api_page *p, const sg_saga_rec *r)
{
    size_t before = p->count;
    sg_status st = sg_api_page_add(p, r);
    if (st == SG_ETOOBIG) return -1;
    assert_int_equal(st, SG_OK);
    return p->count > before ? 1 : 0;
}

static void test_stops_at_budget(void **state)
{
    (void)state;
    enum { N = 10 };
    sg_saga_rec recs[N];
    for (int i = 0; i < N; i++)
        make_rec(&recs[i], i, 1000);
    size_t one = rendered_size(&recs[0]);
    /* Room for the head, three records, two commas and the longest tail
     * (],"next":"<cursor>"}), and half a record more: not for four. */
    size_t budget = 10 + 3 * one + 2 + (12 + SG_CURSOR_MAX + 1) + one / 2;
    sg_api_page p;
    sg_api_page_init(&p, budget, one * 2);
    int added = 1, n = 0;
    for (int i = 0; i < N && added == 1; i++) {
        added = add(&p, &recs[i]);
        if (added == 1) n++;
    }
    assert_int_equal(added, 0);
    assert_int_equal(n, 3);
    assert_true(p.full);
    assert_int_equal(p.biggest, one);
    assert_int_equal(add(&p, &recs[9]), 0); /* full stays full */
    /* The store's next is ignored: the page continues after record 2. */
    assert_int_equal(sg_api_page_finish(&p, "123.00000009-d9cb-469f-a165-70867728950e"), SG_OK);
    check_doc(&p, 3);
    assert_true(p.out.len <= budget);
    check_next_is(&p, &recs[2]);
    assert_non_null(strstr(p.out.ptr, recs[2].id));
    assert_null(strstr(p.out.ptr, recs[3].id));
    sg_api_page_free(&p);
    for (int i = 0; i < N; i++)
        sg_saga_rec_free(&recs[i]);
}

static void test_within_budget_uses_store_next(void **state)
{
    (void)state;
    sg_saga_rec recs[2];
    make_rec(&recs[0], 0, 10);
    make_rec(&recs[1], 1, 10);
    sg_api_page p;
    sg_api_page_init(&p, 1 << 20, 1 << 20);
    assert_int_equal(add(&p, &recs[0]), 1);
    assert_int_equal(add(&p, &recs[1]), 1);
    assert_false(p.full);
    assert_int_equal(sg_api_page_finish(&p, "7.00000005-d9cb-469f-a165-70867728950e"), SG_OK);
    check_doc(&p, 2);
    assert_non_null(strstr(p.out.ptr, "],\"next\":\"7.00000005-d9cb-469f-a165-70867728950e\"}"));
    sg_api_page_free(&p);

    /* The last page: next is null (for "" and NULL alike). */
    sg_api_page_init(&p, 1 << 20, 1 << 20);
    assert_int_equal(add(&p, &recs[0]), 1);
    assert_int_equal(sg_api_page_finish(&p, ""), SG_OK);
    check_doc(&p, 1);
    assert_non_null(strstr(p.out.ptr, "}],\"next\":null}"));
    sg_api_page_free(&p);

    sg_api_page_init(&p, 1 << 20, 1 << 20);
    assert_int_equal(sg_api_page_finish(&p, NULL), SG_OK);
    assert_string_equal(p.out.ptr, "{\"sagas\":[],\"next\":null}");
    sg_api_page_free(&p);
    sg_saga_rec_free(&recs[0]);
    sg_saga_rec_free(&recs[1]);
}

/* A first record larger than the budget is still sent (alone), so a
 * listing never gets stuck; the next page starts after it. */
static void test_first_record_over_budget(void **state)
{
    (void)state;
    sg_saga_rec big, small;
    make_rec(&big, 0, 5000);
    make_rec(&small, 1, 10);
    sg_api_page p;
    sg_api_page_init(&p, 1000, 1 << 20);
    assert_int_equal(add(&p, &big), 1);
    assert_int_equal(add(&p, &small), 0);
    assert_int_equal(sg_api_page_finish(&p, ""), SG_OK);
    check_doc(&p, 1);
    check_next_is(&p, &big);
    sg_api_page_free(&p);
    sg_saga_rec_free(&big);
    sg_saga_rec_free(&small);
}

/* Over one_max: an error as the first record, the end of the page later. */
static void test_record_over_one_max(void **state)
{
    (void)state;
    sg_saga_rec small, big;
    make_rec(&small, 0, 10);
    make_rec(&big, 1, 5000);
    sg_api_page p;
    sg_api_page_init(&p, 1 << 20, 4000);
    assert_int_equal(add(&p, &big), -1);
    assert_int_equal(p.count, 0);
    assert_string_equal(p.out.ptr, "{\"sagas\":["); /* nothing of it left */
    sg_api_page_free(&p);

    sg_api_page_init(&p, 1 << 20, 4000);
    assert_int_equal(add(&p, &small), 1);
    assert_int_equal(add(&p, &big), 0);
    assert_true(p.full);
    assert_int_equal(sg_api_page_finish(&p, ""), SG_OK);
    check_doc(&p, 1);
    check_next_is(&p, &small);
    sg_api_page_free(&p);
    sg_saga_rec_free(&small);
    sg_saga_rec_free(&big);
}

/* A budget too small for even the tail: every page holds one record. */
static void test_tiny_budget(void **state)
{
    (void)state;
    sg_saga_rec recs[3];
    for (int i = 0; i < 3; i++)
        make_rec(&recs[i], i, 1);
    for (int start = 0; start < 3; start++) {
        sg_api_page p;
        sg_api_page_init(&p, 1, 1 << 20);
        assert_int_equal(add(&p, &recs[start]), 1);
        if (start + 1 < 3) assert_int_equal(add(&p, &recs[start + 1]), 0);
        assert_int_equal(sg_api_page_finish(&p, ""), SG_OK);
        check_doc(&p, 1);
        if (start + 1 < 3)
            check_next_is(&p, &recs[start]);
        else
            assert_non_null(strstr(p.out.ptr, "\"next\":null}"));
        sg_api_page_free(&p);
    }
    for (int i = 0; i < 3; i++)
        sg_saga_rec_free(&recs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stops_at_budget),
        cmocka_unit_test(test_within_budget_uses_store_next),
        cmocka_unit_test(test_first_record_over_budget),
        cmocka_unit_test(test_record_over_one_max),
        cmocka_unit_test(test_tiny_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
