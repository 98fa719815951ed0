/* The HTTP server's private parts, shared by server.c (MHD callbacks,
 * listener, lifecycle), start.c (POST /saga), reads.c (GET routes) and
 * response.c (queueing JSON answers). */
#ifndef SG_API_SERVER_INT_H
#define SG_API_SERVER_INT_H

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "sg/api.h"
#include "sg/auth.h"
#include "api_int.h"
#include "assets_int.h"
#include "sg/buf.h"

typedef struct start_ctx start_ctx;

typedef struct reader_slot {
    sg_store_reader *reader; /* owned */
    struct reader_slot *prev, *next;
} reader_slot;

struct sg_api {
    struct MHD_Daemon *mhd;
    sg_engine *engine; /* borrowed */
    sg_store *store;   /* borrowed */
    sg_bus *bus;       /* borrowed; may be NULL */
    size_t max_body;
    uint16_t port;
    atomic_int quiesced; /* sg_api_quiesce was called: new connections are refused */

    pthread_key_t reader_key; /* this thread's sg_store_reader */
    int have_key;
    pthread_mutex_t readers_mu;
    reader_slot *readers; /* every reader opened, closed in destroy */

    atomic_size_t pending; /* starts handed to the engine, answer not yet sent */
    int closing;           /* under sg__start_mu: refuse new submits */
    start_ctx *waiting;    /* under sg__start_mu: suspended starts */

    /* Bearer tokens (borrowed; NULL: none asked for) and, for HTTPS, PEM
     * copies that MHD reads at start (owned; the key is wiped when freed). */
    sg_auth *auth;
    char *tls_cert, *tls_key;
};

/* ---- auth_gate.c: bearer tokens ------------------------------------------- */

/* First call for a request: 0 if it may go on (an open route, no tokens
 * configured, or a right token); 1 if it was answered 401 (*ret: MHD's
 * result to return). */
int sg__auth_gate(sg_api *a, struct MHD_Connection *c, sg_api_route_kind route,
                  enum MHD_Result *ret);

/* ---- response.c: every answer is JSON ------------------------------------ */

/* Queue body (taken, malloc'd) with Content-Type: application/json, and
 * Allow / Location when given; every 503 also gets Retry-After. */
enum MHD_Result sg__send_json(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                              const char *allow, const char *location);
/* Queue a fixed body (a string literal). */
enum MHD_Result sg__send_literal(struct MHD_Connection *c, unsigned status, const char *json);
/* Queue the rendered buffer b (emptied). */
enum MHD_Result sg__send_buf(struct MHD_Connection *c, unsigned status, sg_buf *b,
                             const char *location);
/* {"detail": msg} */
enum MHD_Result sg__send_detail(struct MHD_Connection *c, unsigned status, const char *msg,
                                const char *allow);
enum MHD_Result sg__send_detailf(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A file compiled into the binary (static, never NULL here). The pages
 * may load only what the binary serves (Content-Security-Policy). */
enum MHD_Result sg__send_asset(struct MHD_Connection *c, const sg_asset *f);
/* 308 to location (a static string) with a {"detail"} body. */
enum MHD_Result sg__send_redirect(struct MHD_Connection *c, const char *location);

/* ---- reads.c: GET routes --------------------------------------------------- */

/* This MHD thread's store reader, opened on first use; NULL (and why in
 * err) if the store cannot give one. The API owns it. */
sg_store_reader *sg__api_reader(sg_api *a, char *err, size_t errlen);
/* Closes every reader; only once the MHD threads have stopped. */
void sg__api_close_readers(sg_api *a);
enum MHD_Result sg__serve_get(sg_api *a, struct MHD_Connection *c, const char *id);
enum MHD_Result sg__serve_list(sg_api *a, struct MHD_Connection *c);
enum MHD_Result sg__serve_events(sg_api *a, struct MHD_Connection *c);
enum MHD_Result sg__serve_definitions(sg_api *a, struct MHD_Connection *c);
enum MHD_Result sg__serve_ready(sg_api *a, struct MHD_Connection *c);

/* ---- metrics.c: GET /metrics and the count of every answer --------------- */

/* The route an MHD thread is answering (on_request, before anything is
 * queued): its answer counts under this route's template. */
void sg__metrics_route(sg_api_route_kind route, const char *url, const char *id, const char *allow);
/* An answer with status code was queued on this thread. */
void sg__metrics_answered(unsigned code);
enum MHD_Result sg__serve_metrics(sg_api *a, struct MHD_Connection *c);

/* ---- start.c: POST /saga ------------------------------------------------------ */

/* First call for POST /saga or POST /sagas/{type} (route SG_ROUTE_START,
 * id: the type or NULL), POST /saga/{id}/retry (SG_ROUTE_REDRIVE) or POST
 * /events/{id}/redeliver (SG_ROUTE_REDELIVER); id is borrowed from the
 * URL. Checks headers, allocates the context. */
enum MHD_Result sg__start_begin(sg_api *a, struct MHD_Connection *c, void **req_cls,
                                sg_api_route_kind route, const char *id);
/* Later calls: body chunks, the end of the body, then the answer. */
enum MHD_Result sg__start_continue(sg_api *a, struct MHD_Connection *c, start_ctx *x,
                                   const char *upload, size_t *upload_size);
/* MHD is done with the request. */
void sg__start_completed(sg_api *a, start_ctx *x);
/* Destroy: answers every suspended start 503 and refuses new ones. */
void sg__start_close(sg_api *a);

#endif
