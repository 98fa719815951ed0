/* The generic bus: URL → backend, the design §4 envelope, and bookkeeping
 * of publishes in flight so that cancel and destroy work the same for every
 * backend. The public sg_bus_* functions are thin wrappers over the
 * backend's ops (see bus_int.h). */
#include <curl/curl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_int.h"
#include "sg/alloc.h"
#include "sg/json.h"
#include "sg/util.h"

/* Backends of this build, found by scheme at run time. */
static const struct {
    const char *scheme;
    const struct sg_bus_ops *ops;
} backends[] = {
    {"log", &sg_bus_log_ops},
    {"http", &sg_bus_webhook_ops},
    {"https", &sg_bus_webhook_ops},
};

struct sg_bus {
    const struct sg_bus_ops *ops; /* static */
    void *state;                  /* owned by the backend; freed by ops->destroy */
    char *url;                    /* owned copy */
    sg_bus_pub *pubs;             /* publishes in flight (doubly linked) */
};

/* One publish in flight; the generic layer owns it. It stands between the
 * backend and the caller so cancel works even for backends without one. */
struct sg_bus_pub {
    sg_bus *bus;      /* borrowed back-pointer */
    sg_bus_ack_cb cb; /* the caller's */
    void *arg;
    void *handle;  /* the backend's, for ops->cancel */
    int cancelled; /* backend without cancel: swallow its callback */
    sg_bus_pub *prev, *next;
};

static void pub_unlink(sg_bus *b, sg_bus_pub *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        b->pubs = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

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

static sg_status url_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes the reason into err and returns SG_EINVAL. */
static sg_status url_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SG_EINVAL;
}

/* Checks the URL's shape for its scheme; the backend may check more. */
static sg_status check_url(const char *url, const char *scheme, char *err, size_t errlen)
{
    if (strcmp(scheme, "log") == 0) {
        /* "log" or "log:" (or "log://"): nothing may follow. */
        const char *rest = url + 3;
        if (*rest == ':') rest++;
        if (strncmp(rest, "//", 2) == 0) rest += 2;
        if (*rest)
            return url_error(err, errlen,
                             "bad bus URL '%s': the log bus takes no address (use 'log:')", url);
        return SG_OK;
    }
    /* http(s): "//" and a host must follow the scheme (curl's parser alone
     * would read "http:///path" as host "path"); then let curl judge. */
    const char *auth = url + strlen(scheme);
    if (strncmp(auth, "://", 3) != 0 || auth[3] == '\0' || strchr("/?#", auth[3]))
        return url_error(err, errlen, "bad bus URL '%s': expected %s://host[:port]/path", url,
                         scheme);
    sg_status st = SG_OK;
    char *host = NULL;
    CURLU *u = curl_url();
    if (!u) return SG_ENOMEM;
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK) {
        st = url_error(err, errlen, "bad bus URL '%s': %s", url, curl_url_strerror(rc));
        goto done;
    }
    rc = curl_url_get(u, CURLUPART_HOST, &host, 0);
    if (rc != CURLUE_OK || !host || !*host) {
        st = url_error(err, errlen, "bad bus URL '%s': no host", url);
        goto done;
    }
done:
    curl_free(host);
    curl_url_cleanup(u);
    return st;
}

/* ------------------------------------------------------------- the bus */

