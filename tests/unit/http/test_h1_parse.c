/* The native transport's response parser: every answer is fed whole, split
 * at every byte position, and one byte at a time, and must give the same
 * result each way; malformed answers and answers over the limits are
 * refused. Each piece is a fresh allocation, so that ASan sees a read past
 * the bytes handed over. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/h1_parse.h"

typedef struct parsed {
    h1_rc rc;
    long status;
    int keep_alive;
    char body[256];
    size_t body_len;
    char error[128];
    char retry_after[H1_RETRY_AFTER_MAX + 1];
    size_t used; /* bytes consumed in all */
} parsed;

typedef struct opts {
    size_t max_body; /* 0 = 200 */
    int eof;         /* the peer closes after the bytes */
    int no_body;     /* HEAD */
} opts;

/* Feeds in[0..n) in pieces cut at the given positions (ascending). */
static parsed run_cuts(const char *in, size_t n, const size_t *cuts, size_t ncuts, opts o)
{
    parsed r = {0};
    sg_buf body;
    sg_buf_init(&body, o.max_body ? o.max_body : 200);
    h1_parser p;
    sg__h1_init(&p, &body);
    p.no_body = o.no_body;
    h1_rc rc = H1_MORE;
    size_t from = 0;
    for (size_t i = 0; i <= ncuts && rc == H1_MORE; i++) {
        size_t to = i < ncuts ? cuts[i] : n;
        if (to < from) to = from;
        char *piece = malloc(to - from + 1);
        memcpy(piece, in + from, to - from);
        size_t used = 0;
        rc = sg__h1_feed(&p, piece, to - from, &used);
        assert_true(used <= to - from);
        if (rc == H1_MORE) assert_int_equal(used, to - from);
        r.used += used;
        free(piece);
        from = to;
    }
    if (rc == H1_MORE && o.eof) rc = sg__h1_eof(&p);
    r.rc = rc;
    r.status = p.status;
    r.keep_alive = p.keep_alive;
    r.body_len = body.len;
    if (body.len < sizeof r.body) memcpy(r.body, body.ptr ? body.ptr : "", body.len);
    if (p.error) snprintf(r.error, sizeof r.error, "%s", p.error);
    memcpy(r.retry_after, p.retry_after, sizeof r.retry_after);
    sg__h1_free(&p);
    sg_buf_free(&body);
    return r;
}

static void same(const parsed *a, const parsed *b)
{
    assert_int_equal(a->rc, b->rc);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->keep_alive, b->keep_alive);
    if (a->rc != H1_TOO_BIG) { /* how much of a refused body came in depends on the cuts */
        assert_int_equal(a->body_len, b->body_len);
        assert_memory_equal(a->body, b->body, sizeof a->body);
    }
    assert_string_equal(a->error, b->error);
    assert_string_equal(a->retry_after, b->retry_after);
    if (a->rc == H1_DONE) assert_int_equal(a->used, b->used);
}

/* Parses `in` whole, at every single split, every pair of splits for short
 * inputs, and byte by byte: all must agree. Returns the result. */
static parsed parse_all_ways(const char *in, opts o)
{
    size_t n = strlen(in);
    parsed whole = run_cuts(in, n, NULL, 0, o);
    for (size_t i = 0; i <= n; i++) {
        parsed r = run_cuts(in, n, &i, 1, o);
        same(&whole, &r);
    }
    if (n <= 160) {
        for (size_t i = 1; i < n; i++)
            for (size_t j = i + 1; j < n; j++) {
                size_t cuts[2] = {i, j};
                parsed r = run_cuts(in, n, cuts, 2, o);
                same(&whole, &r);
            }
    }
    size_t *cuts = malloc((n + 1) * sizeof *cuts);
    for (size_t i = 0; i < n; i++)
        cuts[i] = i + 1;
    parsed r = run_cuts(in, n, cuts, n, o);
    same(&whole, &r);
    free(cuts);
    return whole;
}

static void test_content_length(void **state)
{
    (void)state;
    parsed r = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                              "Content-Length: 11\r\nRetry-After:  5 \r\n\r\n{\"a\":\"xyz\"}",
                              (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.keep_alive, 1);
    assert_string_equal(r.body, "{\"a\":\"xyz\"}");
    assert_string_equal(r.retry_after, "5");
}

