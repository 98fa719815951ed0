/* The NATS bus's URL: nats://[user:password@|token@]host[:port][?stream=NAME
 * &subjects=a,b], or tls://... (TLS required) with the options ca=FILE,
 * cert=FILE&key=FILE and insecure=1 besides, checked and taken apart
 * (nats_cfg), with credentials hidden in every message. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "nats_int.h"
#include "sg/alloc.h"

#define MAX_SUBJECTS 64

/* The URL with whatever sits between "://" and '@' hidden. */
static char *redact(const char *url)
{
    const char *auth = strstr(url, "://");
    const char *at = auth ? strchr(auth + 3, '@') : NULL;
    if (!at || strcspn(auth + 3, "/?#") < (size_t)(at - auth - 3)) return sg_xstrdup(url);
    size_t n = (size_t)(auth + 3 - url);
    char *s = sg_xmalloc(n + 3 + strlen(at) + 1);
    memcpy(s, url, n);
    memcpy(s + n, "***", 3);
    strcpy(s + n + 3, at);
    return s;
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

/* A NATS subject: dot-separated non-empty tokens of printable ASCII
 * without spaces; '*' and '>' only as whole tokens, '>' only last. */
static int subject_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255) return 0;
    size_t tok = 0; /* length of the current token */
    for (size_t i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (tok == 0) return 0;
            const char *t = s + i - tok;
            if (tok == 1 && *t == '>' && i != n) return 0;
            tok = 0;
            continue;
        }
        if (c <= ' ' || c > '~') return 0;
        if ((c == '*' || c == '>') &&
            ((i > 0 && s[i - 1] != '.') || (i + 1 < n && s[i + 1] != '.')))
            return 0;
        tok++;
    }
    return 1;
}

static sg_status parse_subjects(nats_cfg *cfg, const char *v, const char *shown, char *err,
                                size_t errlen)
{
    for (const char *p = v;;) {
        size_t n = strcspn(p, ",");
        if (!subject_ok(p, n))
            return sg__bus_einval(err, errlen,
                                  "bad bus URL '%s': subjects: '%.*s' is not a NATS subject", shown,
                                  (int)n, p);
        if (cfg->nsubjects == MAX_SUBJECTS)
            return sg__bus_einval(err, errlen, "bad bus URL '%s': more than %d subjects", shown,
                                  MAX_SUBJECTS);
        cfg->subjects = sg_xrealloc(cfg->subjects, (size_t)(cfg->nsubjects + 1) * sizeof(char *));
        cfg->subjects[cfg->nsubjects] = sg_xmalloc(n + 1);
        memcpy(cfg->subjects[cfg->nsubjects], p, n);
        cfg->subjects[cfg->nsubjects++][n] = '\0';
        if (!p[n]) return SG_OK;
        p += n + 1;
    }
}

/* A file name (percent-decoded) for option `key`, given once: *out. */
static sg_status parse_file(char **out, const char *key, const char *v, size_t vlen,
                            const char *shown, char *err, size_t errlen)
{
    if (*out) return sg__bus_einval(err, errlen, "bad bus URL '%s': %s given twice", shown, key);
    int n = 0;
    char *d = vlen ? curl_easy_unescape(NULL, v, (int)vlen, &n) : NULL;
    if (!d || n == 0 || memchr(d, '\0', (size_t)n)) {
        curl_free(d);
        return sg__bus_einval(err, errlen, "bad bus URL '%s': %s: expected a file name", shown,
                              key);
    }
    *out = sg_xstrdup(d);
    curl_free(d);
    return SG_OK;
}

/* "stream=NAME&subjects=a,b" and the TLS options: each key once, nothing
 * else. */
