/* A saga's steps in the definitions file (def_file_int.h): names, outputs,
 * labels, timeouts and retry policies, and each step's HTTP call or
 * publish and its compensation's, with ${ENV} expanded in URLs and header
 * values and body and payload templates compiled. */
#include "def_file_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sg/alloc.h"
#include "sg/buf.h"
#include "sg/util.h"
#include "template.h"

#define MAX_URL 2048
#define MAX_HEADER_NAME 64
#define MAX_HEADER_VALUE 1024
#define MAX_TOPIC 255
#define MAX_TIMEOUT_MS 600000
#define MAX_BACKOFF_MS 3600000
#define PUBLISHED "event_published"

/* Headers sagad sets itself on every call. */
static const char *const reserved[] = {"X-Saga-Id",
                                       "Idempotency-Key",
                                       "X-Saga-Compensation",
                                       "Content-Length",
                                       "Host",
                                       "Transfer-Encoding",
                                       NULL};
static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", NULL};

static int env_name_ok(const char *s, size_t n)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789";
    if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return 0;
    for (size_t i = 0; i < n; i++)
        if (!strchr(ok, s[i])) return 0;
    return 1;
}

/* s with each ${NAME} replaced by getenv(NAME), at most max bytes, into
 * *out (malloc'd); at is the place of s. */
static sg_status expand(sg__dctx *c, const char *at, const char *s, size_t max, char **out)
{
    char shown[SG__SHOW_MAX];
    sg_status st = SG_OK;
    sg_buf b;
    *out = NULL;
    sg_buf_init(&b, max);
    for (const char *p = s; st == SG_OK;) {
        const char *open = strstr(p, "${");
        if ((st = sg_buf_add(&b, p, open ? (size_t)(open - p) : strlen(p))) != SG_OK || !open)
            break;
        const char *close = strchr(open + 2, '}');
        if (!close) {
            st =
                sg__def_fail(c, at, "%s has no closing }", sg__def_show(open, strlen(open), shown));
            break;
        }
        size_t wlen = (size_t)(close - open) + 1;
        if (!env_name_ok(open + 2, wlen - 3)) {
            st = sg__def_fail(c, at, "%s is not a variable name", sg__def_show(open, wlen, shown));
            break;
        }
        char *name = sg_xmemdup(open + 2, wlen - 3);
        const char *val = getenv(name);
        free(name);
        if (!val) {
            st = sg__def_fail(c, at, "%s is not set", sg__def_show(open, wlen, shown));
            break;
        }
        st = sg_buf_adds(&b, val);
        p = close + 1;
    }
    if (st == SG_ETOOBIG) st = sg__def_fail(c, at, "longer than %zu bytes", max);
    if (st == SG_OK) *out = sg_buf_take(&b, NULL);
    sg_buf_free(&b);
    return st;
}

static int token_ok(const char *s, size_t n)
{
    static const char ok[] = "!#$%&'*+-.^_`|~0123456789"
                             "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    if (n < 1 || n > MAX_HEADER_NAME) return 0;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(ok, s[i])) return 0;
    return 1;
}

static sg_status parse_headers(sg__dctx *c, const char *place, const json_t *h, sg_action *a)
{
    char at[SG__PLACE_MAX];
    size_t n = 0;
    if (!json_is_object(h)) return sg__def_fail(c, place, "expected an object");
    if (json_object_size(h) > SG_DEF_MAX_HEADERS)
        return sg__def_fail(c, place, "more than %d headers", SG_DEF_MAX_HEADERS);
    if (json_object_size(h) == 0) return SG_OK;
    a->headers = sg_xcalloc(json_object_size(h) + 1, sizeof *a->headers);
    for (void *it = json_object_iter((json_t *)h); it;
         it = json_object_iter_next((json_t *)h, it)) {
        const char *k = json_object_iter_key(it);
        const json_t *v = json_object_iter_value(it);
        size_t klen = strlen(k);
        sg__def_at(at, place, k);
        if (!token_ok(k, klen)) return sg__def_fail(c, at, "not an HTTP header name");
        for (const char *const *r = reserved; *r; r++)
            if (strcasecmp(*r, k) == 0) return sg__def_fail(c, at, "set by sagad");
        for (size_t j = 0; j < n; j++)
            if (strncasecmp(a->headers[j], k, klen) == 0 && a->headers[j][klen] == ':')
                return sg__def_fail(c, at, "repeats header \"%.*s\"", (int)klen, a->headers[j]);
        if (!json_is_string(v)) return sg__def_fail(c, at, "expected a string");
        if (json_string_length(v) > MAX_HEADER_VALUE)
            return sg__def_fail(c, at, "longer than %d bytes", MAX_HEADER_VALUE);
        char *val;
        sg_status st = expand(c, at, json_string_value(v), MAX_HEADER_VALUE, &val);
        if (st != SG_OK) return st;
        if (strpbrk(val, "\r\n")) {
            free(val);
            return sg__def_fail(c, at, "contains CR or LF");
        }
        size_t len = klen + 2 + strlen(val);
        a->headers[n] = sg_xmalloc(len + 1);
        snprintf(a->headers[n++], len + 1, "%s: %s", k, val);
        free(val);
    }
    return SG_OK;
}

