/* The bus: envelope text, URL selection, the log: and webhook backends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http/mini_server.h"
#include "http/test_loop.h"
#include "sg/bus.h"

#define EV_ID "6f1c1a52-6a55-4c2b-9d0e-1b2c3d4e5f60"
#define SAGA_ID "0b0e6a3c-0000-4000-8000-000000000001"
/* \u0000 escapes and integers beyond 64 bits must pass byte for byte. */
#define PAYLOAD                                                                                    \
    "{\"image_id\":\"img_123\",\"data\":\"a\\u0000b \\u00e9 \xc3\xa9\","                           \
    "\"big\":123456789012345678901234567890,\"neg\":-9223372036854775808,"                         \
    "\"n\":[1, 2.50, {\"x\" : null}]}"
#define CREATED_US 1795860000123456LL /* 2026-11-28T10:00:00.123456Z */

static sg_event_rec make_event(void)
{
    sg_event_rec ev = {0};
    snprintf(ev.id, sizeof ev.id, "%s", EV_ID);
    snprintf(ev.saga_id, sizeof ev.saga_id, "%s", SAGA_ID);
    ev.topic = "tokenizer_event";
    ev.payload = PAYLOAD;
    ev.payload_len = strlen(PAYLOAD);
    ev.created_us = CREATED_US;
    ev.step_index = 1;
    return ev;
}

static const char *expected_envelope(void)
{
    return "{\"id\":\"" EV_ID "\",\"topic\":\"tokenizer_event\",\"saga_id\":\"" SAGA_ID
           "\",\"payload\":" PAYLOAD ",\"created_at\":\"2026-11-28T10:00:00.123456Z\"}";
}

/* --------------------------------------------------------------- acks */

typedef struct ack {
    int calls;
    sg_status st;
    char why[512];
} ack;

static void on_ack(void *arg, sg_status st, const char *why)
{
    ack *a = arg;
    a->calls++;
    a->st = st;
    snprintf(a->why, sizeof a->why, "%s", why ? why : "");
}

static int acked(void *arg)
{
    return ((ack *)arg)->calls > 0;
}

/* ---------------------------------------------------------- envelope */

static void test_envelope_exact(void **state)
{
    (void)state;
    sg_event_rec ev = make_event();
    sg_buf b;
    sg_buf_init(&b, 1 << 20);
    assert_int_equal(sg_buf_adds(&b, "prefix:"), SG_OK);
    assert_int_equal(sg_event_envelope(&b, &ev), SG_OK);
    assert_string_equal(b.ptr + 7, expected_envelope());
    assert_int_equal(b.len, 7 + strlen(expected_envelope()));
    sg_buf_free(&b);
}

static void test_envelope_escapes_and_cap(void **state)
{
    (void)state;
    sg_event_rec ev = make_event();
    ev.topic = "we\"ird\\topic\n";
    ev.payload = "{}";
    ev.payload_len = 2;
    sg_buf b;
    sg_buf_init(&b, 1 << 20);
    assert_int_equal(sg_event_envelope(&b, &ev), SG_OK);
    assert_non_null(strstr(b.ptr, "\"topic\":\"we\\\"ird\\\\topic\\n\""));
    sg_buf_free(&b);

    /* Over the cap: an error and the buffer as it was. */
    sg_buf_init(&b, 40);
    assert_int_equal(sg_buf_adds(&b, "keep"), SG_OK);
    assert_int_equal(sg_event_envelope(&b, &ev), SG_ETOOBIG);
    assert_string_equal(b.ptr, "keep");
    assert_int_equal(b.len, 4);
    sg_buf_free(&b);
}

/* --------------------------------------------------------------- URLs */

