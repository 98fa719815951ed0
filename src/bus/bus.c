/* The generic bus: URL scheme -> backend, and the design §4 envelope. The
 * public sg_bus_* functions are thin wrappers over the backend's ops (see
 * bus_int.h); publishes are the backend's to track. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus_int.h"
#include "sg/alloc.h"
#include "sg/json.h"
#include "sg/util.h"

/* Backends of this build, found by scheme at run time. */
static const struct sg_bus_ops *const backends[] = {&sg_bus_log_ops, &sg_bus_webhook_ops,
                                                    &sg_bus_nats_ops, &sg_bus_pulsar_ops};

struct sg_bus {
    const struct sg_bus_ops *ops; /* static */
    void *state;                  /* owned by the backend; freed by ops->destroy */
};

/* ------------------------------------------------------------ envelope */

sg_status sg_event_envelope(sg_buf *out, const sg_event_rec *ev)
{
    char ts[SG_TIME_LEN + 1];
    size_t start = out->len;
    sg_status st;
    if (!ev) return SG_EINVAL;
    sg_time_iso(ev->created_us ? ev->created_us : sg_now_us(), ts);

    /* Keys in the contract's order; the payload is spliced verbatim so the
     * request reaches consumers byte for byte (\u0000, big integers...). */
    if ((st = sg_buf_adds(out, "{\"id\":")) != SG_OK) goto fail;
    if ((st = sg_json_add_cstr(out, ev->id)) != SG_OK) goto fail;
    if ((st = sg_buf_adds(out, ",\"topic\":")) != SG_OK) goto fail;
    if ((st = sg_json_add_cstr(out, ev->topic)) != SG_OK) goto fail;
    if ((st = sg_buf_adds(out, ",\"saga_id\":")) != SG_OK) goto fail;
    if ((st = sg_json_add_cstr(out, ev->saga_id)) != SG_OK) goto fail;
    if ((st = sg_buf_adds(out, ",\"payload\":")) != SG_OK) goto fail;
    if (ev->payload && ev->payload_len)
        st = sg_buf_add(out, ev->payload, ev->payload_len);
    else
        st = sg_buf_adds(out, "null");
    if (st != SG_OK) goto fail;
    if ((st = sg_buf_adds(out, ",\"created_at\":\"")) != SG_OK) goto fail;
    if ((st = sg_buf_adds(out, ts)) != SG_OK) goto fail;
    if ((st = sg_buf_adds(out, "\"}")) != SG_OK) goto fail;
    return SG_OK;

fail:
    /* Leave out as it was. */
    out->len = start;
    if (out->ptr) out->ptr[start] = '\0';
    return st;
}

/* ----------------------------------------------------------------- URL */

sg_status sg__bus_einval(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SG_EINVAL;
}

void sg__bus_trace(const sg_event_rec *ev, sg__bus_trace_ctx *t)
{
    sg_trace tr;
    /* Read back from the store: checked again before it goes out. */
    if (!sg_event_header(ev, "traceparent", t->parent, sizeof t->parent) ||
        !sg_trace_parse(t->parent, strlen(t->parent), &tr, NULL))
        t->parent[0] = '\0';
    if (!t->parent[0] || !sg_event_header(ev, "tracestate", t->state, sizeof t->state) ||
        !sg_tracestate_ok(t->state, strlen(t->state)))
        t->state[0] = '\0';
}

static const struct sg_bus_ops *backend_of(const char *scheme)
{
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        for (const char *const *s = backends[i]->schemes; *s; s++)
            if (strcmp(*s, scheme) == 0) return backends[i];
    return NULL;
}

/* ------------------------------------------------------------- the bus */

sg_status sg_bus_create(sg_bus **out, const char *url, const sg_bus_env *env, char *err,
                        size_t errlen)
{
    sg_status st;
    char scheme[32];
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (!url || !*url) return sg__bus_einval(err, errlen, "empty bus URL");
    if (!env || !env->loop)
        return sg__bus_einval(err, errlen, "bus '%s': no event loop given", url);

    /* Scheme: letters, digits, '+', '-', '.' up to ':'; "log" alone too. */
    size_t n = strcspn(url, ":");
    if (strcmp(url, "log") == 0) {
        n = 3;
    } else if (url[n] != ':' || n == 0 || n >= sizeof scheme) {
        return sg__bus_einval(err, errlen,
                              "bad bus URL '%s': expected log:, http(s)://host:port/path, "
                              "nats://host:port, tls://host:port (NATS over TLS), "
                              "pulsar://host:port or pulsar+ssl://host:port",
                              url);
    }
    for (size_t i = 0; i < n; i++) {
        char c = url[i];
        scheme[i] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    scheme[n] = '\0';

    const struct sg_bus_ops *ops = backend_of(scheme);
    if (!ops)
        return sg__bus_einval(err, errlen,
                              "bus scheme '%s' is not supported by this build "
                              "(supported: log:, http://, https://, nats://, tls://, "
                              "pulsar://, pulsar+ssl://)",
                              scheme);
    void *state = NULL;
    if ((st = ops->create(&state, scheme, url, env, err, errlen)) != SG_OK) return st;
    sg_bus *b = sg_xcalloc(1, sizeof *b);
    b->ops = ops;
    b->state = state;
    *out = b;
    return SG_OK;
}

void sg_bus_destroy(sg_bus *b)
{
    if (!b) return;
    b->ops->destroy(b->state); /* drops every publish outstanding, silently */
    free(b);
}

sg_status sg_bus_publish(sg_bus *b, const sg_event_rec *ev, long timeout_ms, sg_bus_ack_cb cb,
                         void *arg, sg_bus_pub **out)
{
    sg_status st;
    sg_buf env;
    void *pub = NULL;
    if (out) *out = NULL;
    if (!b || !ev || !cb) return SG_EINVAL;

    sg_buf_init(&env, SIZE_MAX / 2);
    if ((st = sg_event_envelope(&env, ev)) != SG_OK) {
        sg_buf_free(&env);
        return st;
    }
    size_t len;
    char *text = sg_buf_take(&env, &len); /* taken by the backend, even on failure */
    if ((st = b->ops->publish(b->state, ev, text, len, timeout_ms, cb, arg, &pub)) != SG_OK)
        return st;
    if (out) *out = pub;
    return SG_OK;
}

void sg_bus_cancel(sg_bus *b, sg_bus_pub *pub)
{
    if (b && pub) b->ops->cancel(b->state, pub);
}

sg_status sg_bus_health(sg_bus *b, char *why, size_t n)
{
    if (why && n) why[0] = '\0';
    if (!b) return SG_EUNAVAIL;
    return b->ops->health ? b->ops->health(b->state, why, n) : SG_OK;
}

int sg_bus_is_broker(const sg_bus *b)
{
    return b && b->ops->is_broker;
}

int sg_bus_is_log(const sg_bus *b)
{
    return b && b->ops == &sg_bus_log_ops;
}

const char *sg_bus_name(const sg_bus *b)
{
    return b ? b->ops->name : "none";
}
