/* "pulsar://host:6650" and "pulsar+ssl://host:6651" bus: Apache Pulsar's
 * binary protocol, producer side, on the loop. This file owns the URL and
 * its options, the backend ops and the bus's lifetime; see pulsar_int.h
 * for how the other pulsar_*.c files share the work.
 *
 * URL: pulsar[+ssl]://host[:port][/][?option=value&...], options:
 *   token=JWT          token authentication (else $SAGAD_PULSAR_TOKEN)
 *   ca=FILE            CA certificates for pulsar+ssl (else --ca-file, else
 *                      the system's)
 *   insecure=1         pulsar+ssl without any certificate check (tests only)
 *   producer=NAME      producer name (else sagad-<host>-<hash of instance>)
 *   tenant=, namespace= topic prefix (public, default)
 *   keepalive_s=N      PING interval (30); the broker must answer within 2N
 *   connect_timeout_ms=N  to set up a session (10000)
 *   max_pending=N      publishes waiting or unacknowledged (10000); more
 *                      are refused at once with SG_EBUSY */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pulsar_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

/* ------------------------------------------------------------ lifetime */

void sg__pulsar_opts_free(pulsar_opts *o)
{
    free(o->host);
    free(o->token);
    free(o->ca);
    free(o->producer);
    free(o->tenant);
    free(o->ns);
    memset(o, 0, sizeof *o);
}

void sg__pulsar_unref(pulsar_bus *pb)
{
    if (--pb->live > 0) return;
    sg__pulsar_opts_free(&pb->o);
    if (pb->ssl_ctx) sg__ptls_ctx_free(pb->ssl_ctx);
    pthread_mutex_destroy(&pb->mu);
    free(pb);
}

void sg__pulsar_health(pulsar_bus *pb, int healthy, const char *why)
{
    pthread_mutex_lock(&pb->mu);
    pb->healthy = healthy;
    size_t n = strnlen(why, sizeof pb->health_why - 1); /* cut a long reason */
    memcpy(pb->health_why, why, n);
    pb->health_why[n] = '\0';
    pthread_mutex_unlock(&pb->mu);
}

/* ------------------------------------------------------------------ URL */

/* host[:port] at s (up to end); [v6] brackets allowed. 0 or -1. */
static int parse_hostport(const char *s, const char *end, int defport, char **host, int *port)
{
    const char *h = s, *he;
    if (*s == '[') {
        he = memchr(s, ']', (size_t)(end - s));
        if (!he) return -1;
        h = s + 1;
        s = he + 1;
    } else {
        he = s;
        while (he < end && *he != ':')
            he++;
        s = he;
    }
    if (he == h) return -1;
    for (const char *c = h; c < he; c++)
        if (*c == '@' || *c == '/' || *c == '?' || *c == '#' || *c <= ' ') return -1;
    *port = defport;
    if (s < end) {
        if (*s != ':' || s + 1 == end) return -1;
        long v = 0;
        for (s++; s < end; s++) {
            if (*s < '0' || *s > '9' || v > 65535) return -1;
            v = v * 10 + (*s - '0');
        }
        if (v < 1 || v > 65535) return -1;
        *port = (int)v;
    }
    *host = sg_xmemdup(h, (size_t)(he - h));
    return 0;
}

int sg__pulsar_parse_addr(const char *url, char **host, int *port, int *tls)
{
    *host = NULL;
    if (strncmp(url, "pulsar://", 9) == 0) {
        *tls = 0;
        url += 9;
    } else if (strncmp(url, "pulsar+ssl://", 13) == 0) {
        *tls = 1;
        url += 13;
    } else {
        return -1;
    }
    const char *end = url + strcspn(url, "/?#");
    if (*end && strcmp(end, "/") != 0) return -1;
    return parse_hostport(url, end, *tls ? 6651 : 6650, host, port);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL if malformed or if it
 * holds a NUL. */
static char *pct_decode(const char *s, size_t n)
{
    char *out = sg_xmalloc(n + 1), *o = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int a = i + 2 < n ? hexval(s[i + 1]) : -1, b = a >= 0 ? hexval(s[i + 2]) : -1;
            if (a < 0 || b < 0 || (a == 0 && b == 0)) {
                free(out);
                return NULL;
            }
            *o++ = (char)(a * 16 + b);
            i += 2;
        } else {
            *o++ = s[i]; /* '+' stays: tokens may hold it */
        }
    }
    *o = '\0';
    return out;
}

static int parse_num(const char *v, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi) return -1;
    *out = n;
    return 0;
}

