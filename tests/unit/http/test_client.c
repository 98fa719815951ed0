/* sg_http_client against a real local HTTP server (mini_server.h), once
 * with the native transport that plain http:// URLs get, and once with
 * every call forced through libcurl (the https:// transport): both must
 * behave the same. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/http_int.h"
#include "http/mini_server.h"
#include "http/test_loop.h"
#include "sg/http_client.h"

static int use_curl; /* the second pass: every call through libcurl */

static sg_http_client *client_new(uv_loop_t *loop, const sg_http_client_options *o)
{
    sg_http_client *c = NULL;
    assert_int_equal(sg_http_client_create(&c, loop, o), SG_OK);
    if (use_curl) sg__http_client_curl_only(c);
    return c;
}

/* What a callback saw. */
typedef struct got {
    int calls;
    sg_http_outcome outcome;
    long status;
    char body[4096];
    size_t body_len;
    char error[512];
    uint64_t at_ms;
} got;

typedef struct fixture {
    uv_loop_t loop;
    mini_server srv;
    sg_http_client *client;
} fixture;

static void on_result(void *arg, const sg_http_result *r)
{
    got *g = arg;
    g->calls++;
    g->outcome = r->outcome;
    g->status = r->status;
    g->at_ms = loop_ms();
    g->body_len = r->body_len;
    if (r->outcome == SG_HTTP_DONE) {
        assert_non_null(r->body);
        assert_int_equal(r->body[r->body_len], '\0');
        snprintf(g->body, sizeof g->body, "%.*s", (int)r->body_len, r->body);
        assert_null(r->error);
    } else {
        assert_non_null(r->error);
        snprintf(g->error, sizeof g->error, "%s", r->error);
    }
}

static int got_called(void *arg)
{
    return ((got *)arg)->calls > 0;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(mini_start(&f->srv), 0);
    f->client = client_new(&f->loop, NULL);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sg_http_client_destroy(f->client);
    assert_int_equal(loop_finish(&f->loop), 0); /* every handle closed */
    mini_stop(&f->srv);
    free(f);
    return 0;
}

static sg_status post(fixture *f, const char *path, const char *body, long timeout_ms, got *g,
                      sg_http_call **call)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->srv.base, path);
    sg_http_request req = {
        .url = url, .body = body, .body_len = body ? strlen(body) : 0, .timeout_ms = timeout_ms};
    return sg_http_post(f->client, &req, on_result, g, call);
}

static void run_for(fixture *f, got *g, uint64_t ms)
{
    loop_run_until(&f->loop, got_called, g, ms);
}

static void test_ok_json(void **state)
{
    fixture *f = *state;
    got g = {0};
    const char *body = "{\"image_id\":\"img_123\",\"n\":123456789012345678901}";
    assert_int_equal(post(f, "/echo", body, 3000, &g, NULL), SG_OK);
    assert_int_equal(g.calls, 0); /* never from inside sg_http_post */
    assert_int_equal(sg_http_inflight(f->client), 1);
    run_for(f, &g, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.outcome, SG_HTTP_DONE);
    assert_int_equal(g.status, 200);
    assert_string_equal(g.body, body);
    assert_int_equal(sg_http_inflight(f->client), 0);
    /* Our defaults reached the server; no 100-continue dance. */
    assert_string_equal(f->srv.last_ctype, "application/json");
    assert_string_equal(f->srv.last_expect, "");
}

static void test_non_2xx(void **state)
{
    fixture *f = *state;
    got g = {0};
    assert_int_equal(post(f, "/status/503", "{}", 3000, &g, NULL), SG_OK);
    run_for(f, &g, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.outcome, SG_HTTP_DONE);
    assert_int_equal(g.status, 503);
    assert_string_equal(g.body, "{\"status\":503}");
}

static void test_refused(void **state)
{
    fixture *f = *state;
    unsigned short port = 0;
    int fd = mini_refusing_port(&port);
    assert_true(fd >= 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/x", (unsigned)port);
    got g = {0};
    sg_http_request req = {.url = url, .body = "{}", .body_len = 2, .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f->client, &req, on_result, &g, NULL), SG_OK);
    run_for(f, &g, 5000);
    close(fd);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.outcome, SG_HTTP_ERR_CONNECT);
    /* Saga errors carry this text: the same start from both transports. */
    char want[96];
    snprintf(want, sizeof want, "Failed to connect to 127.0.0.1 port %u after ", (unsigned)port);
    assert_memory_equal(g.error, want, strlen(want));
    if (!use_curl) assert_non_null(strstr(g.error, " ms: Connection refused"));
}

