/* The NATS JetStream bus against a real nats-server: envelopes and the
 * Nats-Msg-Id header as a JetStream consumer sees them, duplicates stored
 * once, cancel and destroy, timeouts, a broker that is down at start or
 * goes down and comes back (publishes fail fast and are never sent later),
 * the stream created or reused, authentication, bad URLs. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/nats_consumer.h"
#include "bus/nats_server.h"
#include "http/test_loop.h"
#include "sg/bus.h"

#define SAGA_ID "0b0e6a3c-0000-4000-8000-000000000001"
/* \u0000 escapes and integers beyond 64 bits must pass byte for byte. */
#define PAYLOAD                                                                                    \
    "{\"image_id\":\"img_123\",\"data\":\"a\\u0000b \\u00e9 \xc3\xa9\","                           \
    "\"big\":123456789012345678901234567890,\"n\":[1, 2.50, {\"x\" : null}]}"
#define CREATED_US 1795860000123456LL /* 2026-11-28T10:00:00.123456Z */

static sg_event_rec make_event(int i, const char *topic)
{
    sg_event_rec ev = {0};
    snprintf(ev.id, sizeof ev.id, "6f1c1a52-6a55-4c2b-9d0e-%012d", i);
    snprintf(ev.saga_id, sizeof ev.saga_id, "%s", SAGA_ID);
    ev.topic = (char *)topic;
    ev.payload = PAYLOAD;
    ev.payload_len = strlen(PAYLOAD);
    ev.created_us = CREATED_US;
    return ev;
}

static int acked(void *arg)
{
    return ((ack *)arg)->calls > 0;
}

/* ------------------------------------------------------------ fixture */

typedef struct fixture {
    uv_loop_t loop;
    nats_server srv;
    sg_bus *bus;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(nats_server_start(&f->srv), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sg_bus_destroy(f->bus);
    assert_int_equal(loop_finish(&f->loop), 0);
    nats_server_destroy(&f->srv);
    free(f);
    return 0;
}

static sg_bus *make_bus(fixture *f, const char *url)
{
    char err[256] = "";
    sg_bus_env env = {.loop = &f->loop};
    sg_bus *b = NULL;
    if (sg_bus_create(&b, url, &env, err, sizeof err) != SG_OK) fail_msg("%s: %s", url, err);
    return b;
}

static int healthy(void *arg)
{
    char why[256];
    return sg_bus_health(arg, why, sizeof why) == SG_OK;
}

static int unhealthy(void *arg)
{
    return !healthy(arg);
}

/* A bus on the fixture's server (url suffix: options), connected. */
static void connect_bus(fixture *f, const char *options)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->srv.url, options ? options : "");
    f->bus = make_bus(f, url);
    assert_true(loop_run_until(&f->loop, healthy, f->bus, 10000));
}

static void publish_ok(fixture *f, const sg_event_rec *ev)
{
    ack a = {0};
    sg_bus_pub *pub = NULL;
    assert_int_equal(sg_bus_publish(f->bus, ev, 5000, on_ack, &a, &pub), SG_OK);
    assert_non_null(pub);
    assert_int_equal(a.calls, 0); /* never from inside publish */
    assert_true(loop_run_until(&f->loop, acked, &a, 6000));
    if (a.st != SG_OK) fail_msg("not acked: %s", a.why);
    assert_int_equal(a.calls, 1);
}

/* ---------------------------------------------------- the consumer side */

/* The fixture's server, plain. */
static natsOptions *plain_opts(const fixture *f)
{
    natsOptions *o = NULL;
    check(natsOptions_Create(&o), 0, "options");
    check(natsOptions_SetURL(o, f->srv.url), 0, "options URL");
    return o;
}

static void consume(const fixture *f, const char *stream, got *g)
{
    natsOptions *o = plain_opts(f);
    nats_consume(o, stream, g);
    natsOptions_Destroy(o);
}

static long stream_msgs(const fixture *f, const char *stream, char subjects[][64], int *nsubj)
{
    natsOptions *o = plain_opts(f);
    long n = nats_stream_msgs(o, stream, subjects, nsubj);
    natsOptions_Destroy(o);
    return n;
}

static char *envelope_of(const sg_event_rec *ev)
{
    sg_buf b;
    sg_buf_init(&b, 1 << 20);
    assert_int_equal(sg_event_envelope(&b, ev), SG_OK);
    size_t len;
    return sg_buf_take(&b, &len);
}

/* -------------------------------------------------------------- tests */

