/* TLS for the NATS bus: the libnats options that make a connection check
 * the server, and libnats' handshake failures put in words.
 *
 * libnats does the TLS itself (OpenSSL, during its blocking connect, then
 * through our loop). It always checks the server's certificate chain, but
 * whether it checks the name by itself depends on how it was built
 * (Debian's does, upstream's default does not), so we always tell it the
 * host we dial. That is done for nats:// too: libnats switches to TLS by
 * itself when the server requires it, and such a connection must be
 * checked like a tls:// one.
 * The certificates it trusts are the system's, plus the CA file when one
 * is given (libnats adds the file to the system's store; it cannot replace
 * it). */
#include <openssl/x509_vfy.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nats_int.h"
#include "sg/util.h"

/* 0 if path can be read; else -1 and why. libnats' own message for a
 * missing file is OpenSSL's, which does not say which file or why. */
static int readable(const char *path, char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    if (f) {
        errno = 0;
        (void)fgetc(f); /* a directory opens, and fails here */
        int e = ferror(f) ? errno : 0;
        fclose(f);
        if (!e) return 0;
        errno = e;
    }
    snprintf(why, whylen, "cannot open %s: %s", path, strerror(errno));
    return -1;
}

/* libnats' reason for the last failure on this thread, or its status text;
 * without where in libnats it was found ("(opts.c:380): "), and without
 * the "Error loading ... '<file>': " that our message says already. */
static const char *last_error(natsStatus s)
{
    const char *last = nats_GetLastError(NULL);
    if (!last || !*last) return natsStatus_GetText(s);
    if (last[0] == '(' && strstr(last, "): ")) last = strstr(last, "): ") + 3;
    if (strncmp(last, "Error loading ", 14) == 0 && strstr(last, "': "))
        last = strstr(last, "': ") + 3;
    return last;
}

sg_status sg__nats_tls_setup(natsOptions *opts, const nats_cfg *cfg, char *err, size_t errlen)
{
    char why[512] = "";
    natsStatus s = NATS_OK;
    if (cfg->tls) s = natsOptions_SetSecure(opts, true);
    if (s == NATS_OK && cfg->insecure) s = natsOptions_SkipServerVerification(opts, true);
    if (s == NATS_OK && !cfg->insecure) s = natsOptions_SetExpectedHostname(opts, cfg->host);
    if (s != NATS_OK) {
        snprintf(why, sizeof why, "cannot set up TLS: %s", last_error(s));
        goto fail;
    }
    if (cfg->ca) {
        if (readable(cfg->ca, why, sizeof why) != 0) goto fail;
        if ((s = natsOptions_LoadCATrustedCertificates(opts, cfg->ca)) != NATS_OK) {
            snprintf(why, sizeof why, "CA file %s: %s", cfg->ca, last_error(s));
            goto fail;
        }
    }
    if (cfg->cert) {
        if (readable(cfg->cert, why, sizeof why) != 0 || readable(cfg->key, why, sizeof why) != 0)
            goto fail;
        /* Refuses a key that is not the certificate's, too. */
        if ((s = natsOptions_LoadCertificatesChain(opts, cfg->cert, cfg->key)) != NATS_OK) {
            const char *raw = nats_GetLastError(NULL);
            int of_key = raw && strstr(raw, "private key");
            snprintf(why, sizeof why, "%s %s: %s", of_key ? "client key" : "client certificate",
                     of_key ? cfg->key : cfg->cert, last_error(s));
            goto fail;
        }
    }
    if (cfg->insecure)
        sg_log(SG_LOG_WARN, "NATS: insecure=1: the certificate of %s is not checked", cfg->shown);
    else if (cfg->tls)
        sg_log(SG_LOG_INFO, "NATS: TLS to %s: its certificate checked against %s%s, for name %s%s",
               cfg->shown, cfg->ca ? cfg->ca : "the system's CAs",
               cfg->ca ? " and the system's CAs" : "", cfg->host,
               cfg->cert ? "; client certificate given" : "");
    return SG_OK;
fail:
    return sg__bus_einval(err, errlen, "bus '%s': %s", cfg->shown, why);
}

/* Appends s (len bytes) to out (capacity n, *o used), cutting it short. */
static void add_n(char *out, size_t n, size_t *o, const char *s, size_t len)
{
    if (*o + 1 >= n) return;
    if (len > n - 1 - *o) len = n - 1 - *o;
    memcpy(out + *o, s, len);
    *o += len;
    out[*o] = '\0';
}

static void add(char *out, size_t n, size_t *o, const char *s)
{
    add_n(out, n, o, s, strlen(s));
}

/* libnats words a failed check as "SSL handshake error: <code>:<reason>:
 * <details>", the details separated by ':' (the certificate's subject and
 * issuer, and the expected name on a host name mismatch but not on an IP
 * address mismatch); other handshake failures as "SSL handshake error:
 * <OpenSSL's reason>". Where libnats says where in its code the error was
 * found ("(conn.c:123): "), that is left out. */
void sg__nats_tls_why(const nats_cfg *cfg, const char *raw, char *out, size_t n)
{
    static const char prefix[] = "SSL handshake error: ";
    const char *p = strstr(raw, prefix);
    if (!p) {
        if (raw[0] == '(' && strstr(raw, "): ")) raw = strstr(raw, "): ") + 3;
        /* A TLS server that wants a client certificate closes the
         * connection without a word once it has seen none. */
        if (strstr(raw, "Expected 'PONG', got ''") && cfg->tls && !cfg->cert)
            snprintf(out, n,
                     "the server closed the connection at once (does it require a client "
                     "certificate? see cert= and key=)");
        else
            snprintf(out, n, "%s", raw);
        return;
    }
    p += sizeof prefix - 1;
    int code = 0, used = 0;
    if (sscanf(p, "%d:%n", &code, &used) != 1 || used == 0) {
        snprintf(out, n, "TLS handshake failed: %s", p);
        return;
    }
    p += used;
    size_t rlen = strcspn(p, ":"), o = 0;
    out[0] = '\0';
    add(out, n, &o, "TLS: certificate verification failed: ");
    add_n(out, n, &o, p, rlen);
    /* The details, "a=b:c=d", as " (a=b, c=d)"; the name we dialled too. */
    int mismatch = code == X509_V_ERR_HOSTNAME_MISMATCH || code == X509_V_ERR_IP_ADDRESS_MISMATCH;
    const char *d = p + rlen, *sep = " (";
    if (mismatch && !strstr(d, "expected=")) {
        add(out, n, &o, " (expected=");
        add(out, n, &o, cfg->host);
        sep = ", ";
    }
    while (*d == ':') {
        size_t len = strcspn(d + 1, ":");
        add(out, n, &o, sep);
        add_n(out, n, &o, d + 1, len);
        sep = ", ";
        d += 1 + len;
    }
    if (sep[0] == ',') add(out, n, &o, ")");
}