/* The template v, member key ("body", "payload") of the action at place,
 * into *out. The template errors place themselves inside it ("ref: ...",
 * "[0]: ...", or no place for a template that is one string). */
static sg_status parse_template(sg__dctx *c, const char *place, const char *key, const json_t *v,
                                const char *const *names, size_t nnames, sg_template **out)
{
    char terr[2 * SG__PLACE_MAX];
    if (sg_template_compile(out, v, names, nnames, terr, sizeof terr) == SG_OK) return SG_OK;
    const char *sep = json_is_string(v) ? ": " : terr[0] == '[' ? "" : ".";
    return sg__def_fail(c, "", "%s.%s%s%s", place, key, sep, terr);
}

static sg_status parse_http(sg__dctx *c, const char *place, const json_t *o,
                            const char *const *names, size_t nnames, sg_action *a)
{
    static const char *const keys[] = {"url", "method", "headers", "body", NULL};
    char at[SG__PLACE_MAX];
    const json_t *url, *method, *v;
    sg_status st;
    a->kind = SG_ACTION_HTTP;
    if (!json_is_object(o)) return sg__def_fail(c, place, "expected an object");
    if ((st = sg__def_keys(c, place, o, keys)) != SG_OK) return st;
    if ((st = sg__def_str(c, place, o, "url", MAX_URL, 1, &url)) != SG_OK) return st;
    sg__def_at(at, place, "url");
    if ((st = expand(c, at, json_string_value(url), MAX_URL, &a->url)) != SG_OK) return st;
    if (!sg_http_url_ok(a->url)) return sg__def_fail(c, at, "not an http(s) URL");
    if ((st = sg__def_str(c, place, o, "method", (size_t)-1, 0, &method)) != SG_OK) return st;
    const char *const *m = methods;
    while (method && *m && strcasecmp(*m, json_string_value(method)) != 0)
        m++;
    if (!*m)
        return sg__def_fail(c, sg__def_at(at, place, "method"),
                            "must be GET, POST, PUT, PATCH or DELETE");
    a->method = sg_xstrdup(method ? *m : "POST");
    if ((v = json_object_get(o, "headers")) &&
        (st = parse_headers(c, sg__def_at(at, place, "headers"), v, a)) != SG_OK)
        return st;
    if ((v = json_object_get(o, "body")))
        return parse_template(c, place, "body", v, names, nnames, &a->body);
    return SG_OK;
}

static sg_status parse_publish(sg__dctx *c, const char *place, const json_t *o,
                               const char *const *names, size_t nnames, sg_action *a)
{
    static const char *const keys[] = {"topic", "payload", NULL};
    char at[SG__PLACE_MAX];
    const json_t *topic, *v;
    sg_status st;
    a->kind = SG_ACTION_PUBLISH;
    if (!json_is_object(o)) return sg__def_fail(c, place, "expected an object");
    if ((st = sg__def_keys(c, place, o, keys)) != SG_OK) return st;
    if ((st = sg__def_str(c, place, o, "topic", (size_t)-1, 1, &topic)) != SG_OK) return st;
    if (!sg__def_name_ok(json_string_value(topic), json_string_length(topic), MAX_TOPIC))
        return sg__def_fail(c, sg__def_at(at, place, "topic"),
                            "must be 1 to %d of A-Z a-z 0-9 _ . -", MAX_TOPIC);
    a->topic = sg_xstrdup(json_string_value(topic));
    if ((v = json_object_get(o, "payload")))
        return parse_template(c, place, "payload", v, names, nnames, &a->payload);
    return SG_OK;
}