static void test_publish_and_consume(void **state)
{
    fixture *f = *state;
    connect_bus(f, NULL);
    assert_string_equal(sg_bus_name(f->bus), "nats");
    assert_int_equal(sg_bus_is_broker(f->bus), 1);
    assert_int_equal(sg_bus_is_log(f->bus), 0);
    const char *topics[] = {"tokenizer_event", "tokenizer_compensation", "tokenizer_event"};
    sg_event_rec ev[3];
    for (int i = 0; i < 3; i++) {
        ev[i] = make_event(i + 1, topics[i]);
        publish_ok(f, &ev[i]);
    }
    got g;
    consume(f, "SAGAD", &g);
    assert_int_equal(g.n, 3);
    assert_string_equal(g.data[0],
                        "{\"id\":\"6f1c1a52-6a55-4c2b-9d0e-000000000001\",\"topic\":\"tokenizer_"
                        "event\",\"saga_id\":\"" SAGA_ID "\",\"payload\":" PAYLOAD
                        ",\"created_at\":\"2026-11-28T10:00:00.123456Z\"}");
    for (int i = 0; i < 3; i++) {
        char *want = envelope_of(&ev[i]);
        assert_string_equal(g.data[i], want);
        free(want);
        assert_string_equal(g.id[i], ev[i].id);
        assert_string_equal(g.subject[i], topics[i]);
    }
    got_free(&g);
}

static void test_duplicate_stored_once(void **state)
{
    fixture *f = *state;
    connect_bus(f, NULL);
    sg_event_rec ev = make_event(7, "tokenizer_event");
    ack a = {0}, b = {0};
    /* Two in flight at once and one more later: one message in the stream. */
    assert_int_equal(sg_bus_publish(f->bus, &ev, 5000, on_ack, &a, NULL), SG_OK);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 5000, on_ack, &b, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, acked, &a, 6000));
    assert_true(loop_run_until(&f->loop, acked, &b, 6000));
    assert_int_equal(a.st, SG_OK);
    assert_int_equal(b.st, SG_OK);
    publish_ok(f, &ev);
    assert_int_equal(stream_msgs(f, "SAGAD", NULL, NULL), 1);
    got g;
    consume(f, "SAGAD", &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.id[0], ev.id);
    got_free(&g);
}

static void test_cancel_and_destroy(void **state)
{
    fixture *f = *state;
    connect_bus(f, NULL);
    sg_event_rec ev1 = make_event(1, "tokenizer_event"), ev2 = make_event(2, "tokenizer_event");
    ack a = {0}, b = {0};
    sg_bus_pub *pub = NULL;
    assert_int_equal(sg_bus_publish(f->bus, &ev1, 5000, on_ack, &a, &pub), SG_OK);
    assert_int_equal(sg_bus_publish(f->bus, &ev2, 5000, on_ack, &b, NULL), SG_OK);
    sg_bus_cancel(f->bus, pub); /* before its ack: its callback never runs */
    assert_true(loop_run_until(&f->loop, acked, &b, 6000));
    assert_int_equal(b.st, SG_OK);
    loop_run_until(&f->loop, NULL, NULL, 300); /* the cancelled one's ack comes and goes */
    assert_int_equal(a.calls, 0);

    /* Destroyed with a publish in flight: its callback never runs. */
    ack c = {0};
    sg_event_rec ev3 = make_event(3, "tokenizer_event");
    assert_int_equal(sg_bus_publish(f->bus, &ev3, 5000, on_ack, &c, NULL), SG_OK);
    sg_bus_destroy(f->bus);
    f->bus = NULL;
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
    connect_bus(f, NULL);
    sg_event_rec ev = make_event(1, "tokenizer_event");
    killer k = {.bus = &f->bus};
    ack other = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 5000, on_kill, &k, NULL), SG_OK);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 5000, on_ack, &other, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, killed, &k, 6000));
    loop_run_until(&f->loop, NULL, NULL, 200);
    assert_int_equal(k.calls, 1);
    assert_null(f->bus);
    assert_true(other.calls <= 1);
}

static void test_timeout_and_no_stream(void **state)
{
    fixture *f = *state;
    connect_bus(f, NULL);
    /* A subject no stream takes: refused at once, not after the timeout. */
    sg_event_rec ev = make_event(1, "nobody_listens");
    ack a = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 5000, on_ack, &a, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, acked, &a, 3000));
    assert_int_equal(a.st, SG_EUNAVAIL);
    assert_non_null(strstr(a.why, "no JetStream stream takes subject 'nobody_listens'"));

    /* A broker that stops answering: the publish gives up after its timeout. */
    nats_server_pause(&f->srv);
    ack b = {0};
    sg_event_rec ev2 = make_event(2, "tokenizer_event");
    uint64_t t0 = loop_ms();
    assert_int_equal(sg_bus_publish(f->bus, &ev2, 300, on_ack, &b, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, acked, &b, 3000));
    uint64_t took = loop_ms() - t0;
    nats_server_resume(&f->srv);
    assert_int_equal(b.st, SG_ETIMEOUT);
    assert_string_equal(b.why, "NATS: no JetStream ack within 300 ms");
    assert_true(took >= 290 && took < 1500);
}