/* One option; 0, or -1 with the reason in err. */
static int set_option(pulsar_opts *o, const char *k, char *v, char *err, size_t errlen)
{
    long n;
    char **str = NULL;
    if (strcmp(k, "token") == 0) str = &o->token;
    if (strcmp(k, "ca") == 0) str = &o->ca;
    if (strcmp(k, "producer") == 0) str = &o->producer;
    if (strcmp(k, "tenant") == 0) str = &o->tenant;
    if (strcmp(k, "namespace") == 0) str = &o->ns;
    if (str) {
        if (!*v) {
            snprintf(err, errlen, "option '%s' is empty", k);
            return -1;
        }
        if ((str == &o->tenant || str == &o->ns) && strpbrk(v, "/ ")) {
            snprintf(err, errlen, "option '%s' may not hold '/' or spaces", k);
            return -1;
        }
        free(*str);
        *str = sg_xstrdup(v);
        return 0;
    }
    if (strcmp(k, "insecure") == 0) {
        if (parse_num(v, 0, 1, &n) != 0) goto bad_value;
        o->insecure = (int)n;
    } else if (strcmp(k, "keepalive_s") == 0) {
        if (parse_num(v, 1, 3600, &n) != 0) goto bad_value;
        o->keepalive_ms = (unsigned)n * 1000;
    } else if (strcmp(k, "connect_timeout_ms") == 0) {
        if (parse_num(v, 100, 600000, &n) != 0) goto bad_value;
        o->connect_timeout_ms = (unsigned)n;
    } else if (strcmp(k, "max_pending") == 0) {
        if (parse_num(v, 1, 10000000, &n) != 0) goto bad_value;
        o->max_pending = (size_t)n;
    } else {
        snprintf(err, errlen,
                 "unknown option '%s' (known: token, ca, insecure, producer, tenant, namespace, "
                 "keepalive_s, connect_timeout_ms, max_pending)",
                 k);
        return -1;
    }
    return 0;
bad_value:
    snprintf(err, errlen, "bad value for option '%s'", k);
    return -1;
}

/* The URL with any token's value replaced, for messages and logs. */
static void redact(const char *url, char *out, size_t n)
{
    const char *t = strstr(url, "token=");
    if (!t || (t[-1] != '?' && t[-1] != '&')) {
        snprintf(out, n, "%s", url);
        return;
    }
    size_t keep = (size_t)(t - url) + 6;
    snprintf(out, n, "%.*s***%s", (int)keep, url, t + 6 + strcspn(t + 6, "&#"));
}

int sg__pulsar_parse_url(pulsar_opts *o, const char *scheme, const char *url, char *err,
                         size_t errlen)
{
    o->tls = strcmp(scheme, "pulsar+ssl") == 0;
    const char *a = url + strlen(scheme);
    if (strncmp(a, "://", 3) != 0) {
        snprintf(err, errlen, "expected %s://host[:port]", scheme);
        return -1;
    }
    a += 3;
    const char *end = a + strcspn(a, "/?#");
    if (parse_hostport(a, end, o->tls ? 6651 : 6650, &o->host, &o->port) != 0) {
        snprintf(err, errlen, "expected %s://host[:port] with a port from 1 to 65535", scheme);
        return -1;
    }
    if (*end == '/') end++;
    if (*end == '#' || (*end && *end != '?')) {
        snprintf(err, errlen, "no path or fragment allowed after the address");
        return -1;
    }
    if (*end == '?') end++;
    while (*end) {
        size_t len = strcspn(end, "&");
        const char *eq = memchr(end, '=', len);
        if (!eq || eq == end) {
            snprintf(err, errlen, "expected option=value in the query");
            return -1;
        }
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(eq - end) < 31 ? (int)(eq - end) : 31, end);
        char *v = pct_decode(eq + 1, len - (size_t)(eq + 1 - end));
        if (!v) {
            snprintf(err, errlen, "bad percent-encoding in option '%s'", key);
            return -1;
        }
        int rc = set_option(o, key, v, err, errlen);
        free(v);
        if (rc != 0) return -1;
        end += len;
        if (*end == '&') end++;
    }
    if (!o->tls && (o->ca || o->insecure)) {
        snprintf(err, errlen, "options 'ca' and 'insecure' need pulsar+ssl://");
        return -1;
    }
    return 0;
}

/* sagad-<host>-<8 hex digits of FNV-1a over the instance>: the same for
 * the same host and store across restarts, so that a broker with
 * deduplication recognises the producer. */
static char *default_producer(const char *instance)
{
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    host[strcspn(host, ".")] = '\0';
    const char *s = instance ? instance : host;
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    char out[128];
    snprintf(out, sizeof out, "sagad-%s-%08x", host, (unsigned)(h ^ (h >> 32)));
    return sg_xstrdup(out);
}

/* ---------------------------------------------------------------- ops */

