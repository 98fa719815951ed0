/* API bearer tokens: their syntax, the token file, the Authorization
 * header, and the set the API's threads check while SIGHUP may replace
 * it (a read-write lock: checks share it, a reload swaps the set).
 *
 * Secrets stay secret: no message quotes a token or a line of the file,
 * and buffers that held tokens are wiped before they are freed. */
#include "auth_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sg/alloc.h"

struct sg_auth {
    pthread_rwlock_t lock;
    sg_auth_token *set; /* owned; under lock: the fixed token first, then the file's */
    size_t n;           /* under lock */
    sg_auth_token fixed;
    int has_fixed;
    char *file; /* owned; NULL without a file */
};

/* ---- pure parts ----------------------------------------------------------- */

static int is_b64char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* Length of the b64token at the start of s[0..n) (0 if none): the caller
 * decides whether the rest is allowed to follow. */
static size_t b64token_len(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_b64char((unsigned char)s[i]))
        i++;
    if (i == 0) return 0;
    while (i < n && s[i] == '=')
        i++;
    return i;
}

int sg__auth_token_syntax(const char *s, size_t n)
{
    return n >= 1 && n <= SG_AUTH_TOKEN_MAX && b64token_len(s, n) == n;
}

int sg_auth_token_ok(const char *t)
{
    return t && sg__auth_token_syntax(t, strnlen(t, SG_AUTH_TOKEN_MAX + 1));
}

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

sg_status sg__auth_parse_file(const char *text, size_t len, const char *what, sg_auth_token **out,
                              size_t *n, char *err, size_t errlen)
{
    sg_auth_token *set = NULL;
    size_t count = 0, line = 0;
    *out = NULL;
    *n = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        const char *s = text + pos;
        size_t k = end - pos;
        pos = nl ? end + 1 : len;
        line++;
        if (k && s[k - 1] == '\r') k--;
        while (k && is_blank(*s)) {
            s++;
            k--;
        }
        while (k && is_blank(s[k - 1]))
            k--;
        if (k == 0 || s[0] == '#') continue;
        if (k > SG_AUTH_TOKEN_MAX) {
            snprintf(err, errlen, "%s line %zu: a token longer than %d bytes", what, line,
                     SG_AUTH_TOKEN_MAX);
            goto fail;
        }
        if (!sg__auth_token_syntax(s, k)) {
            snprintf(err, errlen,
                     "%s line %zu: not a token (RFC 6750 b64token: letters, digits, "
                     "- . _ ~ + /, then any '=')",
                     what, line);
            goto fail;
        }
        if (count == SG_AUTH_TOKENS_MAX) {
            snprintf(err, errlen, "%s: more than %d tokens", what, SG_AUTH_TOKENS_MAX);
            goto fail;
        }
        if (!set) set = sg_xcalloc(SG_AUTH_TOKENS_MAX, sizeof *set);
        memcpy(set[count].bytes, s, k);
        set[count].len = k;
        count++;
    }
    if (count == 0) {
        snprintf(err, errlen, "%s: no token in it (only blank lines and # comments)", what);
        goto fail;
    }
    *out = set;
    *n = count;
    return SG_OK;
fail:
    if (set) explicit_bzero(set, SG_AUTH_TOKENS_MAX * sizeof *set);
    free(set);
    return SG_EINVAL;
}

sg_status sg__auth_bearer(const char *value, const char **tok, size_t *len)
{
    static const char scheme[] = "Bearer";
    const size_t sl = sizeof scheme - 1;
    *tok = NULL;
    *len = 0;
    if (!value) return SG_EINVAL;
    size_t n = strlen(value), i = 0;
    while (i < n && is_blank(value[i]))
        i++;
    /* RFC 7235: the scheme is case-insensitive and 1*SP separates it. */
    if (n - i <= sl || strncasecmp(value + i, scheme, sl) != 0 || !is_blank(value[i + sl]))
        return SG_EINVAL;
    i += sl;
    while (i < n && is_blank(value[i]))
        i++;
    size_t t = b64token_len(value + i, n - i);
    if (t == 0) return SG_EINVAL;
    for (size_t j = i + t; j < n; j++)
        if (!is_blank(value[j])) return SG_EINVAL;
    *tok = value + i;
    *len = t;
    return SG_OK;
}

int sg__auth_match(const sg_auth_token *set, size_t n, const char *tok, size_t len)
{
    /* The presented token, padded like the configured ones; one too long
     * to be any of them is still compared (its first bytes), then refused. */
    unsigned char p[SG_AUTH_TOKEN_MAX] = {0};
    size_t take = len < SG_AUTH_TOKEN_MAX ? len : SG_AUTH_TOKEN_MAX;
    memcpy(p, tok, take);
    unsigned found = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned d = 0;
        for (size_t i = 0; i < SG_AUTH_TOKEN_MAX; i++)
            d |= (unsigned)(set[k].bytes[i] ^ p[i]);
        size_t ld = set[k].len ^ len;
        /* Fold the length difference into d without a branch. */
        for (size_t s = 0; s < sizeof ld; s++)
            d |= (unsigned)((ld >> (8 * s)) & 0xff);
        found |= 1u & ((d - 1u) >> 8); /* 1 when d == 0 (d < 256) */
    }
    explicit_bzero(p, sizeof p);
    return (int)(found & (unsigned)(len <= SG_AUTH_TOKEN_MAX));
}