static void test_broker_down_and_back(void **state)
{
    fixture *f = *state;
    connect_bus(f, NULL);
    sg_event_rec before = make_event(1, "tokenizer_event");
    publish_ok(f, &before);

    nats_server_stop(&f->srv, SIGKILL);
    assert_true(loop_run_until(&f->loop, unhealthy, f->bus, 10000));
    char why[256];
    assert_int_equal(sg_bus_health(f->bus, why, sizeof why), SG_EUNAVAIL);
    assert_non_null(strstr(why, "reconnecting"));
    /* Fails at once, never buffered for after the reconnect. */
    sg_event_rec during = make_event(2, "tokenizer_event");
    ack a = {0};
    sg_bus_pub *pub = (sg_bus_pub *)&a;
    assert_int_equal(sg_bus_publish(f->bus, &during, 5000, on_ack, &a, &pub), SG_EUNAVAIL);
    assert_null(pub);

    assert_int_equal(nats_server_start(&f->srv), 0); /* same port, same store */
    assert_true(loop_run_until(&f->loop, healthy, f->bus, 15000));
    assert_int_equal(a.calls, 0);
    sg_event_rec after = make_event(3, "tokenizer_event");
    publish_ok(f, &after);
    got g;
    consume(f, "SAGAD", &g);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.id[0], before.id);
    assert_string_equal(g.id[1], after.id);
    got_free(&g);
}

static void test_starts_while_down(void **state)
{
    fixture *f = *state;
    nats_server_stop(&f->srv, SIGKILL); /* keeps its port for the restart */
    char url[64];
    snprintf(url, sizeof url, "%s", f->srv.url);
    f->bus = make_bus(f, url);
    loop_run_until(&f->loop, NULL, NULL, 300);
    char why[256];
    assert_int_equal(sg_bus_health(f->bus, why, sizeof why), SG_EUNAVAIL);
    assert_non_null(strstr(why, "cannot connect to nats://127.0.0.1:"));
    sg_event_rec ev = make_event(1, "tokenizer_event");
    ack a = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 5000, on_ack, &a, NULL), SG_EUNAVAIL);
    assert_int_equal(nats_server_start(&f->srv), 0);
    assert_true(loop_run_until(&f->loop, healthy, f->bus, 10000));
    publish_ok(f, &ev);
    assert_int_equal(a.calls, 0);
}

static void test_stream_created_then_reused(void **state)
{
    fixture *f = *state;
    const char *opts = "?stream=ORDERS&subjects=orders.created,orders.cancelled";
    assert_int_equal(stream_msgs(f, "ORDERS", NULL, NULL), -1);
    connect_bus(f, opts);
    char subj[8][64];
    int nsubj = 0;
    assert_int_equal(stream_msgs(f, "ORDERS", subj, &nsubj), 0);
    assert_int_equal(nsubj, 2);
    assert_string_equal(subj[0], "orders.created");
    assert_string_equal(subj[1], "orders.cancelled");
    sg_event_rec ev = make_event(1, "orders.created");
    publish_ok(f, &ev);
    /* The default stream was not made. */
    assert_int_equal(stream_msgs(f, "SAGAD", NULL, NULL), -1);

    /* A second bus finds it and keeps what it holds. */
    sg_bus_destroy(f->bus);
    connect_bus(f, opts);
    assert_int_equal(stream_msgs(f, "ORDERS", NULL, NULL), 1);
    sg_event_rec ev2 = make_event(2, "orders.cancelled");
    publish_ok(f, &ev2);
    assert_int_equal(stream_msgs(f, "ORDERS", NULL, NULL), 2);
}

