/* The API's pure request helpers: routing, Prefer, Idempotency-Key,
 * Content-Length, list query and body classification. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api/api_int.h"
#include "api/assets_int.h"
#include "sg/records.h"

static void test_route(void **state)
{
    (void)state;
    const char *id, *allow;
    assert_int_equal(sg_api_route("POST", "/saga", &id, &allow), SG_ROUTE_START);
    assert_int_equal(sg_api_route("GET", "/saga", &id, &allow), SG_ROUTE_BAD_METHOD);
    assert_string_equal(allow, "POST");
    assert_int_equal(sg_api_route("PUT", "/saga", NULL, NULL), SG_ROUTE_BAD_METHOD);

    assert_int_equal(sg_api_route("GET", "/saga/abc", &id, &allow), SG_ROUTE_GET);
    assert_string_equal(id, "abc");
    assert_null(allow);
    assert_int_equal(sg_api_route("HEAD", "/saga/abc", &id, NULL), SG_ROUTE_GET);
    assert_int_equal(sg_api_route("GET", "/saga/", &id, NULL), SG_ROUTE_GET);
    assert_string_equal(id, "");
    assert_int_equal(sg_api_route("DELETE", "/saga/abc", &id, &allow), SG_ROUTE_BAD_METHOD);
    assert_string_equal(allow, "GET, HEAD");
    assert_null(id);

    assert_int_equal(sg_api_route("GET", "/sagas", NULL, NULL), SG_ROUTE_LIST);
    assert_int_equal(sg_api_route("GET", "/healthz", NULL, NULL), SG_ROUTE_HEALTH);
    assert_int_equal(sg_api_route("HEAD", "/healthz", NULL, NULL), SG_ROUTE_HEALTH);
    assert_int_equal(sg_api_route("GET", "/readyz", NULL, NULL), SG_ROUTE_READY);
    assert_int_equal(sg_api_route("POST", "/readyz", NULL, &allow), SG_ROUTE_BAD_METHOD);
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(sg_api_route("POST", "/sagas", NULL, NULL), SG_ROUTE_BAD_METHOD);

    assert_int_equal(sg_api_route("GET", "/", NULL, NULL), SG_ROUTE_NOT_FOUND);
    assert_int_equal(sg_api_route("GET", "/sagaz", NULL, NULL), SG_ROUTE_NOT_FOUND);
    assert_int_equal(sg_api_route("GET", "/healthz/", NULL, NULL), SG_ROUTE_NOT_FOUND);
    assert_int_equal(sg_api_route("POST", "/SAGA", NULL, NULL), SG_ROUTE_NOT_FOUND);
    assert_int_equal(sg_api_route("GET", "", NULL, NULL), SG_ROUTE_NOT_FOUND);
    assert_int_equal(sg_api_route(NULL, "/saga", NULL, NULL), SG_ROUTE_NOT_FOUND);
    /* Method names are case-sensitive (RFC 9110). */
    assert_int_equal(sg_api_route("post", "/saga", NULL, &allow), SG_ROUTE_BAD_METHOD);
}

static void test_prefer(void **state)
{
    (void)state;
    assert_true(sg_api_prefer_async("respond-async"));
    assert_true(sg_api_prefer_async("Respond-Async"));
    assert_true(sg_api_prefer_async("  respond-async  "));
    assert_true(sg_api_prefer_async("wait=10, respond-async"));
    assert_true(sg_api_prefer_async("handling=lenient,respond-async;foo=bar"));
    assert_true(sg_api_prefer_async("return=minimal; x=\"a,b\", RESPOND-ASYNC"));
    assert_false(sg_api_prefer_async(""));
    assert_false(sg_api_prefer_async(NULL));
    assert_false(sg_api_prefer_async("respond-asyncx"));
    assert_false(sg_api_prefer_async("xrespond-async"));
    assert_false(sg_api_prefer_async("wait=respond-async"));
    assert_false(sg_api_prefer_async("foo; respond-async"));
    /* The comma inside the quoted value does not start a preference. */
    assert_false(sg_api_prefer_async("x=\"a, respond-async\""));
    assert_false(sg_api_prefer_async("x=\"a\\\", respond-async\""));
}

static void test_idem_key(void **state)
{
    (void)state;
    char k[256];
    assert_true(sg_api_idem_key_valid("a"));
    assert_true(sg_api_idem_key_valid("order-42:retry 1~"));
    assert_false(sg_api_idem_key_valid(""));
    assert_false(sg_api_idem_key_valid(NULL));
    assert_false(sg_api_idem_key_valid("tab\there"));
    assert_false(sg_api_idem_key_valid("del\x7f"));
    assert_false(sg_api_idem_key_valid("\xc3\xb1"));
    memset(k, 'k', 200);
    k[200] = '\0';
    assert_true(sg_api_idem_key_valid(k));
    k[200] = 'k';
    k[201] = '\0';
    assert_false(sg_api_idem_key_valid(k));
}