/* ---- the set in use -------------------------------------------------------- */

/* Reads path whole into a fresh buffer (caller wipes and frees). */
static sg_status read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return SG_EINVAL;
    }
    char *buf = sg_xmalloc(SG_AUTH_FILE_MAX + 1);
    size_t got = 0;
    sg_status st = SG_EINVAL;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    for (;;) {
        ssize_t r = read(fd, buf + got, SG_AUTH_FILE_MAX + 1 - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0) break;
        got += (size_t)r;
        if (got > SG_AUTH_FILE_MAX) {
            snprintf(err, errlen, "%s: larger than %zu bytes", path, SG_AUTH_FILE_MAX);
            goto fail;
        }
    }
    close(fd);
    *out = buf;
    *len = got;
    return SG_OK;
fail:
    close(fd);
    explicit_bzero(buf, got);
    free(buf);
    return st;
}

/* The set for a file's current content: the fixed token, then the file's. */
static sg_status build(const sg_auth *a, sg_auth_token **out, size_t *n, char *err, size_t errlen)
{
    *out = NULL;
    *n = 0;
    if (!a->file) {
        *out = sg_xcalloc(1, sizeof **out);
        (*out)[0] = a->fixed;
        *n = 1;
        return SG_OK;
    }
    char *text;
    size_t len;
    sg_status st = read_file(a->file, &text, &len, err, errlen);
    if (st != SG_OK) return st;
    sg_auth_token *file;
    size_t nf;
    st = sg__auth_parse_file(text, len, a->file, &file, &nf, err, errlen);
    explicit_bzero(text, len);
    free(text);
    if (st != SG_OK) return st;
    if (a->has_fixed) {
        /* file has room for SG_AUTH_TOKENS_MAX; the fixed one goes first. */
        if (nf == SG_AUTH_TOKENS_MAX) {
            snprintf(err, errlen, "%s: more than %d tokens with --api-token", a->file,
                     SG_AUTH_TOKENS_MAX - 1);
            explicit_bzero(file, SG_AUTH_TOKENS_MAX * sizeof *file);
            free(file);
            return SG_EINVAL;
        }
        memmove(file + 1, file, nf * sizeof *file);
        file[0] = a->fixed;
        nf++;
    }
    *out = file;
    *n = nf;
    return SG_OK;
}

static void free_set(sg_auth_token *set, size_t n)
{
    if (set) explicit_bzero(set, n * sizeof *set);
    free(set);
}

sg_status sg_auth_create(sg_auth **out, const char *token, const char *file, char *err,
                         size_t errlen)
{
    *out = NULL;
    if (!token && !file) return SG_OK;
    if (token && !sg_auth_token_ok(token)) {
        snprintf(err, errlen, "the API token is not a token (RFC 6750 b64token of 1-%d bytes)",
                 SG_AUTH_TOKEN_MAX);
        return SG_EINVAL;
    }
    sg_auth *a = sg_xcalloc(1, sizeof *a);
    if (token) {
        a->fixed.len = strlen(token);
        memcpy(a->fixed.bytes, token, a->fixed.len);
        a->has_fixed = 1;
    }
    a->file = file ? sg_xstrdup(file) : NULL;
    pthread_rwlock_init(&a->lock, NULL);
    if (build(a, &a->set, &a->n, err, errlen) != SG_OK) {
        sg_auth_destroy(a);
        return SG_EINVAL;
    }
    *out = a;
    return SG_OK;
}

sg_status sg_auth_reload(sg_auth *a, size_t *count, char *err, size_t errlen)
{
    sg_auth_token *set = NULL;
    size_t n = 0;
    sg_status st = a->file ? build(a, &set, &n, err, errlen) : SG_OK;
    pthread_rwlock_wrlock(&a->lock);
    if (st == SG_OK && set) {
        sg_auth_token *old = a->set;
        size_t oldn = a->n;
        a->set = set;
        a->n = n;
        set = old;
        n = oldn;
    }
    if (count) *count = a->n;
    pthread_rwlock_unlock(&a->lock);
    free_set(set, n);
    return st;
}

sg_auth_verdict sg_auth_check(sg_auth *a, const char *header, size_t nheaders)
{
    if (!header || nheaders == 0) return SG_AUTH_MISSING;
    const char *tok;
    size_t len;
    /* Two headers could be read differently by a proxy in front: refuse. */
    if (nheaders > 1 || sg__auth_bearer(header, &tok, &len) != SG_OK) return SG_AUTH_MALFORMED;
    pthread_rwlock_rdlock(&a->lock);
    int ok = sg__auth_match(a->set, a->n, tok, len);
    pthread_rwlock_unlock(&a->lock);
    return ok ? SG_AUTH_ALLOW : SG_AUTH_WRONG;
}

const char *sg_auth_file(const sg_auth *a)
{
    return a ? a->file : NULL;
}

void sg_auth_destroy(sg_auth *a)
{
    if (!a) return;
    free_set(a->set, a->n);
    explicit_bzero(&a->fixed, sizeof a->fixed);
    free(a->file);
    pthread_rwlock_destroy(&a->lock);
    free(a);
}
