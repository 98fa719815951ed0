/* The libcurl transport's calls (https:// and whatever the native one
 * leaves to it): an easy handle per call, configured from the request,
 * added to the multi when the call gets its slot, and completed here when
 * curl reports it done. Sockets and the timer are curl_uv.c's.
 *
 * Connections live in the multi handle's connection cache, so consecutive
 * calls to the same host reuse a keep-alive connection; the easy handle
 * stays with the call struct across reuse. */
#include <stdio.h>
#include <string.h>

#include "http_int.h"

static size_t on_write(char *data, size_t size, size_t nmemb, void *userp)
{
    sg_http_call *call = userp;
    size_t n = size * nmemb;
    if (sg_buf_add(&call->body, data, n) != SG_OK) {
        /* Returning a short count makes curl abort with CURLE_WRITE_ERROR. */
        call->curl.too_big = 1;
        return 0;
    }
    return n;
}

static long retry_after_ms(CURL *easy)
{
    struct curl_header *h = NULL;
    if (curl_easy_header(easy, "Retry-After", 0, CURLH_HEADER, -1, &h) != CURLHE_OK || !h)
        return -1;
    return sg__http_retry_after(h->value);
}

static void complete(sg_http_client *c, sg_http_call *call, CURLcode rc)
{
    sg_http_result res = {.retry_after_ms = -1};
    long request_size = 0;
    curl_easy_getinfo(call->curl.easy, CURLINFO_REQUEST_SIZE, &request_size);
    char reason[CURL_ERROR_SIZE + 128];
    const char *detail = call->curl.errbuf[0] ? call->curl.errbuf : curl_easy_strerror(rc);

    if (rc == CURLE_OK) {
        res.outcome = SG_HTTP_DONE;
        curl_easy_getinfo(call->curl.easy, CURLINFO_RESPONSE_CODE, &res.status);
        res.body = call->body.ptr ? call->body.ptr : "";
        res.body_len = call->body.len;
        res.retry_after_ms = retry_after_ms(call->curl.easy);
    } else if (call->curl.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        res.outcome = SG_HTTP_ERR_TOO_BIG;
        snprintf(reason, sizeof reason, "response larger than %zu bytes", c->opt.max_response);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        res.outcome = SG_HTTP_ERR_TIMEOUT;
        snprintf(reason, sizeof reason, "timed out after %ld ms", call->timeout_ms);
    } else if ((rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_PEER_FAILED_VERIFICATION ||
                rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_SSL_CACERT_BADFILE) &&
               request_size == 0) {
        /* Only when nothing went out: curl retries a request whose
         * keep-alive connection died on a fresh one, and if that connect
         * fails the first may still have arrived (a transport error). A
         * server whose certificate is refused never saw the request. */
        res.outcome = SG_HTTP_ERR_CONNECT;
        snprintf(reason, sizeof reason, "%s", detail);
    } else {
        res.outcome = SG_HTTP_ERR_TRANSPORT;
        snprintf(reason, sizeof reason, "%s", detail);
    }
    if (res.outcome != SG_HTTP_DONE) res.error = reason;
    sg__http_finish(c, call, &res);
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
        curl_multi_remove_handle(c->multi, easy);
        complete(c, (sg_http_call *)priv, rc);
    }
}

static sg_status curl_prepare(sg_http_client *c, sg_http_call *call, const sg_http_request *req)
{
    if (call->curl.easy) {
        curl_easy_reset(call->curl.easy);
    } else if (!(call->curl.easy = curl_easy_init())) {
        return SG_ENOMEM;
    }
    call->curl.too_big = 0;
    call->curl.errbuf[0] = '\0';

    /* Headers: ours first unless the request overrides them; "Expect:" with
     * no value stops curl from waiting for 100-continue on big bodies. */
    int has_ct = 0;
    for (const char *const *h = req->headers; h && *h; h++)
        if (sg__http_header_is(*h, "Content-Type")) has_ct = 1;
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
    call->curl.headers = hl;

    CURL *e = call->curl.easy;
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
    SET(CURLOPT_HTTPHEADER, call->curl.headers);
    SET(CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : 0L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    /* curl's defaults, said out loud: a reset handle must never lose them. */
    SET(CURLOPT_SSL_VERIFYPEER, 1L);
    SET(CURLOPT_SSL_VERIFYHOST, 2L);
    if (c->opt.ca_file) SET(CURLOPT_CAINFO, c->opt.ca_file);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_TCP_NODELAY, 1L);
    /* Answers are small JSON; a small receive buffer keeps thousands of
     * calls in flight cheap (curl allocates one per running transfer). */
    SET(CURLOPT_BUFFERSIZE, 4096L);
    SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)c->opt.max_response);
    SET(CURLOPT_WRITEFUNCTION, on_write);
    SET(CURLOPT_WRITEDATA, call);
    SET(CURLOPT_ERRORBUFFER, call->curl.errbuf);
    SET(CURLOPT_PRIVATE, call);
#undef SET
    if (rc != CURLE_OK) return rc == CURLE_OUT_OF_MEMORY ? SG_ENOMEM : SG_EINVAL;
    return SG_OK;

oom:
    curl_slist_free_all(hl);
    return SG_ENOMEM;
}

static sg_status curl_start(sg_http_client *c, sg_http_call *call)
{
    /* Adding only arms curl's timer; no callback can run from here. */
    return curl_multi_add_handle(c->multi, call->curl.easy) == CURLM_OK ? SG_OK : SG_EIO;
}

static void curl_abort(sg_http_client *c, sg_http_call *call)
{
    /* Also drops a DONE message still queued for this handle. */
    curl_multi_remove_handle(c->multi, call->curl.easy);
}

static void curl_release(sg_http_call *call)
{
    curl_slist_free_all(call->curl.headers);
    call->curl.headers = NULL;
}

const http_ops sg__http_curl_ops = {
    .prepare = curl_prepare,
    .start = curl_start,
    .abort = curl_abort,
    .release = curl_release,
};
