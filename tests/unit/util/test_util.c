/* Unit tests for the util module: capped buffers, JSON validation and
 * string escaping, ids, timestamps, the monotonic clock, the records'
 * deep copies and URL checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "sg/buf.h"
#include "sg/json.h"
#include "sg/records.h"
#include "sg/util.h"

static void buf_caps_growth(void **state)
{
    (void)state;
    sg_buf b;
    sg_buf_init(&b, 10);
    assert_int_equal(sg_buf_add(&b, "12345", 5), SG_OK);
    assert_int_equal(sg_buf_add(&b, "123456", 6), SG_ETOOBIG);
    assert_int_equal(b.len, 5); /* unchanged by the refused add */
    assert_int_equal(sg_buf_add(&b, "12345", 5), SG_OK);
    assert_int_equal(sg_buf_addc(&b, 'x'), SG_ETOOBIG);
    assert_string_equal(b.ptr, "1234512345");
    size_t n;
    char *p = sg_buf_take(&b, &n);
    assert_int_equal(n, 10);
    assert_null(b.ptr);
    free(p);
    p = sg_buf_take(&b, &n); /* empty buffer still yields a string */
    assert_string_equal(p, "");
    free(p);
}

static void buf_printf_large(void **state)
{
    (void)state;
    sg_buf b;
    sg_buf_init(&b, 1 << 20);
    char big[1000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sg_buf_addf(&b, "<%s>%d", big, 42), SG_OK);
    assert_int_equal(b.len, 999 + 2 + 2);
    assert_memory_equal(b.ptr + b.len - 3, ">42", 3);
    sg_buf_free(&b);
}

static sg_status validate(const char *s)
{
    char err[200];
    return sg_json_validate(s, strlen(s), err, sizeof err);
}

static void json_accepts_what_the_contract_needs(void **state)
{
    (void)state;
    assert_int_equal(validate("{\"a\":\"\\u0000\"}"), SG_OK);
    assert_int_equal(validate("{\"i\":9223372036854775807,\"j\":-9223372036854775808}"), SG_OK);
    assert_int_equal(validate("{\"big\":123456789012345678901234567890}"), SG_OK);
    assert_int_equal(validate("{\"u\":\"\xc3\xb1\xe2\x82\xac\xf0\x9f\x98\x80\"}"), SG_OK);
    assert_int_equal(validate("[1,2]"), SG_OK);
    assert_int_equal(validate("\"s\""), SG_OK);
}

static void json_rejects_bad_input(void **state)
{
    (void)state;
    char err[200];
    assert_int_equal(validate("{"), SG_EINVAL);
    assert_int_equal(validate("{\"a\":1} x"), SG_EINVAL);
    assert_int_equal(validate("{\"a\":\"\xff\"}"), SG_EINVAL);
    assert_int_equal(validate(""), SG_EINVAL);
    /* Depth: SG_JSON_MAX_DEPTH is fine, one more is not. */
    size_t d = SG_JSON_MAX_DEPTH;
    char *deep = malloc(2 * d + 3);
    for (size_t i = 0; i < d; i++)
        deep[i] = '[';
    for (size_t i = 0; i < d; i++)
        deep[d + i] = ']';
    deep[2 * d] = '\0';
    assert_int_equal(sg_json_validate(deep, 2 * d, err, sizeof err), SG_OK);
    free(deep);
    size_t huge = 100000;
    deep = malloc(huge + 1);
    memset(deep, '[', huge);
    deep[huge] = '\0';
    assert_int_equal(sg_json_validate(deep, huge, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "deeper"));
    free(deep);
    /* Brackets inside strings do not count as nesting. */
    assert_int_equal(validate("{\"s\":\"[[[[[[[[[[[[[[[[\\\"[[[[\"}"), SG_OK);
}

/* The corners where a checker and a parser part ways most easily; each
 * as jansson decides it (fuzz_json compares the two on any input). */
