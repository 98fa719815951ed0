/* The HTTP API (design §2) on libmicrohttpd.
 *
 * Threads: MHD's pool threads run on_request. Reads (GET) are answered
 * there with a per-thread store reader. POST /saga is parsed and validated
 * there, then handed to the engine (sg_engine_submit) and its connection
 * suspended; the engine's done callback (loop thread) stores the reply and
 * resumes the connection, and MHD calls on_request again to send it.
 *
 * Lifetimes of a POST /saga context (start_ctx):
 *   - one reference for MHD, dropped in on_completed;
 *   - one for the engine while it holds the request, dropped in on_done
 *     (or right away if the submit fails).
 * Its state moves READING -> WAITING (suspended, engine owns the answer)
 * -> ANSWERED (reply stored, connection resumed) under wait_mu. Only the
 * thread that moves a context out of WAITING resumes it, so a connection is
 * resumed exactly once and only while suspended (MHD never reaps suspended
 * connections, so it is still alive then).
 *
 * wait_mu is module-wide, not per API: on_done may run after
 * sg_api_destroy has force-answered a context and freed the API (if the
 * engine outlives it), and must still have a live lock to look at. */
#include "sg/api.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "api/api_int.h"
#include "sg/alloc.h"
#include "sg/buf.h"
#include "sg/def.h"
#include "sg/json.h"
#include "sg/render.h"
#include "sg/util.h"

/* Caps on what we render: one record holds a request (<= max_body) and
 * step responses (capped by the HTTP client). A GET /sagas page ends early
 * rather than grow past PAGE_BUDGET (its next cursor picks up from there),
 * and its records are fetched from the store a few at a time: the first
 * FIRST_CHUNK, then as many as the largest record so far says fit in
 * CHUNK_BYTES, so memory stays bounded however large records are. */
#define OUT_MAX_ONE ((size_t)64 << 20)
#define PAGE_BUDGET ((size_t)32 << 20)
#define FIRST_CHUNK ((size_t)16)
#define CHUNK_BYTES ((size_t)16 << 20)
#define DETAIL_MAX ((size_t)4096)
#define DESTROY_FLUSH_MS 200 /* sg_api_destroy waits this long at most for answers to go out */
#define CONN_MEMORY_LIMIT ((size_t)64 << 10)

typedef enum { CTX_READING, CTX_WAITING, CTX_ANSWERED } ctx_state;

typedef struct start_ctx {
    atomic_int refs;
    sg_api *api;                   /* borrowed; see the file comment */
    struct MHD_Connection *conn;   /* borrowed from MHD */
    sg_buf body;                   /* the request body, capped at max_body */
    int too_big;                   /* body overflowed: discard the rest, 413 */
    int counted;                   /* included in api->pending */
    ctx_state state;               /* under wait_mu from WAITING on */
    sg_reply reply;                /* valid in ANSWERED; body owned */
    struct start_ctx *prev, *next; /* api->waiting, under wait_mu */
} start_ctx;

typedef struct reader_slot {
    sg_store_reader *reader; /* owned */
    struct reader_slot *next;
} reader_slot;

struct sg_api {
    struct MHD_Daemon *mhd;
    sg_engine *engine; /* borrowed */
    sg_store *store;   /* borrowed */
    sg_bus *bus;       /* borrowed; may be NULL */
    size_t max_body;
    uint16_t port;
    atomic_int quiesced;
    MHD_socket quiesced_fd; /* from MHD_quiesce_daemon; closed after stop */

    pthread_key_t reader_key; /* this thread's sg_store_reader */
    int have_key;
    pthread_mutex_t readers_mu;
    reader_slot *readers; /* every reader opened, closed in destroy */

    atomic_size_t pending;
    int closing;        /* under wait_mu: refuse new submits */
    start_ctx *waiting; /* under wait_mu */
};

static pthread_mutex_t wait_mu = PTHREAD_MUTEX_INITIALIZER;