static void test_content_length(void **state)
{
    (void)state;
    uint64_t n = 7;
    assert_int_equal(sg_api_parse_content_length("0", &n), SG_OK);
    assert_int_equal(n, 0);
    assert_int_equal(sg_api_parse_content_length("1048577", &n), SG_OK);
    assert_int_equal(n, 1048577);
    assert_int_equal(sg_api_parse_content_length("18446744073709551615", &n), SG_OK);
    assert_true(n == UINT64_MAX);
    assert_int_equal(sg_api_parse_content_length("18446744073709551616", &n), SG_EINVAL);
    assert_int_equal(sg_api_parse_content_length("", &n), SG_EINVAL);
    assert_int_equal(sg_api_parse_content_length("-1", &n), SG_EINVAL);
    assert_int_equal(sg_api_parse_content_length("12a", &n), SG_EINVAL);
    assert_int_equal(sg_api_parse_content_length(NULL, &n), SG_EINVAL);
}

static void test_list_query(void **state)
{
    (void)state;
    sg_list_query q;
    char err[128];

    assert_int_equal(sg_api_parse_list_query(NULL, NULL, NULL, NULL, &q, err, sizeof err), SG_OK);
    assert_int_equal(q.status, -1);
    assert_int_equal(q.limit, 50);
    assert_null(q.after);
    assert_int_equal(sg_api_parse_list_query("", "", "", NULL, &q, err, sizeof err), SG_OK);
    assert_int_equal(q.status, -1);
    assert_int_equal(q.limit, 50);
    assert_null(q.after);

    assert_int_equal(sg_api_parse_list_query("FAILED", "1000", "abc", NULL, &q, err, sizeof err),
                     SG_OK);
    assert_int_equal(q.status, SG_SAGA_FAILED);
    assert_int_equal(q.limit, 1000);
    assert_string_equal(q.after, "abc");
    assert_int_equal(sg_api_parse_list_query("IN_PROGRESS", "1", NULL, NULL, &q, err, sizeof err),
                     SG_OK);
    assert_int_equal(q.status, SG_SAGA_IN_PROGRESS);
    assert_int_equal(q.limit, 1);
    assert_int_equal(sg_api_parse_list_query("COMPLETED", "0007", NULL, NULL, &q, err, sizeof err),
                     SG_OK);
    assert_int_equal(q.status, SG_SAGA_COMPLETED);
    assert_int_equal(q.limit, 7);

    static const char *bad_limits[] = {
        "0", "1001", "-1", "+5", " 5", "5 ", "1e2", "abc", "99999999999999999999", "000"};
    for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
        err[0] = '\0';
        assert_int_equal(
            sg_api_parse_list_query(NULL, bad_limits[i], NULL, NULL, &q, err, sizeof err),
            SG_EINVAL);
        assert_non_null(strstr(err, "limit"));
    }
    static const char *bad_status[] = {"completed", "PENDING", "DONE", "COMPLETED "};
    for (size_t i = 0; i < sizeof bad_status / sizeof bad_status[0]; i++) {
        err[0] = '\0';
        assert_int_equal(
            sg_api_parse_list_query(bad_status[i], NULL, NULL, NULL, &q, err, sizeof err),
            SG_EINVAL);
        assert_non_null(strstr(err, "status"));
    }
    char longcur[SG_CURSOR_MAX + 8];
    memset(longcur, 'c', sizeof longcur - 1);
    longcur[sizeof longcur - 1] = '\0';
    assert_int_equal(sg_api_parse_list_query(NULL, NULL, longcur, NULL, &q, err, sizeof err),
                     SG_EINVAL);
    assert_non_null(strstr(err, "cursor"));
    assert_null(q.after);
}

