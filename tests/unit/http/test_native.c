/* The native (plain http://) transport against a scripted server
 * (raw_server.h): keep-alive reuse and its limits, the one retry of a
 * request whose reused connection the server had closed, malformed answers,
 * cancel closing the connection, and the bytes of the request itself. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"
#include "http/raw_server.h"
#include "http/test_loop.h"
#include "sg/http_client.h"

typedef struct got {
    int calls;
    sg_http_outcome outcome;
    long status;
    long retry_after_ms;
    char body[256];
    size_t body_len;
    char error[512];
} got;

typedef struct fixture {
    uv_loop_t loop;
    raw_server srv;
    sg_http_client *client;
} fixture;

static void on_result(void *arg, const sg_http_result *r)
{
    got *g = arg;
    g->calls++;
    g->outcome = r->outcome;
    g->status = r->status;
    g->retry_after_ms = r->retry_after_ms;
    g->body_len = r->body_len;
    if (r->outcome == SG_HTTP_DONE) {
        assert_int_equal(r->body[r->body_len], '\0');
        snprintf(g->body, sizeof g->body, "%.*s", (int)r->body_len, r->body);
    } else {
        snprintf(g->error, sizeof g->error, "%s", r->error);
    }
}

static int got_called(void *arg)
{
    return ((got *)arg)->calls > 0;
}

static void start(fixture *f, const raw_step *script, size_t n)
{
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(raw_start(&f->srv, script, n), 0);
    assert_int_equal(sg_http_client_create(&f->client, &f->loop, NULL), SG_OK);
}

static void stop(fixture *f)
{
    sg_http_client_destroy(f->client);
    assert_int_equal(loop_finish(&f->loop), 0);
    raw_stop(&f->srv);
}

/* Runs one call to path and waits for its outcome. */
static got call(fixture *f, const char *path, const char *method, const char *const *headers)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->srv.base, path);
    got g = {0};
    sg_http_request req = {.url = url,
                           .body = "{}",
                           .body_len = 2,
                           .headers = headers,
                           .method = method,
                           .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f->client, &req, on_result, &g, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, got_called, &g, 5000));
    return g;
}

#define OK_ANSWER "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

static int no_idle(void *arg)
{
    for (host_slots *h = ((sg_http_client *)arg)->hosts; h; h = h->hh.next)
        if (h->idle) return 0;
    return 1;
}

static void test_keepalive_and_idle_close_noticed(void **state)
{
    (void)state;
    fixture f;
    /* Two answers on one connection, then the server closes it while idle. */
    static const raw_step script[] = {
        {RAW_ANSWER, OK_ANSWER}, {RAW_ANSWER_CLOSE, OK_ANSWER}, {RAW_ANSWER, OK_ANSWER}};
    start(&f, script, 3);
    got a = call(&f, "/a", NULL, NULL), b = call(&f, "/b", NULL, NULL);
    assert_int_equal(a.outcome, SG_HTTP_DONE);
    assert_int_equal(b.outcome, SG_HTTP_DONE);
    assert_string_equal(b.body, "ok");
    assert_int_equal(atomic_load(&f.srv.connections), 1);
    /* The pool sees the close by itself, without a request to fail. */
    assert_true(loop_run_until(&f.loop, no_idle, f.client, 3000));
    got c = call(&f, "/c", NULL, NULL);
    assert_int_equal(c.outcome, SG_HTTP_DONE);
    assert_int_equal(atomic_load(&f.srv.connections), 2);
    assert_int_equal(atomic_load(&f.srv.requests), 3); /* nothing was sent twice */
    stop(&f);
}

static void test_reused_connection_closed_retried_once(void **state)
{
    (void)state;
    fixture f;
    /* The second request's reused connection is closed without an answer:
     * sent once more on a fresh connection. */
    static const raw_step script[] = {
        {RAW_ANSWER, OK_ANSWER}, {RAW_CLOSE, NULL}, {RAW_ANSWER, OK_ANSWER}};
    start(&f, script, 3);
    assert_int_equal(call(&f, "/a", NULL, NULL).outcome, SG_HTTP_DONE);
    got b = call(&f, "/b", NULL, NULL);
    assert_int_equal(b.outcome, SG_HTTP_DONE);
    assert_string_equal(b.body, "ok");
    assert_int_equal(atomic_load(&f.srv.requests), 3);
    assert_int_equal(atomic_load(&f.srv.connections), 2);
    stop(&f);
}

