/* sg_http_client's calls: post and cancel, the per-host connection slots and
 * their waiting queues, completion, and the choice of transport by scheme:
 * plain http:// goes through the native HTTP/1.1 client (h1_*.c), anything
 * else (https://) through libcurl (curl_*.c).
 *
 * Finished calls go back to a small free list so that their buffers (and a
 * curl call's easy handle) are reused as well. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <utlist.h>

#include "http_int.h"
#include "sg/alloc.h"

#define DEFAULT_MAX_RESPONSE ((size_t)8 << 20)
#define DEFAULT_MAX_CONNECTIONS 4096L
#define FREE_LIST_MAX 64

/* ---------------------------------------------------------------- calls */

static void inflight_add(sg_http_client *c, sg_http_call *call)
{
    DL_PREPEND(c->inflight, call);
    c->ninflight++;
}

static void inflight_remove(sg_http_client *c, sg_http_call *call)
{
    DL_DELETE(c->inflight, call);
    call->prev = call->next = NULL;
    c->ninflight--;
}

static void call_free(sg_http_call *call)
{
    if (!call) return;
    if (call->curl.easy) curl_easy_cleanup(call->curl.easy);
    curl_slist_free_all(call->curl.headers);
    sg_buf_free(&call->h1.head);
    sg_buf_free(&call->body);
    free(call);
}

/* Returns a finished, aborted or never started call to the free list, or
 * frees it when the list is full or the client is closing. */
static void call_recycle(sg_http_client *c, sg_http_call *call)
{
    if (call->ops) call->ops->release(call);
    call->ops = NULL;
    call->cb = NULL;
    call->arg = NULL;
    call->state = CALL_IDLE;
    if (c->closing || c->nfree >= FREE_LIST_MAX) {
        call_free(call);
        return;
    }
    /* Keep small buffers for the next call; drop big ones. */
    if (call->body.cap > 64 * 1024)
        sg_buf_free(&call->body);
    else
        sg_buf_reset(&call->body);
    if (call->h1.head.cap > 16 * 1024) sg_buf_free(&call->h1.head);
    LL_PREPEND(c->free_list, call);
    c->nfree++;
}

static sg_http_call *call_get(sg_http_client *c)
{
    sg_http_call *call = c->free_list;
    if (call) {
        LL_DELETE(c->free_list, call); /* the head: O(1) */
        c->nfree--;
        call->next = NULL;
        return call;
    }
    call = sg_xcalloc(1, sizeof *call);
    sg_buf_init(&call->body, c->opt.max_response);
    sg_buf_init(&call->h1.head, (size_t)-1); /* built from our own, already bounded input */
    return call;
}

long sg__http_retry_after(const char *v)
{
    long ms;
    if (!v || !*v) return -1;
    if (v[0] >= '0' && v[0] <= '9' && strspn(v, "0123456789") == strlen(v)) {
        ms = strlen(v) > 7 ? SG_HTTP_RETRY_AFTER_MAX_MS : atol(v) * 1000L;
    } else {
        time_t when = curl_getdate(v, NULL);
        if (when < 0) return -1;
        time_t now = time(NULL);
        ms = when <= now ? 0 : (long)(when - now > 3600 ? 3600 : when - now) * 1000L;
    }
    return ms > SG_HTTP_RETRY_AFTER_MAX_MS ? SG_HTTP_RETRY_AFTER_MAX_MS : ms;
}

int sg__http_header_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

/* The slots of the host a URL names ("scheme://authority"), created on
 * first use. Definitions name few hosts, so the table stays small. */
static host_slots *host_of(sg_http_client *c, const char *url)
{
    const char *p = strstr(url, "://");
    size_t n = p ? (size_t)(p - url) + 3 : 0;
    n += strcspn(url + n, "/?#");
    host_slots *h = NULL;
    HASH_FIND(hh, c->hosts, url, n, h);
    if (h) return h;
    h = sg_xcalloc(1, sizeof *h);
    h->key = sg_xmemdup(url, n);
    HASH_ADD_KEYPTR(hh, c->hosts, h->key, n, h);
    return h;
}

/* Starts h's queued calls while it has free slots. */
static void promote(sg_http_client *c, host_slots *h)
{
    while (!c->closing && h->queue && h->nrunning < (size_t)c->opt.max_connections) {
        sg_http_call *call = h->queue;
        DL_DELETE2(h->queue, call, qprev, qnext);
        call->qprev = call->qnext = NULL;
        if (call->ops->start(c, call) != SG_OK) {
            inflight_remove(c, call);
            sg_http_result res = {.outcome = SG_HTTP_ERR_TRANSPORT,
                                  .error = "could not start the transfer",
                                  .retry_after_ms = -1};
            call->state = CALL_DONE;
            call->cb(call->arg, &res);
            call_recycle(c, call);
            continue;
        }
        call->state = CALL_RUNNING;
        h->nrunning++;
    }
}

