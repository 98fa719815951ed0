/* Asynchronous HTTP client: libcurl multi driven by the libuv loop
 * (uv_poll per socket, one uv_timer), reusing keep-alive connections.
 * Every function here must be called on the loop thread. */
#ifndef SG_HTTP_CLIENT_H
#define SG_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "sg/status.h"

typedef struct sg_http_client sg_http_client;
typedef struct sg_http_call sg_http_call;

typedef struct sg_http_client_options {
    size_t max_response; /* cap on an answer body; default 8 MiB */
    /* Calls running at once per downstream host (scheme://host:port);
     * default 4096. Further calls to that host wait for a slot before their
     * timeout starts, and never hold up calls to other hosts. */
    long max_connections;
    /* https:// checks the server's certificate and host name, always:
     * against the CA certificates (PEM) in this file when set, else the
     * system's. Borrowed: outlives the client. */
    const char *ca_file;
} sg_http_client_options;

typedef enum {
    SG_HTTP_DONE = 0,      /* got a complete answer (any status) */
    SG_HTTP_ERR_CONNECT,   /* could not connect / resolve; nothing was sent */
    SG_HTTP_ERR_TIMEOUT,   /* the attempt's timeout passed */
    SG_HTTP_ERR_TOO_BIG,   /* body over max_response; transfer aborted */
    SG_HTTP_ERR_TRANSPORT, /* connection dropped, bad HTTP, ... */
} sg_http_outcome;

typedef struct sg_http_result {
    sg_http_outcome outcome;
    long status;      /* HTTP status when outcome == SG_HTTP_DONE */
    const char *body; /* borrowed for the callback's duration; NUL-terminated */
    size_t body_len;
    const char *error; /* human-readable reason when outcome != DONE */
    /* The answer's Retry-After (seconds or an HTTP date) in milliseconds,
     * at most SG_HTTP_RETRY_AFTER_MAX_MS; -1 when absent or unusable. */
    long retry_after_ms;
} sg_http_result;

#define SG_HTTP_RETRY_AFTER_MAX_MS (3600L * 1000)

/* Runs exactly once per successful sg_http_post, on the loop thread, unless
 * the call was cancelled. */
typedef void (*sg_http_cb)(void *arg, const sg_http_result *res);

typedef struct sg_http_request {
    const char *url;
    const char *body; /* borrowed: must stay valid until cb or cancel */
    size_t body_len;
    const char *const *headers; /* NULL-terminated "Name: value" list, copied */
    long timeout_ms;            /* whole attempt; connect included */
    const char *method;         /* NULL = POST; GET sends no body; others send it */
} sg_http_request;

/* `loop` borrowed; must outlive the client. */
sg_status sg_http_client_create(sg_http_client **out, uv_loop_t *loop,
                                const sg_http_client_options *opt /* NULL = defaults */);
/* Cancels every call (their callbacks do not run) and closes the handles;
 * the loop must run afterwards so that close callbacks fire. NULL-safe. */
void sg_http_client_destroy(sg_http_client *c);

/* Starts req->method (POST by default) to req->url with Content-Type:
 * application/json (unless req->headers set one). Redirects are
 * not followed. *call (may be NULL) gets a handle for sg_http_cancel, valid
 * until cb runs. On failure cb never runs. */
sg_status sg_http_post(sg_http_client *c, const sg_http_request *req, sg_http_cb cb, void *arg,
                       sg_http_call **call);
/* Aborts the call; its callback will not run. */
void sg_http_cancel(sg_http_client *c, sg_http_call *call);
/* Calls in flight: queued for a slot or running. */
size_t sg_http_inflight(const sg_http_client *c);

#endif
