/* Private to src/http: the client's and a call's layout, shared by client.c
 * (public API, host slots, dispatch, completion) and the two transports
 * behind struct http_ops, chosen per call by the URL's scheme:
 *   - h1_*.c: plain http:// on libuv directly (h1_call.c builds the request,
 *     h1_conn.c runs it on a pooled keep-alive connection, h1_parse.c reads
 *     the answer);
 *   - curl_*.c: everything else (https://) through libcurl multi
 *     (curl_call.c: easy handles and completion; curl_uv.c: sockets, timer).
 * No other module includes it. Everything here is loop-thread only.
 *
 * Lists are utlist's: DL_* (O(1) append and delete) for the in-flight list,
 * each host's waiting queue, its idle connections and the poll contexts;
 * LL_* for the free list, used only at its head. */
#ifndef SG_HTTP_INT_H
#define SG_HTTP_INT_H

#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <uthash.h>
#include <uv.h>

#include "h1_parse.h"
#include "sg/buf.h"
#include "sg/http_client.h"

/* QUEUED: waiting for a connection slot; its timeout has not started, so a
 * burst of calls behind a slow service does not burn their attempts. */
typedef enum { CALL_IDLE, CALL_QUEUED, CALL_RUNNING, CALL_DONE } call_state;

typedef struct h1_conn h1_conn; /* h1_conn.c's: one keep-alive connection */

#define H1_ADDRS_MAX 4

/* Per downstream host: the calls running and the FIFO of those waiting, so
 * a slow service fills only its own slots. Freed with the client. */
typedef struct host_slots {
    char *key; /* "scheme://authority", owned */
    size_t nrunning;
    sg_http_call *queue; /* QUEUED calls, oldest first (qprev/qnext) */
    /* Native transport only (http:// hosts). */
    char *name;    /* owned: host name or address, without brackets */
    int port;      /* 0 until h1_call.c parsed the key */
    h1_conn *idle; /* idle keep-alive connections, most recent first */
    struct sockaddr_storage addrs[H1_ADDRS_MAX]; /* resolved, IPv4 first */
    int naddrs;
    uint64_t addrs_until; /* uv_now() after which a name is resolved again */
    UT_hash_handle hh;
} host_slots;

typedef struct http_ops http_ops;

struct sg_http_call {
    const http_ops *ops; /* the transport running it */
    sg_buf body;         /* owned; the answer, capped at max_response */
    sg_http_cb cb;
    void *arg;
    long timeout_ms;
    call_state state;
    sg_http_call *prev, *next;      /* client's in-flight list, or free list (next only) */
    sg_http_call *qprev, *qnext;    /* its host's waiting queue while QUEUED */
    host_slots *host;               /* borrowed from the client's table */
    struct {                        /* curl_call.c's */
        CURL *easy;                 /* owned; kept across reuse, NULL until needed */
        struct curl_slist *headers; /* owned; rebuilt per call */
        int too_big;                /* the write callback refused data */
        char errbuf[CURL_ERROR_SIZE];
    } curl;
    struct {               /* h1_call.c's and h1_conn.c's */
        sg_buf head;       /* owned: request line and headers, kept across reuse */
        const char *body;  /* borrowed from the request */
        size_t body_len;   /* 0 for GET */
        int no_body;       /* HEAD: the answer has no body */
        uint64_t deadline; /* uv_now() when the attempt times out; 0 = never */
        uint64_t t0;       /* uv_now() at the attempt's start */
        int sent;          /* a byte of the request went out on some connection */
        int retried;       /* already retried once on a fresh connection */
        int addr;          /* index in host->addrs being tried */
        h1_conn *conn;     /* borrowed: the connection running it */
    } h1;
};

/* A transport. Methods get calls of their own (call->ops). */
struct http_ops {
    /* Copies what the call needs from req (sg_http_post runs it before the
     * call is queued). On failure the call is released and cb never runs. */
    sg_status (*prepare)(sg_http_client *c, sg_http_call *call, const sg_http_request *req);
    /* The call got its slot: starts its attempt and timeout. The outcome
     * comes later through sg__http_finish, never from inside start; a
     * failure returned here means the attempt never began. */
    sg_status (*start)(sg_http_client *c, sg_http_call *call);
    /* Aborts a RUNNING call: no callback, its connection is not reused. */
    void (*abort)(sg_http_client *c, sg_http_call *call);
    /* Drops per-call state of a finished or aborted call before it is
     * reused (by either transport) or freed; keeps reusable memory. */
    void (*release)(sg_http_call *call);
};

extern const http_ops sg__http_curl_ops;
extern const http_ops sg__http_h1_ops;

typedef struct sock_ctx sock_ctx; /* curl_uv.c's: one uv_poll_t per socket */

struct sg_http_client {
    uv_loop_t *loop;  /* borrowed */
    CURLM *multi;     /* owned; opened and closed by curl_uv.c */
    uv_timer_t timer; /* curl's single timeout; its close callback frees the client */
    sg_http_client_options opt;
    sg_http_call *inflight; /* queued and running calls */
    size_t ninflight;
    host_slots *hosts;       /* by key */
    sg_http_call *free_list; /* idle calls, with whatever buffers they kept */
    size_t nfree;
    sock_ctx *socks; /* open poll contexts, so that closing can close them */
    char *rbuf;      /* owned: h1_conn.c's read buffer, shared by its connections */
    int h1_starting; /* inside sg__h1_start: failures are reported on the next tick */
    int curl_only;   /* sg__http_client_curl_only ran */
    int closing;     /* sg_http_client_destroy ran; no more work */
    int in_cleanup;  /* inside curl_multi_cleanup: its socket hash is going */
};

/* curl_uv.c: creates c->multi, the timer and the multi's socket and timer
 * callbacks. Last fallible step of creating a client: on success the client
 * may only be freed by sg__http_multi_close. On failure nothing is left. */
sg_status sg__http_multi_open(sg_http_client *c);
/* curl_uv.c: cleans up the multi, closes every poll context and the timer;
 * the timer's close callback frees c. Calls must be gone already. */
void sg__http_multi_close(sg_http_client *c);

/* curl_call.c: completes every finished transfer (curl_uv.c calls it after
 * handing readiness to curl). Callbacks may post, cancel or destroy. */
void sg__http_drain(sg_http_client *c);

/* client.c: the end of a RUNNING call: frees its slot, runs its callback
 * (which may post, cancel or destroy the client), recycles it and starts
 * queued calls. The transport must not touch the call afterwards. */
void sg__http_finish(sg_http_client *c, sg_http_call *call, const sg_http_result *res);
/* client.c: a Retry-After value (delta-seconds or an HTTP date) in ms from
 * now, capped at SG_HTTP_RETRY_AFTER_MAX_MS; -1 if not understood. */
long sg__http_retry_after(const char *v);
/* client.c: every later call goes through libcurl, http:// too, so that
 * the unit tests can hold both transports to the same behaviour. */
void sg__http_client_curl_only(sg_http_client *c);
/* client.c: whether the header line sets `name` (case-insensitive). */
int sg__http_header_is(const char *line, const char *name);

/* h1_conn.c: the native transport's start and abort (see http_ops). */
sg_status sg__h1_start(sg_http_client *c, sg_http_call *call);
void sg__h1_abort(sg_http_client *c, sg_http_call *call);
/* h1_conn.c: closes every idle connection of h (client destroy). */
void sg__h1_host_close(host_slots *h);

#endif