/* ---- responses -------------------------------------------------------- */

/* Queue body (taken, malloc'd) as a JSON answer. */
static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                                 const char *allow, const char *location)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES)
        goto fail;
    if (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) goto fail;
    if (location && MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location) != MHD_YES)
        goto fail;
    /* Every 503 (shutting down, overloaded, store trouble, not ready) is
     * temporary: tell clients when to come back. */
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1") != MHD_YES)
        goto fail;
    ret = MHD_queue_response(c, status, resp);
fail:
    MHD_destroy_response(resp);
    return ret;
}

/* Queue a fixed body (a string literal). */
static enum MHD_Result send_literal(struct MHD_Connection *c, unsigned status, const char *json)
{
    return send_json(c, status, sg_xstrdup(json), strlen(json), NULL, NULL);
}

/* Queue the rendered buffer b (emptied) as the answer. */
static enum MHD_Result send_buf(struct MHD_Connection *c, unsigned status, sg_buf *b,
                                const char *allow, const char *location)
{
    size_t len;
    char *body = sg_buf_take(b, &len);
    return send_json(c, status, body, len, allow, location);
}

static enum MHD_Result send_detail(struct MHD_Connection *c, unsigned status, const char *msg,
                                   const char *allow)
{
    sg_buf b;
    sg_buf_init(&b, DETAIL_MAX + 6 * strlen(msg)); /* an escape is at most 6 bytes */
    if (sg_render_detail(&b, msg) != SG_OK) {
        sg_buf_reset(&b);
        sg_render_detail(&b, "error");
    }
    return send_buf(c, status, &b, allow, NULL);
}

static enum MHD_Result send_detailf(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum MHD_Result send_detailf(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return send_detail(c, status, msg, NULL);
}

/* ---- per-thread store readers ---------------------------------------- */

/* This MHD thread's reader, opened on first use; NULL if the store cannot
 * give one. The API owns it (listed in a->readers) and closes it after the
 * threads have stopped. */
static sg_store_reader *thread_reader(sg_api *a)
{
    if (!a->have_key || !a->store) return NULL;
    sg_store_reader *r = pthread_getspecific(a->reader_key);
    if (r) return r;
    if (sg_store_reader_open(a->store, &r, NULL, 0) != SG_OK || !r) return NULL;
    reader_slot *slot = sg_xmalloc(sizeof *slot);
    slot->reader = r;
    pthread_mutex_lock(&a->readers_mu);
    slot->next = a->readers;
    a->readers = slot;
    pthread_mutex_unlock(&a->readers_mu);
    pthread_setspecific(a->reader_key, r);
    return r;
}

/* ---- GET handlers ------------------------------------------------------ */

static enum MHD_Result serve_get(sg_api *a, struct MHD_Connection *c, const char *id)
{
    sg_saga_rec rec;
    memset(&rec, 0, sizeof rec);
    if (!sg_uuid_valid(id, strnlen(id, SG_ID_LEN + 1)))
        return send_detail(c, MHD_HTTP_NOT_FOUND, "Saga no encontrada", NULL);
    sg_store_reader *r = thread_reader(a);
    if (!r) return send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store unavailable", NULL);

    enum MHD_Result ret;
    sg_status st = sg_store_get(r, id, &rec);
    if (st == SG_ENOTFOUND) {
        ret = send_detail(c, MHD_HTTP_NOT_FOUND, "Saga no encontrada", NULL);
        goto done;
    }
    if (st != SG_OK) {
        ret = send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s", sg_status_text(st));
        goto done;
    }
    sg_buf b;
    sg_buf_init(&b, OUT_MAX_ONE);
    if (sg_render_saga(&b, &rec, rec.def_name ? sg_def_find(rec.def_name) : NULL) != SG_OK) {
        sg_buf_free(&b);
        ret = send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "record too large to render", NULL);
        goto done;
    }
    ret = send_buf(c, MHD_HTTP_OK, &b, NULL, NULL);
done:
    sg_saga_rec_free(&rec);
    return ret;
}

