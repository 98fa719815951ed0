/* sg_http_client's calls: post and cancel, the per-host connection slots and
 * their waiting queues, and completion. The libcurl multi <-> libuv glue
 * (sockets, timer) is curl_uv.c's.
 *
 * Connections live in the multi handle's connection cache, so consecutive
 * calls to the same host reuse a keep-alive connection. Finished calls go
 * back to a small free list so that their easy handle (and its buffers) is
 * reused as well. */
#include <pthread.h>
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

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

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
    if (call->easy) curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->headers);
    sg_buf_free(&call->body);
    free(call);
}

/* Returns a finished (already removed from the multi) call to the free list,
 * or frees it when the list is full or the client is closing. */
static void call_recycle(sg_http_client *c, sg_http_call *call)
{
    curl_slist_free_all(call->headers);
    call->headers = NULL;
    call->cb = NULL;
    call->arg = NULL;
    call->state = CALL_IDLE;
    if (c->closing || c->nfree >= FREE_LIST_MAX) {
        call_free(call);
        return;
    }
    /* Keep small answer buffers for the next call; drop big ones. */
    if (call->body.cap > 64 * 1024)
        sg_buf_free(&call->body);
    else
        sg_buf_reset(&call->body);
    LL_PREPEND(c->free_list, call);
    c->nfree++;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    sg_http_call *call = userp;
    size_t n = size * nmemb;
    if (sg_buf_add(&call->body, data, n) != SG_OK) {
        /* Returning a short count makes curl abort with CURLE_WRITE_ERROR. */
        call->too_big = 1;
        return 0;
    }
    return n;
}

/* Retry-After of the answer: delta-seconds or an HTTP date (RFC 9110),
 * in ms from now, capped; -1 if absent or not understood. */
static long retry_after_ms(CURL *easy)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
        return -1;
    const char *v = h->value;
    long ms;
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

static void complete(sg_http_client *c, sg_http_call *call, CURLcode rc)
{
    sg_http_result res = {.retry_after_ms = -1};
    long request_size = 0;
    curl_easy_getinfo(call->easy, CURLINFO_REQUEST_SIZE, &request_size);
    char reason[CURL_ERROR_SIZE + 128];
    const char *detail = call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc);

    if (rc == CURLE_OK) {
        res.outcome = SG_HTTP_DONE;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.body = call->body.ptr ? call->body.ptr : "";
        res.body_len = call->body.len;
        res.retry_after_ms = retry_after_ms(call->easy);
    } else if (call->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        res.outcome = SG_HTTP_ERR_TOO_BIG;
        snprintf(reason, sizeof reason, "response larger than %zu bytes", c->opt.max_response);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        res.outcome = SG_HTTP_ERR_TIMEOUT;
        snprintf(reason, sizeof reason, "timed out after %ld ms", call->timeout_ms);
    } else if ((rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                rc == CURLE_COULDNT_RESOLVE_PROXY) &&
               request_size == 0) {
        /* Only when nothing went out: curl retries a request whose
         * keep-alive connection died on a fresh one, and if that connect
         * fails the first may still have arrived (a transport error). */
        res.outcome = SG_HTTP_ERR_CONNECT;
        snprintf(reason, sizeof reason, "%s", detail);
    } else {
        res.outcome = SG_HTTP_ERR_TRANSPORT;
        snprintf(reason, sizeof reason, "%s", detail);
    }
    if (res.outcome != SG_HTTP_DONE) res.error = reason;

    /* The call is no longer cancellable; the callback may start new calls
     * (they never get this struct: it is recycled only after cb returns)
     * or destroy the client (then recycling frees it). */
    call->state = CALL_DONE;
    call->cb(call->arg, &res);
    call_recycle(c, call);
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
        if (curl_multi_add_handle(c->multi, call->easy) != CURLM_OK) {
            inflight_remove(c, call);
            complete(c, call, CURLE_FAILED_INIT);
            continue;
        }
        call->state = CALL_RUNNING;
        h->nrunning++;
    }
}

void sg__http_drain(sg_http_client *c)
{
    CURLMsg *msg;
    int left;
    /* Nothing is cached across a callback: it may post, cancel or destroy. */
    while (!c->closing && (msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        char *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        sg_http_call *call = (sg_http_call *)priv;
        curl_multi_remove_handle(c->multi, easy);
        inflight_remove(c, call);
        host_slots *h = call->host;
        h->nrunning--;
        complete(c, call, rc);
        promote(c, h);
    }
}

/* --------------------------------------------------------------- client */

sg_status sg_http_client_create(sg_http_client **out, uv_loop_t *loop,
                                const sg_http_client_options *opt)
{
    sg_http_client *c = NULL;
    *out = NULL;
    if (!loop) return SG_EINVAL;
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) return SG_EIO;

    c = sg_xcalloc(1, sizeof *c);
    c->loop = loop;
    if (opt) c->opt = *opt;
    if (!c->opt.max_response) c->opt.max_response = DEFAULT_MAX_RESPONSE;
    if (c->opt.max_connections <= 0) c->opt.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (sg__http_multi_open(c) != SG_OK) {
        free(c);
        return SG_ENOMEM;
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
        HASH_DEL(c->hosts, h);
        free(h->key);
        free(h);
    }
    sg__http_multi_close(c); /* frees c from the timer's close callback */
}