sg_status sg_bus_create(sg_bus **out, const char *url, const sg_bus_env *env, char *err,
                        size_t errlen)
{
    sg_status st = SG_EINVAL;
    sg_bus *b = NULL;
    char scheme[32];
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (!url || !*url) return url_error(err, errlen, "empty bus URL");
    if (!env || !env->loop) return url_error(err, errlen, "bus '%s': no event loop given", url);

    /* Scheme: letters, digits, '+', '-', '.' up to ':'; "log" alone too. */
    size_t n = strcspn(url, ":");
    if (strcmp(url, "log") == 0) {
        n = 3;
    } else if (url[n] != ':' || n == 0 || n >= sizeof scheme) {
        return url_error(err, errlen,
                         "bad bus URL '%s': expected log:, http://host:port/path, "
                         "nats://host:port or pulsar://host:port",
                         url);
    }
    for (size_t i = 0; i < n; i++) {
        char c = url[i];
        scheme[i] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
    }
    scheme[n] = '\0';

    const struct sg_bus_ops *ops = NULL;
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if (strcmp(backends[i].scheme, scheme) == 0) ops = backends[i].ops;
    if (!ops)
        return url_error(err, errlen,
                         "bus scheme '%s' is not supported by this build "
                         "(supported: log:, http://, https://)",
                         scheme);
    if ((st = check_url(url, scheme, err, errlen)) != SG_OK) return st;

    b = sg_xcalloc(1, sizeof *b);
    b->ops = ops;
    b->url = sg_xstrdup(url);
    if ((st = ops->create(&b->state, url, env, err, errlen)) != SG_OK) goto fail;
    *out = b;
    return SG_OK;

fail:
    free(b->url);
    free(b);
    return st;
}

void sg_bus_destroy(sg_bus *b)
{
    if (!b) return;
    /* Withdraw everything in flight; callbacks do not run. */
    while (b->pubs) {
        sg_bus_pub *p = b->pubs;
        pub_unlink(b, p);
        if (b->ops->cancel && !p->cancelled) b->ops->cancel(b->state, p->handle);
        free(p);
    }
    b->ops->destroy(b->state); /* drops whatever it still holds, silently */
    free(b->url);
    free(b);
}

/* The backend's completion, routed through the pub. */
static void on_done(void *arg, sg_status st, const char *why)
{
    sg_bus_pub *p = arg;
    sg_bus_ack_cb cb = p->cb;
    void *cb_arg = p->arg;
    int cancelled = p->cancelled;
    pub_unlink(p->bus, p);
    free(p);
    /* Last: the callback may publish, cancel or even destroy the bus. */
    if (!cancelled) cb(cb_arg, st, why ? why : sg_status_text(st));
}

sg_status sg_bus_publish(sg_bus *b, const sg_event_rec *ev, long timeout_ms, sg_bus_ack_cb cb,
                         void *arg, sg_bus_pub **out)
{
    sg_status st;
    sg_buf env;
    sg_bus_pub *p = NULL;
    if (out) *out = NULL;
    if (!b || !ev || !cb) return SG_EINVAL;

    sg_buf_init(&env, SIZE_MAX / 2);
    if ((st = sg_event_envelope(&env, ev)) != SG_OK) goto fail;

    p = sg_xcalloc(1, sizeof *p);
    p->bus = b;
    p->cb = cb;
    p->arg = arg;
    size_t len;
    char *text = sg_buf_take(&env, &len); /* handed to the backend below */
    st = b->ops->publish(b->state, ev, text, len, timeout_ms, on_done, p, &p->handle);
    if (st != SG_OK) goto fail;
    p->next = b->pubs;
    if (b->pubs) b->pubs->prev = p;
    b->pubs = p;
    if (out) *out = p;
    return SG_OK;

fail:
    sg_buf_free(&env);
    free(p);
    return st;
}

void sg_bus_cancel(sg_bus *b, sg_bus_pub *p)
{
    if (!b || !p || p->cancelled) return;
    if (b->ops->cancel) {
        b->ops->cancel(b->state, p->handle);
        pub_unlink(b, p);
        free(p);
    } else {
        /* The backend will still call on_done, which then stays silent. */
        p->cancelled = 1;
    }
}

sg_status sg_bus_health(sg_bus *b, char *why, size_t n)
{
    if (why && n) why[0] = '\0';
    if (!b) return SG_EINVAL;
    return !b->ops->ready || b->ops->ready(b->state, why, n) ? SG_OK : SG_EUNAVAIL;
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
