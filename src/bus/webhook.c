/* "http://host:port/path" bus: POSTs each envelope to a webhook through the
 * shared sg_http_client; a 2xx answer acknowledges it. The event id goes in
 * X-Event-Id and Idempotency-Key so that the receiver can drop the
 * duplicates that retries produce. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utlist.h>

#include "bus_int.h"
#include "sg/alloc.h"

typedef struct webhook_bus webhook_bus;

/* One publish in flight; the handle sg_bus_publish hands out. */
typedef struct webhook_pub {
    webhook_bus *wb;    /* borrowed back-pointer */
    char *envelope;     /* owned; the request body, alive until done or cancel */
    char hdr[4][128];   /* header lines; sg_http_post copies them anyway */
    sg_http_call *call; /* the client's; valid until on_answer runs */
    sg_bus_ack_cb done;
    void *arg;
    struct webhook_pub *prev, *next; /* wb->pubs */
} webhook_pub;

struct webhook_bus {
    sg_http_client *http; /* borrowed from the env */
    char *url;            /* owned */
    webhook_pub *pubs;    /* in flight */
};

/* Unlinks and frees p. */
static void pub_drop(webhook_bus *wb, webhook_pub *p)
{
    DL_DELETE(wb->pubs, p);
    free(p->envelope);
    free(p);
}

/* What a failed call means for the bus, by outcome; anything not listed
 * counts as a transport error. */
static const struct {
    sg_status st;
    const char *prefix; /* of the reason, before the client's text */
} failures[] = {
    [SG_HTTP_ERR_CONNECT] = {SG_EUNAVAIL, "webhook unreachable: "},
    [SG_HTTP_ERR_TIMEOUT] = {SG_ETIMEOUT, "webhook "},
    /* It answered, at length: it got the event, so the outcome is in doubt. */
    [SG_HTTP_ERR_TOO_BIG] = {SG_EIO, "webhook answer too big: "},
    [SG_HTTP_ERR_TRANSPORT] = {SG_EIO, "webhook transport error: "},
};

/* SG_OK for a 2xx answer; otherwise the status, with the reason in why. */
static sg_status judge(const sg_http_result *res, char *why, size_t n)
{
    if (res->outcome == SG_HTTP_DONE) {
        if (res->status >= 200 && res->status < 300) {
            snprintf(why, n, "%s", sg_status_text(SG_OK));
            return SG_OK;
        }
        snprintf(why, n, "webhook answered HTTP %ld", res->status);
        /* 408, 429 and 5xx say "not now"; any other answer is final. */
        long c = res->status;
        return c == 408 || c == 429 || c >= 500 ? SG_EUNAVAIL : SG_EREFUSED;
    }
    size_t i = (size_t)res->outcome;
    if (i >= sizeof failures / sizeof *failures || !failures[i].prefix) i = SG_HTTP_ERR_TRANSPORT;
    snprintf(why, n, "%s%s", failures[i].prefix, res->error);
    return failures[i].st;
}

static void on_answer(void *arg, const sg_http_result *res)
{
    webhook_pub *p = arg;
    char why[512];
    sg_status st = judge(res, why, sizeof why);
    sg_bus_ack_cb done = p->done;
    void *done_arg = p->arg;
    pub_drop(p->wb, p);
    /* Last: the callback may publish again or destroy the bus. */
    done(done_arg, st, why);
}

/* "//" and a host must follow the scheme (curl's parser alone would read
 * "http:///path" as host "path"); then curl judges the rest. */