static sg_status parse_query(nats_cfg *cfg, const char *q, const char *shown, char *err,
                             size_t errlen)
{
    sg_status st;
    for (const char *p = q; *p;) {
        size_t n = strcspn(p, "&");
        const char *eq = memchr(p, '=', n);
        size_t klen = eq ? (size_t)(eq - p) : n;
        const char *v = eq ? eq + 1 : p + n;
        size_t vlen = (size_t)(p + n - v);
        char val[4096];
        if (vlen >= sizeof val)
            return sg__bus_einval(err, errlen, "bad bus URL '%s': option too long", shown);
        memcpy(val, v, vlen);
        val[vlen] = '\0';
        if (klen == 6 && strncmp(p, "stream", 6) == 0) {
            if (cfg->stream)
                return sg__bus_einval(err, errlen, "bad bus URL '%s': stream given twice", shown);
            for (size_t i = 0; i < vlen; i++)
                if (!name_char(val[i])) vlen = 0;
            if (vlen == 0 || vlen > 64)
                return sg__bus_einval(err, errlen,
                                      "bad bus URL '%s': stream: '%s' is not a stream name "
                                      "(1 to 64 of A-Z a-z 0-9 _ -)",
                                      shown, val);
            cfg->stream = sg_xstrdup(val);
        } else if (klen == 8 && strncmp(p, "subjects", 8) == 0) {
            if (cfg->subjects)
                return sg__bus_einval(err, errlen, "bad bus URL '%s': subjects given twice", shown);
            if ((st = parse_subjects(cfg, val, shown, err, errlen)) != SG_OK) return st;
        } else if (klen == 2 && strncmp(p, "ca", 2) == 0) {
            if ((st = parse_file(&cfg->ca, "ca", v, vlen, shown, err, errlen)) != SG_OK) return st;
        } else if (klen == 4 && strncmp(p, "cert", 4) == 0) {
            if ((st = parse_file(&cfg->cert, "cert", v, vlen, shown, err, errlen)) != SG_OK)
                return st;
        } else if (klen == 3 && strncmp(p, "key", 3) == 0) {
            if ((st = parse_file(&cfg->key, "key", v, vlen, shown, err, errlen)) != SG_OK)
                return st;
        } else if (klen == 8 && strncmp(p, "insecure", 8) == 0) {
            if (cfg->insecure >= 0)
                return sg__bus_einval(err, errlen, "bad bus URL '%s': insecure given twice", shown);
            if (strcmp(val, "0") != 0 && strcmp(val, "1") != 0)
                return sg__bus_einval(err, errlen, "bad bus URL '%s': insecure: expected 0 or 1",
                                      shown);
            cfg->insecure = val[0] == '1';
        } else {
            return sg__bus_einval(err, errlen,
                                  "bad bus URL '%s': unknown option '%.*s' (known: stream, "
                                  "subjects, ca, cert, key, insecure)",
                                  shown, (int)klen, p);
        }
        p += n;
        if (*p == '&') p++;
    }
    return SG_OK;
}

/* A URL part (decoded when asked), or NULL; caller frees. */
static char *url_part(CURLU *u, CURLUPart what, unsigned flags)
{
    char *v = NULL;
    if (curl_url_get(u, what, &v, flags) != CURLUE_OK || !v) return NULL;
    char *s = sg_xstrdup(v);
    curl_free(v);
    return s;
}

/* After the options: what they say together. */
static sg_status check_tls(const nats_cfg *cfg, char *err, size_t errlen)
{
    if (!cfg->tls && (cfg->ca || cfg->cert || cfg->key || cfg->insecure))
        return sg__bus_einval(err, errlen,
                              "bad bus URL '%s': options ca, cert, key and insecure need "
                              "tls://host[:port]",
                              cfg->shown);
    if (!cfg->cert != !cfg->key)
        return sg__bus_einval(err, errlen,
                              "bad bus URL '%s': cert and key go together (the client "
                              "certificate and its private key)",
                              cfg->shown);
    if (cfg->insecure && cfg->ca)
        return sg__bus_einval(err, errlen,
                              "bad bus URL '%s': insecure=1 turns off the certificate check "
                              "that ca is for: give one or the other",
                              cfg->shown);
    return SG_OK;
}

