/* W3C trace context (include/sg/trace.h): every malformed traceparent is
 * refused, version 00 strictly and a later version forward-compatibly;
 * new traces and children are valid, lowercase, never all zero, and a
 * child keeps the trace id and flags with a span id of its own. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "sg/records.h"
#include "sg/trace.h"

#define TID "4bf92f3577b34da6a3ce929d0e0e4736"
#define PID "00f067aa0ba902b7"
#define GOOD "00-" TID "-" PID "-01"

static int parse(const char *s, sg_trace *t)
{
    memset(t, 0x5a, sizeof *t); /* untouched on refusal: checked below */
    return sg_trace_parse(s, strlen(s), t, NULL);
}

static void valid_version_00(void **state)
{
    (void)state;
    sg_trace t;
    char parent[SG_SPAN_ID_HEX + 1];
    assert_int_equal(sg_trace_parse(GOOD, strlen(GOOD), &t, parent), 1);
    assert_string_equal(t.trace_id, TID);
    assert_string_equal(parent, PID);
    assert_int_equal(t.flags, 1);
    assert_int_equal(parse("00-" TID "-" PID "-00", &t), 1);
    assert_int_equal(t.flags, 0);
    /* Version 00 keeps every flag bit it is given: they go on as they came. */
    assert_int_equal(parse("00-" TID "-" PID "-ff", &t), 1);
    assert_int_equal(t.flags, 0xff);
    assert_int_equal(parse("00-" TID "-" PID "-09", &t), 1);
    assert_int_equal(t.flags, 0x09);
    /* Not NUL-terminated: only len bytes are read. */
    char buf[80];
    memcpy(buf, GOOD "-garbage", sizeof GOOD + 8);
    assert_int_equal(sg_trace_parse(buf, strlen(GOOD), &t, NULL), 1);
}

static void refused(const char *s)
{
    sg_trace t, before;
    memset(&before, 0x5a, sizeof before);
    if (parse(s, &t) != 0) fail_msg("accepted: '%s'", s);
    assert_memory_equal(&t, &before, sizeof t);
}

static void wrong_lengths(void **state)
{
    (void)state;
    refused("");
    refused("00");
    refused(GOOD "0");                                        /* 56 characters */
    refused("00-" TID "-" PID "-1");                          /* flags one digit */
    refused("00-" TID "0-" PID "-01");                        /* trace id 33 */
    refused("00-4bf92f3577b34da6a3ce929d0e0e473-" PID "-01"); /* 31 */
    refused("00-" TID "-00f067aa0ba902b-01");                 /* parent id 15 */
    refused("00-" TID "-00f067aa0ba902b70-01");               /* parent id 17 */
    refused("0-" TID "-" PID "-01");                          /* version one digit */
    refused("000-" TID "-" PID "-01");
    assert_int_equal(sg_trace_parse(NULL, 55, &(sg_trace){0}, NULL), 0);
    assert_int_equal(sg_trace_parse(GOOD, 54, &(sg_trace){0}, NULL), 0);
}

static void not_lowercase_hex(void **state)
{
    (void)state;
    refused("00-4BF92F3577B34DA6A3CE929D0E0E4736-" PID "-01");
    refused("00-4bf92f3577b34da6a3ce929d0e0e473A-" PID "-01");
    refused("00-" TID "-00F067AA0BA902B7-01");
    refused("00-" TID "-" PID "-0A");
    refused("0A-" TID "-" PID "-01");
    refused("00-4bf92f3577b34da6a3ce929d0e0e473g-" PID "-01");
    refused("00-" TID "-00f067aa0ba902bz-01");
    refused("00-" TID "-" PID "-0x");
    refused("00-" TID "-" PID " -1");
    refused("00-4bf92f3577b34da6a3ce929d0e0e47 6-" PID "-01");
    refused("00_" TID "-" PID "-01"); /* separators */
    refused("00-" TID "_" PID "-01");
    refused("00-" TID "-" PID "_01");
    refused(" 00-" TID "-" PID "-0");
    char nul[56];
    memcpy(nul, GOOD, 55);
    nul[10] = '\0';
    assert_int_equal(sg_trace_parse(nul, 55, &(sg_trace){0}, NULL), 0);
}

static void all_zero_ids(void **state)
{
    (void)state;
    refused("00-00000000000000000000000000000000-" PID "-01");
    refused("00-" TID "-0000000000000000-01");
    refused("01-00000000000000000000000000000000-" PID "-01"); /* in any version */
    sg_trace t;
    assert_int_equal(parse("00-00000000000000000000000000000001-0000000000000001-01", &t), 1);
}