static void test_urls(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_http_client *http = NULL;
    assert_int_equal(sg_http_client_create(&http, &loop, NULL), SG_OK);
    sg_bus_env env = {.loop = &loop, .http = http};
    char err[256];
    sg_bus *b = (sg_bus *)&env; /* must come back NULL */

    static const struct {
        const char *url;
        const char *msg; /* substring of the error */
    } bad[] = {
        {"", "empty bus URL"},
        {"kafka://broker:9092", "bus scheme 'kafka' is not supported by this build"},
        {"kafka://broker:9092",
         "(supported: log:, http://, https://, nats://, tls://, pulsar://, pulsar+ssl://)"},
        {"localhost", "bad bus URL 'localhost'"},
        {"localhost", "nats://host:port, tls://host:port (NATS over TLS), pulsar://host:port or "
                      "pulsar+ssl://host:port"},
        {"://x", "bad bus URL '://x'"},
        {"http://", "bad bus URL 'http://'"},
        {"http:///path", "bad bus URL 'http:///path'"},
        {"http:host/x", "bad bus URL 'http:host/x'"},
        {"http://:80/x", "bad bus URL 'http://:80/x'"},
        {"http://host:99999/x", "bad bus URL 'http://host:99999/x'"},
        {"log:somewhere", "the log bus takes no address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        if (sg_bus_create(&b, bad[i].url, &env, err, sizeof err) != SG_EINVAL)
            fail_msg("'%s' was accepted", bad[i].url);
        assert_null(b);
        if (!strstr(err, bad[i].msg)) fail_msg("'%s': got '%s'", bad[i].url, err);
    }
    /* A webhook needs the HTTP client; no loop at all is refused too. */
    sg_bus_env no_http = {.loop = &loop};
    assert_int_equal(sg_bus_create(&b, "http://h/x", &no_http, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "needs an HTTP client"));
    assert_int_equal(sg_bus_create(&b, "log:", NULL, err, sizeof err), SG_EINVAL);

    static const struct {
        const char *url;
        const char *name;
    } good[] = {
        {"log", "log"},
        {"log:", "log"},
        {"LOG:", "log"},
        {"http://127.0.0.1:8080/events", "webhook"},
        {"http://tokenizer-service/publish", "webhook"},
        {"https://example.org/hook", "webhook"},
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        assert_int_equal(sg_bus_create(&b, good[i].url, &env, err, sizeof err), SG_OK);
        assert_string_equal(sg_bus_name(b), good[i].name);
        assert_int_equal(sg_bus_is_log(b), strcmp(good[i].name, "log") == 0);
        assert_int_equal(sg_bus_is_broker(b), 0);
        char why[64] = "x";
        assert_int_equal(sg_bus_health(b, why, sizeof why), SG_OK);
        sg_bus_destroy(b);
    }
    sg_bus_destroy(NULL);
    sg_http_client_destroy(http);
    assert_int_equal(loop_finish(&loop), 0);
}

/* ---------------------------------------------------------------- log */

typedef struct fixture {
    uv_loop_t loop;
    mini_server srv;
    sg_http_client *http;
    sg_bus *bus;
    int saved_stdout; /* log tests capture fd 1 into a file */
    FILE *captured;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(mini_start(&f->srv), 0);
    assert_int_equal(sg_http_client_create(&f->http, &f->loop, NULL), SG_OK);
    f->saved_stdout = -1;
    *state = f;
    return 0;
}

static void capture_stop(fixture *f);

static int teardown(void **state)
{
    fixture *f = *state;
    capture_stop(f);
    sg_bus_destroy(f->bus);
    sg_http_client_destroy(f->http);
    assert_int_equal(loop_finish(&f->loop), 0);
    mini_stop(&f->srv);
    if (f->captured) fclose(f->captured);
    free(f);
    return 0;
}

static void capture_start(fixture *f)
{
    fflush(stdout);
    f->captured = tmpfile();
    assert_non_null(f->captured);
    f->saved_stdout = dup(STDOUT_FILENO);
    assert_true(dup2(fileno(f->captured), STDOUT_FILENO) >= 0);
}

static void capture_stop(fixture *f)
{
    if (f->saved_stdout < 0) return;
    fflush(stdout);
    dup2(f->saved_stdout, STDOUT_FILENO);
    close(f->saved_stdout);
    f->saved_stdout = -1;
}

/* Everything written to the captured stdout so far (caller frees). */
static char *captured_text(fixture *f)
{
    long n = lseek(fileno(f->captured), 0, SEEK_END);
    char *s = calloc(1, (size_t)n + 1);
    assert_int_equal(pread(fileno(f->captured), s, (size_t)n, 0), n);
    return s;
}

static void make_bus(fixture *f, const char *url)
{
    char err[256];
    sg_bus_env env = {.loop = &f->loop, .http = f->http};
    assert_int_equal(sg_bus_create(&f->bus, url, &env, err, sizeof err), SG_OK);
}

static void test_log_acks_after_publish(void **state)
{
    fixture *f = *state;
    make_bus(f, "log:");
    sg_event_rec ev = make_event();
    ack a = {0};
    sg_bus_pub *pub = NULL;
    capture_start(f);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 1000, on_ack, &a, &pub), SG_OK);
    assert_non_null(pub);
    assert_int_equal(a.calls, 0); /* never from inside publish */
    assert_true(loop_run_until(&f->loop, acked, &a, 2000));
    capture_stop(f);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.st, SG_OK);
    char *out = captured_text(f);
    char want[1024];
    snprintf(want, sizeof want, "%s\n", expected_envelope());
    assert_string_equal(out, want);
    free(out);
}

