/* Certificates for the NATS TLS tests, made by the openssl CLI when a test
 * program starts (its cmocka group setup: make_certs) in a directory of
 * its own, removed at the end (remove_certs): two CAs ("ca" signs the
 * others), a server certificate for both localhost and 127.0.0.1, one for
 * localhost alone, a client's, and a file that is not a certificate.
 * Header-only; include after cmocka.h. A missing openssl is a failure. */
#ifndef SG_TEST_TLS_CERTS_H
#define SG_TEST_TLS_CERTS_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* The directory, and the files in it. */
static char dir[64];
static char ca[96], other_ca[96], srv_cert[96], srv_key[96], dns_cert[96], dns_key[96];
static char client_cert[96], client_key[96], junk[96];

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) fail_msg("failed: %s", cmd);
}

#define OPENSSL "cd '%s' && openssl "
#define NEWKEY "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

/* A key and a certificate that CA `by` signed, with these subject names. */
static void signed_cert(const char *name, const char *by, const char *cn, const char *san)
{
    sh(OPENSSL "req " NEWKEY " -keyout %s.key -out %s.csr -subj '/CN=%s' 2>/dev/null", dir, name,
       name, cn);
    sh("cd '%s' && printf 'subjectAltName=%s\\n' > %s.cnf", dir, san, name);
    sh(OPENSSL "x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial -out %s.pem "
               "-days 2 -extfile %s.cnf 2>/dev/null",
       dir, name, by, by, name, name);
}

static int make_certs(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/sagad-nats-tls-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    const char *cas[] = {"ca", "other_ca"};
    for (int i = 0; i < 2; i++)
        sh(OPENSSL "req -x509 " NEWKEY " -keyout %s.key -out %s.pem -days 2 "
                   "-subj '/CN=sagad test %s' 2>/dev/null",
           dir, cas[i], cas[i], cas[i]);
    signed_cert("srv", "ca", "localhost", "DNS:localhost,IP:127.0.0.1");
    signed_cert("dns", "ca", "localhost", "DNS:localhost");
    signed_cert("client", "ca", "sagad client", "DNS:sagad-client");
    sh("printf 'not a certificate\\n' > '%s/junk.pem'", dir);
#define P(var, file) snprintf(var, sizeof var, "%s/" file, dir)
    P(ca, "ca.pem");
    P(other_ca, "other_ca.pem");
    P(srv_cert, "srv.pem");
    P(srv_key, "srv.key");
    P(dns_cert, "dns.pem");
    P(dns_key, "dns.key");
    P(client_cert, "client.pem");
    P(client_key, "client.key");
    P(junk, "junk.pem");
#undef P
    return 0;
}

static int remove_certs(void **state)
{
    (void)state;
    sh("rm -rf '%s'", dir);
    return 0;
}

#endif