/* A query argument; *bad is set when it hides a NUL (%00), which a C
 * string would silently cut short. */
static const char *query_arg(struct MHD_Connection *c, const char *key, int *bad)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, key, strlen(key), &v, &n) !=
        MHD_YES)
        return NULL;
    if (v && strlen(v) != n) *bad = 1;
    return v;
}

static enum MHD_Result serve_list(sg_api *a, struct MHD_Connection *c)
{
    int bad = 0;
    const char *status = query_arg(c, "status", &bad);
    const char *limit = query_arg(c, "limit", &bad);
    const char *after = query_arg(c, "after", &bad);
    sg_list_query q;
    char err[128];
    if (bad) return send_detail(c, MHD_HTTP_BAD_REQUEST, "NUL byte in a query argument", NULL);
    if (sg_api_parse_list_query(status, limit, after, &q, err, sizeof err) != 0)
        return send_detail(c, MHD_HTTP_BAD_REQUEST, err, NULL);
    sg_store_reader *r = thread_reader(a);
    if (!r) return send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store unavailable", NULL);

    sg_api_page page;
    sg_api_page_init(&page, PAGE_BUDGET, OUT_MAX_ONE);
    char cursor[SG_CURSOR_MAX]; /* where the next chunk starts */
    char next[SG_CURSOR_MAX] = "";
    size_t want = q.limit, chunk = FIRST_CHUNK;
    int added = 1;
    for (;;) {
        sg_list_query cq = q;
        cq.limit = want < chunk ? want : chunk;
        sg_saga_rec *recs = NULL; /* owned: freed below with each record */
        size_t n = 0;
        next[0] = '\0';
        sg_status st = sg_store_list(r, &cq, &recs, &n, next);
        if (st != SG_OK) {
            sg_api_page_free(&page);
            if (st == SG_EINVAL) /* only the client's cursor can be malformed */
                return send_detail(c, MHD_HTTP_BAD_REQUEST, "malformed cursor in after", NULL);
            return send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s",
                                sg_status_text(st));
        }
        for (size_t i = 0; i < n && added == 1; i++)
            added = sg_api_page_add(&page, &recs[i]);
        for (size_t i = 0; i < n; i++)
            sg_saga_rec_free(&recs[i]);
        free(recs);
        if (added != 1 || n == 0 || !next[0] || n >= want) break;
        want -= n;
        memcpy(cursor, next, sizeof cursor);
        q.after = cursor;
        size_t fit = CHUNK_BYTES / (page.biggest ? page.biggest : 1);
        chunk = fit < 1 ? 1 : fit > SG_API_LIMIT_MAX ? SG_API_LIMIT_MAX : fit;
    }
    if (added < 0) {
        sg_api_page_free(&page);
        return send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "record too large to render", NULL);
    }
    if (sg_api_page_finish(&page, next) != SG_OK) {
        sg_api_page_free(&page);
        return send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "page too large to render", NULL);
    }
    return send_buf(c, MHD_HTTP_OK, &page.out, NULL, NULL);
}

static enum MHD_Result serve_ready(sg_api *a, struct MHD_Connection *c)
{
    char why[256] = "";
    if (atomic_load(&a->quiesced))
        return send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down", NULL);
    if (a->store && sg_store_health(a->store, why, sizeof why) != SG_OK)
        return send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store: %s",
                            why[0] ? why : "not healthy");
    why[0] = '\0';
    if (a->bus && sg_bus_is_broker(a->bus) && !sg_bus_ready(a->bus, why, sizeof why))
        return send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "bus %s: %s", sg_bus_name(a->bus),
                            why[0] ? why : "not connected");
    return send_literal(c, MHD_HTTP_OK, "{\"status\":\"ready\"}");
}

