/* "http://host:port/path" bus: POSTs each envelope to a webhook through the
 * shared sg_http_client; a 2xx answer acknowledges it. The event id goes in
 * X-Event-Id and Idempotency-Key so that the receiver can drop the
 * duplicates that retries produce. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus_int.h"
#include "sg/alloc.h"

typedef struct webhook_bus webhook_bus;

typedef struct webhook_pub {
    webhook_bus *wb; /* borrowed back-pointer */
    char *envelope;  /* owned; the request body, alive until done or cancel */
    size_t len;
    char hdr[4][128];   /* header lines; sg_http_post copies them anyway */
    sg_http_call *call; /* the client's; valid until on_answer runs */
    long timeout_ms;
    sg_bus_done_cb done;
    void *arg;
    struct webhook_pub *prev, *next;
} webhook_pub;

struct webhook_bus {
    sg_http_client *http; /* borrowed from the env */
    char *url;            /* owned */
    webhook_pub *pubs;    /* in flight */
};

static void pub_unlink(webhook_bus *wb, webhook_pub *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        wb->pubs = p->next;
    if (p->next) p->next->prev = p->prev;
    p->prev = p->next = NULL;
}

static void pub_free(webhook_pub *p)
{
    free(p->envelope);
    free(p);
}

static void on_answer(void *arg, const sg_http_result *res)
{
    webhook_pub *p = arg;
    char why[512] = "";
    sg_status st;
    switch (res->outcome) {
    case SG_HTTP_DONE:
        if (res->status >= 200 && res->status < 300) {
            st = SG_OK;
        } else {
            st = SG_EPROTO;
            snprintf(why, sizeof why, "webhook answered HTTP %ld", res->status);
        }
        break;
    case SG_HTTP_ERR_CONNECT:
        st = SG_EUNAVAIL;
        snprintf(why, sizeof why, "webhook unreachable: %s", res->error);
        break;
    case SG_HTTP_ERR_TIMEOUT:
        st = SG_ETIMEOUT;
        snprintf(why, sizeof why, "webhook %s", res->error);
        break;
    case SG_HTTP_ERR_TOO_BIG:
        st = SG_EPROTO;
        snprintf(why, sizeof why, "webhook answer too big: %s", res->error);
        break;
    default:
        st = SG_EIO;
        snprintf(why, sizeof why, "webhook transport error: %s", res->error);
        break;
    }
    sg_bus_done_cb done = p->done;
    void *done_arg = p->arg;
    pub_unlink(p->wb, p);
    pub_free(p);
    /* Last: the callback may publish again or destroy the bus. */
    done(done_arg, st, st == SG_OK ? NULL : why);
}

static sg_status webhook_create(void **state, const char *url, const sg_bus_env *env, char *err,
                                size_t errlen)
{
    *state = NULL;
    if (!env->http) {
        snprintf(err, errlen, "webhook bus '%s' needs an HTTP client", url);
        return SG_EINVAL;
    }
    webhook_bus *wb = sg_xcalloc(1, sizeof *wb);
    wb->http = env->http;
    wb->url = sg_xstrdup(url);
    *state = wb;
    return SG_OK;
}

static void webhook_destroy(void *state)
{
    webhook_bus *wb = state;
    if (!wb) return;
    while (wb->pubs) {
        webhook_pub *p = wb->pubs;
        sg_http_cancel(wb->http, p->call);
        pub_unlink(wb, p);
        pub_free(p);
    }
    free(wb->url);
    free(wb);
}

static sg_status webhook_publish(void *state, const sg_event_rec *ev, char *envelope, size_t len,
                                 long timeout_ms, sg_bus_done_cb done, void *arg, void **handle)
{
    webhook_bus *wb = state;
    sg_status st;
    *handle = NULL;
    webhook_pub *p = sg_xcalloc(1, sizeof *p);
    p->wb = wb;
    p->envelope = envelope; /* taken */
    p->len = len;
    p->timeout_ms = timeout_ms;
    p->done = done;
    p->arg = arg;
    snprintf(p->hdr[0], sizeof p->hdr[0], "X-Event-Id: %s", ev->id);
    snprintf(p->hdr[1], sizeof p->hdr[1], "X-Saga-Id: %s", ev->saga_id);
    snprintf(p->hdr[2], sizeof p->hdr[2], "Idempotency-Key: %s", ev->id);
    snprintf(p->hdr[3], sizeof p->hdr[3], "X-Event-Topic: %.100s", ev->topic ? ev->topic : "");
    const char *headers[] = {p->hdr[0], p->hdr[1], p->hdr[2], p->hdr[3], NULL};
    sg_http_request req = {
        .url = wb->url,
        .body = p->envelope,
        .body_len = p->len,
        .headers = headers,
        .timeout_ms = timeout_ms,
    };
    if ((st = sg_http_post(wb->http, &req, on_answer, p, &p->call)) != SG_OK) goto fail;
    p->next = wb->pubs;
    if (wb->pubs) wb->pubs->prev = p;
    wb->pubs = p;
    *handle = p;
    return SG_OK;

fail:
    pub_free(p);
    return st;
}

static void webhook_cancel(void *state, void *handle)
{
    webhook_bus *wb = state;
    webhook_pub *p = handle;
    sg_http_cancel(wb->http, p->call); /* on_answer will not run */
    pub_unlink(wb, p);
    pub_free(p);
}

const struct sg_bus_ops sg_bus_webhook_ops = {
    .version = SG_BUS_OPS_VERSION,
    .scheme = "http",
    .name = "webhook",
    .is_broker = 0,
    .create = webhook_create,
    .destroy = webhook_destroy,
    .publish = webhook_publish,
    .cancel = webhook_cancel,
    .ready = NULL,
};