static void test_unresolvable(void **state)
{
    fixture *f = *state;
    got g = {0};
    sg_http_request req = {
        .url = "http://no-such-host.invalid/x", .body = "{}", .body_len = 2, .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f->client, &req, on_result, &g, NULL), SG_OK);
    run_for(f, &g, 10000);
    assert_int_equal(g.calls, 1);
    /* Resolving .invalid fails (or, in a sandbox without DNS, times out). */
    assert_true(g.outcome == SG_HTTP_ERR_CONNECT || g.outcome == SG_HTTP_ERR_TIMEOUT);
}

static void test_timeout(void **state)
{
    fixture *f = *state;
    got g = {0};
    uint64_t t0 = loop_ms();
    assert_int_equal(post(f, "/delay/3000", "{}", 200, &g, NULL), SG_OK);
    run_for(f, &g, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.outcome, SG_HTTP_ERR_TIMEOUT);
    assert_string_equal(g.error, "timed out after 200 ms");
    uint64_t took = g.at_ms - t0;
    assert_true(took >= 150);
    assert_true(took < 1500);
}

static void test_too_big(void **state)
{
    fixture *f = *state;
    /* A client with a small cap, beside the fixture's. */
    sg_http_client_options opt = {.max_response = 1024};
    sg_http_client *small = client_new(&f->loop, &opt);
    const char *paths[] = {"/big/100000", "/chunked/100000", "/big/1024", "/chunked/1025"};
    const sg_http_outcome want[] = {SG_HTTP_ERR_TOO_BIG, SG_HTTP_ERR_TOO_BIG, SG_HTTP_DONE,
                                    SG_HTTP_ERR_TOO_BIG};
    for (size_t i = 0; i < 4; i++) {
        char url[128];
        snprintf(url, sizeof url, "%s%s", f->srv.base, paths[i]);
        got g = {0};
        sg_http_request req = {.url = url, .body = "{}", .body_len = 2, .timeout_ms = 3000};
        assert_int_equal(sg_http_post(small, &req, on_result, &g, NULL), SG_OK);
        run_for(f, &g, 5000);
        assert_int_equal(g.calls, 1);
        assert_int_equal(g.outcome, want[i]);
        if (want[i] == SG_HTTP_ERR_TOO_BIG)
            assert_string_equal(g.error, "response larger than 1024 bytes");
        else
            assert_int_equal(g.body_len, 1024);
    }
    sg_http_client_destroy(small);
}

static void test_dropped(void **state)
{
    fixture *f = *state;
    got g = {0};
    assert_int_equal(post(f, "/drop", "{}", 3000, &g, NULL), SG_OK);
    run_for(f, &g, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.outcome, SG_HTTP_ERR_TRANSPORT);
    assert_true(strlen(g.error) > 0);
}

static void test_redirect_not_followed(void **state)
{
    fixture *f = *state;
    got g = {0};
    assert_int_equal(post(f, "/redirect", "{}", 3000, &g, NULL), SG_OK);
    run_for(f, &g, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.outcome, SG_HTTP_DONE);
    assert_int_equal(g.status, 302);
    assert_int_equal(atomic_load(&f->srv.requests), 1);
}

/* Sequential chain: each callback starts the next call (re-entrancy). */
typedef struct chain {
    fixture *f;
    int done;
    int target;
    int failures;
} chain;

static void on_chain(void *arg, const sg_http_result *r)
{
    chain *ch = arg;
    if (r->outcome != SG_HTTP_DONE || r->status != 200) ch->failures++;
    if (++ch->done < ch->target) {
        char url[128];
        snprintf(url, sizeof url, "%s/echo", ch->f->srv.base);
        sg_http_request req = {.url = url, .body = "{\"k\":1}", .body_len = 7, .timeout_ms = 3000};
        assert_int_equal(sg_http_post(ch->f->client, &req, on_chain, ch, NULL), SG_OK);
    }
}

static int chain_done(void *arg)
{
    chain *ch = arg;
    return ch->done >= ch->target;
}

static void test_keepalive(void **state)
{
    fixture *f = *state;
    chain ch = {.f = f, .target = 10};
    char url[128];
    snprintf(url, sizeof url, "%s/echo", f->srv.base);
    sg_http_request req = {.url = url, .body = "{\"k\":1}", .body_len = 7, .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f->client, &req, on_chain, &ch, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, chain_done, &ch, 10000));
    assert_int_equal(ch.failures, 0);
    assert_int_equal(atomic_load(&f->srv.requests), 10);
    assert_int_equal(atomic_load(&f->srv.connections), 1);
}