/* ---- POST /saga ---------------------------------------------------------- */

static void ctx_release(start_ctx *x)
{
    if (atomic_fetch_sub(&x->refs, 1) != 1) return;
    free(x->reply.body);
    sg_buf_free(&x->body);
    free(x);
}

/* wait_mu held, x WAITING: take reply (its body is taken), unlink, resume.
 * x->api is alive here: destroy answers every WAITING context before it
 * frees the API. */
static void answer_locked(start_ctx *x, sg_reply *reply)
{
    sg_api *a = x->api;
    x->reply = *reply;
    reply->body = NULL;
    x->state = CTX_ANSWERED;
    if (x->prev)
        x->prev->next = x->next;
    else
        a->waiting = x->next;
    if (x->next) x->next->prev = x->prev;
    x->prev = x->next = NULL;
    MHD_resume_connection(x->conn);
}

/* A 503 reply built here (not by the engine) for shutdown paths. */
static void reply_unavailable(sg_reply *rep)
{
    memset(rep, 0, sizeof *rep);
    rep->status = MHD_HTTP_SERVICE_UNAVAILABLE;
    rep->body = sg_xstrdup("{\"detail\":\"shutting down\"}");
    rep->body_len = strlen(rep->body);
}

/* The engine's answer; loop thread. Takes reply->body. */
static void on_done(void *arg, sg_reply *reply)
{
    start_ctx *x = arg;
    pthread_mutex_lock(&wait_mu);
    if (x->state == CTX_WAITING) answer_locked(x, reply);
    pthread_mutex_unlock(&wait_mu);
    free(reply->body); /* NULL unless we were answered already */
    reply->body = NULL;
    ctx_release(x);
}

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

/* Checks headers that can fail a request before its body is read. 0 or an
 * HTTP status with a reason in err. */
static unsigned check_headers(struct MHD_Connection *c, header_scan *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    MHD_get_connection_values(c, MHD_HEADER_KIND, scan_header, h);
    if (h->idem_count > 1) {
        snprintf(err, errlen, "more than one Idempotency-Key header");
        return MHD_HTTP_BAD_REQUEST;
    }
    if (h->idem_count == 1 && !sg_api_idem_key_valid(h->idem)) {
        snprintf(err, errlen, "Idempotency-Key must be 1 to %d printable ASCII characters",
                 SG_API_IDEM_KEY_MAX);
        return MHD_HTTP_BAD_REQUEST;
    }
    return 0;
}

/* First call for POST /saga: reject what we can before reading the body,
 * else allocate the context that accumulates it. */
static enum MHD_Result begin_start(sg_api *a, struct MHD_Connection *c, void **req_cls)
{
    header_scan h;
    char err[160];
    unsigned code = check_headers(c, &h, err, sizeof err);
    if (code) return send_detail(c, code, err, NULL);

    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    uint64_t n;
    if (cl && sg_api_parse_content_length(cl, &n) == 0 && n > a->max_body)
        return send_detailf(c, 413 /* Content Too Large */, "request body larger than %zu bytes",
                            a->max_body);

    start_ctx *x = sg_xcalloc(1, sizeof *x);
    atomic_init(&x->refs, 1); /* MHD's, dropped in on_completed */
    x->api = a;
    x->conn = c;
    x->state = CTX_READING;
    sg_buf_init(&x->body, a->max_body);
    *req_cls = x;
    return MHD_YES;
}