void sg__http_finish(sg_http_client *c, sg_http_call *call, const sg_http_result *res)
{
    host_slots *h = call->host;
    inflight_remove(c, call);
    h->nrunning--;
    /* The call is no longer cancellable; the callback may start new calls
     * (they never get this struct: it is recycled only after cb returns)
     * or destroy the client (then recycling frees it, and promote stops at
     * c->closing before touching the freed host). */
    call->state = CALL_DONE;
    call->cb(call->arg, res);
    call_recycle(c, call);
    promote(c, h);
}

/* --------------------------------------------------------------- client */

sg_status sg_http_client_create(sg_http_client **out, uv_loop_t *loop,
                                const sg_http_client_options *opt)
{
    sg_http_client *c = NULL;
    *out = NULL;
    if (!loop) return SG_EINVAL;
    c = sg_xcalloc(1, sizeof *c);
    c->loop = loop;
    if (opt) c->opt = *opt;
    if (!c->opt.max_response) c->opt.max_response = DEFAULT_MAX_RESPONSE;
    if (c->opt.max_connections <= 0) c->opt.max_connections = DEFAULT_MAX_CONNECTIONS;
    sg_status st = sg__http_multi_open(c);
    if (st != SG_OK) {
        free(c);
        return st;
    }
    /* We never run more than max_connections calls per host, so curl's own
     * per-host cap is only a backstop and never queues behind our back. */
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, c->opt.max_connections);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, c->opt.max_connections);
    *out = c;
    return SG_OK;
}

void sg_http_client_destroy(sg_http_client *c)
{
    if (!c) return;
    /* Cancel everything; callbacks do not run, queued calls never start. */
    c->closing = 1;
    while (c->inflight)
        sg_http_cancel(c, c->inflight);
    sg_http_call *call, *ctmp;
    LL_FOREACH_SAFE(c->free_list, call, ctmp)
    {
        call_free(call);
    }
    c->free_list = NULL;
    c->nfree = 0;
    host_slots *h, *htmp;
    HASH_ITER(hh, c->hosts, h, htmp)
    {
        sg__h1_host_close(h);
        HASH_DEL(c->hosts, h);
        free(h->key);
        free(h->name);
        free(h);
    }
    free(c->rbuf); /* no connection reads any more: all are closing */
    c->rbuf = NULL;
    sg__http_multi_close(c); /* frees c from the timer's close callback */
}

sg_status sg_http_post(sg_http_client *c, const sg_http_request *req, sg_http_cb cb, void *arg,
                       sg_http_call **out)
{
    sg_status st = SG_EINVAL;
    sg_http_call *call = NULL;
    if (out) *out = NULL;
    if (!c || !req || !req->url || !cb) return SG_EINVAL;
    if (c->closing) return SG_ECLOSED;

    call = call_get(c);
    call->cb = cb;
    call->arg = arg;
    call->timeout_ms = req->timeout_ms;
    sg_buf_reset(&call->body);
    call->body.max = c->opt.max_response;
    call->host = host_of(c, req->url);

    /* Plain http:// natively; SG_ETYPE from it means a URL it leaves to
     * libcurl (user info, say), which also reports unknown schemes. */
    call->ops = &sg__http_curl_ops;
    if (!c->curl_only && strncasecmp(req->url, "http://", 7) == 0) {
        call->ops = &sg__http_h1_ops;
        st = call->ops->prepare(c, call, req);
        if (st == SG_ETYPE) {
            call->ops->release(call);
            call->ops = &sg__http_curl_ops;
        }
    }
    if (call->ops == &sg__http_curl_ops) st = call->ops->prepare(c, call, req);
    if (st != SG_OK) goto fail;

    host_slots *h = call->host;
    if (h->nrunning >= (size_t)c->opt.max_connections) {
        call->state = CALL_QUEUED;
        DL_APPEND2(h->queue, call, qprev, qnext);
    } else {
        /* Starting never calls back from here. */
        if ((st = call->ops->start(c, call)) != SG_OK) goto fail;
        call->state = CALL_RUNNING;
        h->nrunning++;
    }
    inflight_add(c, call);
    if (out) *out = call;
    return SG_OK;

fail:
    if (call) call_recycle(c, call);
    return st;
}

void sg_http_cancel(sg_http_client *c, sg_http_call *call)
{
    /* A call whose callback is running (or ran) is no longer cancellable. */
    if (!c || !call) return;
    host_slots *h = call->host;
    if (call->state == CALL_QUEUED) {
        DL_DELETE2(h->queue, call, qprev, qnext); /* O(1): no walk */
        call->qprev = call->qnext = NULL;
        inflight_remove(c, call);
        call_recycle(c, call);
        return;
    }
    if (call->state != CALL_RUNNING) return;
    call->ops->abort(c, call);
    inflight_remove(c, call);
    h->nrunning--;
    call_recycle(c, call);
    promote(c, h); /* a slot is free */
}

void sg__http_client_curl_only(sg_http_client *c)
{
    c->curl_only = 1;
}

size_t sg_http_inflight(const sg_http_client *c)
{
    return c ? c->ninflight : 0;
}
