/* The pulsar:// bus through sg_bus_*: URLs and their refusals, /readyz's
 * view, and the ack contract of include/sg/bus.h (once, never inside
 * publish, never after cancel or destroy, SG_ETIMEOUT after timeout_ms),
 * against no broker and against the scripted broker of fake_broker.h:
 * sequence ids continue from last_sequence_id, a reconnect sends the
 * outstanding publishes again with their ids, a cancelled one never. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "bus/fake_broker.h"
#include "http/test_loop.h"
#include "sg/bus.h"

#define SAGA_ID "0b0e6a3c-0000-4000-8000-000000000001"

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
    snprintf(a->why, sizeof a->why, "%s", why ? why : "(null)");
}

static int acked(void *arg)
{
    return ((ack *)arg)->calls > 0;
}

static sg_event_rec event(int i)
{
    sg_event_rec ev = {0};
    snprintf(ev.id, sizeof ev.id, "6f1c1a52-6a55-4c2b-9d0e-%012d", i);
    snprintf(ev.saga_id, sizeof ev.saga_id, "%s", SAGA_ID);
    ev.topic = "tokenizer_event";
    ev.payload = "{\"k\":1}";
    ev.payload_len = 7;
    ev.created_us = 1;
    return ev;
}

typedef struct fixture {
    uv_loop_t loop;
    fake_broker fb;
    sg_bus *bus;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(fb_start(&f->fb, &f->loop), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sg_bus_destroy(f->bus);
    fb_stop(&f->fb);
    assert_int_equal(loop_finish(&f->loop), 0);
    free(f);
    return 0;
}

static sg_bus *make_bus(fixture *f, const char *opts)
{
    char url[256], err[256] = "";
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%d%s", f->fb.port, opts ? opts : "");
    sg_bus_env env = {.loop = &f->loop, .instance = "test"};
    if (sg_bus_create(&f->bus, url, &env, err, sizeof err) != SG_OK) fail_msg("%s", err);
    return f->bus;
}

static int bus_ready(void *arg)
{
    char why[256];
    return sg_bus_health(arg, why, sizeof why) == SG_OK;
}

/* ----------------------------------------------------------------- URLs */