/* Answer a repeated POST whose Idempotency-Key names a finished saga. */
static enum MHD_Result answer_finished(struct MHD_Connection *c, const sg_saga_rec *rec, int async)
{
    sg_buf b;
    sg_buf_init(&b, OUT_MAX_ONE);
    int code = MHD_HTTP_ACCEPTED;
    sg_status st;
    char location[64];
    snprintf(location, sizeof location, "/saga/%s", rec->id);
    if (async) {
        /* The 202 shape of design §2, with the saga's actual status. */
        st = sg_buf_adds(&b, "{\"id\":");
        if (st == SG_OK) st = sg_json_add_cstr(&b, rec->id);
        if (st == SG_OK) st = sg_buf_adds(&b, ",\"overall_status\":");
        if (st == SG_OK) st = sg_json_add_cstr(&b, sg_saga_status_name(rec->status));
        if (st == SG_OK) st = sg_buf_addc(&b, '}');
    } else {
        st = sg_render_outcome(&b, rec, rec->def_name ? sg_def_find(rec->def_name) : NULL, &code);
    }
    if (st != SG_OK) {
        sg_buf_free(&b);
        return send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "record too large to render", NULL);
    }
    return send_buf(c, (unsigned)code, &b, NULL, async ? location : NULL);
}

/* The whole body is in: validate, answer idempotent repeats of finished
 * sagas, or hand the request to the engine and suspend. */
static enum MHD_Result finish_start(sg_api *a, struct MHD_Connection *c, start_ctx *x)
{
    char err[256];
    header_scan h;
    if (x->too_big)
        return send_detailf(c, 413 /* Content Too Large */, "request body larger than %zu bytes",
                            a->max_body);
    const char *body = x->body.ptr ? x->body.ptr : "";
    int code = sg_api_check_body(body, x->body.len, err, sizeof err);
    if (code) return send_detail(c, (unsigned)code, err, NULL);
    code = (int)check_headers(c, &h, err, sizeof err);
    if (code) return send_detail(c, (unsigned)code, err, NULL);

    if (h.idem) {
        sg_store_reader *r = thread_reader(a);
        if (!r) return send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store unavailable", NULL);
        sg_saga_rec rec;
        memset(&rec, 0, sizeof rec);
        sg_status st = sg_store_get_by_idem(r, h.idem, &rec);
        if (st == SG_OK) {
            /* Same key, same bytes: the same saga. A finished one is
             * answered here; one in progress goes to the engine, which
             * waits for it (sync) or answers 202 (async). */
            int same = rec.request_len == x->body.len &&
                       (x->body.len == 0 || memcmp(rec.request, body, x->body.len) == 0);
            int finished = rec.status != SG_SAGA_IN_PROGRESS;
            enum MHD_Result ret = MHD_YES;
            if (!same)
                ret = send_detail(c, 422 /* Unprocessable Content */,
                                  "Idempotency-Key reused with a different request body", NULL);
            else if (finished)
                ret = answer_finished(c, &rec, h.async);
            sg_saga_rec_free(&rec);
            if (!same || finished) return ret;
        } else if (st != SG_ENOTFOUND) {
            return send_detailf(c, MHD_HTTP_SERVICE_UNAVAILABLE, "store error: %s",
                                sg_status_text(st));
        }
    }

    /* The request owns copies of the body and key; the engine frees it
     * after on_done returns, or we do if the submit fails. */
    sg_start_req *req = sg_xcalloc(1, sizeof *req);
    req->body = sg_buf_take(&x->body, &req->body_len);
    req->idem_key = h.idem ? sg_xstrdup(h.idem) : NULL;
    req->async = h.async;
    req->done = on_done;
    req->arg = x;

    pthread_mutex_lock(&wait_mu);
    if (a->closing) {
        pthread_mutex_unlock(&wait_mu);
        free(req->body);
        free(req->idem_key);
        free(req);
        return send_detail(c, MHD_HTTP_SERVICE_UNAVAILABLE, "shutting down", NULL);
    }
    /* Suspend before submitting so that on_done, whenever it runs, finds
     * a suspended connection to resume; the lock is not held across the
     * submit, so the engine's locks never nest inside ours. */
    atomic_fetch_add(&x->refs, 1); /* the engine's */
    x->state = CTX_WAITING;
    x->counted = 1;
    atomic_fetch_add(&a->pending, 1);
    x->next = a->waiting;
    if (a->waiting) a->waiting->prev = x;
    a->waiting = x;
    MHD_suspend_connection(c);
    pthread_mutex_unlock(&wait_mu);

