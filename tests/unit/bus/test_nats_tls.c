/* The NATS bus over TLS (tls://) against a real nats-server with TLS on,
 * its certificates made by the openssl CLI when the test starts: envelopes
 * as a TLS consumer reads them back, the CA from ca= or --ca-file (the URL
 * wins), a server not signed by that CA or not named as dialled refused,
 * no fallback to plain text, nats:// upgraded by the server and still
 * checked, mutual TLS, insecure=1, a broker restart, a frozen broker that
 * does not freeze the loop. Bad URLs and files: test_nats_tls_urls.c. */
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
#include "bus/tls_certs.h"
#include "http/test_loop.h"
#include "sg/bus.h"

#define SAGA_ID "0b0e6a3c-0000-4000-8000-000000000002"
#define PAYLOAD                                                                                    \
    "{\"image_id\":\"img_tls\",\"data\":\"a\\u0000b \xc3\xa9\",\"n\":123456789012345678901}"

/* ------------------------------------------------------------ fixture */

typedef struct fixture {
    uv_loop_t loop;
    nats_server srv;
    sg_bus *bus;
} fixture;

/* The server with TLS on, this certificate; verify: client certificates
 * required, signed by our CA. */
static void tls_server(fixture *f, const char *cert, const char *key, int verify)
{
    nats_server_destroy(&f->srv);
    memset(f->srv.extra, 0, sizeof f->srv.extra);
    const char **x = f->srv.extra;
    *x++ = verify ? "--tlsverify" : "--tls";
    *x++ = "--tlscert";
    *x++ = cert;
    *x++ = "--tlskey";
    *x++ = key;
    if (verify) {
        *x++ = "--tlscacert";
        *x++ = ca;
    }
    assert_int_equal(nats_server_start(&f->srv), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    tls_server(f, srv_cert, srv_key, 0);
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

/* A bus on `scheme`://host:port of the fixture's server, URL options
 * `query` (may be NULL), --ca-file `ca_file` (may be NULL). */
static sg_bus *make_bus(fixture *f, const char *scheme, const char *host, const char *query,
                        const char *ca_file)
{
    char url[512], err[512] = "";
    snprintf(url, sizeof url, "%s://%s:%d%s%s", scheme, host, f->srv.port, query ? "?" : "",
             query ? query : "");
    sg_bus_env env = {.loop = &f->loop, .ca_file = ca_file};
    sg_bus *b = NULL;
    if (sg_bus_create(&b, url, &env, err, sizeof err) != SG_OK) fail_msg("%s: %s", url, err);
    return b;
}

static int healthy(void *arg)
{
    char why[256];
    return sg_bus_health(arg, why, sizeof why) == SG_OK;
}

/* The bus connects (TLS accepted) within 10 s. */
static void assert_connects(fixture *f)
{
    if (!loop_run_until(&f->loop, healthy, f->bus, 10000)) {
        char why[512];
        sg_bus_health(f->bus, why, sizeof why);
        fail_msg("not connected: %s", why);
    }
}

static int unhealthy(void *arg)
{
    return !healthy(arg);
}

static int attempt_failed(void *arg)
{
    char why[512];
    return sg_bus_health(arg, why, sizeof why) != SG_OK && strstr(why, "cannot connect");
}

/* The bus is refused at once (not after a timeout) and stays unconnected
 * through more attempts, for a reason that holds `want` (and `also` when
 * not NULL); nothing can be published. */
static void assert_refused(fixture *f, const char *want, const char *also)
{
    uint64_t t0 = loop_ms();
    assert_true(loop_run_until(&f->loop, attempt_failed, f->bus, 3000));
    assert_true(loop_ms() - t0 < 1500);
    loop_run_until(&f->loop, NULL, NULL, 1200); /* two attempts more */
    char why[512];
    assert_int_equal(sg_bus_health(f->bus, why, sizeof why), SG_EUNAVAIL);
    if (!strstr(why, want) || (also && !strstr(why, also)))
        fail_msg("reason '%s' does not say '%s'%s%s", why, want, also ? " and " : "",
                 also ? also : "");
    sg_event_rec ev = {.id = "6f1c1a52-6a55-4c2b-9d0e-00000000dead", .saga_id = SAGA_ID};
    ev.topic = "tokenizer_event";
    ev.payload = PAYLOAD;
    ev.payload_len = strlen(PAYLOAD);
    ack a = {0};
    sg_bus_pub *pub = NULL;
    assert_int_equal(sg_bus_publish(f->bus, &ev, 1000, on_ack, &a, &pub), SG_EUNAVAIL);
    assert_null(pub);
    loop_run_until(&f->loop, NULL, NULL, 10);
    assert_int_equal(a.calls, 0);
}

/* ---------------------------------------------------------- publishing */

static int acked(void *arg)
{
    return ((ack *)arg)->calls > 0;
}

static sg_event_rec make_event(int i, const char *topic, const char *payload)
{
    sg_event_rec ev = {0};
    snprintf(ev.id, sizeof ev.id, "6f1c1a52-6a55-4c2b-9d0e-%012d", i);
    snprintf(ev.saga_id, sizeof ev.saga_id, "%s", SAGA_ID);
    ev.topic = (char *)topic;
    ev.payload = (char *)payload;
    ev.payload_len = strlen(payload);
    ev.created_us = 1795860000123456LL;
    return ev;
}

static void publish_ok(fixture *f, const sg_event_rec *ev)
{
    ack a = {0};
    assert_int_equal(sg_bus_publish(f->bus, ev, 5000, on_ack, &a, NULL), SG_OK);
    assert_true(loop_run_until(&f->loop, acked, &a, 6000));
    if (a.st != SG_OK) fail_msg("not acked: %s", a.why);
}

static char *envelope_of(const sg_event_rec *ev)
{
    sg_buf b;
    sg_buf_init(&b, 4 << 20);
    assert_int_equal(sg_event_envelope(&b, ev), SG_OK);
    size_t len;
    return sg_buf_take(&b, &len);
}

/* Our own TLS client for the fixture's server, trusting our CA. */
static natsOptions *tls_opts(const fixture *f)
{
    natsOptions *o = NULL;
    check(natsOptions_Create(&o), 0, "options");
    char url[64];
    snprintf(url, sizeof url, "nats://localhost:%d", f->srv.port); /* every certificate's name */
    check(natsOptions_SetURL(o, url), 0, "options URL");
    check(natsOptions_SetSecure(o, true), 0, "options TLS");
    check(natsOptions_LoadCATrustedCertificates(o, ca), 0, "options CA");
    if (f->srv.extra[0] && strcmp(f->srv.extra[0], "--tlsverify") == 0)
        check(natsOptions_LoadCertificatesChain(o, client_cert, client_key), 0, "options cert");
    return o;
}

/* The events are in the stream, in order, byte for byte. */
static void assert_stream_holds(const fixture *f, const sg_event_rec *evs, int n)
{
    natsOptions *o = tls_opts(f);
    got g;
    nats_consume(o, "SAGAD", &g);
    natsOptions_Destroy(o);
    assert_int_equal(g.n, n);
    for (int i = 0; i < n; i++) {
        char *want = envelope_of(&evs[i]);
        assert_string_equal(g.data[i], want);
        free(want);
        assert_string_equal(g.id[i], evs[i].id);
        assert_string_equal(g.subject[i], evs[i].topic);
    }
    got_free(&g);
}

/* The stream was never made: nothing of ours reached JetStream. */
static void assert_no_stream(const fixture *f)
{
    natsOptions *o = tls_opts(f);
    assert_int_equal(nats_stream_msgs(o, "SAGAD", NULL, NULL), -1);
    natsOptions_Destroy(o);
}

/* -------------------------------------------------------------- tests */

static void test_publish_over_tls(void **state)
{
    fixture *f = *state;
    char q[256];
    snprintf(q, sizeof q, "ca=%s", ca);
    f->bus = make_bus(f, "tls", "127.0.0.1", q, NULL);
    assert_string_equal(sg_bus_name(f->bus), "nats");
    assert_int_equal(sg_bus_is_broker(f->bus), 1);
    assert_connects(f);
    /* A payload of 300 kB crosses many TLS records both ways. */
    size_t big_len = 300 * 1024;
    char *big = malloc(big_len + 32);
    int off = snprintf(big, 32, "{\"blob\":\"");
    memset(big + off, 'x', big_len);
    strcpy(big + off + big_len, "\"}");
    sg_event_rec ev[3] = {make_event(1, "tokenizer_event", PAYLOAD),
                          make_event(2, "tokenizer_compensation", PAYLOAD),
                          make_event(3, "tokenizer_event", big)};
    for (int i = 0; i < 3; i++)
        publish_ok(f, &ev[i]);
    assert_stream_holds(f, ev, 3);
    free(big);
}

static void test_ca_file_and_url_ca(void **state)
{
    fixture *f = *state;
    char q[256];
    /* --ca-file alone. */
    f->bus = make_bus(f, "tls", "127.0.0.1", NULL, ca);
    assert_connects(f);
    sg_event_rec ev[2] = {make_event(1, "tokenizer_event", PAYLOAD),
                          make_event(2, "tokenizer_event", PAYLOAD)};
    publish_ok(f, &ev[0]);
    sg_bus_destroy(f->bus);
    /* The URL's ca= wins over --ca-file: the right one in the URL ... */
    snprintf(q, sizeof q, "ca=%s", ca);
    f->bus = make_bus(f, "tls", "127.0.0.1", q, other_ca);
    assert_connects(f);
    publish_ok(f, &ev[1]);
    sg_bus_destroy(f->bus);
    /* ... and the wrong one in the URL. */
    snprintf(q, sizeof q, "ca=%s", other_ca);
    f->bus = make_bus(f, "tls", "127.0.0.1", q, ca);
    assert_refused(f, "certificate verification failed", NULL);
    assert_stream_holds(f, ev, 2);
}

static void test_untrusted_server_refused(void **state)
{
    fixture *f = *state;
    char q[256];
    /* A CA that did not sign the server's certificate. */
    snprintf(q, sizeof q, "ca=%s", other_ca);
    f->bus = make_bus(f, "tls", "127.0.0.1", q, NULL);
    assert_refused(f, "cannot connect to tls://127.0.0.1:",
                   "TLS: certificate verification failed: unable to get local issuer certificate");
    sg_bus_destroy(f->bus);
    /* No CA at all: the system's do not know ours either. */
    f->bus = make_bus(f, "tls", "127.0.0.1", NULL, NULL);
    assert_refused(f, "certificate verification failed", "issuer=/CN=sagad test ca");
    assert_no_stream(f);
}

static void test_host_name_checked(void **state)
{
    fixture *f = *state;
    tls_server(f, dns_cert, dns_key, 0); /* names localhost, not 127.0.0.1 */
    f->bus = make_bus(f, "tls", "127.0.0.1", NULL, ca);
    assert_refused(f, "certificate verification failed: IP address mismatch (expected=127.0.0.1",
                   NULL);
    assert_no_stream(f);
    sg_bus_destroy(f->bus);
    /* The same server by the name on its certificate. */
    f->bus = make_bus(f, "tls", "localhost", NULL, ca);
    assert_connects(f);
    sg_event_rec ev = make_event(1, "tokenizer_event", PAYLOAD);
    publish_ok(f, &ev);
    assert_stream_holds(f, &ev, 1);
}

static void test_plain_server_refused(void **state)
{
    fixture *f = *state;
    nats_server_destroy(&f->srv);
    memset(f->srv.extra, 0, sizeof f->srv.extra);
    assert_int_equal(nats_server_start(&f->srv), 0);
    /* tls:// never falls back to plain text. */
    f->bus = make_bus(f, "tls", "127.0.0.1", NULL, ca);
    assert_refused(f, "the server does not offer TLS, which tls:// requires", NULL);
}

static void test_plain_url_upgrade_checked(void **state)
{
    fixture *f = *state;
    /* nats:// to a server that requires TLS: libnats switches to TLS, and
     * the certificate is checked all the same. */
    f->bus = make_bus(f, "nats", "127.0.0.1", NULL, NULL);
    assert_refused(f, "certificate verification failed", NULL);
    sg_bus_destroy(f->bus);
    tls_server(f, dns_cert, dns_key, 0);
    f->bus = make_bus(f, "nats", "127.0.0.1", NULL, ca);
    assert_refused(f, "IP address mismatch (expected=127.0.0.1", NULL);
    sg_bus_destroy(f->bus);
    f->bus = make_bus(f, "nats", "localhost", NULL, ca);
    assert_connects(f);
    sg_event_rec ev = make_event(1, "tokenizer_event", PAYLOAD);
    publish_ok(f, &ev);
    assert_stream_holds(f, &ev, 1);
}

static void test_mutual_tls(void **state)
{
    fixture *f = *state;
    tls_server(f, srv_cert, srv_key, 1); /* client certificates required */
    f->bus = make_bus(f, "tls", "127.0.0.1", NULL, ca);
    assert_refused(f, "cannot connect to tls://127.0.0.1:",
                   "the server closed the connection at once (does it require a client "
                   "certificate? see cert= and key=)");
    sg_bus_destroy(f->bus);
    char q[512];
    snprintf(q, sizeof q, "cert=%s&key=%s", client_cert, client_key);
    f->bus = make_bus(f, "tls", "127.0.0.1", q, ca);
    assert_connects(f);
    sg_event_rec ev = make_event(1, "tokenizer_event", PAYLOAD);
    publish_ok(f, &ev);
    assert_stream_holds(f, &ev, 1);
}

static void test_insecure(void **state)
{
    fixture *f = *state;
    tls_server(f, dns_cert, dns_key, 0); /* neither trusted nor named */
    f->bus = make_bus(f, "tls", "127.0.0.1", "insecure=1", other_ca); /* --ca-file ignored */
    assert_connects(f);
    sg_event_rec ev = make_event(1, "tokenizer_event", PAYLOAD);
    publish_ok(f, &ev);
    assert_stream_holds(f, &ev, 1);
}

static void test_broker_restart(void **state)
{
    fixture *f = *state;
    f->bus = make_bus(f, "tls", "127.0.0.1", NULL, ca);
    assert_connects(f);
    sg_event_rec ev[2] = {make_event(1, "tokenizer_event", PAYLOAD),
                          make_event(2, "tokenizer_compensation", PAYLOAD)};
    publish_ok(f, &ev[0]);
    nats_server_stop(&f->srv, SIGKILL);
    assert_true(loop_run_until(&f->loop, unhealthy, f->bus, 10000));
    assert_int_equal(nats_server_start(&f->srv), 0); /* same port, store and TLS */
    assert_connects(f);                              /* libnats' reconnect, over TLS */
    publish_ok(f, &ev[1]);
    assert_stream_holds(f, ev, 2);
}

/* The loop's pulse: the longest gap between ticks of a 20 ms timer. */
typedef struct pulse {
    uv_timer_t timer;
    uint64_t last, gap;
} pulse;

static void on_tick(uv_timer_t *t)
{
    pulse *p = t->data;
    uint64_t now = loop_ms();
    if (p->last && now - p->last > p->gap) p->gap = now - p->last;
    p->last = now;
}

#define FROZEN_PUBS 24
typedef struct frozen_pubs {
    sg_status st[FROZEN_PUBS]; /* what sg_bus_publish said */
    ack a[FROZEN_PUBS];
} frozen_pubs;

/* Every publish that was taken has had its verdict. */
static int all_done(void *arg)
{
    frozen_pubs *fp = arg;
    for (int i = 0; i < FROZEN_PUBS; i++)
        if (fp->st[i] == SG_OK && fp->a[i].calls == 0) return 0;
    return 1;
}

/* A server that stops reading (frozen) while sagad sends it several times
 * what the sockets hold: TLS writes wait for the loop's "writable" like
 * plain ones (libnats' libuv adapter), so the loop keeps running, each
 * publish fails at its deadline, and the bus is back once the server is.
 * (libnats on threads of its own, with SendAsap, would write from the loop
 * and block it until the server thawed.) */
static void test_frozen_server_does_not_hold_the_loop(void **state)
{
    fixture *f = *state;
    f->bus = make_bus(f, "tls", "127.0.0.1", NULL, ca);
    assert_connects(f);
    size_t big_len = 768 * 1024; /* 24 of them: several times what the sockets hold */
    char *big = malloc(big_len + 32);
    int off = snprintf(big, 32, "{\"blob\":\"");
    memset(big + off, 'y', big_len);
    strcpy(big + off + big_len, "\"}");
    sg_event_rec first = make_event(1, "tokenizer_event", PAYLOAD);
    publish_ok(f, &first);

    nats_server_pause(&f->srv);
    pulse p = {.last = 0};
    uv_timer_init(&f->loop, &p.timer);
    p.timer.data = &p;
    uv_timer_start(&p.timer, on_tick, 20, 20);
    static frozen_pubs fp;
    memset(&fp, 0, sizeof fp);
    uint64_t longest = 0;
    for (int i = 0; i < FROZEN_PUBS; i++) {
        sg_event_rec ev = make_event(100 + i, "tokenizer_event", big);
        uint64_t t = loop_ms();
        fp.st[i] = sg_bus_publish(f->bus, &ev, 3000, on_ack, &fp.a[i], NULL);
        if (loop_ms() - t > longest) longest = loop_ms() - t;
        loop_run_until(&f->loop, NULL, NULL, 5); /* the loop writes what it can */
    }
    /* Each one fails by its deadline (3 s), not when the server thaws. */
    int done = loop_run_until(&f->loop, all_done, &fp, 10000);
    nats_server_resume(&f->srv);
    uv_close((uv_handle_t *)&p.timer, NULL); /* before any check: it is on this stack */
    loop_run_until(&f->loop, NULL, NULL, 1);
    free(big);
    assert_true(done);
    for (int i = 0; i < FROZEN_PUBS; i++) {
        assert_int_equal(fp.st[i], SG_OK); /* taken: connected all along */
        assert_int_equal(fp.a[i].st, SG_ETIMEOUT);
    }
    if (longest > 1000 || p.gap > 1000)
        fail_msg("the loop was held up: a publish took %llu ms, ticks %llu ms apart",
                 (unsigned long long)longest, (unsigned long long)p.gap);
    /* Back: connected again, publishing again. */
    assert_connects(f);
    sg_event_rec last = make_event(2, "tokenizer_event", PAYLOAD);
    publish_ok(f, &last);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_publish_over_tls),
        T(test_ca_file_and_url_ca),
        T(test_untrusted_server_refused),
        T(test_host_name_checked),
        T(test_plain_server_refused),
        T(test_plain_url_upgrade_checked),
        T(test_mutual_tls),
        T(test_insecure),
        T(test_broker_restart),
        T(test_frozen_server_does_not_hold_the_loop),
#undef T
    };
    int rc = cmocka_run_group_tests(tests, make_certs, remove_certs);
    /* libnats' threads and globals, so that LeakSanitizer sees nothing. */
    nats_CloseAndWait(5000);
    return rc;
}