static void test_auth(void **state)
{
    fixture *f = *state;
    nats_server_destroy(&f->srv);
    f->srv.extra[0] = "--user";
    f->srv.extra[1] = "sagad";
    f->srv.extra[2] = "--pass";
    f->srv.extra[3] = "s3cr%t";
    assert_int_equal(nats_server_start(&f->srv), 0);
    char url[128];
    /* A wrong password: never ready, and the password is never shown. */
    snprintf(url, sizeof url, "nats://sagad:wrong@127.0.0.1:%d", f->srv.port);
    f->bus = make_bus(f, url);
    loop_run_until(&f->loop, NULL, NULL, 1000);
    char why[256];
    assert_int_equal(sg_bus_health(f->bus, why, sizeof why), SG_EUNAVAIL);
    assert_null(strstr(why, "wrong"));
    assert_non_null(strstr(why, "nats://***@127.0.0.1"));
    sg_bus_destroy(f->bus);
    /* Percent-encoded in the URL. */
    snprintf(url, sizeof url, "nats://sagad:s3cr%%25t@127.0.0.1:%d", f->srv.port);
    f->bus = make_bus(f, url);
    assert_true(loop_run_until(&f->loop, healthy, f->bus, 10000));
    sg_event_rec ev = make_event(1, "tokenizer_event");
    publish_ok(f, &ev);
    sg_bus_destroy(f->bus);
    f->bus = NULL;

    nats_server_destroy(&f->srv);
    f->srv.extra[0] = "--auth";
    f->srv.extra[1] = "t0ken";
    f->srv.extra[2] = NULL;
    assert_int_equal(nats_server_start(&f->srv), 0);
    snprintf(url, sizeof url, "nats://t0ken@127.0.0.1:%d", f->srv.port);
    f->bus = make_bus(f, url);
    assert_true(loop_run_until(&f->loop, healthy, f->bus, 10000));
    publish_ok(f, &ev);
}

static void test_urls(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    sg_bus_env env = {.loop = &loop};
    char err[256];
    static const struct {
        const char *url;
        const char *msg; /* substring of the error */
    } bad[] = {
        {"nats:", "bad bus URL 'nats:': expected nats://host[:port]"},
        {"nats://", "bad bus URL 'nats://'"},
        {"nats:///x", "bad bus URL 'nats:///x'"},
        {"nats://:4222", "bad bus URL 'nats://:4222'"},
        {"nats://h:99999", "bad bus URL 'nats://h:99999'"},
        {"nats://h:4222/path", "nothing may follow host:port but ?options"},
        {"nats://h#frag", "nothing may follow host:port but ?options"},
        {"nats://h?color=red",
         "unknown option 'color' (known: stream, subjects, ca, cert, key, insecure)"},
        {"nats://h?stream=", "stream: '' is not a stream name"},
        {"nats://h?stream=a.b", "stream: 'a.b' is not a stream name"},
        {"nats://h?stream=A&stream=B", "stream given twice"},
        {"nats://h?subjects=", "subjects: '' is not a NATS subject"},
        {"nats://h?subjects=a,,b", "subjects: '' is not a NATS subject"},
        {"nats://h?subjects=a..b", "subjects: 'a..b' is not a NATS subject"},
        {"nats://h?subjects=a.>.b", "subjects: 'a.>.b' is not a NATS subject"},
        {"nats://h?subjects=a*", "subjects: 'a*' is not a NATS subject"},
        {"nats://u:secret@h?x=1", "bad bus URL 'nats://***@h?x=1': unknown option 'x'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sg_bus *b = (sg_bus *)&env;
        err[0] = '\0';
        if (sg_bus_create(&b, bad[i].url, &env, err, sizeof err) != SG_EINVAL)
            fail_msg("'%s' was accepted", bad[i].url);
        assert_null(b);
        if (!strstr(err, bad[i].msg)) fail_msg("'%s': got '%s'", bad[i].url, err);
        assert_null(strstr(err, "secret"));
    }
    /* Good ones (nothing listens on port 1: they try in the background). */
    const char *good[] = {"nats://127.0.0.1:1", "NATS://127.0.0.1:1/",
                          "nats://u:p@127.0.0.1:1?stream=S_1-x&subjects=a.*,b.>,c",
                          "nats://token@[::1]:1?subjects=tokenizer_event"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        sg_bus *b = NULL;
        if (sg_bus_create(&b, good[i], &env, err, sizeof err) != SG_OK)
            fail_msg("'%s' refused: %s", good[i], err);
        assert_string_equal(sg_bus_name(b), "nats");
        assert_int_equal(sg_bus_is_broker(b), 1);
        char why[256];
        assert_int_equal(sg_bus_health(b, why, sizeof why), SG_EUNAVAIL);
        assert_null(strstr(why, "p@"));
        sg_bus_destroy(b);
    }
    assert_int_equal(loop_finish(&loop), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_urls),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_publish_and_consume),
        T(test_duplicate_stored_once),
        T(test_cancel_and_destroy),
        T(test_destroy_from_ack),
        T(test_timeout_and_no_stream),
        T(test_broker_down_and_back),
        T(test_starts_while_down),
        T(test_stream_created_then_reused),
        T(test_auth),
#undef T
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    /* libnats' threads and globals, so that LeakSanitizer sees nothing. */
    nats_CloseAndWait(5000);
    return rc;
}