    if (sg_engine_submit(a->engine, req) != SG_OK) {
        sg_reply rep;
        reply_unavailable(&rep);
        pthread_mutex_lock(&wait_mu);
        if (x->state == CTX_WAITING) answer_locked(x, &rep);
        pthread_mutex_unlock(&wait_mu);
        free(rep.body);
        free(req->body);
        free(req->idem_key);
        free(req);
        ctx_release(x); /* the engine's reference: it never took it */
    }
    return MHD_YES;
}

/* Later calls for POST /saga: body chunks, then the end of the body, then
 * (after a resume) the engine's answer. */
static enum MHD_Result continue_start(sg_api *a, struct MHD_Connection *c, start_ctx *x,
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
    pthread_mutex_lock(&wait_mu);
    ctx_state state = x->state;
    pthread_mutex_unlock(&wait_mu);
    if (state == CTX_READING) return finish_start(a, c, x);
    if (state == CTX_WAITING) return MHD_YES; /* not reached: suspended until answered */

    /* ANSWERED: only this thread touches the reply from here on. */
    char *body = x->reply.body;
    size_t len = x->reply.body_len;
    x->reply.body = NULL;
    unsigned status = x->reply.status > 0 ? (unsigned)x->reply.status : 500;
    if (!body) return send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "no answer from engine", NULL);
    return send_json(c, status, body, len, NULL, x->reply.location[0] ? x->reply.location : NULL);
}

/* ---- MHD callbacks ------------------------------------------------------ */

/* Marks a read request between MHD's first call (headers) and the call
 * that ends its body: answering on the first call would make MHD close
 * the connection ("early response"), losing keep-alive. */
static int read_marker;

/* A request whose path hides a NUL (%00). MHD decodes the path in place
 * and hands it over as a C string, so "/saga/<id>%00junk" would read as
 * "/saga/<id>" and serve that saga; MHD 0.9.75 does not say how long the
 * decoded path really is. The URI log callback sees the request target
 * before decoding and marks such requests (nul_marker, the first *req_cls;
 * nul_read_marker from the first call on); they are answered 404. */
static int nul_marker, nul_read_marker;

static int is_marker(const void *p)
{
    return p == &read_marker || p == &nul_marker || p == &nul_read_marker;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    (void)cls;
    (void)c;
    if (!uri) return NULL;
    /* A '%' is either the start of a valid escape (two hex digits follow)
     * or literal, never inside another escape, so "%00" in the raw path is
     * exactly a NUL in the decoded one. The query is MHD's business: its
     * arguments come with their decoded lengths (query_arg). */
    size_t path_len = strcspn(uri, "?");
    return memmem(uri, path_len, "%00", 3) ? &nul_marker : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **req_cls)
{
    sg_api *a = cls;
    (void)version;
    const char *id = NULL, *allow = NULL;
    sg_api_route_kind route = sg_api_route(method, url, &id, &allow);

    if (*req_cls == &nul_marker) {
        *req_cls = &nul_read_marker;
        return MHD_YES;
    }
    if (!*req_cls) {
        if (route == SG_ROUTE_START) return begin_start(a, c, req_cls);
        *req_cls = &read_marker;
        return MHD_YES;
    }
    if (!is_marker(*req_cls)) return continue_start(a, c, *req_cls, upload, upload_size);
    if (*upload_size) {
        *upload_size = 0; /* a body on a read request: ignored */
        return MHD_YES;
    }
    if (*req_cls == &nul_read_marker)
        return send_detail(c, MHD_HTTP_NOT_FOUND,
                           route == SG_ROUTE_GET ? "Saga no encontrada" : "Not Found", NULL);

    switch (route) {
    case SG_ROUTE_GET:
        return serve_get(a, c, id);
    case SG_ROUTE_LIST:
        return serve_list(a, c);
    case SG_ROUTE_HEALTH:
        return send_literal(c, MHD_HTTP_OK, "{\"status\":\"ok\"}");
    case SG_ROUTE_READY:
        return serve_ready(a, c);
    case SG_ROUTE_BAD_METHOD:
        return send_detail(c, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed", allow);
    case SG_ROUTE_START: /* not reached: has a start_ctx */
    case SG_ROUTE_NOT_FOUND:
    default:
        return send_detail(c, MHD_HTTP_NOT_FOUND, "Not Found", NULL);
    }
}

/* MHD is done with a request (answered, or the connection went away). */
static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    sg_api *a = cls;
    start_ctx *x = *req_cls;
    (void)c;
    (void)toe;
    if (!x || is_marker(x)) return;
    *req_cls = NULL;
    /* pending covers a handed-off request until its answer has been
     * written, so a graceful shutdown does not cut it off mid-send. */
    if (x->counted) atomic_fetch_sub(&a->pending, 1);
    ctx_release(x);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    sg_log(SG_LOG_WARN, "http: %s", line);
}