/* Each ack publishes the next event: chained publishes from callbacks. */
typedef struct relay {
    sg_bus *bus;
    sg_event_rec ev;
    int acks;
} relay;

static void on_relay(void *arg, sg_status st, const char *why)
{
    (void)why;
    relay *r = arg;
    assert_int_equal(st, SG_OK);
    if (++r->acks < 5)
        assert_int_equal(sg_bus_publish(r->bus, &r->ev, 1000, on_relay, r, NULL), SG_OK);
}

static int relay_done(void *arg)
{
    return ((relay *)arg)->acks >= 5;
}

static void test_log_cancel_and_order(void **state)
{
    fixture *f = *state;
    make_bus(f, "log:");
    sg_event_rec ev[3];
    const char *topics[] = {"t0", "t1", "t2"};
    ack a[3] = {{0}};
    sg_bus_pub *pub[3];
    capture_start(f);
    for (int i = 0; i < 3; i++) {
        ev[i] = make_event();
        ev[i].topic = (char *)topics[i];
        ev[i].payload = "{}";
        ev[i].payload_len = 2;
        assert_int_equal(sg_bus_publish(f->bus, &ev[i], 1000, on_ack, &a[i], &pub[i]), SG_OK);
    }
    sg_bus_cancel(f->bus, pub[1]); /* withdrawn: never printed, never acked */
    assert_true(loop_run_until(&f->loop, acked, &a[2], 2000));
    relay r = {.bus = f->bus, .ev = ev[0]};
    assert_int_equal(sg_bus_publish(f->bus, &ev[0], 1000, on_relay, &r, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, relay_done, &r, 2000));
    capture_stop(f);
    assert_int_equal(a[0].calls, 1);
    assert_int_equal(a[1].calls, 0);
    assert_int_equal(a[2].calls, 1);
    char *out = captured_text(f);
    int lines = 0;
    for (char *p = out; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + 5);
    char *t0 = strstr(out, "\"topic\":\"t0\""), *t2 = strstr(out, "\"topic\":\"t2\"");
    assert_non_null(t0);
    assert_non_null(t2);
    assert_true(t0 < t2);
    assert_null(strstr(out, "\"topic\":\"t1\""));
    free(out);
}

static void test_log_destroy_pending(void **state)
{
    fixture *f = *state;
    make_bus(f, "log");
    sg_event_rec ev = make_event();
    ack a = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 1000, on_ack, &a, NULL), SG_OK);
    sg_bus_destroy(f->bus);
    f->bus = NULL;
    loop_run_until(&f->loop, acked, &a, 100);
    assert_int_equal(a.calls, 0);
}

/* ------------------------------------------------------------ webhook */

static void webhook_bus(fixture *f, const char *path)
{
    char url[128];
    snprintf(url, sizeof url, "%s%s", f->srv.base, path);
    make_bus(f, url);
}

static void test_webhook_ack(void **state)
{
    fixture *f = *state;
    webhook_bus(f, "/echo");
    sg_event_rec ev = make_event();
    ack a = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &a, NULL), SG_OK);
    assert_int_equal(a.calls, 0);
    assert_true(loop_run_until(&f->loop, acked, &a, 5000));
    assert_int_equal(a.st, SG_OK);
    assert_string_equal(f->srv.last_body, expected_envelope());
    assert_string_equal(f->srv.last_event, EV_ID);
    assert_string_equal(f->srv.last_idem, EV_ID);
    assert_string_equal(f->srv.last_saga, SAGA_ID);
    assert_string_equal(f->srv.last_ctype, "application/json");
}

static void test_webhook_500(void **state)
{
    fixture *f = *state;
    webhook_bus(f, "/status/500");
    sg_event_rec ev = make_event();
    ack a = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &a, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, acked, &a, 5000));
    assert_int_equal(a.st, SG_EUNAVAIL); /* "not now": worth a retry */
    assert_string_equal(a.why, "webhook answered HTTP 500");
}