static void test_chunked_with_extensions_and_trailers(void **state)
{
    (void)state;
    parsed r = parse_all_ways("HTTP/1.1 201 Created\r\ntransfer-encoding: Chunked\r\n\r\n"
                              "5;name=value;x\r\nhello\r\n6 ; y=\"z\"\r\n world\r\n"
                              "A\r\n0123456789\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n",
                              (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.keep_alive, 1);
    assert_string_equal(r.body, "hello world0123456789");
}

static void test_interim_answers_skipped(void **state)
{
    (void)state;
    parsed r = parse_all_ways("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                              "Link: </x>\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n"
                              "Retry-After: 7\r\nContent-Length: 2\r\n\r\nno",
                              (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "no");
    assert_string_equal(r.retry_after, "7");
}

static void test_close_delimited_and_http10(void **state)
{
    (void)state;
    parsed r = parse_all_ways("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nabc def",
                              (opts){.eof = 1});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.keep_alive, 0);
    assert_string_equal(r.body, "abc def");
    /* HTTP/1.0 with a length: complete, but never reused. */
    r = parse_all_ways("HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.keep_alive, 0);
    /* HTTP/1.1 without a length ends at the close as well. */
    r = parse_all_ways("HTTP/1.1 200 OK\r\n\r\nxyz", (opts){.eof = 1});
    assert_int_equal(r.rc, H1_DONE);
    assert_string_equal(r.body, "xyz");
    assert_int_equal(r.keep_alive, 0);
}

static void test_connection_close_and_bodyless(void **state)
{
    (void)state;
    parsed r = parse_all_ways(
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n", (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.keep_alive, 0);
    assert_int_equal(r.body_len, 0);
    r = parse_all_ways("HTTP/1.1 204 No Content\r\n\r\n", (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.keep_alive, 1);
    r = parse_all_ways("HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    /* The answer to HEAD has no body whatever its length says. */
    r = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", (opts){.no_body = 1});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.body_len, 0);
    /* A status line without a reason, bare LF line ends. */
    r = parse_all_ways("HTTP/1.1 202\nContent-Length: 1\n\nz", (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body, "z");
}

static void test_length_rules(void **state)
{
    (void)state;
    /* The same length twice is one length. */
    parsed r = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length: 2\r\n\r\nok",
                              (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_string_equal(r.body, "ok");
    /* Chunked wins over a length, and the connection is not reused. */
    r = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n"
                       "\r\n2\r\nok\r\n0\r\n\r\n",
                       (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_string_equal(r.body, "ok");
    assert_int_equal(r.keep_alive, 0);
    /* Bytes past the answer are left over (no pipelining: the caller drops
     * the connection). */
    const char *two = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
    r = run_cuts(two, strlen(two), NULL, 0, (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.used, strlen(two) - strlen("HTTP/1.1 200 OK\r\n"));
}

static void expect_error(const char *in, opts o, const char *why)
{
    parsed r = parse_all_ways(in, o);
    assert_int_equal(r.rc, H1_ERROR);
    if (why) assert_string_equal(r.error, why);
    assert_true(r.error[0]);
}

static void test_bad_inputs(void **state)
{
    (void)state;
    opts o = {0}, eof = {.eof = 1};
    expect_error("HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", o,
                 "obsolete line folding in response headers");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", o,
                 "conflicting Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", o, "bad Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", o, "bad Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n", o, "bad Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", o, "bad Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n", o,
                 "bad Content-Length");
    expect_error("HTTP/2 200 OK\r\n\r\n", o, "malformed status line");
    expect_error("HTTP/1.1 20 OK\r\n\r\n", o, "malformed status line");
    expect_error("HTTP/1.1 099 Low\r\n\r\n", o, "malformed status line");
    expect_error("HTTP/1.1 200OK\r\n\r\n", o, "malformed status line");
    expect_error("http/1.1 200 OK\r\n\r\n", o, "malformed status line");
    expect_error("HTTP/1.1 200 OK\r\nX-A: a\rb\r\n\r\n", o, "bare CR in response");
    expect_error("HTTP/1.1 200 OK\r\nX-A : a\r\n\r\n", o, "malformed response header");
    expect_error("HTTP/1.1 200 OK\r\n: a\r\n\r\n", o, "malformed response header");
    expect_error("HTTP/1.1 200 OK\r\nNo colon\r\n\r\n", o, "malformed response header");
    expect_error("HTTP/1.1 200 OK\r\nX-A: a\001b\r\n\r\n", o, "malformed response header");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", o,
                 "unsupported Transfer-Encoding");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
                 "\r\n\r\n",
                 o, "unsupported Transfer-Encoding");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", o,
                 "bad chunk size");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n", o,
                 "bad chunk size");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", o,
                 "bad chunk size");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n", o,
                 "chunk not followed by CRLF");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n bad\r\n\r\n", o,
                 "malformed trailer");
    expect_error("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", o,
                 "unexpected 101 Switching Protocols");
    /* The peer closes early. */
    expect_error("", eof, "Empty reply from server");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", eof,
                 "connection closed before the answer was complete");
    expect_error("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", eof,
                 "connection closed before the answer was complete");
    expect_error("HTTP/1.1 200 OK\r\nContent-Le", eof,
                 "connection closed before the answer was complete");
}

