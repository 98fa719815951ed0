/* POST /saga: read and check the request on an MHD thread, answer repeats
 * of stored sagas from the store, otherwise hand the start to the engine
 * and suspend the connection until the loop's outcome resumes it.
 *
 * A context (start_ctx) has two references: MHD's, dropped in
 * sg__start_completed, and the engine's while it holds the start, dropped
 * in on_outcome (or at once if the submit fails). Its state moves
 * READING -> WAITING (suspended, the engine owns the answer) -> ANSWERED
 * (reply stored, connection resumed) under sg__start_mu. Only the thread
 * that moves a context out of WAITING resumes it, so a connection is
 * resumed exactly once and only while suspended (MHD never reaps
 * suspended connections, so it is still alive then).
 *
 * The lock is module-wide, not per API: on_outcome may run after
 * sg_api_destroy has force-answered a context and freed the API (if the
 * engine outlives it), and must still find a live lock. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utlist.h>

#include "api_int.h"
#include "render.h"
#include "server_int.h"
#include "start_int.h"
#include "sg/alloc.h"
#include "sg/def.h"
#include "sg/util.h"

#define OUT_MAX_ONE ((size_t)64 << 20)

typedef enum { CTX_READING, CTX_WAITING, CTX_ANSWERED } ctx_state;

/* The answer to send once the connection resumes. */
typedef struct reply {
    unsigned status; /* 0: the engine said SG_EEXIST, look the key up */
    char *body;      /* owned */
    size_t len;
    char location[64]; /* "/saga/<id>" for a 202, else "" */
} reply;

struct start_ctx {
    atomic_int refs;
    sg_api_route_kind route;     /* SG_ROUTE_START, _REDRIVE or _REDELIVER */
    const sg_def *def;           /* POST /sagas/{type}: its definition; NULL = default */
    char id[SG_ID_LEN + 1];      /* the saga or event a REDRIVE / REDELIVER names */
    sg_api *api;                 /* borrowed; see the file comment */
    struct MHD_Connection *conn; /* borrowed from MHD */
    sg_buf body;                 /* the request body, capped at max_body */
    int too_big;                 /* body overflowed: discard the rest, 413 */
    int async;                   /* Prefer: respond-async */
    int counted;                 /* included in api->pending */
    ctx_state state;             /* under sg__start_mu from WAITING on */
    reply rep;                   /* valid in ANSWERED */
    start_ctx *prev, *next;      /* api->waiting, under sg__start_mu */
};

static pthread_mutex_t sg__start_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- the answer ---------------------------------------------------------- */