/* ---- lifecycle ------------------------------------------------------------ */

/* Binds and listens on host:port ourselves (rather than letting MHD) so a
 * failure names its cause: unknown host, port in use, permission. */
static int open_listener(const char *host, uint16_t port, char *err, size_t errlen)
{
    char hostbuf[256];
    char portstr[8];
    struct addrinfo hints, *res = NULL;
    int fd = -1, saved = 0;

    if (!host || !*host || strcmp(host, "*") == 0) {
        host = NULL;
    } else {
        /* Accept "[::1]" as well as "::1". */
        size_t hl = strlen(host);
        if (hl >= sizeof hostbuf) {
            snprintf(err, errlen, "listen host too long");
            goto fail;
        }
        if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
            memcpy(hostbuf, host + 1, hl - 2);
            hostbuf[hl - 2] = '\0';
        } else {
            memcpy(hostbuf, host, hl + 1);
        }
        host = hostbuf;
    }
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen address '%s': %s", host ? host : "*",
                 gai_strerror(rc));
        goto fail;
    }
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, SOMAXCONN) == 0) break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s:%u: %s", host ? host : "*", (unsigned)port,
                 strerror(saved ? saved : EADDRNOTAVAIL));
        goto fail;
    }
    freeaddrinfo(res);
    return fd;
fail:
    if (res) freeaddrinfo(res);
    return -1;
}