/* The one "http" or "publish" of o (a step or its "compensate"). */
static sg_status parse_action(sg__dctx *c, const char *place, const json_t *o, const char *what,
                              const char *const *names, size_t nnames, sg_action *a)
{
    char at[SG__PLACE_MAX];
    const json_t *http = json_object_get(o, "http"), *pub = json_object_get(o, "publish");
    if (!http && !pub) return sg__def_fail(c, place, "%s needs \"http\" or \"publish\"", what);
    if (http && pub) return sg__def_fail(c, place, "%s has both \"http\" and \"publish\"", what);
    if (http) return parse_http(c, sg__def_at(at, place, "http"), http, names, nnames, a);
    return parse_publish(c, sg__def_at(at, place, "publish"), pub, names, nnames, a);
}

static sg_status parse_retry(sg__dctx *c, const char *place, const json_t *o, sg_retry *r)
{
    static const char *const keys[] = {"attempts", "backoff_ms", "multiplier", "max_backoff_ms",
                                       NULL};
    char at[SG__PLACE_MAX];
    const json_t *v = json_object_get(o, "retry"), *m;
    long long attempts, backoff, max;
    sg_status st;
    *r = c->retry;
    if (!v) return SG_OK;
    sg__def_at(at, place, "retry");
    if (!json_is_object(v)) return sg__def_fail(c, at, "expected an object");
    if ((st = sg__def_keys(c, at, v, keys)) != SG_OK) return st;
    attempts = r->attempts, backoff = r->backoff_ms, max = r->max_backoff_ms;
    if ((st = sg__def_int(c, at, v, "attempts", 1, 100, 0, &attempts)) != SG_OK ||
        (st = sg__def_int(c, at, v, "backoff_ms", 0, MAX_BACKOFF_MS, 0, &backoff)) != SG_OK)
        return st;
    if ((m = json_object_get(v, "multiplier"))) {
        char mat[SG__PLACE_MAX];
        sg__def_at(mat, at, "multiplier");
        if (!json_is_number(m)) return sg__def_fail(c, mat, "expected a number");
        if (!(json_number_value(m) >= 1 && json_number_value(m) <= 10))
            return sg__def_fail(c, mat, "must be 1 to 10");
        r->multiplier = json_number_value(m);
    }
    if ((st = sg__def_int(c, at, v, "max_backoff_ms", 0, MAX_BACKOFF_MS, 0, &max)) != SG_OK)
        return st;
    /* Checked when the file sets either: the flags' own pair is theirs. */
    int set = json_object_get(v, "backoff_ms") || json_object_get(v, "max_backoff_ms");
    if (set && max < backoff) {
        char bat[SG__PLACE_MAX];
        if (json_object_get(v, "max_backoff_ms"))
            return sg__def_fail(c, sg__def_at(bat, at, "max_backoff_ms"), "less than backoff_ms");
        return sg__def_fail(c, sg__def_at(bat, at, "backoff_ms"), "more than max_backoff_ms (%lld)",
                            max);
    }
    r->attempts = (int)attempts;
    r->backoff_ms = (long)backoff;
    r->max_backoff_ms = (long)max;
    return SG_OK;
}

/* 1 if s[0..n) is 1..max bytes with no control character (C0, DEL, C1). */
static int text_ok(const char *s, size_t n, size_t max)
{
    if (n < 1 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b < 0x20 || b == 0x7f) return 0;
        if (b == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
            (unsigned char)s[i + 1] <= 0x9f)
            return 0;
    }
    return 1;
}