static void test_headers(void **state)
{
    fixture *f = *state;
    got g = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/echo", f->srv.base);
    const char *headers[] = {"X-Saga-Id: 0b0e6a3c-0000-4000-8000-000000000001",
                             "Idempotency-Key: 0b0e6a3c-0000-4000-8000-000000000001:anonymizer",
                             NULL};
    sg_http_request req = {
        .url = url, .body = "{}", .body_len = 2, .headers = headers, .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f->client, &req, on_result, &g, NULL), SG_OK);
    run_for(f, &g, 5000);
    assert_int_equal(g.outcome, SG_HTTP_DONE);
    assert_string_equal(f->srv.last_saga, "0b0e6a3c-0000-4000-8000-000000000001");
    assert_string_equal(f->srv.last_idem, "0b0e6a3c-0000-4000-8000-000000000001:anonymizer");
    assert_string_equal(f->srv.last_ctype, "application/json");
}

static void test_body_with_nul(void **state)
{
    fixture *f = *state;
    got g = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/echo", f->srv.base);
    static const char body[] = "{\"a\":\"x\0y\"}"; /* a raw NUL byte: length, not strlen */
    sg_http_request req = {
        .url = url, .body = body, .body_len = sizeof body - 1, .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f->client, &req, on_result, &g, NULL), SG_OK);
    run_for(f, &g, 5000);
    assert_int_equal(g.outcome, SG_HTTP_DONE);
    assert_int_equal(g.body_len, sizeof body - 1);
    assert_int_equal(f->srv.last_body_len, sizeof body - 1);
    assert_memory_equal(f->srv.last_body, body, sizeof body - 1);
}

static void test_cancel(void **state)
{
    fixture *f = *state;
    got g = {0};
    sg_http_call *call = NULL;
    assert_int_equal(post(f, "/delay/200", "{}", 3000, &g, &call), SG_OK);
    assert_non_null(call);
    sg_http_cancel(f->client, call);
    assert_int_equal(sg_http_inflight(f->client), 0);
    /* Absence of a callback can only be shown by waiting past its time. */
    loop_run_until(&f->loop, got_called, &g, 500);
    assert_int_equal(g.calls, 0);
}

/* The first call's callback cancels the second, still in flight. */
typedef struct canceller {
    sg_http_client *client;
    sg_http_call *victim;
    got first;
} canceller;

static void on_cancel_other(void *arg, const sg_http_result *r)
{
    canceller *c = arg;
    on_result(&c->first, r);
    sg_http_cancel(c->client, c->victim);
}

static void test_cancel_from_callback(void **state)
{
    fixture *f = *state;
    canceller c = {.client = f->client};
    got victim = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/echo", f->srv.base);
    sg_http_request req = {.url = url, .body = "{}", .body_len = 2, .timeout_ms = 3000};
    assert_int_equal(post(f, "/delay/300", "{}", 3000, &victim, &c.victim), SG_OK);
    assert_int_equal(sg_http_post(f->client, &req, on_cancel_other, &c, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, got_called, &c.first, 5000));
    assert_int_equal(sg_http_inflight(f->client), 0);
    loop_run_until(&f->loop, got_called, &victim, 600);
    assert_int_equal(victim.calls, 0);
}

typedef struct many {
    int done;
    int ok;
    char bodies[200][32];
    got g[200];
} many;

static int all_called(void *arg)
{
    many *m = arg;
    int n = 0;
    for (int i = 0; i < 200; i++)
        n += m->g[i].calls;
    return n == 200;
}

static void test_concurrent(void **state)
{
    fixture *f = *state;
    many *m = calloc(1, sizeof *m);
    for (int i = 0; i < 200; i++) {
        snprintf(m->bodies[i], sizeof m->bodies[i], "{\"i\":%d}", i);
        assert_int_equal(post(f, "/echo", m->bodies[i], 10000, &m->g[i], NULL), SG_OK);
    }
    assert_int_equal(sg_http_inflight(f->client), 200);
    assert_true(loop_run_until(&f->loop, all_called, m, 20000));
    for (int i = 0; i < 200; i++) {
        assert_int_equal(m->g[i].calls, 1);
        assert_int_equal(m->g[i].outcome, SG_HTTP_DONE);
        assert_int_equal(m->g[i].status, 200);
        assert_string_equal(m->g[i].body, m->bodies[i]);
    }
    assert_int_equal(sg_http_inflight(f->client), 0);
    free(m);
}