sg_status sg__nats_cfg_parse(nats_cfg *cfg, const char *url, char *err, size_t errlen)
{
    sg_status st = SG_OK;
    memset(cfg, 0, sizeof *cfg);
    cfg->insecure = -1; /* not given yet */
    cfg->shown = redact(url);
    char *path = NULL, *query = NULL, *frag = NULL, *port = NULL;
    CURLU *u = curl_url();
    if (!u) abort();
    const char *rest = strchr(url, ':');
    cfg->tls = rest == url + 3 && strncasecmp(url, "tls", 3) == 0;
    const char *scheme = cfg->tls ? "tls" : "nats";
    CURLUcode rc;
    if (!rest || strncmp(rest, "://", 3) != 0 || strchr("/?#", rest[3])) {
        st = sg__bus_einval(err, errlen, "bad bus URL '%s': expected %s://host[:port]", cfg->shown,
                            scheme);
    } else if ((rc = curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME)) != CURLUE_OK) {
        st = sg__bus_einval(err, errlen, "bad bus URL '%s': %s", cfg->shown, curl_url_strerror(rc));
    }
    if (st != SG_OK) goto done;
    cfg->host = url_part(u, CURLUPART_HOST, 0);
    port = url_part(u, CURLUPART_PORT, 0);
    path = url_part(u, CURLUPART_PATH, 0);
    query = url_part(u, CURLUPART_QUERY, 0);
    frag = url_part(u, CURLUPART_FRAGMENT, 0);
    cfg->user = url_part(u, CURLUPART_USER, CURLU_URLDECODE);
    cfg->password = url_part(u, CURLUPART_PASSWORD, CURLU_URLDECODE);
    cfg->port = port ? atoi(port) : NATS_DEFAULT_PORT;
    if (!cfg->host || !*cfg->host) {
        st = sg__bus_einval(err, errlen, "bad bus URL '%s': no host", cfg->shown);
    } else if (cfg->port <= 0 || cfg->port > 65535) {
        st = sg__bus_einval(err, errlen, "bad bus URL '%s': bad port", cfg->shown);
    } else if ((path && strcmp(path, "/") != 0 && *path) || frag) {
        st = sg__bus_einval(
            err, errlen, "bad bus URL '%s': nothing may follow host:port but ?options", cfg->shown);
    } else if (cfg->user && !*cfg->user) {
        st = sg__bus_einval(err, errlen, "bad bus URL '%s': empty user name", cfg->shown);
    }
    if (st == SG_OK && query) st = parse_query(cfg, query, cfg->shown, err, errlen);
    if (cfg->insecure < 0) cfg->insecure = 0;
    if (st == SG_OK) st = check_tls(cfg, err, errlen);
    if (st != SG_OK) goto done;

    if (cfg->user && !cfg->password) { /* nats://TOKEN@host */
        cfg->token = cfg->user;
        cfg->user = NULL;
    }
    if (!cfg->stream) cfg->stream = sg_xstrdup(NATS_DEFAULT_STREAM);
    if (!cfg->subjects) parse_subjects(cfg, NATS_DEFAULT_SUBJECTS, cfg->shown, NULL, 0);
    size_t n = strlen(cfg->host) + 32;
    /* libnats is told "nats://" either way: TLS is an option (nats_tls.c). */
    cfg->server = sg_xmalloc(n);
    snprintf(cfg->server, n, "nats://%s:%d", cfg->host, cfg->port);
    free(cfg->shown); /* logs show where, never who */
    cfg->shown = sg_xmalloc(n + 4);
    snprintf(cfg->shown, n + 4, "%s://%s%s:%d", scheme, cfg->user || cfg->token ? "***@" : "",
             cfg->host, cfg->port);
    if (cfg->host[0] == '[') { /* the probe wants the bare IPv6 address */
        memmove(cfg->host, cfg->host + 1, strlen(cfg->host));
        cfg->host[strcspn(cfg->host, "]")] = '\0';
    }
done:
    free(port);
    free(path);
    free(query);
    free(frag);
    curl_url_cleanup(u);
    if (st != SG_OK) sg__nats_cfg_free(cfg);
    return st;
}

void sg__nats_cfg_free(nats_cfg *cfg)
{
    free(cfg->server);
    free(cfg->shown);
    free(cfg->host);
    free(cfg->user);
    free(cfg->password);
    free(cfg->token);
    free(cfg->ca);
    free(cfg->cert);
    free(cfg->key);
    free(cfg->stream);
    for (int i = 0; i < cfg->nsubjects; i++)
        free(cfg->subjects[i]);
    free(cfg->subjects);
    memset(cfg, 0, sizeof *cfg);
}