sg_status sg_api_create(sg_api **out, const sg_api_options *opt, sg_engine *engine, sg_store *store,
                        sg_bus *bus, char *err, size_t errlen)
{
    sg_api *a = NULL;
    sg_status st = SG_EINVAL;
    char localerr[256];
    if (!err || !errlen) {
        err = localerr;
        errlen = sizeof localerr;
    }
    err[0] = '\0';
    *out = NULL;
    if (!opt) {
        snprintf(err, errlen, "no API options");
        goto fail;
    }

    a = sg_xcalloc(1, sizeof *a);
    a->engine = engine;
    a->store = store;
    a->bus = bus;
    a->max_body = opt->max_body ? opt->max_body : (size_t)1 << 20;
    a->quiesced_fd = MHD_INVALID_SOCKET;
    atomic_init(&a->pending, 0);
    atomic_init(&a->quiesced, 0);
    pthread_mutex_init(&a->readers_mu, NULL);
    if (pthread_key_create(&a->reader_key, NULL) != 0) {
        snprintf(err, errlen, "pthread_key_create failed");
        goto fail;
    }
    a->have_key = 1;

    st = SG_EIO;
    int fd = open_listener(opt->host, opt->port, err, errlen);
    if (fd < 0) goto fail;

    unsigned threads = opt->threads ? opt->threads : 2;
    unsigned timeout = opt->conn_timeout_s ? opt->conn_timeout_s : 30;
    unsigned maxconn = opt->max_connections ? opt->max_connections : 16384;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | MHD_USE_ITC;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;

    struct MHD_OptionItem ops[] = {
        {MHD_OPTION_LISTEN_SOCKET, fd, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)timeout, NULL},
        {MHD_OPTION_CONNECTION_LIMIT, (intptr_t)maxconn, NULL},
        {MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)CONN_MEMORY_LIMIT, NULL},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, a},
        {MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, NULL},
        /* Last so that a single-thread daemon can end the list here. */
        {threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, (intptr_t)threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    /* The logger goes first so that MHD uses it for every later message. */
    a->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER,
                              on_mhd_log, NULL, MHD_OPTION_ARRAY, ops, MHD_OPTION_END);
    if (!a->mhd) {
        /* MHD closes the listen socket on some failure paths and not on
         * others; closing it again could hit another thread's descriptor,
         * so at worst one descriptor leaks on a failed start. */
        snprintf(err, errlen, "cannot start the HTTP server on %s:%u", opt->host ? opt->host : "*",
                 (unsigned)opt->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(a->mhd, MHD_DAEMON_INFO_BIND_PORT);
    a->port = info && info->port ? info->port : opt->port;
    *out = a;
    return SG_OK;

fail:
    sg_api_destroy(a);
    return st;
}

uint16_t sg_api_port(const sg_api *a)
{
    return a ? a->port : 0;
}

void sg_api_quiesce(sg_api *a)
{
    if (!a || !a->mhd) return;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&a->quiesced, &expected, 1)) return;
    /* MHD hands the listen socket back; with internal threads it must stay
     * open until MHD_stop_daemon has returned (destroy closes it). */
    a->quiesced_fd = MHD_quiesce_daemon(a->mhd);
    /* Connections would still queue in the kernel's backlog of the open
     * socket and wait there unanswered; shutting it down (the descriptor
     * stays valid) makes new clients get a refusal at once instead. */
    if (a->quiesced_fd != MHD_INVALID_SOCKET) shutdown(a->quiesced_fd, SHUT_RDWR);
}

size_t sg_api_pending(const sg_api *a)
{
    return a ? atomic_load(&((sg_api *)a)->pending) : 0;
}

void sg_api_destroy(sg_api *a)
{
    if (!a) return;
    /* MHD_stop_daemon must not find suspended connections: answer every
     * request the engine still holds with 503 and resume it. Its on_done
     * will find the context ANSWERED and only drop its reference. */
    pthread_mutex_lock(&wait_mu);
    a->closing = 1;
    while (a->waiting) {
        sg_reply rep;
        reply_unavailable(&rep);
        answer_locked(a->waiting, &rep);
        free(rep.body);
    }
    pthread_mutex_unlock(&wait_mu);

    /* MHD_stop_daemon closes connections at once, answers still unsent:
     * give the ones just queued (and any other answer on its way out) a
     * short, bounded while to leave. pending drops as each is sent. */
    for (int ms = 0; a->mhd && ms < DESTROY_FLUSH_MS && atomic_load(&a->pending) > 0; ms++)
        usleep(1000);

    if (a->mhd) MHD_stop_daemon(a->mhd);
    if (a->quiesced_fd != MHD_INVALID_SOCKET) close(a->quiesced_fd);

    /* The MHD threads are gone: nobody uses the readers any more. */
    reader_slot *slot = a->readers;
    while (slot) {
        reader_slot *next = slot->next;
        sg_store_reader_close(slot->reader);
        free(slot);
        slot = next;
    }
    if (a->have_key) pthread_key_delete(a->reader_key);
    pthread_mutex_destroy(&a->readers_mu);
    free(a);
}
