/* Private to src/http: the client's and a call's layout, shared by client.c
 * (calls, host slots, completion) and curl_uv.c (the libcurl multi <-> libuv
 * glue). No other module includes it. Everything here is loop-thread only.
 *
 * Lists are utlist's: DL_* (O(1) append and delete) for the in-flight list,
 * each host's waiting queue and the poll contexts; LL_* for the free list,
 * used only at its head. */
#ifndef SG_HTTP_INT_H
#define SG_HTTP_INT_H

#include <curl/curl.h>
#include <uthash.h>
#include <uv.h>

#include "sg/buf.h"
#include "sg/http_client.h"

/* QUEUED: waiting for a connection slot; its timeout has not started, so a
 * burst of calls behind a slow service does not burn their attempts. */
typedef enum { CALL_IDLE, CALL_QUEUED, CALL_RUNNING, CALL_DONE } call_state;

/* Per downstream host: the calls running and the FIFO of those waiting, so
 * a slow service fills only its own slots. Freed with the client. */
typedef struct host_slots {
    char *key; /* "scheme://authority", owned */
    size_t nrunning;
    sg_http_call *queue; /* QUEUED calls, oldest first (qprev/qnext) */
    UT_hash_handle hh;
} host_slots;

struct sg_http_call {
    CURL *easy;                 /* owned; kept across reuse */
    struct curl_slist *headers; /* owned; rebuilt per call */
    sg_buf body;                /* owned; the answer, capped at max_response */
    sg_http_cb cb;
    void *arg;
    long timeout_ms;
    int too_big; /* the write callback refused data */
    call_state state;
    char errbuf[CURL_ERROR_SIZE];
    sg_http_call *prev, *next;   /* client's in-flight list, or free list (next only) */
    sg_http_call *qprev, *qnext; /* its host's waiting queue while QUEUED */
    host_slots *host;            /* borrowed from the client's table */
};

typedef struct sock_ctx sock_ctx; /* curl_uv.c's: one uv_poll_t per socket */

struct sg_http_client {
    uv_loop_t *loop;  /* borrowed */
    CURLM *multi;     /* owned; opened and closed by curl_uv.c */
    uv_timer_t timer; /* curl's single timeout; its close callback frees the client */
    sg_http_client_options opt;
    sg_http_call *inflight; /* queued and running calls */
    size_t ninflight;
    host_slots *hosts;       /* by key */
    sg_http_call *free_list; /* idle calls with a reusable easy handle */
    size_t nfree;
    sock_ctx *socks; /* open poll contexts, so that closing can close them */
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

/* client.c: completes every finished transfer (curl_uv.c calls it after
 * handing readiness to curl). Callbacks may post, cancel or destroy. */
void sg__http_drain(sg_http_client *c);

#endif