static void test_urls(void **state)
{
    fixture *f = *state;
    sg_bus_env env = {.loop = &f->loop};
    char err[512];
    static const struct {
        const char *url, *msg;
    } bad[] = {
        {"pulsar://", "expected pulsar://host[:port]"},
        {"pulsar:/h", "expected pulsar://host[:port]"},
        {"pulsar://h:0", "port from 1 to 65535"},
        {"pulsar://h:65536", "port from 1 to 65535"},
        {"pulsar://h:x", "port from 1 to 65535"},
        {"pulsar://u@h", "expected pulsar://host"},
        {"pulsar://h/path", "no path"},
        {"pulsar://h#f", "no path or fragment"},
        {"pulsar://h?x", "expected option=value"},
        {"pulsar://h?what=1", "unknown option 'what'"},
        {"pulsar://h?keepalive_s=0", "bad value for option 'keepalive_s'"},
        {"pulsar://h?max_pending=-1", "bad value for option 'max_pending'"},
        {"pulsar://h?producer=", "option 'producer' is empty"},
        {"pulsar://h?tenant=a/b", "may not hold '/'"},
        {"pulsar://h?token=%zz", "bad percent-encoding"},
        {"pulsar://h?ca=/etc/ssl/x.pem", "need pulsar+ssl://"},
        {"pulsar+ssl://h?ca=/nonexistent/ca.pem", "cannot load CA certificates"},
        {"pulsar://h?token=SECRET&oops=1", "token=***"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        sg_bus *b = (sg_bus *)&env;
        err[0] = '\0';
        if (sg_bus_create(&b, bad[i].url, &env, err, sizeof err) != SG_EINVAL)
            fail_msg("'%s' was accepted", bad[i].url);
        assert_null(b);
        if (!strstr(err, bad[i].msg)) fail_msg("'%s': got '%s'", bad[i].url, err);
        assert_null(strstr(err, "SECRET"));
    }
    const char *good[] = {"pulsar://127.0.0.1:1",
                          "PULSAR://localhost",
                          "pulsar://[::1]:6650/",
                          "pulsar://h?token=a%2Bb%3D&producer=p&tenant=t&namespace=n",
                          "pulsar+ssl://h:6651?insecure=1&keepalive_s=5",
                          "pulsar://h?connect_timeout_ms=100&max_pending=1"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        sg_bus *b = NULL;
        if (sg_bus_create(&b, good[i], &env, err, sizeof err) != SG_OK)
            fail_msg("'%s': %s", good[i], err);
        assert_string_equal(sg_bus_name(b), "pulsar");
        assert_int_equal(sg_bus_is_broker(b), 1);
        assert_int_equal(sg_bus_is_log(b), 0);
        char why[256] = "";
        assert_int_equal(sg_bus_health(b, why, sizeof why), SG_EUNAVAIL);
        assert_non_null(strstr(why, "connecting to pulsar"));
        sg_bus_destroy(b);
    }

    /* --ca-file (env.ca_file) is what pulsar+ssl checks against when the
     * URL names no ca=; the URL's own ca= and insecure=1 win over it, and
     * plain pulsar:// does not read it at all. */
    env.ca_file = "/nonexistent/private-ca.pem";
    sg_bus *b = NULL;
    assert_int_equal(sg_bus_create(&b, "pulsar+ssl://h", &env, err, sizeof err), SG_EINVAL);
    assert_non_null(strstr(err, "cannot load CA certificates from /nonexistent/private-ca.pem"));
    assert_int_equal(
        sg_bus_create(&b, "pulsar+ssl://h?ca=/nonexistent/url-ca.pem", &env, err, sizeof err),
        SG_EINVAL);
    assert_non_null(strstr(err, "/nonexistent/url-ca.pem"));
    for (size_t i = 0; i < 2; i++) {
        const char *url = i ? "pulsar+ssl://h?insecure=1" : "pulsar://h";
        assert_int_equal(sg_bus_create(&b, url, &env, err, sizeof err), SG_OK);
        sg_bus_destroy(b);
    }
}

/* ----------------------------------------------------------- no broker */

/* A port bound but not listening: connections are refused. */
static int refusing_port(unsigned short *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return -1;
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_no_broker(void **state)
{
    fixture *f = *state;
    unsigned short port = 0;
    int fd = refusing_port(&port);
    assert_true(fd >= 0);
    char url[64], err[256];
    snprintf(url, sizeof url, "pulsar://127.0.0.1:%u", (unsigned)port);
    sg_bus_env env = {.loop = &f->loop};
    assert_int_equal(sg_bus_create(&f->bus, url, &env, err, sizeof err), SG_OK);
    sg_event_rec ev = event(1);
    ack a = {0}, c = {0};
    sg_bus_pub *pub = NULL, *pc = NULL;
    uint64_t t0 = loop_ms();
    assert_int_equal(sg_bus_publish(f->bus, &ev, 300, on_ack, &a, &pub), SG_OK);
    assert_non_null(pub);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 300, on_ack, &c, &pc), SG_OK);
    sg_bus_cancel(f->bus, pc);
    assert_int_equal(a.calls, 0); /* never from inside publish */
    assert_true(loop_run_until(&f->loop, acked, &a, 3000));
    assert_int_equal(a.st, SG_ETIMEOUT);
    assert_non_null(strstr(a.why, "timed out after 300 ms"));
    assert_non_null(strstr(a.why, "not connected to pulsar://127.0.0.1"));
    uint64_t took = loop_ms() - t0;
    assert_true(took >= 290 && took < 1500);
    char why[256];
    assert_int_equal(sg_bus_health(f->bus, why, sizeof why), SG_EUNAVAIL);
    assert_non_null(strstr(why, "connection refused"));
    loop_run_until(&f->loop, NULL, NULL, 100);
    assert_int_equal(a.calls, 1);
    assert_int_equal(c.calls, 0); /* cancelled: never */
    /* Destroyed with publishes outstanding: their callbacks never run. */
    ack d = {0};
    assert_int_equal(sg_bus_publish(f->bus, &ev, 50, on_ack, &d, NULL), SG_OK);
    sg_bus_destroy(f->bus);
    f->bus = NULL;
    loop_run_until(&f->loop, NULL, NULL, 150);
    assert_int_equal(d.calls, 0);
    close(fd);
}

static void test_max_pending(void **state)
{
    fixture *f = *state;
    make_bus(f, "?max_pending=2");
    sg_event_rec ev = event(1);
    ack a[3] = {{0}};
    sg_bus_pub *p = (sg_bus_pub *)&a;
    assert_int_equal(sg_bus_publish(f->bus, &ev, 1000, on_ack, &a[0], NULL), SG_OK);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 1000, on_ack, &a[1], NULL), SG_OK);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 1000, on_ack, &a[2], &p), SG_EBUSY);
    assert_null(p);
    assert_true(loop_run_until(&f->loop, acked, &a[1], 3000));
    assert_int_equal(a[0].st, SG_OK);
    assert_int_equal(a[1].st, SG_OK);
    loop_run_until(&f->loop, NULL, NULL, 50);
    assert_int_equal(a[2].calls, 0);
}

/* ------------------------------------------------------------ a broker */