/* Renders o into r (HTTP status, body, Location of a 202). */
static void render_reply(reply *r, const sg_outcome *o, int async)
{
    sg_buf b;
    int code = 0;
    memset(r, 0, sizeof *r);
    sg_buf_init(&b, OUT_MAX_ONE);
    if (sg_render_outcome(&b, o, async, &code) != SG_OK) {
        sg_buf_reset(&b);
        sg_render_detail(&b, "record too large to render");
        code = MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    r->status = (unsigned)code;
    r->body = sg_buf_take(&b, &r->len);
    if (code == MHD_HTTP_ACCEPTED)
        snprintf(r->location, sizeof r->location, "/saga/%s", o->saga_id);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, reply *r)
{
    char *body = r->body;
    r->body = NULL;
    return sg__send_json(c, r->status, body, r->len, NULL, r->location[0] ? r->location : NULL);
}

static enum MHD_Result send_outcome(struct MHD_Connection *c, const sg_outcome *o, int async)
{
    reply r;
    render_reply(&r, o, async);
    return send_reply(c, &r);
}

static void ctx_release(start_ctx *x)
{
    if (atomic_fetch_sub(&x->refs, 1) != 1) return;
    free(x->rep.body);
    sg_buf_free(&x->body);
    free(x);
}

/* sg__start_mu held: take r (its body too), unlink, resume. x->api is alive
 * here: destroy answers every WAITING context before it frees the API. */
static void answer_locked(start_ctx *x, reply *r)
{
    assert(x->state == CTX_WAITING); /* resumed once, only while suspended */
    x->rep = *r;
    r->body = NULL;
    x->state = CTX_ANSWERED;
    DL_DELETE(x->api->waiting, x);
    MHD_resume_connection(x->conn);
}

/* sg__start_mu held: a 503 for x unless it was answered already. */
static void answer_unavailable_locked(start_ctx *x)
{
    if (x->state != CTX_WAITING) return;
    sg_outcome o;
    reply r;
    sg_outcome_fail(&o, SG_ECLOSED, "shutting down");
    render_reply(&r, &o, 0);
    answer_locked(x, &r);
}

/* A {"detail": msg} reply. */
static void detail_reply(reply *r, unsigned status, const char *msg)
{
    sg_buf b;
    memset(r, 0, sizeof *r);
    sg_buf_init(&b, (size_t)-1);
    sg_render_detail(&b, msg);
    r->status = status;
    r->body = sg_buf_take(&b, &r->len);
}

/* Loop thread: hands r to x (if still waiting) and drops the engine's
 * reference. */
static void deliver(start_ctx *x, reply *r)
{
    pthread_mutex_lock(&sg__start_mu);
    if (x->state == CTX_WAITING) answer_locked(x, r);
    pthread_mutex_unlock(&sg__start_mu);
    free(r->body); /* NULL unless x was answered already */
    ctx_release(x);
}

/* The answer to POST /events/{id}/redeliver; loop thread. */
void sg__start_on_requeued(void *arg, sg_status st, const char *detail)
{
    start_ctx *x = arg;
    reply r;
    if (st == SG_OK)
        detail_reply(&r, MHD_HTTP_ACCEPTED, "redelivery queued");
    else if (st == SG_ECONFLICT)
        detail_reply(&r, MHD_HTTP_CONFLICT, detail ? detail : "the event is not parked");
    else
        detail_reply(&r, MHD_HTTP_SERVICE_UNAVAILABLE, detail ? detail : sg_status_text(st));
    deliver(x, &r);
}

/* A start the store could not take (SG_EIO): the 503 says what the store
 * reports. sg__start_mu held and x WAITING, so x->api is alive. */
static void render_store_failure_locked(reply *r, const start_ctx *x, const sg_outcome *o)
{
    char why[256], detail[512];
    sg_outcome f = *o;
    if (x->api->store && sg_store_health(x->api->store, why, sizeof why) != SG_OK && why[0]) {
        snprintf(detail, sizeof detail, "%s: store: %s",
                 o->detail ? o->detail : sg_status_text(o->status), why);
        f.detail = detail;
    }
    render_reply(r, &f, x->async);
}

/* The engine's outcome; loop thread. Rendered here, while o is alive. */
void sg__start_on_outcome(void *arg, const sg_outcome *o)
{
    start_ctx *x = arg;
    reply r = {0};
    if (x->route == SG_ROUTE_REDRIVE && o->status == SG_ECONFLICT) {
        detail_reply(&r, MHD_HTTP_CONFLICT, o->detail ? o->detail : "not safe to redrive");
    } else if (o->status == SG_EEXIST) { /* the MHD thread compares it with the stored one */
        sg_buf_add(&x->body, o->request, o->request_len);
    } else if (o->status == SG_EIO) {
        pthread_mutex_lock(&sg__start_mu);
        if (x->state == CTX_WAITING) render_store_failure_locked(&r, x, o);
        pthread_mutex_unlock(&sg__start_mu);
    } else {
        render_reply(&r, o, x->async);
    }
    deliver(x, &r);
}

/* ---- headers -------------------------------------------------------------- */

typedef struct header_scan {
    int async;
    int idem_count;
    const char *idem; /* borrowed from MHD's connection pool */
} header_scan;

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    header_scan *h = cls;
    (void)kind;
    if (!key) return MHD_YES;
    if (strcasecmp(key, "Prefer") == 0 && sg_api_prefer_async(value)) h->async = 1;
    if (strcasecmp(key, "Idempotency-Key") == 0) {
        h->idem_count++;
        h->idem = value ? value : "";
    }
    return MHD_YES;
}

/* Headers that fail a request before its body is read: SG_EINVAL with the
 * reason in err. */
static sg_status check_headers(struct MHD_Connection *c, header_scan *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    MHD_get_connection_values(c, MHD_HEADER_KIND, scan_header, h);
    if (h->idem_count > 1) {
        snprintf(err, errlen, "more than one Idempotency-Key header");
        return SG_EINVAL;
    }
    if (h->idem_count == 1 && !sg_api_idem_key_valid(h->idem)) {
        snprintf(err, errlen, "Idempotency-Key must be 1 to %d printable ASCII characters",
                 SG_API_IDEM_KEY_MAX);
        return SG_EINVAL;
    }
    return SG_OK;
}

/* 404 for POST /sagas/{type} with an unknown type, listing the known ones. */
static enum MHD_Result unknown_type(struct MHD_Connection *c, const char *type)
{
    sg_buf known;
    sg_buf_init(&known, 4096);
    const sg_def *d;
    for (size_t i = 0; (d = sg_def_at(i)); i++)
        if (sg_buf_addf(&known, "%s%s", i ? ", " : "", d->name) != SG_OK) break;
    enum MHD_Result ret =
        sg__send_detailf(c, MHD_HTTP_NOT_FOUND, "unknown saga type '%.64s' (known: %s)", type,
                         known.ptr ? known.ptr : "");
    sg_buf_free(&known);
    return ret;
}