/* With 2 connection slots, 8 calls of 300 ms each take ~1.2 s in all, yet
 * none times out at 700 ms: a call's timeout starts when it gets a slot.
 * A queued call can be cancelled and never runs. */
static void test_slots_queue_without_burning_timeouts(void **state)
{
    fixture *f = *state;
    sg_http_client_destroy(f->client);
    sg_http_client_options o = {.max_connections = 2};
    f->client = client_new(&f->loop, &o);
    many *m = calloc(1, sizeof *m);
    sg_http_call *calls[9];
    for (int i = 0; i < 9; i++)
        assert_int_equal(post(f, "/delay/300", "{}", 700, &m->g[i], &calls[i]), SG_OK);
    sg_http_cancel(f->client, calls[8]); /* still queued */
    assert_int_equal(sg_http_inflight(f->client), 8);
    for (int i = 8; i < 200; i++)
        m->g[i].calls = 1; /* only the first 8 to wait for */
    assert_true(loop_run_until(&f->loop, all_called, m, 10000));
    for (int i = 0; i < 8; i++) {
        assert_int_equal(m->g[i].outcome, SG_HTTP_DONE);
        assert_int_equal(m->g[i].status, 200);
    }
    assert_true(f->srv.connections <= 2);
    assert_int_equal(f->srv.requests, 8);
    free(m);
}

/* Slots are per host: a slow host that fills its slots does not hold up a
 * call to another host ("localhost" and "127.0.0.1" are two hosts to us). */
static void test_slow_host_does_not_block_others(void **state)
{
    fixture *f = *state;
    sg_http_client_destroy(f->client);
    sg_http_client_options o = {.max_connections = 1};
    f->client = client_new(&f->loop, &o);
    got slow1 = {0}, slow2 = {0}, fast = {0};
    assert_int_equal(post(f, "/delay/1500", "{}", 5000, &slow1, NULL), SG_OK);
    assert_int_equal(post(f, "/delay/1500", "{}", 5000, &slow2, NULL), SG_OK); /* queued */
    char url[128];
    snprintf(url, sizeof url, "http://localhost:%u/echo", (unsigned)f->srv.port);
    sg_http_request req = {.url = url, .body = "{}", .body_len = 2, .timeout_ms = 5000};
    uint64_t t0 = loop_ms();
    assert_int_equal(sg_http_post(f->client, &req, on_result, &fast, NULL), SG_OK);
    run_for(f, &fast, 5000);
    assert_int_equal(fast.outcome, SG_HTTP_DONE);
    assert_true(fast.at_ms - t0 < 1000); /* did not wait for the slow host */
    assert_int_equal(slow1.calls + slow2.calls, 0);
    run_for(f, &slow2, 10000);
    assert_int_equal(slow1.outcome, SG_HTTP_DONE);
    assert_int_equal(slow2.outcome, SG_HTTP_DONE);
    assert_true(slow2.at_ms - slow1.at_ms >= 1000); /* one after the other */
}

/* Thousands of calls queued behind one slot, all cancelled: none calls
 * back, the count returns to 0 and the host's slot still works. Cancelling
 * from the queue's tail (reverse order) or anywhere in it (random order)
 * costs O(1) per call, so this stays linear. */
#define NQUEUED 5000

static void cancel_queued(fixture *f, int shuffle)
{
    sg_http_client_destroy(f->client);
    sg_http_client_options o = {.max_connections = 1};
    f->client = client_new(&f->loop, &o);
    got *g = calloc(NQUEUED, sizeof *g);
    sg_http_call **calls = calloc(NQUEUED, sizeof *calls);
    size_t *order = calloc(NQUEUED, sizeof *order);
    for (size_t i = 0; i < NQUEUED; i++) {
        assert_int_equal(post(f, "/echo", "{}", 3000, &g[i], &calls[i]), SG_OK);
        order[i] = NQUEUED - 1 - i; /* reverse: the queue's tail first */
    }
    assert_int_equal(sg_http_inflight(f->client), NQUEUED);
    unsigned seed = 12345; /* fixed: the same shuffle every run */
    for (size_t i = NQUEUED - 1; shuffle && i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        size_t j = (seed >> 8) % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < NQUEUED; i++) {
        sg_http_cancel(f->client, calls[order[i]]);
        assert_int_equal(sg_http_inflight(f->client), NQUEUED - 1 - i);
    }
    loop_run_until(&f->loop, NULL, NULL, 200);
    for (size_t i = 0; i < NQUEUED; i++)
        assert_int_equal(g[i].calls, 0);
    /* The slot was given back: a new call runs at once. */
    got last = {0};
    assert_int_equal(post(f, "/echo", "{}", 3000, &last, NULL), SG_OK);
    run_for(f, &last, 5000);
    assert_int_equal(last.outcome, SG_HTTP_DONE);
    assert_int_equal(last.status, 200);
    assert_int_equal(sg_http_inflight(f->client), 0);
    free(order);
    free(calls);
    free(g);
}