static void test_acks_and_sequence_ids(void **state)
{
    fixture *f = *state;
    f->fb.last_seq = 41; /* what a broker with deduplication remembers */
    make_bus(f, "?producer=unit");
    assert_true(loop_run_until(&f->loop, bus_ready, f->bus, 3000));
    ack a[3] = {{0}};
    for (int i = 0; i < 3; i++) {
        sg_event_rec ev = event(i);
        assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &a[i], NULL), SG_OK);
        assert_int_equal(a[i].calls, 0);
    }
    assert_true(loop_run_until(&f->loop, acked, &a[2], 3000));
    for (int i = 0; i < 3; i++) {
        assert_int_equal(a[i].calls, 1);
        assert_int_equal(a[i].st, SG_OK);
        assert_string_equal(a[i].why, "ok");
        assert_int_equal(f->fb.seqs[i], 42 + (uint64_t)i);
        sg_event_rec ev = event(i);
        assert_string_equal(f->fb.events[i], ev.id);
        assert_string_equal(f->fb.keys[i], SAGA_ID);
    }
    assert_int_equal(f->fb.producers, 1);
}

static int two_sends(void *arg)
{
    return ((fixture *)arg)->fb.nsends >= 2;
}

static int sends_at_least(void *arg)
{
    fixture *f = arg;
    return f->fb.nsends >= 3 && f->fb.connects >= 2;
}

/* Outstanding publishes go again with their ids after a reconnect; a
 * cancelled one does not. */
static void test_reconnect_resends_outstanding_only(void **state)
{
    fixture *f = *state;
    make_bus(f, NULL);
    f->fb.hold = 1;
    ack a = {0}, b = {0};
    sg_bus_pub *pa = NULL;
    sg_event_rec ea = event(1), eb = event(2);
    assert_int_equal(sg_bus_publish(f->bus, &ea, 5000, on_ack, &a, &pa), SG_OK);
    assert_int_equal(sg_bus_publish(f->bus, &eb, 5000, on_ack, &b, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, two_sends, f, 3000));
    assert_int_equal(f->fb.nsends, 2);
    sg_bus_cancel(f->bus, pa); /* in doubt, withdrawn: never sent again */
    f->fb.hold = 0;
    fb_drop(&f->fb);
    assert_true(loop_run_until(&f->loop, sends_at_least, f, 5000));
    assert_true(loop_run_until(&f->loop, acked, &b, 3000));
    assert_int_equal(b.st, SG_OK);
    assert_int_equal(f->fb.nsends, 3);
    assert_string_equal(f->fb.events[2], eb.id);
    assert_int_equal(f->fb.seqs[2], f->fb.seqs[1]); /* the same sequence id */
    loop_run_until(&f->loop, NULL, NULL, 100);
    assert_int_equal(a.calls, 0);
}

static void test_receipt_timeout(void **state)
{
    fixture *f = *state;
    make_bus(f, NULL);
    f->fb.hold = 1;
    ack a = {0};
    sg_event_rec ev = event(1);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 300, on_ack, &a, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, acked, &a, 3000));
    assert_int_equal(a.st, SG_ETIMEOUT);
    assert_non_null(strstr(a.why, "no receipt yet"));
    /* A receipt that comes after the timeout changes nothing. */
    fb_receipt(&f->fb, f->fb.seqs[0]);
    loop_run_until(&f->loop, NULL, NULL, 100);
    assert_int_equal(a.calls, 1);
}

/* Destroying the bus from inside an ack: the others never run. */
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
    make_bus(f, NULL);
    killer k = {.bus = &f->bus};
    ack other = {0};
    sg_event_rec ev = event(1);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_kill, &k, NULL), SG_OK);
    assert_int_equal(sg_bus_publish(f->bus, &ev, 2000, on_ack, &other, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, killed, &k, 3000));
    loop_run_until(&f->loop, NULL, NULL, 100);
    assert_int_equal(k.calls, 1);
    assert_null(f->bus);
    assert_int_equal(other.calls, 0);
}

/* An ack that publishes again, five times over. */
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
        assert_int_equal(sg_bus_publish(r->bus, &r->ev, 2000, on_relay, r, NULL), SG_OK);
}

static int relay_done(void *arg)
{
    return ((relay *)arg)->acks >= 5;
}

static void test_publish_from_ack(void **state)
{
    fixture *f = *state;
    make_bus(f, NULL);
    relay r = {.bus = f->bus, .ev = event(9)};
    assert_int_equal(sg_bus_publish(f->bus, &r.ev, 2000, on_relay, &r, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, relay_done, &r, 5000));
    assert_int_equal(f->fb.nsends, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(f->fb.seqs[i], (uint64_t)i);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
#define F(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        F(test_urls),
        F(test_no_broker),
        F(test_max_pending),
        F(test_acks_and_sequence_ids),
        F(test_reconnect_resends_outstanding_only),
        F(test_receipt_timeout),
        F(test_destroy_from_ack),
        F(test_publish_from_ack),
    };
#undef F
    return cmocka_run_group_tests(tests, NULL, NULL);
}