static void version_ff_and_later(void **state)
{
    (void)state;
    sg_trace t;
    refused("ff-" TID "-" PID "-01");
    refused("ff-" TID "-" PID "-01-extra");
    /* A later version: read as 00 where it can be. */
    assert_int_equal(parse("01-" TID "-" PID "-01", &t), 1);
    assert_string_equal(t.trace_id, TID);
    assert_int_equal(parse("cc-" TID "-" PID "-01-what-comes-next", &t), 1);
    assert_int_equal(t.flags, 1);
    assert_int_equal(parse("fe-" TID "-" PID "-00-", &t), 1);
    assert_int_equal(t.flags, 0);
    /* ... whose other flags this version cannot know: only "sampled" kept. */
    assert_int_equal(parse("01-" TID "-" PID "-ff", &t), 1);
    assert_int_equal(t.flags, SG_TRACE_SAMPLED);
    assert_int_equal(parse("01-" TID "-" PID "-02", &t), 1);
    assert_int_equal(t.flags, 0);
    /* Extra fields: never in version 00, only after a '-' in a later one. */
    refused(GOOD "-extra");
    refused(GOOD "-");
    refused("01-" TID "-" PID "-01extra");
    refused("01-" TID "-" PID "-01.x");
    /* A later version's first 55 characters are still checked. */
    refused("01-" TID "-" PID "-0g-x");
    refused("01-" TID "-0000000000000000-01-x");
    refused("01-" TID "-" PID "-1");
}

static void new_and_child(void **state)
{
    (void)state;
    sg_trace a, b, back;
    sg_trace_new(&a);
    sg_trace_new(&b);
    assert_true(sg_trace_id_ok(a.trace_id));
    assert_string_not_equal(a.trace_id, b.trace_id);
    assert_int_equal(a.flags, SG_TRACE_SAMPLED);
    char c1[SG_TRACEPARENT_LEN + 1], c2[SG_TRACEPARENT_LEN + 1];
    char p1[SG_SPAN_ID_HEX + 1], p2[SG_SPAN_ID_HEX + 1];
    sg_trace_child(&a, c1);
    sg_trace_child(&a, c2);
    assert_int_equal(strlen(c1), SG_TRACEPARENT_LEN);
    /* What sagad sends parses back strictly: same trace and flags, and
     * each call has its own span id. */
    assert_int_equal(sg_trace_parse(c1, strlen(c1), &back, p1), 1);
    assert_string_equal(back.trace_id, a.trace_id);
    assert_int_equal(back.flags, a.flags);
    assert_int_equal(sg_trace_parse(c2, strlen(c2), &back, p2), 1);
    assert_string_not_equal(p1, p2);
    assert_memory_equal(c1, "00-", 3);
    /* Flags go on as the client sent them. */
    sg_trace in;
    assert_int_equal(parse("00-" TID "-" PID "-00", &in), 1);
    sg_trace_child(&in, c1);
    assert_memory_equal(c1, "00-" TID "-", 36);
    assert_memory_equal(c1 + 52, "-00", 4);
    assert_memory_not_equal(c1 + 36, PID, 16);
}

static void trace_ids(void **state)
{
    (void)state;
    assert_true(sg_trace_id_ok(TID));
    assert_false(sg_trace_id_ok(NULL));
    assert_false(sg_trace_id_ok(""));
    assert_false(sg_trace_id_ok("00000000000000000000000000000000"));
    assert_false(sg_trace_id_ok("4BF92F3577B34DA6A3CE929D0E0E4736"));
    assert_false(sg_trace_id_ok(TID "0"));
}

static void tracestate(void **state)
{
    (void)state;
    const char *ok = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE";
    assert_true(sg_tracestate_ok(ok, strlen(ok)));
    assert_false(sg_tracestate_ok(NULL, 0));
    assert_false(sg_tracestate_ok("", 0));
    assert_false(sg_tracestate_ok(" , ", 3));
    assert_false(sg_tracestate_ok("a=b\nc=d", 7)); /* no header splitting */
    assert_false(sg_tracestate_ok("a=b\r", 4));
    assert_false(sg_tracestate_ok("a=\xc3\xa9", 4));
    char big[SG_TRACESTATE_MAX + 2];
    memset(big, 'a', sizeof big);
    assert_true(sg_tracestate_ok(big, SG_TRACESTATE_MAX));
    assert_false(sg_tracestate_ok(big, SG_TRACESTATE_MAX + 1));
}

/* An event carries its trace in its header lines (sg_event_header). */
static void event_headers(void **state)
{
    (void)state;
    char hdr[] = "X-One: 1\ntraceparent: " GOOD "\nTraceState:  a=b \ntrace: x";
    sg_event_rec e = {.headers = hdr};
    char out[SG_TRACESTATE_MAX + 1];
    assert_int_equal(sg_event_header(&e, "traceparent", out, sizeof out), 1);
    assert_string_equal(out, GOOD);
    assert_int_equal(sg_event_header(&e, "tracestate", out, sizeof out), 1);
    assert_string_equal(out, "a=b");
    assert_int_equal(sg_event_header(&e, "trace", out, sizeof out), 1);
    assert_string_equal(out, "x");
    assert_int_equal(sg_event_header(&e, "x-two", out, sizeof out), 0);
    assert_string_equal(out, "");
    assert_int_equal(sg_event_header(&e, "traceparent", out, 10), 0); /* does not fit */
    sg_event_rec none = {0};
    assert_int_equal(sg_event_header(&none, "traceparent", out, sizeof out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_version_00),
        cmocka_unit_test(wrong_lengths),
        cmocka_unit_test(not_lowercase_hex),
        cmocka_unit_test(all_zero_ids),
        cmocka_unit_test(version_ff_and_later),
        cmocka_unit_test(new_and_child),
        cmocka_unit_test(trace_ids),
        cmocka_unit_test(tracestate),
        cmocka_unit_test(event_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
