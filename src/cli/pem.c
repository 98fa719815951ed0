/* Reading and checking the PEM files of the security flags with OpenSSL:
 * libmicrohttpd (GnuTLS) and libcurl would also refuse a bad file, but
 * later, with a vaguer message, and GnuTLS leaks what it half parsed. */
#include "pem.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sg/alloc.h"

#define PEM_MAX ((size_t)1 << 20)

int sg_pem_read(const char *path, const char *what, char **out, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open %s: %s", what, path, strerror(errno));
        return 2;
    }
    char *b = sg_xmalloc(PEM_MAX + 1);
    size_t n = 0;
    int rerr = 0;
    while (n <= PEM_MAX) {
        ssize_t r = read(fd, b + n, PEM_MAX + 1 - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) rerr = errno;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    b[n > PEM_MAX ? PEM_MAX : n] = '\0';
    const char *why = rerr                        ? strerror(rerr)
                      : n > PEM_MAX               ? "larger than 1 MiB"
                      : strlen(b) != n            ? "not PEM text (a NUL byte)"
                      : !strstr(b, "-----BEGIN ") ? "not PEM text"
                                                  : NULL;
    if (why) {
        snprintf(err, errlen, "%s: %s: %s", what, path, why);
        explicit_bzero(b, n > PEM_MAX ? PEM_MAX : n);
        free(b);
        return 2;
    }
    *out = b;
    return 0;
}

/* OpenSSL's reason for the last failure, without the text it parsed. */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unreadable";
}

int sg_pem_check(const char *cert, const char *cert_path, const char *key, const char *key_path,
                 char *err, size_t errlen)
{
    int rc = 2;
    X509 *first = NULL, *x = NULL;
    EVP_PKEY *pk = NULL;
    BIO *b = BIO_new_mem_buf(cert, -1);
    if (!b) goto oom;
    ERR_clear_error();
    /* Every certificate of a chain must parse, not just the first. */
    size_t count = 0;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL))) {
        if (!first)
            first = x;
        else
            X509_free(x);
        count++;
    }
    unsigned long e = ERR_peek_last_error();
    if (count == 0 ||
        (e && !(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))) {
        snprintf(err, errlen, "%s: %s: %s certificate: %s", key ? "--tls-cert" : "--ca-file",
                 cert_path, count ? "a broken" : "no", ssl_reason());
        goto done;
    }
    ERR_clear_error();
    BIO_free(b);
    b = NULL;
    if (key) {
        if (!(b = BIO_new_mem_buf(key, -1))) goto oom;
        /* No passphrase callback: an encrypted key is refused, not asked for. */
        pk = PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"");
        if (!pk) {
            snprintf(err, errlen, "--tls-key: %s: no usable private key (%s)", key_path,
                     ssl_reason());
            goto done;
        }
        if (X509_check_private_key(first, pk) != 1) {
            ERR_clear_error();
            snprintf(err, errlen, "--tls-key: %s is not the key of the certificate in %s", key_path,
                     cert_path);
            goto done;
        }
    }
    rc = 0;
    goto done;
oom:
    snprintf(err, errlen, "out of memory reading %s", cert_path);
done:
    BIO_free(b);
    X509_free(first);
    EVP_PKEY_free(pk);
    return rc;
}