static sg_status pulsar_create(void **state, const char *scheme, const char *url,
                               const sg_bus_env *env, char *err, size_t errlen)
{
    *state = NULL;
    char shown[512], why[300] = "";
    redact(url, shown, sizeof shown);
    pulsar_opts o = {.keepalive_ms = 30000, .connect_timeout_ms = 10000, .max_pending = 10000};
    if (sg__pulsar_parse_url(&o, scheme, url, why, sizeof why) != 0) {
        sg__pulsar_opts_free(&o);
        return sg__bus_einval(err, errlen, "bad bus URL '%s': %s", shown, why);
    }
    const char *tok = getenv("SAGAD_PULSAR_TOKEN");
    if (!o.token && tok && *tok) o.token = sg_xstrdup(tok);
    if (!o.producer) o.producer = default_producer(env->instance);
    if (!o.tenant) o.tenant = sg_xstrdup("public");
    if (!o.ns) o.ns = sg_xstrdup("default");
    /* --ca-file: the process-wide private CA, unless the URL names its own. */
    if (o.tls && !o.ca && !o.insecure && env->ca_file) o.ca = sg_xstrdup(env->ca_file);

    pulsar_bus *pb = sg_xcalloc(1, sizeof *pb);
    pb->loop = env->loop;
    pb->o = o;
    pb->live = 1; /* the bus's own reference, dropped by destroy */
    pthread_mutex_init(&pb->mu, NULL);
    if (o.tls && !(pb->ssl_ctx = sg__ptls_ctx_new(o.ca, o.insecure, why, sizeof why))) {
        sg__pulsar_unref(pb);
        return sg__bus_einval(err, errlen, "bus '%s': %s", shown, why);
    }
    if (sg__pub_init(pb) != 0) {
        sg__pulsar_unref(pb);
        if (err && errlen) snprintf(err, errlen, "pulsar bus: cannot initialise its loop handles");
        return SG_EIO;
    }
    pb->service = sg__ep_get(pb, o.host, o.port, o.tls);
    pb->service->service = 1;
    char h[400];
    snprintf(h, sizeof h, "not connected yet: connecting to %s", pb->service->url);
    sg__pulsar_health(pb, 0, h);
    if (o.insecure)
        sg_log(SG_LOG_WARN, "pulsar: insecure=1: the broker's certificate is not checked");
    sg_log(SG_LOG_INFO, "pulsar: %s, producer '%s', topics persistent://%s/%s/<topic>%s", shown,
           o.producer, o.tenant, o.ns, o.token ? ", token authentication" : "");
    sg__ep_want(pb->service); /* connects in the background, retrying */
    *state = pb;
    return SG_OK;
}

static void pulsar_destroy(void *state)
{
    pulsar_bus *pb = state;
    if (!pb) return;
    pb->closing = 1;
    sg__pr_close_all(pb);
    sg__pub_close(pb);
    sg__ep_close_all(pb);
    sg__pulsar_unref(pb);
}

static sg_status pulsar_publish(void *state, const sg_event_rec *ev, char *envelope, size_t len,
                                long timeout_ms, sg_bus_ack_cb done, void *arg, void **pub)
{
    pulsar_bus *pb = state;
    *pub = NULL;
    sg_status st = SG_OK;
    if (pb->closing)
        st = SG_ECLOSED;
    else if (!ev->topic || !*ev->topic)
        st = SG_EINVAL;
    else if (pb->npending >= pb->o.max_pending)
        st = SG_EBUSY;
    if (st != SG_OK) {
        free(envelope);
        return st;
    }
    ppub *p = sg_xcalloc(1, sizeof *p);
    p->payload = envelope; /* taken */
    p->len = len;
    snprintf(p->event_id, sizeof p->event_id, "%s", ev->id);
    snprintf(p->saga_id, sizeof p->saga_id, "%s", ev->saga_id);
    sg__bus_trace(ev, &p->trace);
    p->timeout_ms = timeout_ms;
    p->due_ms = uv_now(pb->loop) + (timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
    p->done = done;
    p->arg = arg;
    pb->npending++;
    sg__pr_publish(sg__pr_get(pb, ev->topic), p);
    *pub = p;
    return SG_OK;
}

static void pulsar_cancel(void *state, void *pub)
{
    sg__pub_drop(state, pub);
}

static sg_status pulsar_health(void *state, char *why, size_t n)
{
    pulsar_bus *pb = state;
    pthread_mutex_lock(&pb->mu);
    int ok = pb->healthy;
    if (!ok && why && n) snprintf(why, n, "%s", pb->health_why);
    pthread_mutex_unlock(&pb->mu);
    return ok ? SG_OK : SG_EUNAVAIL;
}

static const char *const schemes[] = {"pulsar", "pulsar+ssl", NULL};

const struct sg_bus_ops sg_bus_pulsar_ops = {
    .schemes = schemes,
    .name = "pulsar",
    .is_broker = 1,
    .create = pulsar_create,
    .destroy = pulsar_destroy,
    .publish = pulsar_publish,
    .cancel = pulsar_cancel,
    .health = pulsar_health,
};