/* Case-insensitive "does this header line set Name?". */
static int header_is(const char *line, const char *name)
{
    size_t n = strlen(name);
    return strncasecmp(line, name, n) == 0 && line[n] == ':';
}

static sg_http_call *call_get(sg_http_client *c)
{
    sg_http_call *call = c->free_list;
    if (call) {
        LL_DELETE(c->free_list, call); /* the head: O(1) */
        c->nfree--;
        call->next = NULL;
        curl_easy_reset(call->easy);
        return call;
    }
    CURL *easy = curl_easy_init();
    if (!easy) return NULL;
    call = sg_xcalloc(1, sizeof *call);
    call->easy = easy;
    sg_buf_init(&call->body, c->opt.max_response);
    return call;
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
    if (!call) {
        st = SG_ENOMEM;
        goto fail;
    }
    call->cb = cb;
    call->arg = arg;
    call->timeout_ms = req->timeout_ms;
    call->too_big = 0;
    call->errbuf[0] = '\0';
    sg_buf_reset(&call->body);
    call->body.max = c->opt.max_response;

    /* Headers: ours first unless the request overrides them; "Expect:" with
     * no value stops curl from waiting for 100-continue on big bodies. */
    int has_ct = 0;
    for (const char *const *h = req->headers; h && *h; h++)
        if (header_is(*h, "Content-Type")) has_ct = 1;
    struct curl_slist *hl = NULL, *tmp;
    const char *defaults[] = {has_ct ? NULL : "Content-Type: application/json", "Expect:"};
    for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
        if (!defaults[i]) continue;
        if (!(tmp = curl_slist_append(hl, defaults[i]))) goto oom;
        hl = tmp;
    }
    for (const char *const *h = req->headers; h && *h; h++) {
        if (!(tmp = curl_slist_append(hl, *h))) goto oom;
        hl = tmp;
    }
    call->headers = hl;

    CURL *e = call->easy;
    CURLcode rc = CURLE_OK;
#define SET(opt, val)                                                                              \
    if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, val)
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    /* The easy handle is reused: every call sets its method afresh. */
    int get = req->method && strcmp(req->method, "GET") == 0;
    int custom = req->method && !get && strcmp(req->method, "POST") != 0;
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    SET(CURLOPT_POSTFIELDS, req->body ? req->body : ""); /* borrowed */
    if (get) SET(CURLOPT_HTTPGET, 1L);
    SET(CURLOPT_CUSTOMREQUEST, custom ? req->method : NULL);
    SET(CURLOPT_HTTPHEADER, call->headers);
    SET(CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 0L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    /* Answers are small JSON; a small receive buffer keeps thousands of
     * calls in flight cheap (curl allocates one per running transfer). */
    SET(CURLOPT_BUFFERSIZE, 4096L);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->opt.max_response);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, call);
    SET(CURLOPT_ERRORBUFFER, call->errbuf);
    SET(CURLOPT_PRIVATE, call);
#undef SET
    if (rc != CURLE_OK) {
        st = rc == CURLE_OUT_OF_MEMORY ? SG_ENOMEM : SG_EINVAL;
        goto fail;
    }
    host_slots *h = call->host = host_of(c, req->url);
    if (h->nrunning >= (size_t)c->opt.max_connections) {
        call->state = CALL_QUEUED;
        DL_APPEND2(h->queue, call, qprev, qnext);
    } else {
        /* Adding only arms curl's timer; no callback can run from here. */
        if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
            st = SG_EIO;
            goto fail;
        }
        call->state = CALL_RUNNING;
        h->nrunning++;
    }
    inflight_add(c, call);
    if (out) *out = call;
    return SG_OK;

oom:
    curl_slist_free_all(hl);
    st = SG_ENOMEM;
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
    /* Also drops a DONE message still queued for this handle. */
    curl_multi_remove_handle(c->multi, call->easy);
    inflight_remove(c, call);
    h->nrunning--;
    call_recycle(c, call);
    promote(c, h); /* a slot is free */
}

size_t sg_http_inflight(const sg_http_client *c)
{
    return c ? c->ninflight : 0;
}