/* Status line and headers over 64 KiB: refused, however they arrive. */
static void test_header_limit(void **state)
{
    (void)state;
    size_t n = H1_HEADERS_MAX + 200;
    char *in = malloc(n + 1);
    size_t k = (size_t)snprintf(in, n + 1, "HTTP/1.1 200 OK\r\n");
    while (k + 40 < n)
        k += (size_t)snprintf(in + k, n + 1 - k, "X-Filler: %026zu\r\n", k);
    in[k] = '\0';
    size_t cuts[3] = {1, k / 2, k - 1};
    parsed r = run_cuts(in, k, NULL, 0, (opts){0});
    assert_int_equal(r.rc, H1_ERROR);
    assert_string_equal(r.error, "response headers too large");
    r = run_cuts(in, k, cuts, 3, (opts){0});
    assert_int_equal(r.rc, H1_ERROR);
    assert_string_equal(r.error, "response headers too large");
    /* One huge line, no line end at all. */
    memset(in + 17, 'a', k - 17);
    r = run_cuts(in, k, cuts, 3, (opts){0});
    assert_int_equal(r.rc, H1_ERROR);
    assert_string_equal(r.error, "response headers too large");
    /* Just under the cap: fine (the body then runs to the close). */
    k = (size_t)snprintf(in, n + 1, "HTTP/1.1 200 OK\r\nX-Big: ");
    size_t fill = H1_HEADERS_MAX - k - 2 - 4; /* CRLF after it, CRLF ending the headers */
    memset(in + k, 'b', fill);
    k += fill;
    k += (size_t)snprintf(in + k, n + 1 - k, "\r\n\r\n");
    assert_int_equal(k, H1_HEADERS_MAX - 2);
    cuts[1] = k / 2;
    cuts[2] = k - 1;
    r = run_cuts(in, k, cuts, 3, (opts){.eof = 1});
    assert_int_equal(r.rc, H1_DONE);
    free(in);
}

static void test_body_limit(void **state)
{
    (void)state;
    opts cap = {.max_body = 10}, cap_eof = {.max_body = 10, .eof = 1};
    /* A length over the cap is refused before the body arrives. */
    parsed r = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", cap);
    assert_int_equal(r.rc, H1_TOO_BIG);
    r = parse_all_ways("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", cap);
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.body_len, 10);
    r = parse_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "6\r\n012345\r\n5\r\n01234\r\n0\r\n\r\n",
                       cap);
    assert_int_equal(r.rc, H1_TOO_BIG);
    r = parse_all_ways("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "6\r\n012345\r\n4\r\n0123\r\n0\r\n\r\n",
                       cap);
    assert_int_equal(r.rc, H1_DONE);
    assert_int_equal(r.body_len, 10);
    r = parse_all_ways("HTTP/1.1 200 OK\r\n\r\n0123456789A", cap_eof);
    assert_int_equal(r.rc, H1_TOO_BIG);
    /* Retry-After too long to be a date or a number: dropped. */
    r = parse_all_ways(
        "HTTP/1.1 429 Too Many\r\nRetry-After: "
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
        (opts){0});
    assert_int_equal(r.rc, H1_DONE);
    assert_string_equal(r.retry_after, "");
}

/* After reset the parser reads a second answer on the same connection. */
static void test_reset_for_next_answer(void **state)
{
    (void)state;
    sg_buf body;
    sg_buf_init(&body, 100);
    h1_parser p;
    sg__h1_init(&p, &body);
    const char *a = "HTTP/1.1 200 OK\r\nRetry-After: 1\r\nContent-Length: 1\r\n\r\na";
    const char *b = "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nbb";
    size_t used;
    assert_int_equal(sg__h1_feed(&p, a, 20, &used), H1_MORE);
    assert_true(sg__h1_started(&p));
    assert_int_equal(sg__h1_feed(&p, a + 20, strlen(a) - 20, &used), H1_DONE);
    assert_int_equal(p.status, 200);
    sg_buf_reset(&body);
    sg__h1_reset(&p, &body);
    assert_false(sg__h1_started(&p));
    assert_int_equal(sg__h1_feed(&p, b, strlen(b), &used), H1_DONE);
    assert_int_equal(p.status, 404);
    assert_string_equal(p.retry_after, "");
    assert_int_equal(body.len, 2);
    sg__h1_free(&p);
    sg_buf_free(&body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_chunked_with_extensions_and_trailers),
        cmocka_unit_test(test_interim_answers_skipped),
        cmocka_unit_test(test_close_delimited_and_http10),
        cmocka_unit_test(test_connection_close_and_bodyless),
        cmocka_unit_test(test_length_rules),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_header_limit),
        cmocka_unit_test(test_body_limit),
        cmocka_unit_test(test_reset_for_next_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
