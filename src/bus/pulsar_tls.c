/* TLS for pulsar+ssl:// with OpenSSL over memory BIOs: the libuv stream
 * carries the ciphertext, OpenSSL never touches a socket. The server's
 * certificate is checked against the system CA store or a given file, and
 * its name (or IP address) against the host we dialled. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pulsar_int.h"
#include "sg/alloc.h"

struct ptls {
    SSL *ssl;
    BIO *in;  /* ciphertext from the peer, read by OpenSSL */
    BIO *out; /* ciphertext from OpenSSL, to send */
};

/* The reason of the last OpenSSL failure, with the verification result
 * when the handshake failed on the certificate. */
static void ssl_why(const ptls *t, const char *what, char *why, size_t whylen)
{
    char buf[256] = "";
    unsigned long e = ERR_peek_last_error();
    if (e) ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    long v = t ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    if (v != X509_V_OK)
        snprintf(why, whylen, "%s: certificate verification failed: %s", what,
                 X509_verify_cert_error_string(v));
    else
        snprintf(why, whylen, "%s: %s", what, buf[0] ? buf : "failed");
}

void *sg__ptls_ctx_new(const char *ca_file, int insecure, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_why(NULL, "TLS", err, errlen);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return ctx;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        char what[300];
        snprintf(what, sizeof what, "cannot load CA certificates from %s",
                 ca_file ? ca_file : "the system store");
        ssl_why(NULL, what, err, errlen);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

void sg__ptls_ctx_free(void *ctx)
{
    SSL_CTX_free(ctx);
}

static int is_ip(const char *host)
{
    unsigned char b[16];
    return inet_pton(AF_INET, host, b) == 1 || inet_pton(AF_INET6, host, b) == 1;
}

ptls *sg__ptls_new(void *ctx, const char *host)
{
    ptls *t = sg_xcalloc(1, sizeof *t);
    t->ssl = SSL_new(ctx);
    t->in = BIO_new(BIO_s_mem());
    t->out = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->in || !t->out) {
        fprintf(stderr, "sagad: out of memory (OpenSSL)\n");
        abort();
    }
    BIO_set_mem_eof_return(t->in, -1);  /* empty means "more to come", not EOF */
    SSL_set_bio(t->ssl, t->in, t->out); /* the SSL owns both now */
    SSL_set_connect_state(t->ssl);
    if (is_ip(host)) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
    } else {
        SSL_set_tlsext_host_name(t->ssl, host);
        SSL_set1_host(t->ssl, host);
    }
    return t;
}

void sg__ptls_free(ptls *t)
{
    if (!t) return;
    SSL_free(t->ssl);
    free(t);
}

void sg__ptls_feed(ptls *t, const void *p, size_t n)
{
    if (n && BIO_write(t->in, p, (int)n) != (int)n) {
        fprintf(stderr, "sagad: out of memory (OpenSSL BIO)\n");
        abort();
    }
}

int sg__ptls_handshake(ptls *t, char *why, size_t whylen)
{
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) return 1;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    ssl_why(t, "TLS handshake", why, whylen);
    return -1;
}

long sg__ptls_read(ptls *t, void *buf, size_t cap, char *why, size_t whylen)
{
    int rc = SSL_read(t->ssl, buf, cap > 1 << 30 ? 1 << 30 : (int)cap);
    if (rc > 0) return rc;
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
        snprintf(why, whylen, "the broker closed the TLS session");
        return -1;
    }
    ssl_why(t, "TLS read", why, whylen);
    return -1;
}

int sg__ptls_write(ptls *t, const void *p, size_t n, char *why, size_t whylen)
{
    /* Memory BIOs take everything: SSL_write never stops half way. */
    while (n > 0) {
        int chunk = n > 1 << 30 ? 1 << 30 : (int)n;
        int rc = SSL_write(t->ssl, p, chunk);
        if (rc <= 0) {
            ssl_why(t, "TLS write", why, whylen);
            return -1;
        }
        p = (const char *)p + rc;
        n -= (size_t)rc;
    }
    return 0;
}

uint8_t *sg__ptls_take(ptls *t, size_t *len)
{
    size_t n = BIO_ctrl_pending(t->out);
    *len = 0;
    if (n == 0) return NULL;
    uint8_t *b = sg_xmalloc(n);
    int got = BIO_read(t->out, b, (int)n);
    if (got <= 0) {
        free(b);
        return NULL;
    }
    *len = (size_t)got;
    return b;
}