enum MHD_Result sg__start_begin(sg_api *a, struct MHD_Connection *c, void **req_cls,
                                sg_api_route_kind route, const char *id)
{
    header_scan h;
    char err[160];
    if (check_headers(c, &h, err, sizeof err) != SG_OK)
        return sg__send_detail(c, MHD_HTTP_BAD_REQUEST, err, NULL);

    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n;
    if (cl && sg_api_parse_content_length(cl, &n) == SG_OK && n > a->max_body)
        return sg__send_detailf(c, 413 /* Content Too Large */,
                                "request body larger than %zu bytes", a->max_body);

    const sg_def *def = NULL;
    if (route == SG_ROUTE_START && id && !(sg_api_type_valid(id) && (def = sg_def_find(id))))
        return unknown_type(c, id);
    if (route != SG_ROUTE_START && !(id && sg_uuid_valid(id, SG_ID_LEN)))
        return sg__send_detail(c, MHD_HTTP_NOT_FOUND,
                               route == SG_ROUTE_REDRIVE ? "Saga no encontrada" : "Event not found",
                               NULL);
    start_ctx *x = sg_xcalloc(1, sizeof *x);
    atomic_init(&x->refs, 1); /* MHD's, dropped in sg__start_completed */
    x->route = route;
    x->def = def;
    if (route != SG_ROUTE_START) memcpy(x->id, id, SG_ID_LEN);
    x->api = a;
    x->conn = c;
    x->state = CTX_READING;
    sg_buf_init(&x->body, a->max_body);
    *req_cls = x;
    return MHD_YES;
}

/* ---- Idempotency-Key held by a stored saga ---------------------------------- */

typedef enum { STORED_NONE, STORED_ANSWERED, STORED_RUNNING } stored_result;

/* Looks the key up with this thread's reader and answers when the store
 * alone can: another body (422), or the same start of a saga that has
 * finished (or any saga, when `any` is set: the engine has no better
 * answer). STORED_NONE / STORED_RUNNING: nothing sent, the engine decides. */
static stored_result answer_stored(sg_api *a, struct MHD_Connection *c, start_ctx *x,
                                   const char *key, int any, enum MHD_Result *ret)
{
    char err[256];
    sg_store_reader *r = sg__api_reader(a, err, sizeof err);
    if (!r) {
        *ret = sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, err, NULL);
        return STORED_ANSWERED;
    }
    sg_saga_rec rec;
    sg_status st = sg_store_get_by_idem(r, key, &rec);
    if (st == SG_ENOTFOUND && !any) return STORED_NONE;
    if (st == SG_ENOTFOUND) {
        *ret = sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "could not store the saga", NULL);
        return STORED_ANSWERED;
    }
    if (st != SG_OK) {
        *ret = sg__send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s",
                                sg_store_reader_error(r));
        return STORED_ANSWERED;
    }
    sg_outcome o;
    stored_result res = STORED_ANSWERED;
    const char *body = x->body.ptr ? x->body.ptr : "";
    if (sg_idem_check(&rec, body, x->body.len) != SG_OK) {
        sg_outcome_fail(&o, SG_ECONFLICT, NULL);
        *ret = send_outcome(c, &o, x->async);
    } else if (rec.status != SG_SAGA_IN_PROGRESS || any) {
        sg_outcome_of(&o, &rec, sg_def_find_version(rec.def_name, rec.def_version));
        *ret = send_outcome(c, &o, x->async);
        sg_outcome_clear(&o);
    } else {
        res = STORED_RUNNING; /* the engine holds it: it answers when it can */
    }
    sg_saga_rec_free(&rec);
    return res;
}

/* ---- handing over to the engine -------------------------------------------- */

/* Suspends x and submits it. The suspend comes first so that the answer,
 * whenever it comes, finds a suspended connection to resume; the lock is
 * not held across the submit, so the engine's locks never nest in ours. */
enum MHD_Result sg__start_hand_over(sg_api *a, struct MHD_Connection *c, start_ctx *x,
                                    sg__submit_fn fn, void *data)
{
    pthread_mutex_lock(&sg__start_mu);
    if (a->closing) {
        pthread_mutex_unlock(&sg__start_mu);
        return sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down", NULL);
    }
    atomic_fetch_add(&x->refs, 1); /* the engine's */
    x->state = CTX_WAITING;
    x->counted = 1;
    atomic_fetch_add(&a->pending, 1);
    DL_APPEND(a->waiting, x);
    MHD_suspend_connection(c);
    pthread_mutex_unlock(&sg__start_mu);

    if (fn(a, x, data) != SG_OK) {
        pthread_mutex_lock(&sg__start_mu);
        answer_unavailable_locked(x);
        pthread_mutex_unlock(&sg__start_mu);
        ctx_release(x); /* the engine's reference: it never took it */
    }
    return MHD_YES;
}