static void test_second_failure_not_retried(void **state)
{
    (void)state;
    fixture f;
    static const raw_step script[] = {
        {RAW_ANSWER, OK_ANSWER}, {RAW_CLOSE, NULL}, {RAW_CLOSE, NULL}, {RAW_ANSWER, OK_ANSWER}};
    start(&f, script, 4);
    assert_int_equal(call(&f, "/a", NULL, NULL).outcome, SG_HTTP_DONE);
    got b = call(&f, "/b", NULL, NULL);
    assert_int_equal(b.outcome, SG_HTTP_ERR_TRANSPORT);
    assert_string_equal(b.error, "Empty reply from server");
    assert_int_equal(atomic_load(&f.srv.requests), 3);
    stop(&f);
    /* A fresh connection that fails is not retried either. */
    static const raw_step drop[] = {{RAW_CLOSE, NULL}};
    start(&f, drop, 1);
    got c = call(&f, "/c", NULL, NULL);
    assert_int_equal(c.outcome, SG_HTTP_ERR_TRANSPORT);
    assert_int_equal(atomic_load(&f.srv.requests), 1);
    stop(&f);
}

static void test_malformed_answers(void **state)
{
    (void)state;
    static const struct {
        const char *answer;
        const char *error;
    } cases[] = {
        {"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
         "obsolete line folding in response headers"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok",
         "conflicting Content-Length"},
        {"SSH-2.0-OpenSSH\r\n\r\n", "malformed status line"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", "bad chunk size"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", /* then the close */
         "connection closed before the answer was complete"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        fixture f;
        raw_step script[] = {{RAW_ANSWER_CLOSE, cases[i].answer}, {RAW_ANSWER, OK_ANSWER}};
        /* All but the last keep the connection open: the client must drop it. */
        if (i + 1 < sizeof cases / sizeof *cases) script[0].action = RAW_ANSWER;
        start(&f, script, 2);
        got a = call(&f, "/a", NULL, NULL);
        assert_int_equal(a.outcome, SG_HTTP_ERR_TRANSPORT);
        assert_string_equal(a.error, cases[i].error);
        got b = call(&f, "/b", NULL, NULL);
        assert_int_equal(b.outcome, SG_HTTP_DONE);
        assert_int_equal(atomic_load(&f.srv.connections), 2); /* not reused */
        stop(&f);
    }
}

static void test_headers_too_large(void **state)
{
    (void)state;
    size_t n = 70 * 1024;
    char *big = malloc(n + 64);
    size_t k = (size_t)sprintf(big, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(big + k, 'x', n);
    strcpy(big + k + n, "\r\nContent-Length: 0\r\n\r\n");
    raw_step script[] = {{RAW_ANSWER, big}};
    fixture f;
    start(&f, script, 1);
    got a = call(&f, "/a", NULL, NULL);
    assert_int_equal(a.outcome, SG_HTTP_ERR_TRANSPORT);
    assert_string_equal(a.error, "response headers too large");
    stop(&f);
    free(big);
}

static void test_connection_close_http10_chunked_retry_after(void **state)
{
    (void)state;
    static const raw_step script[] = {
        {RAW_ANSWER, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"},
        {RAW_ANSWER_CLOSE, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nto the end"},
        {RAW_ANSWER, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\n"
                     "Retry-After: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "1;x=y\r\n{\r\n1\r\n}\r\n0\r\nX-T: 1\r\n\r\n"},
        {RAW_ANSWER, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
    };
    fixture f;
    start(&f, script, 4);
    assert_int_equal(call(&f, "/a", NULL, NULL).outcome, SG_HTTP_DONE);
    got b = call(&f, "/b", NULL, NULL); /* Connection: close: a new connection */
    assert_int_equal(b.outcome, SG_HTTP_DONE);
    assert_string_equal(b.body, "to the end");
    got c = call(&f, "/c", NULL, NULL);
    assert_int_equal(c.outcome, SG_HTTP_DONE);
    assert_int_equal(c.status, 429);
    assert_int_equal(c.retry_after_ms, 5000);
    assert_string_equal(c.body, "{}");
    got d = call(&f, "/d", NULL, NULL);
    assert_int_equal(d.outcome, SG_HTTP_DONE);
    assert_int_equal(d.retry_after_ms, -1);
    assert_int_equal(atomic_load(&f.srv.connections), 3); /* c and d shared one */
    stop(&f);
}

static void tick(uv_timer_t *t)
{
    (void)t;
}

/* For a condition only the server thread changes: the loop wakes every
 * 5 ms to look at it. */
static int wait_server(fixture *f, loop_cond cond, uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(&f->loop, &t);
    uv_timer_start(&t, tick, 5, 5);
    int ok = loop_run_until(&f->loop, cond, &f->srv, ms);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&f->loop, UV_RUN_NOWAIT);
    return ok;
}

static int server_saw_request(void *arg)
{
    return atomic_load(&((raw_server *)arg)->requests) > 0;
}

static int server_saw_close(void *arg)
{
    return atomic_load(&((raw_server *)arg)->client_eofs) > 0;
}

static void test_cancel_closes_connection(void **state)
{
    (void)state;
    static const raw_step script[] = {{RAW_HOLD, NULL}, {RAW_ANSWER, OK_ANSWER}};
    fixture f;
    start(&f, script, 2);
    char url[128];
    snprintf(url, sizeof url, "%s/slow", f.srv.base);
    got g = {0};
    sg_http_call *h = NULL;
    sg_http_request req = {.url = url, .body = "{}", .body_len = 2, .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f.client, &req, on_result, &g, &h), SG_OK);
    assert_true(wait_server(&f, server_saw_request, 3000));
    sg_http_cancel(f.client, h);
    assert_int_equal(sg_http_inflight(f.client), 0);
    /* The server sees the connection close: it is not kept for reuse. */
    assert_true(wait_server(&f, server_saw_close, 3000));
    assert_true(no_idle(f.client));
    assert_int_equal(g.calls, 0);
    assert_int_equal(call(&f, "/next", NULL, NULL).outcome, SG_HTTP_DONE);
    assert_int_equal(atomic_load(&f.srv.connections), 2);
    assert_int_equal(g.calls, 0);
    stop(&f);
}

static void test_request_bytes(void **state)
{
    (void)state;
    static const raw_step script[] = {{RAW_ANSWER, OK_ANSWER}};
    fixture f;
    start(&f, script, 1);
    const char *hdrs[] = {"X-Saga-Id: s1", "Accept:", NULL};
    assert_int_equal(call(&f, "/p/q?x=1&y=2#frag", "PUT", hdrs).outcome, SG_HTTP_DONE);
    char want[512];
    snprintf(want, sizeof want,
             "PUT /p/q?x=1&y=2 HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nContent-Type: "
             "application/json\r\nContent-Length: 2\r\nX-Saga-Id: s1\r\n\r\n{}",
             (unsigned)f.srv.port);
    assert_string_equal(f.srv.last, want);
    /* GET sends no body; a caller's Content-Type replaces ours; no path is "/". */
    const char *ct[] = {"content-type: text/plain", NULL};
    char url[128];
    snprintf(url, sizeof url, "%s", f.srv.base);
    got g = {0};
    sg_http_request req = {.url = url,
                           .body = "{}",
                           .body_len = 2,
                           .headers = ct,
                           .method = "GET",
                           .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f.client, &req, on_result, &g, NULL), SG_OK);
    assert_true(loop_run_until(&f.loop, got_called, &g, 5000));
    snprintf(want, sizeof want,
             "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nAccept: */*\r\n"
             "content-type: text/plain\r\n\r\n",
             (unsigned)f.srv.port);
    assert_string_equal(f.srv.last, want);
    /* A header that would inject another is refused up front. */
    const char *evil[] = {"X-A: 1\r\nX-B: 2", NULL};
    req.headers = evil;
    assert_int_equal(sg_http_post(f.client, &req, on_result, &g, NULL), SG_EINVAL);
    assert_int_equal(atomic_load(&f.srv.connections), 1);
    stop(&f);
}

/* A request bigger than the socket takes at once: what uv_try_write leaves
 * goes out through uv_write, and the answer still arrives. */
static void test_big_request(void **state)
{
    (void)state;
    static const raw_step script[] = {{RAW_ANSWER, OK_ANSWER}};
    fixture f;
    start(&f, script, 1);
    size_t n = 16u << 20;
    char *body = malloc(n);
    memset(body, 'b', n);
    char url[128];
    snprintf(url, sizeof url, "%s/big", f.srv.base);
    got g = {0};
    sg_http_request req = {.url = url, .body = body, .body_len = n, .timeout_ms = 10000};
    assert_int_equal(sg_http_post(f.client, &req, on_result, &g, NULL), SG_OK);
    assert_true(loop_run_until(&f.loop, got_called, &g, 15000));
    assert_int_equal(g.outcome, SG_HTTP_DONE);
    pthread_mutex_lock(&f.srv.mu);
    size_t len = f.srv.last_len;
    pthread_mutex_unlock(&f.srv.mu);
    assert_true(len > n);
    /* And once more on the same connection. */
    memset(&g, 0, sizeof g);
    assert_int_equal(sg_http_post(f.client, &req, on_result, &g, NULL), SG_OK);
    assert_true(loop_run_until(&f.loop, got_called, &g, 15000));
    assert_int_equal(g.outcome, SG_HTTP_DONE);
    assert_int_equal(atomic_load(&f.srv.connections), 1);
    stop(&f);
    free(body);
}

int main(void)
{
    (void)loop_ms; /* test_loop.h's, unused here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keepalive_and_idle_close_noticed),
        cmocka_unit_test(test_reused_connection_closed_retried_once),
        cmocka_unit_test(test_second_failure_not_retried),
        cmocka_unit_test(test_malformed_answers),
        cmocka_unit_test(test_headers_too_large),
        cmocka_unit_test(test_connection_close_http10_chunked_retry_after),
        cmocka_unit_test(test_cancel_closes_connection),
        cmocka_unit_test(test_request_bytes),
        cmocka_unit_test(test_big_request),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
