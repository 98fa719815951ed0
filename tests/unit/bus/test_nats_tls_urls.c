/* The NATS bus's TLS options refused at start, each with a message naming
 * the problem: TLS options on nats://, a certificate without its key,
 * insecure=1 with ca=, a ca/cert/key file missing, a directory, not a
 * certificate, a key that is not the certificate's, a bad --ca-file; and
 * the tls:// URLs that are good. No broker needed (nothing listens on
 * port 1: a good bus tries in the background). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "bus/tls_certs.h"
#include "http/test_loop.h"
#include "sg/bus.h"

static void test_bad_urls_and_files(void **state)
{
    (void)state;
    static uv_loop_t loop; /* a failed check leaves it behind: threadpool work may still post */
    assert_int_equal(uv_loop_init(&loop), 0);
    char err[512], url[512];
    static const struct {
        const char *query; /* after tls://127.0.0.1:1? or, with '!', nats://127.0.0.1:1? */
        const char *ca_file;
        const char *msg; /* substring of the error; %s: the certificates' directory */
    } bad[] = {
        {"!ca=/etc/ssl/certs/ca-certificates.crt", NULL,
         "options ca, cert, key and insecure need tls://host[:port]"},
        {"!insecure=1", NULL, "need tls://"},
        {"cert=%s/client.pem", NULL, "cert and key go together"},
        {"key=%s/client.key", NULL, "cert and key go together"},
        {"insecure=2", NULL, "insecure: expected 0 or 1"},
        {"insecure=1&insecure=1", NULL, "insecure given twice"},
        {"ca=%s/ca.pem&insecure=1", NULL, "insecure=1 turns off the certificate check"},
        {"ca=", NULL, "ca: expected a file name"},
        {"ca=%s/ca.pem&ca=%s/ca.pem", NULL, "ca given twice"},
        {"ca=%s/none.pem", NULL, "cannot open %s/none.pem: No such file or directory"},
        {"ca=%s", NULL, "Is a directory"},
        {"ca=%s/junk.pem", NULL, "CA file %s/junk.pem: no certificate or crl found"},
        {NULL, "%s/none.pem", "cannot open %s/none.pem"}, /* --ca-file */
        {"cert=%s/client.pem&key=%s/none.key", NULL, "cannot open %s/none.key"},
        {"cert=%s/junk.pem&key=%s/client.key", NULL, "client certificate %s/junk.pem: "},
        {"cert=%s/client.pem&key=%s/junk.pem", NULL, "client key %s/junk.pem: "},
        {"cert=%s/client.pem&key=%s/srv.key", NULL, "client key %s/srv.key: key values mismatch"},
        {"color=red", NULL,
         "unknown option 'color' (known: stream, subjects, ca, cert, key, "
         "insecure)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *q = bad[i].query ? bad[i].query : "";
        int plain = q[0] == '!';
        char query[400], ca_file[200], msg[400];
        snprintf(query, sizeof query, plain ? q + 1 : q, dir, dir);
        snprintf(ca_file, sizeof ca_file, bad[i].ca_file ? bad[i].ca_file : "", dir);
        snprintf(msg, sizeof msg, bad[i].msg, dir);
        snprintf(url, sizeof url, "%s://127.0.0.1:1%s%s", plain ? "nats" : "tls",
                 query[0] ? "?" : "", query);
        sg_bus_env env = {.loop = &loop, .ca_file = bad[i].ca_file ? ca_file : NULL};
        sg_bus *b = (sg_bus *)&env;
        err[0] = '\0';
        if (sg_bus_create(&b, url, &env, err, sizeof err) != SG_EINVAL) {
            sg_bus_destroy(b);
            loop_finish(&loop);
            fail_msg("'%s' was accepted", url);
        }
        assert_null(b);
        if (!strstr(err, msg)) fail_msg("'%s': got '%s', not '%s'", url, err, msg);
        assert_null(strstr(err, "PRIVATE KEY"));
        loop_run_until(&loop, NULL, NULL, 10);
    }
    /* Good ones (nothing listens on port 1: they try in the background). */
    const char *good[] = {"tls://127.0.0.1:1", "TLS://127.0.0.1:1/?stream=S&insecure=0",
                          "tls://u:p@[::1]:1?ca=%s/ca.pem",
                          "tls://localhost:1?cert=%s/client.pem&key=%s/client.key",
                          "tls://localhost:1?insecure=1&subjects=a.>"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        snprintf(url, sizeof url, good[i], dir, dir);
        sg_bus_env env = {.loop = &loop};
        sg_bus *b = NULL;
        if (sg_bus_create(&b, url, &env, err, sizeof err) != SG_OK)
            fail_msg("'%s' refused: %s", url, err);
        assert_string_equal(sg_bus_name(b), "nats");
        char why[256];
        assert_int_equal(sg_bus_health(b, why, sizeof why), SG_EUNAVAIL);
        assert_non_null(strstr(why, "tls://"));
        assert_null(strstr(why, "p@"));
        sg_bus_destroy(b);
    }
    assert_int_equal(loop_finish(&loop), 0);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_urls_and_files),
    };
    return cmocka_run_group_tests(tests, make_certs, remove_certs);
}