static void json_corners(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        sg_status want;
    } cases[] = {
        {" \t\r\n[ 1 , -0.5e+3 , 0 , -0 , 1E-2 ] \n", SG_OK},
        {"[01]", SG_EINVAL},
        {"[1.]", SG_EINVAL},
        {"[.5]", SG_EINVAL},
        {"[+1]", SG_EINVAL},
        {"[-]", SG_EINVAL},
        {"[1e]", SG_EINVAL},
        {"[1e400]", SG_EINVAL}, /* overflows a double, as jansson refuses */
        {"[1e-400]", SG_OK},    /* underflow is fine */
        {"[1,]", SG_EINVAL},
        {"{\"a\":1,}", SG_EINVAL},
        {"{\"a\" 1}", SG_EINVAL},
        {"{1:1}", SG_EINVAL},
        {"{\"a\":1}}", SG_EINVAL},
        {"[true,false,null]", SG_OK},
        {"[tru]", SG_EINVAL},
        {"nul", SG_EINVAL},
        {"\"\\ud83d\\ude00\"", SG_OK},     /* a surrogate pair */
        {"\"\\ud83d\"", SG_EINVAL},        /* high alone */
        {"\"\\ude00\"", SG_EINVAL},        /* low alone */
        {"\"\\ud83d\\u0041\"", SG_EINVAL}, /* high, then not a low */
        {"\"\\u00zz\"", SG_EINVAL},
        {"\"\\x\"", SG_EINVAL},
        {"\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"", SG_OK},
        {"\"tab\there\"", SG_EINVAL}, /* a raw control character */
        {"\"\x7f\"", SG_OK},
        {"\"\xc0\xaf\"", SG_EINVAL},         /* overlong */
        {"\"\xed\xa0\x80\"", SG_EINVAL},     /* a surrogate in UTF-8 */
        {"\"\xf4\x90\x80\x80\"", SG_EINVAL}, /* past U+10FFFF */
        {"\"\xe2\x82\"", SG_EINVAL},         /* cut short */
        {"{\"k\\u0000\":1}", SG_EINVAL},     /* NUL in a key: jansson cannot */
        {"{\"k\":\"\\u0000\"}", SG_OK},
        {"\xef\xbb\xbf{}", SG_EINVAL}, /* a byte order mark */
        {"\"open", SG_EINVAL},
        {"[", SG_EINVAL},
        {" ", SG_EINVAL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[200];
        sg_status st = sg_json_validate(cases[i].text, strlen(cases[i].text), err, sizeof err);
        if (st != cases[i].want) fprintf(stderr, "case %zu: %s\n", i, cases[i].text);
        assert_int_equal(st, cases[i].want);
        if (st != SG_OK) assert_non_null(strstr(err, "JSON"));
    }
    /* A raw NUL is a control character inside a string, a bad token
     * outside; also right after a number or a literal, which jansson skips. */
    assert_int_equal(sg_json_validate("\"a\0b\"", 5, NULL, 0), SG_EINVAL);
    assert_int_equal(sg_json_validate("[1]\0", 4, NULL, 0), SG_EINVAL);
    assert_int_equal(sg_json_validate("[1\0]", 4, NULL, 0), SG_EINVAL);
    assert_int_equal(sg_json_validate("[true\0]", 7, NULL, 0), SG_EINVAL);
    assert_int_equal(sg_json_validate("2\0", 2, NULL, 0), SG_EINVAL);
    /* A 400-digit integer overflows a double too; 300 digits do not. */
    char big[402];
    memset(big, '9', 400);
    assert_int_equal(sg_json_validate(big, 400, NULL, 0), SG_EINVAL);
    assert_int_equal(sg_json_validate(big, 300, NULL, 0), SG_OK);
}

static void json_escapes_strings(void **state)
{
    (void)state;
    sg_buf b;
    sg_buf_init(&b, 1000);
    const char in[] = "a\"b\\c\n\x01\0z";
    assert_int_equal(sg_json_add_str(&b, in, sizeof in - 1), SG_OK);
    assert_string_equal(b.ptr, "\"a\\\"b\\\\c\\n\\u0001\\u0000z\"");
    sg_buf_reset(&b);
    sg_json_add_cstr(&b, NULL);
    assert_string_equal(b.ptr, "null");
    sg_buf_free(&b);
}

static void ids_and_times(void **state)
{
    (void)state;
    char a[SG_ID_LEN + 1], b[SG_ID_LEN + 1];
    sg_uuid_v4(a);
    sg_uuid_v4(b);
    assert_true(sg_uuid_valid(a, strlen(a)));
    assert_string_not_equal(a, b);
    assert_int_equal(a[14], '4');
    assert_false(sg_uuid_valid("not-a-uuid", 10));
    assert_false(sg_uuid_valid("0123456789abcdef0123456789abcdef0123", 36));
    char t[SG_TIME_LEN + 1];
    sg_time_iso(INT64_C(1795860000123456), t);
    assert_string_equal(t, "2026-11-28T10:00:00.123456Z");
    sg_saga_status parsed = SG_SAGA_IN_PROGRESS;
    assert_int_equal(sg_saga_status_parse("FAILED", &parsed), SG_OK);
    assert_int_equal(parsed, SG_SAGA_FAILED);
    assert_int_equal(sg_saga_status_parse("nope", &parsed), SG_EINVAL);
}

static void monotonic_clock(void **state)
{
    (void)state;
    int64_t prev = sg_mono_us();
    for (int i = 0; i < 100000; i++) {
        int64_t now = sg_mono_us();
        assert_true(now >= prev);
        prev = now;
    }
    /* Slept on the same clock, so at least 2 ms must have passed on it. */
    struct timespec nap = {.tv_sec = 0, .tv_nsec = 2000000};
    int64_t before = sg_mono_us();
    while (clock_nanosleep(CLOCK_MONOTONIC, 0, &nap, &nap) != 0)
        ;
    assert_true(sg_mono_us() - before >= 2000);
}

/* Copies own every string, the compensation view's and an HTTP call's
 * included: the originals freed, the copies still read (and under ASan
 * free without a leak or a double free). */
static void records_copy_deep(void **state)
{
    (void)state;
    sg_saga_rec r = {0};
    sg_uuid_v4(r.id);
    r.def_name = strdup("order");
    r.def_version = 3;
    r.nsteps = 2;
    r.steps = calloc(2, sizeof *r.steps);
    r.steps[0].name = strdup("reserve");
    r.steps[0].comp = (sg_comp_rec){.present = 1,
                                    .status = SG_EVENT_PARKED,
                                    .attempts = 2,
                                    .created_us = 10,
                                    .updated_us = 20,
                                    .error = strdup("HTTP 404")};
    r.steps[1].name = strdup("charge");
    sg_saga_rec c;
    sg_saga_rec_copy(&c, &r);
    sg_step_rec sc;
    sg_step_rec_copy(&sc, &r.steps[0]);
    sg_saga_rec_free(&r);
    assert_null(r.steps);
    assert_int_equal(c.def_version, 3);
    assert_int_equal(c.steps[0].comp.present, 1);
    assert_int_equal(c.steps[0].comp.status, SG_EVENT_PARKED);
    assert_int_equal(c.steps[0].comp.updated_us, 20);
    assert_string_equal(c.steps[0].comp.error, "HTTP 404");
    assert_string_equal(sc.comp.error, "HTTP 404");
    assert_ptr_not_equal(sc.comp.error, c.steps[0].comp.error);
    assert_int_equal(c.steps[1].comp.present, 0);
    assert_null(c.steps[1].comp.error);
    sg_step_rec_free(&sc);
    assert_null(sc.comp.error);
    sg_saga_rec_free(&c);

    sg_event_rec e = {0};
    e.topic = strdup("reserve");
    e.target = strdup("http://stock/release");
    e.method = strdup("DELETE");
    e.headers = strdup("X-A: 1\nX-B: 2");
    e.timeout_ms = 2500;
    sg_event_rec ec;
    sg_event_rec_copy(&ec, &e);
    sg_event_rec_free(&e);
    assert_null(e.method);
    assert_null(e.headers);
    assert_string_equal(ec.method, "DELETE");
    assert_string_equal(ec.headers, "X-A: 1\nX-B: 2");
    assert_int_equal(ec.timeout_ms, 2500);
    sg_event_rec_free(&ec);
}

static void http_urls(void **state)
{
    (void)state;
    assert_true(sg_http_url_ok("http://stock/reserve"));
    assert_true(sg_http_url_ok("https://127.0.0.1:8443/a?b=c"));
    assert_false(sg_http_url_ok("ftp://host/x"));
    assert_false(sg_http_url_ok("http://"));
    assert_false(sg_http_url_ok("stock/reserve"));
    assert_false(sg_http_url_ok(""));
    assert_false(sg_http_url_ok(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(buf_caps_growth),
        cmocka_unit_test(buf_printf_large),
        cmocka_unit_test(json_accepts_what_the_contract_needs),
        cmocka_unit_test(json_rejects_bad_input),
        cmocka_unit_test(json_corners),
        cmocka_unit_test(json_escapes_strings),
        cmocka_unit_test(ids_and_times),
        cmocka_unit_test(monotonic_clock),
        cmocka_unit_test(records_copy_deep),
        cmocka_unit_test(http_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