static sg_status submit_start(sg_api *a, start_ctx *x, void *key)
{
    sg_start start = {.async = x->async, .def = x->def};
    start.body = sg_buf_take(&x->body, &start.body_len);
    start.idem_key = key ? sg_xstrdup(key) : NULL;
    sg__api_trace(x->conn, &start.trace, &start.tracestate);
    sg_status st = sg_engine_submit(a->engine, &start, sg__start_on_outcome, x);
    free(start.body); /* NULL once taken */
    free(start.idem_key);
    free(start.tracestate);
    return st;
}

static enum MHD_Result submit(sg_api *a, struct MHD_Connection *c, start_ctx *x, const char *key)
{
    return sg__start_hand_over(a, c, x, submit_start, (void *)key);
}

/* The whole body is in: validate, answer idempotent repeats of finished
 * sagas, or hand the start to the engine and suspend. */
static enum MHD_Result finish_start(sg_api *a, struct MHD_Connection *c, start_ctx *x)
{
    char err[256];
    header_scan h;
    if (x->too_big)
        return sg__send_detailf(c, 413 /* Content Too Large */,
                                "request body larger than %zu bytes", a->max_body);
    if (x->route == SG_ROUTE_REDELIVER) return sg__redeliver_finish(a, c, x);
    if (x->route == SG_ROUTE_REDRIVE) {
        if (check_headers(c, &h, err, sizeof err) != SG_OK)
            return sg__send_detail(c, MHD_HTTP_BAD_REQUEST, err, NULL);
        x->async = h.async;
        return sg__redrive_finish(a, c, x);
    }
    const char *body = x->body.ptr ? x->body.ptr : "";
    sg_status st = sg_api_check_body(body, x->body.len, err, sizeof err);
    if (st != SG_OK)
        return sg__send_detail(c, st == SG_ETYPE ? 422 : MHD_HTTP_BAD_REQUEST, err, NULL);
    if (check_headers(c, &h, err, sizeof err) != SG_OK)
        return sg__send_detail(c, MHD_HTTP_BAD_REQUEST, err, NULL);
    x->async = h.async;

    enum MHD_Result ret = MHD_YES;
    if (h.idem && answer_stored(a, c, x, h.idem, 0, &ret) == STORED_ANSWERED) return ret;
    return submit(a, c, x, h.idem);
}

enum MHD_Result sg__start_continue(sg_api *a, struct MHD_Connection *c, start_ctx *x,
                                   const char *upload, size_t *upload_size)
{
    if (*upload_size) {
        /* Past the cap we keep reading and dropping: MHD cannot queue an
         * answer mid-body, and the 413 goes out once the body ends. */
        if (!x->too_big && sg_buf_add(&x->body, upload, *upload_size) != SG_OK) {
            x->too_big = 1;
            sg_buf_free(&x->body);
        }
        *upload_size = 0;
        return MHD_YES;
    }
    pthread_mutex_lock(&sg__start_mu);
    ctx_state state = x->state;
    pthread_mutex_unlock(&sg__start_mu);
    if (state == CTX_READING) return finish_start(a, c, x);
    assert(state == CTX_ANSWERED); /* suspended while WAITING: MHD cannot call */

    /* ANSWERED: only this thread touches the reply from here on. */
    if (x->rep.status) return send_reply(c, &x->rep);
    /* SG_EEXIST: a stored saga took the key meanwhile (on_outcome put the
     * body back for the comparison). */
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    enum MHD_Result ret = MHD_NO;
    if (!key || answer_stored(a, c, x, key, 1, &ret) != STORED_ANSWERED)
        ret = sg__send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "could not store the saga", NULL);
    return ret;
}

const char *sg__start_id(const start_ctx *x)
{
    return x->id;
}

int sg__start_async(const start_ctx *x)
{
    return x->async;
}

void sg__start_completed(sg_api *a, start_ctx *x)
{
    /* pending covers a handed-off start until its answer has been
     * written, so a graceful shutdown does not cut it off mid-send. */
    if (x->counted) atomic_fetch_sub(&a->pending, 1);
    ctx_release(x);
}

void sg__start_close(sg_api *a)
{
    /* MHD_stop_daemon must not find suspended connections: answer every
     * start the engine still holds with 503 and resume it. Its on_outcome
     * will find the context ANSWERED and only drop its reference. */
    pthread_mutex_lock(&sg__start_mu);
    a->closing = 1;
    while (a->waiting)
        answer_unavailable_locked(a->waiting); /* unlinks it */
    pthread_mutex_unlock(&sg__start_mu);
}