static sg_status check_url(const char *scheme, const char *url, char *err, size_t errlen)
{
    const char *auth = url + strlen(scheme);
    if (strncmp(auth, "://", 3) != 0 || auth[3] == '\0' || strchr("/?#", auth[3]))
        return sg__bus_einval(err, errlen, "bad bus URL '%s': expected %s://host[:port]/path", url,
                              scheme);
    sg_status st = SG_OK;
    char *host = NULL;
    CURLU *u = curl_url();
    if (!u) return SG_ENOMEM;
    CURLUcode rc = curl_url_set(u, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK)
        st = sg__bus_einval(err, errlen, "bad bus URL '%s': %s", url, curl_url_strerror(rc));
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host || !*host)
        st = sg__bus_einval(err, errlen, "bad bus URL '%s': no host", url);
    curl_free(host);
    curl_url_cleanup(u);
    return st;
}

static sg_status webhook_create(void **state, const char *scheme, const char *url,
                                const sg_bus_env *env, char *err, size_t errlen)
{
    sg_status st;
    *state = NULL;
    if ((st = check_url(scheme, url, err, errlen)) != SG_OK) return st;
    if (!env->http)
        return sg__bus_einval(err, errlen, "webhook bus '%s' needs an HTTP client", url);
    webhook_bus *wb = sg_xcalloc(1, sizeof *wb);
    wb->http = env->http;
    wb->url = sg_xstrdup(url);
    *state = wb;
    return SG_OK;
}

static void webhook_cancel(void *state, void *pub)
{
    webhook_bus *wb = state;
    webhook_pub *p = pub;
    sg_http_cancel(wb->http, p->call); /* on_answer will not run */
    pub_drop(wb, p);
}

static void webhook_destroy(void *state)
{
    webhook_bus *wb = state;
    if (!wb) return;
    while (wb->pubs)
        webhook_cancel(wb, wb->pubs);
    free(wb->url);
    free(wb);
}

static sg_status webhook_publish(void *state, const sg_event_rec *ev, char *envelope, size_t len,
                                 long timeout_ms, sg_bus_ack_cb done, void *arg, void **pub)
{
    webhook_bus *wb = state;
    *pub = NULL;
    webhook_pub *p = sg_xcalloc(1, sizeof *p);
    p->wb = wb;
    p->envelope = envelope; /* taken */
    p->done = done;
    p->arg = arg;
    snprintf(p->hdr[0], sizeof p->hdr[0], "X-Event-Id: %s", ev->id);
    snprintf(p->hdr[1], sizeof p->hdr[1], "X-Saga-Id: %s", ev->saga_id);
    snprintf(p->hdr[2], sizeof p->hdr[2], "Idempotency-Key: %s", ev->id);
    snprintf(p->hdr[3], sizeof p->hdr[3], "X-Event-Topic: %.100s", ev->topic ? ev->topic : "");
    sg__bus_trace_ctx tc;
    sg__bus_trace(ev, &tc);
    char h_parent[16 + sizeof tc.parent], h_state[16 + sizeof tc.state];
    snprintf(h_parent, sizeof h_parent, "traceparent: %s", tc.parent);
    snprintf(h_state, sizeof h_state, "tracestate: %s", tc.state);
    const char *headers[7] = {p->hdr[0], p->hdr[1], p->hdr[2], p->hdr[3]};
    size_t nh = 4;
    if (tc.parent[0]) headers[nh++] = h_parent;
    if (tc.state[0]) headers[nh++] = h_state;
    headers[nh] = NULL;
    sg_http_request req = {
        .url = wb->url,
        .body = p->envelope,
        .body_len = len,
        .headers = headers,
        .timeout_ms = timeout_ms,
    };
    sg_status st = sg_http_post(wb->http, &req, on_answer, p, &p->call);
    if (st != SG_OK) {
        free(p->envelope);
        free(p);
        return st;
    }
    DL_APPEND(wb->pubs, p);
    *pub = p;
    return SG_OK;
}

static const char *const schemes[] = {"http", "https", NULL};

const struct sg_bus_ops sg_bus_webhook_ops = {
    .schemes = schemes,
    .name = "webhook",
    .create = webhook_create,
    .destroy = webhook_destroy,
    .publish = webhook_publish,
    .cancel = webhook_cancel,
};
