/* What the two halves of the stubs' HTTP server share: server.c (the
 * libmicrohttpd side) and routes.c (what each path answers). */
#ifndef STUBS_SERVER_INT_H
#define STUBS_SERVER_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sg/buf.h"
#include "stubs.h"

/* Hot path (/process under wrk): a pooled request struct, the body copied
 * into its reused buffer, one allocation for the recording ring, and a
 * shared prebuilt response; JSON is parsed only when the body mentions
 * "_stub" (or the endpoint needs a field from it). */

typedef enum {
    R_NOTFOUND,
    R_ANONYMIZE,
    R_PROCESS,
    R_EVENTS,
    R_REQUESTS,
    R_STATS,
    R_CONFIG,
    R_HEALTHZ,
    R_SVC, /* /svc/<name>: any named service */
} route;

typedef struct stub_req {
    struct stub_req *next; /* in the idle pool */
    struct MHD_Connection *conn;
    route rt;
    char name[STUB_NAME_MAX + 1]; /* R_SVC: the service name */
    char method[8];               /* of a service request */
    int received;                 /* the whole body is in; later calls only answer */
    int too_big;
    int fail;       /* fail_every picked this one */
    int out_status; /* nonzero: answer out with it, whatever the spec says */
    stub_spec spec;
    sg_buf body;
    sg_buf out;
} stub_req;

struct stub_server {
    struct MHD_Daemon *d;
    stub_timer *timer;
    stub_ring *ring;
    int quiet;
    int port;
    pthread_mutex_t cfg_lock;
    stub_spec cfg[STUB_SVC_COUNT];
    atomic_ullong seq[STUB_SVC_COUNT];   /* fail_every counters */
    atomic_ullong count[STUB_SVC_COUNT]; /* /_stats */
    atomic_ullong svc_count;             /* /_stats: every /svc/<name> */
    stub_names *names;                   /* /svc/<name>: ids and specs */
    pthread_mutex_t pool_lock;
    stub_req *pool;
    size_t pool_n;
    /* Prebuilt answers, shared by every connection (MHD refcounts them). */
    struct MHD_Response *r_process, *r_ack, *r_nonjson, *r_fail, *r_health;
    struct MHD_Response *r_404, *r_405, *r_413;
};

static inline int stub__is_service(route rt)
{
    return rt == R_ANONYMIZE || rt == R_PROCESS || rt == R_EVENTS;
}

static inline stub_svc stub__svc_of(route rt)
{
    return rt == R_ANONYMIZE ? STUB_SVC_ANONYMIZER
           : rt == R_EVENTS  ? STUB_SVC_TOKENIZER
                             : STUB_SVC_AI_MODEL;
}

/* ---- routes.c ---------------------------------------------------------- */

/* The route of url; for R_SVC, name (STUB_NAME_MAX + 1 bytes) gets the
 * service name. */
route stub__route_of(const char *url, char *name);
/* Builds the prebuilt answers into s; SG_ENOMEM if MHD cannot. */
sg_status stub__responses_create(stub_server *s);
void stub__responses_destroy(stub_server *s); /* any of them may be NULL */
/* Answers r once its whole body is in (MHD's handler return value). */
enum MHD_Result stub__answer(stub_server *s, stub_req *r, const char *method);
/* Answers a service request whose spec is settled, e.g. once its delay is
 * over. */
enum MHD_Result stub__answer_service(stub_server *s, stub_req *r);

/* ---- server.c ---------------------------------------------------------- */

/* Suspends r's connection for ms; then MHD calls the handler again, which
 * answers with stub__answer_service. 0 if the timer refuses (shutting
 * down): answer at once instead. */
int stub__delay(stub_server *s, stub_req *r, int64_t ms);

#endif