static void test_cancel_many_queued_reverse(void **state)
{
    cancel_queued(*state, 0);
}

static void test_cancel_many_queued_random(void **state)
{
    cancel_queued(*state, 1);
}

static void test_destroy_with_calls_in_flight(void **state)
{
    fixture *f = *state;
    got g[3] = {{0}};
    assert_int_equal(post(f, "/delay/200", "{}", 3000, &g[0], NULL), SG_OK);
    assert_int_equal(post(f, "/delay/200", "{}", 3000, &g[1], NULL), SG_OK);
    /* Let them connect first so that poll handles exist. */
    loop_run_until(&f->loop, NULL, NULL, 50);
    assert_int_equal(post(f, "/echo", "{}", 3000, &g[2], NULL), SG_OK);
    sg_http_client_destroy(f->client);
    f->client = NULL;
    assert_int_equal(loop_finish(&f->loop), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(g[i].calls, 0);
    assert_int_equal(uv_loop_init(&f->loop), 0); /* for teardown */
}

/* Destroying the client from inside a callback. */
typedef struct destroyer {
    sg_http_client *client;
    int calls;
} destroyer;

static void on_destroy(void *arg, const sg_http_result *r)
{
    (void)r;
    destroyer *d = arg;
    d->calls++;
    sg_http_client_destroy(d->client);
}

static void test_destroy_from_callback(void **state)
{
    fixture *f = *state;
    destroyer d = {.client = f->client};
    got other = {0};
    char url[128];
    snprintf(url, sizeof url, "%s/echo", f->srv.base);
    sg_http_request req = {.url = url, .body = "{}", .body_len = 2, .timeout_ms = 3000};
    assert_int_equal(sg_http_post(f->client, &req, on_destroy, &d, NULL), SG_OK);
    assert_int_equal(post(f, "/delay/300", "{}", 3000, &other, NULL), SG_OK);
    f->client = NULL;
    assert_int_equal(loop_finish(&f->loop), 0);
    assert_int_equal(d.calls, 1);
    assert_int_equal(other.calls, 0);
    assert_int_equal(uv_loop_init(&f->loop), 0);
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    got g = {0};
    sg_http_request req = {.url = NULL, .timeout_ms = 1000};
    sg_http_call *call = (sg_http_call *)&g; /* must be reset to NULL */
    assert_int_equal(sg_http_post(f->client, &req, on_result, &g, &call), SG_EINVAL);
    assert_null(call);
    req.url = "http://127.0.0.1:1/";
    assert_int_equal(sg_http_post(f->client, &req, NULL, &g, NULL), SG_EINVAL);
    /* A scheme curl will not speak fails at run time, through the callback. */
    req.url = "ftp://127.0.0.1:1/";
    assert_int_equal(sg_http_post(f->client, &req, on_result, &g, NULL), SG_OK);
    run_for(f, &g, 5000);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.outcome, SG_HTTP_ERR_TRANSPORT);
    sg_http_cancel(f->client, NULL); /* harmless */
    assert_int_equal(sg_http_inflight(NULL), 0);
    sg_http_client_destroy(NULL);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* e.g. "test_cancel*" */
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_ok_json),
        T(test_non_2xx),
        T(test_refused),
        T(test_unresolvable),
        T(test_timeout),
        T(test_too_big),
        T(test_dropped),
        T(test_redirect_not_followed),
        T(test_keepalive),
        T(test_headers),
        T(test_body_with_nul),
        T(test_cancel),
        T(test_cancel_from_callback),
        T(test_concurrent),
        T(test_slots_queue_without_burning_timeouts),
        T(test_slow_host_does_not_block_others),
        T(test_cancel_many_queued_reverse),
        T(test_cancel_many_queued_random),
        T(test_destroy_with_calls_in_flight),
        T(test_destroy_from_callback),
        T(test_bad_arguments),
#undef T
    };
    int rc = cmocka_run_group_tests_name("native", tests, NULL, NULL);
    use_curl = 1;
    rc += cmocka_run_group_tests_name("curl", tests, NULL, NULL);
    curl_global_cleanup(); /* so leak checkers see curl's memory returned */
    return rc;
}