/* Member key of o, a text of 1..64 bytes, dflt when absent, into *out. */
static sg_status parse_text(sg__dctx *c, const char *place, const json_t *o, const char *key,
                            const char *dflt, char **out)
{
    char at[SG__PLACE_MAX];
    const json_t *v;
    sg_status st = sg__def_str(c, place, o, key, (size_t)-1, 0, &v);
    if (st != SG_OK) return st;
    if (v && !text_ok(json_string_value(v), json_string_length(v), SG_DEF_MAX_NAME))
        return sg__def_fail(c, sg__def_at(at, place, key),
                            "must be 1 to %d bytes without control characters", SG_DEF_MAX_NAME);
    *out = sg_xstrdup(v ? json_string_value(v) : dflt);
    return SG_OK;
}

/* Step i of d from o; names[0..i) are the steps before it. */
static sg_status parse_step(sg__dctx *c, const char *place, const json_t *o, sg_def *d, size_t i,
                            const char **names)
{
    static const char *const keys[] = {"name",       "http",  "publish",    "output", "label",
                                       "timeout_ms", "retry", "compensate", NULL};
    static const char *const comp_keys[] = {"http", "publish", NULL};
    sg_step_def *s = &d->steps[i];
    char at[SG__PLACE_MAX];
    const json_t *name, *comp;
    long long timeout = 0;
    sg_status st;
    if (!json_is_object(o)) return sg__def_fail(c, place, "expected an object");
    if ((st = sg__def_keys(c, place, o, keys)) != SG_OK) return st;
    if ((st = sg__def_str(c, place, o, "name", (size_t)-1, 1, &name)) != SG_OK) return st;
    const char *nm = json_string_value(name);
    sg__def_at(at, place, "name");
    if (!sg__def_name_ok(nm, json_string_length(name), SG_DEF_MAX_NAME))
        return sg__def_fail(c, at, "must be 1 to %d of A-Z a-z 0-9 _ . -", SG_DEF_MAX_NAME);
    for (size_t j = 0; j < i; j++)
        if (strcmp(d->steps[j].name, nm) == 0)
            return sg__def_fail(c, at, "\"%s\" is used by steps[%zu]", nm, j);
    s->name = sg_xstrdup(nm);
    names[i] = s->name;
    if ((st = parse_action(c, place, o, "a step", names, i, &s->action)) != SG_OK) return st;
    if ((st = parse_text(c, place, o, "output", nm, &s->result_key)) != SG_OK) return st;
    for (size_t j = 0; j < i; j++)
        if (strcmp(d->steps[j].result_key, s->result_key) == 0) {
            char shown[SG__SHOW_MAX];
            return sg__def_fail(c, sg__def_at(at, place, "output"), "\"%s\" is used by steps[%zu]",
                                sg__def_show(s->result_key, strlen(s->result_key), shown), j);
        }
    if ((st = parse_text(c, place, o, "label", nm, &s->service)) != SG_OK) return st;
    if ((st = sg__def_int(c, place, o, "timeout_ms", 1, MAX_TIMEOUT_MS, 0, &timeout)) != SG_OK)
        return st;
    s->timeout_ms = (long)timeout;
    if ((st = parse_retry(c, place, o, &s->retry)) != SG_OK) return st;
    if (s->action.kind == SG_ACTION_PUBLISH) s->result_text = sg_xstrdup(PUBLISHED);
    if (!(comp = json_object_get(o, "compensate"))) return SG_OK;
    sg__def_at(at, place, "compensate");
    if (!json_is_object(comp)) return sg__def_fail(c, at, "expected an object");
    if ((st = sg__def_keys(c, at, comp, comp_keys)) != SG_OK) return st;
    s->has_compensation = 1; /* from here on sg_def_destroy frees what it holds */
    return parse_action(c, at, comp, "a compensation", names, i + 1, &s->compensation);
}

sg_status sg__def_steps(sg__dctx *c, const char *place, const json_t *steps, sg_def *d)
{
    const char *names[SG_DEF_MAX_STEPS];
    char at[SG__PLACE_MAX];
    d->nsteps = json_array_size(steps);
    d->steps = sg_xcalloc(d->nsteps, sizeof *d->steps);
    for (size_t i = 0; i < d->nsteps; i++) {
        snprintf(at, sizeof at, "%s.steps[%zu]", place, i);
        sg_status st = parse_step(c, at, json_array_get(steps, i), d, i, names);
        if (st != SG_OK) return st;
    }
    return SG_OK;
}