static void test_types(void **state)
{
    (void)state;
    const char *id = NULL, *allow = NULL;
    assert_int_equal(sg_api_route("POST", "/sagas/order", &id, &allow), SG_ROUTE_START);
    assert_string_equal(id, "order");
    assert_int_equal(sg_api_route("GET", "/sagas/order", &id, &allow), SG_ROUTE_BAD_METHOD);
    assert_string_equal(allow, "POST");
    assert_int_equal(sg_api_route("GET", "/definitions", NULL, NULL), SG_ROUTE_DEFINITIONS);
    assert_int_equal(sg_api_route("POST", "/definitions", NULL, &allow), SG_ROUTE_BAD_METHOD);
    assert_true(sg_api_type_valid("order_v2.b-1"));
    assert_false(sg_api_type_valid(""));
    assert_false(sg_api_type_valid("a/b"));
    assert_false(sg_api_type_valid("a b"));
    char longt[SG_API_TYPE_MAX + 2];
    memset(longt, 'x', sizeof longt - 1);
    longt[sizeof longt - 1] = '\0';
    assert_false(sg_api_type_valid(longt));
    sg_list_query q;
    char err[128];
    assert_int_equal(sg_api_parse_list_query(NULL, NULL, NULL, "order", &q, err, sizeof err),
                     SG_OK);
    assert_string_equal(q.type, "order");
    assert_int_equal(sg_api_parse_list_query(NULL, NULL, NULL, "a/b", &q, err, sizeof err),
                     SG_EINVAL);
    assert_non_null(strstr(err, "type"));
    assert_null(q.type);
}

/* The compiled-in files answer only at their exact paths, only to GET. */
static void test_assets(void **state)
{
    (void)state;
    const char *allow = NULL;
    assert_int_equal(sg_api_route("GET", "/openapi.json", NULL, NULL), SG_ROUTE_ASSET);
    assert_int_equal(sg_api_route("HEAD", "/docs", NULL, NULL), SG_ROUTE_ASSET);
    assert_int_equal(sg_api_route("GET", "/ui/", NULL, NULL), SG_ROUTE_ASSET);
    assert_int_equal(sg_api_route("GET", "/ui", NULL, &allow), SG_ROUTE_REDIRECT);
    assert_string_equal(allow, "/ui/");
    assert_int_equal(sg_api_route("POST", "/ui/", NULL, &allow), SG_ROUTE_BAD_METHOD);
    assert_string_equal(allow, "GET, HEAD");
    assert_int_equal(sg_api_route("GET", "/ui/nope.js", NULL, NULL), SG_ROUTE_NOT_FOUND);
    assert_int_equal(sg_api_route("GET", "/ui/../openapi.json", NULL, NULL), SG_ROUTE_NOT_FOUND);
    assert_int_equal(sg_api_route("GET", "/web/openapi.json", NULL, NULL), SG_ROUTE_NOT_FOUND);
    const sg_asset *f = sg_asset_find("/ui/");
    assert_non_null(f);
    assert_string_equal(f->path, "/ui/index.html");
    assert_non_null(strstr(f->mime, "text/html"));
    assert_int_equal(f->data[f->len], 0);
    f = sg_asset_find("/openapi.json");
    assert_non_null(f);
    assert_string_equal(f->mime, "application/json");
    assert_non_null(strstr((const char *)f->data, "\"openapi\""));
}

static void test_check_body(void **state)
{
    (void)state;
    char err[256];
#define CHECK(lit) sg_api_check_body(lit, sizeof(lit) - 1, err, sizeof err)
    assert_int_equal(CHECK("{}"), SG_OK);
    assert_int_equal(CHECK(" \n{\"a\":[1,{\"b\":null}]}\t"), SG_OK);
    assert_int_equal(CHECK("{\"z\":\"\\u0000\",\"n\":9223372036854775807}"), SG_OK);
    assert_int_equal(CHECK(""), SG_EINVAL);
    assert_int_equal(CHECK("{"), SG_EINVAL);
    assert_int_equal(CHECK("{\"a\":1} x"), SG_EINVAL);
    assert_int_equal(CHECK("{\"a\":\"\xff\"}"), SG_EINVAL);
    assert_int_equal(CHECK("[1,2]"), SG_ETYPE);
    assert_non_null(strstr(err, "object"));
    assert_int_equal(CHECK("\"str\""), SG_ETYPE);
    assert_int_equal(CHECK("42"), SG_ETYPE);
    assert_int_equal(CHECK("null"), SG_ETYPE);
#undef CHECK
    /* Deeper than SG_JSON_MAX_DEPTH: 400, not a crash. */
    static char deep[2 * 600 + 1];
    for (int i = 0; i < 600; i++) {
        deep[i] = '[';
        deep[600 + i] = ']';
    }
    deep[0] = '{';
    assert_int_equal(sg_api_check_body(deep, 1200, err, sizeof err), SG_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route),      cmocka_unit_test(test_prefer),
        cmocka_unit_test(test_idem_key),   cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_list_query), cmocka_unit_test(test_check_body),
        cmocka_unit_test(test_types),      cmocka_unit_test(test_assets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