/* 408 and 429 ask for a retry; any other 4xx refuses for good. */
static void test_webhook_4xx(void **state)
{
    fixture *f = *state;
    static const struct {
        const char *path;
        sg_status st;
    } cases[] = {{"/status/404", SG_EREFUSED},
                 {"/status/401", SG_EREFUSED},
                 {"/status/429", SG_EUNAVAIL},
                 {"/status/408", SG_EUNAVAIL}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sg_bus_destroy(f->bus); /* the previous case's */
        f->bus = NULL;
        webhook_bus(f, cases[i].path);
        sg_event_rec ev = make_event();
        ack a = {0};
        assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &a, NULL), SG_OK);
        assert_true(loop_run_until(&f->loop, acked, &a, 5000));
        assert_int_equal(a.st, cases[i].st);
    }
}

static void test_webhook_refused(void **state)
{
    fixture *f = *state;
    unsigned short port = 0;
    int fd = mini_refusing_port(&port);
    assert_true(fd >= 0);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/hook", (unsigned)port);
    make_bus(f, url);
    sg_event_rec ev = make_event();
    ack a = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &a, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, acked, &a, 5000));
    close(fd);
    assert_int_equal(a.st, SG_EUNAVAIL);
    assert_non_null(strstr(a.why, "webhook unreachable"));
}

static void test_webhook_timeout(void **state)
{
    fixture *f = *state;
    webhook_bus(f, "/delay/3000");
    sg_event_rec ev = make_event();
    ack a = {0};
    uint64_t t0 = loop_ms();
    assert_int_equal(sg_bus_publish(f->bus, &ev, 200, on_ack, &a, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, acked, &a, 5000));
    assert_int_equal(a.st, SG_ETIMEOUT);
    assert_non_null(strstr(a.why, "timed out after 200 ms"));
    assert_true(loop_ms() - t0 < 1500);
}

static void test_webhook_cancel(void **state)
{
    fixture *f = *state;
    webhook_bus(f, "/delay/200");
    sg_event_rec ev = make_event();
    ack a = {0}, b = {0};
    sg_bus_pub *pub = NULL;
    assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &a, &pub), SG_OK);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &b, NULL), SG_OK);
    sg_bus_cancel(f->bus, pub);
    assert_int_equal(sg_http_inflight(f->http), 1);
    assert_true(loop_run_until(&f->loop, acked, &b, 5000));
    loop_run_until(&f->loop, acked, &a, 300);
    assert_int_equal(a.calls, 0);
    assert_int_equal(b.st, SG_OK);
    /* Destroying with a publish in flight: its callback never runs. */
    ack c = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &c, NULL), SG_OK);
    sg_bus_destroy(f->bus);
    f->bus = NULL;
    assert_int_equal(sg_http_inflight(f->http), 0);
    loop_run_until(&f->loop, acked, &c, 300);
    assert_int_equal(c.calls, 0);
}

/* Destroying the bus from inside an ack. */
typedef struct killer {
    sg_bus **bus;
    int calls;
} killer;

static void on_kill(void *arg, sg_status st, const char *why)
{
    (void)st;
    (void)why;
    killer *k = arg;
    k->calls++;
    sg_bus_destroy(*k->bus);
    *k->bus = NULL;
}

static int killed(void *arg)
{
    return ((killer *)arg)->calls > 0;
}

static void test_destroy_from_ack(void **state)
{
    fixture *f = *state;
    const char *urls[] = {"log:", "/echo"};
    for (int i = 0; i < 2; i++) {
        if (i == 0)
            make_bus(f, urls[i]);
        else
            webhook_bus(f, urls[i]);
        sg_event_rec ev = make_event();
        killer k = {.bus = &f->bus};
        ack other = {0};
        if (i == 0) capture_start(f);
        assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_kill, &k, NULL), SG_OK);
        assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &other, NULL), SG_OK);
        assert_true(loop_run_until(&f->loop, killed, &k, 5000));
        loop_run_until(&f->loop, acked, &other, 100);
        if (i == 0) capture_stop(f);
        assert_int_equal(k.calls, 1);
        assert_null(f->bus);
        /* The webhook's second call may have finished first; never after. */
        if (i == 0) assert_int_equal(other.calls, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_exact),
        cmocka_unit_test(test_envelope_escapes_and_cap),
        cmocka_unit_test(test_urls),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_log_acks_after_publish),
        T(test_log_cancel_and_order),
        T(test_log_destroy_pending),
        T(test_webhook_ack),
        T(test_webhook_500),
        T(test_webhook_4xx),
        T(test_webhook_refused),
        T(test_webhook_timeout),
        T(test_webhook_cancel),
        T(test_destroy_from_ack),
#undef T
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
