/* The HTTP side of sta-stubs: one libmicrohttpd daemon serving the three
 * fake services plus the test endpoints (/_requests, /_stats, /_config).
 *
 * Hot path (/process under wrk): a pooled request struct, the body copied
 * into its reused buffer, one allocation for the recording ring, and a
 * shared prebuilt response; JSON is parsed only when the body mentions
 * "_stub" (or the endpoint needs a field from it). */
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sg/alloc.h"
#include "sg/json.h"
#include "stubs/stubs.h"

#define MAX_BODY ((size_t)2 << 20)        /* bigger request bodies get 413 */
#define MAX_OUT ((size_t)16 << 20)        /* one answer we build (image_id copy) */
#define MAX_DUMP ((size_t)1 << 30)        /* GET /_requests answer */
#define POOL_MAX 4096                     /* idle request structs kept */
#define POOL_KEEP_BUF ((size_t)256 << 10) /* bigger buffers are not kept idle */
#define RING_ENTRIES 10000
#define RING_BYTES ((size_t)64 << 20)
#define RING_BODY ((size_t)1 << 20)
#define CONN_LIMIT 20000
#define CONN_TIMEOUT_S 600 /* long enough for hang tests */

typedef enum {
    R_NOTFOUND,
    R_ANONYMIZE,
    R_PROCESS,
    R_EVENTS,
    R_REQUESTS,
    R_STATS,
    R_CONFIG,
    R_HEALTHZ,
} route;

typedef struct stub_req {
    struct stub_req *next; /* in the idle pool */
    struct MHD_Connection *conn;
    route rt;
    int received; /* the whole body is in; later calls only answer */
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
    pthread_mutex_t pool_lock;
    stub_req *pool;
    size_t pool_n;
    /* Prebuilt answers, shared by every connection (MHD refcounts them). */
    struct MHD_Response *r_process, *r_ack, *r_nonjson, *r_fail, *r_health;
    struct MHD_Response *r_404, *r_405, *r_413;
};

static const char BODY_PROCESS[] =
    "{\"result\": \"processed\", \"label\": \"cat\", \"score\": 0.97}";
static const char BODY_ACK[] = "{\"ack\": true}";
static const char BODY_NONJSON[] = "not json";
static const char BODY_FAIL[] = "{\"detail\": \"injected failure\"}";
static const char BODY_HEALTH[] = "{\"status\": \"ok\"}";
static const char BODY_404[] = "{\"detail\": \"Not Found\"}";
static const char BODY_405[] = "{\"detail\": \"Method Not Allowed\"}";
static const char BODY_413[] = "{\"detail\": \"Request body too large\"}";
static const char JSON_CT[] = "application/json";

/* ---- helpers ------------------------------------------------------------ */

static route route_of(const char *url)
{
    static const struct {
        const char *path;
        route rt;
    } map[] = {
        {"/anonymize", R_ANONYMIZE}, {"/process", R_PROCESS}, {"/events", R_EVENTS},
        {"/_requests", R_REQUESTS},  {"/_stats", R_STATS},    {"/_config", R_CONFIG},
        {"/healthz", R_HEALTHZ},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strcmp(url, map[i].path) == 0) return map[i].rt;
    return R_NOTFOUND;
}

static int is_service(route rt)
{
    return rt == R_ANONYMIZE || rt == R_PROCESS || rt == R_EVENTS;
}

static stub_svc svc_of(route rt)
{
    return rt == R_ANONYMIZE ? STUB_SVC_ANONYMIZER
           : rt == R_EVENTS  ? STUB_SVC_TOKENIZER
                             : STUB_SVC_AI_MODEL;
}

static struct MHD_Response *static_response(const char *body, const char *ctype)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    return r;
}

static enum MHD_Result queue(struct MHD_Connection *c, int status, struct MHD_Response *r)
{
    return MHD_queue_response(c, (unsigned)status, r);
}

/* Answers with a copy of b (a JSON text). */
static enum MHD_Result queue_copy(struct MHD_Connection *c, int status, const char *b, size_t n)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)b, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_CT);
    enum MHD_Result ret = queue(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

/* Answers with a malloc'ed JSON text, which MHD frees. */
static enum MHD_Result queue_take(struct MHD_Connection *c, int status, char *b, size_t n)
{
    struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(n, b, free);
    if (!r) {
        free(b);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_CT);
    enum MHD_Result ret = queue(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result queue_json(struct MHD_Connection *c, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    if (!text) return MHD_NO;
    return queue_take(c, status, text, strlen(text));
}

static enum MHD_Result queue_detail(struct MHD_Connection *c, int status, const char *msg)
{
    return queue_json(c, status, json_pack("{s:s}", "detail", msg));
}

/* Jansson refuses integers beyond int64 unless told to read every number
 * as a double; try exact first so ids survive, then the lenient way. */
static json_t *parse(const char *b, size_t n)
{
    json_error_t je;
    json_t *v = json_loadb(b, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v && json_error_code(&je) == json_error_numeric_overflow)
        v = json_loadb(b, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    return v;
}

/* An event line must stay one line whatever the envelope holds. */
static const char *printable(const char *s, char *tmp, size_t cap)
{
    if (!s) return "-";
    size_t i = 0;
    for (; s[i] && i + 1 < cap; i++)
        tmp[i] = ((unsigned char)s[i] < 0x20) ? '?' : s[i];
    tmp[i] = '\0';
    return tmp;
}

static void print_event(const json_t *env)
{
    char t[128], i[128], s[128];
    const char *topic = json_string_value(json_object_get(env, "topic"));
    const char *id = json_string_value(json_object_get(env, "id"));
    const char *saga = json_string_value(json_object_get(env, "saga_id"));
    flockfile(stdout);
    printf("event %s %s saga=%s\n", printable(topic, t, sizeof t), printable(id, i, sizeof i),
           printable(saga, s, sizeof s));
    fflush(stdout);
    funlockfile(stdout);
}

/* ---- request pool -------------------------------------------------------- */

static stub_req *req_get(stub_server *s)
{
    pthread_mutex_lock(&s->pool_lock);
    stub_req *r = s->pool;
    if (r) {
        s->pool = r->next;
        s->pool_n--;
    }
    pthread_mutex_unlock(&s->pool_lock);
    if (!r) {
        r = sg_xmalloc(sizeof *r);
        sg_buf_init(&r->body, MAX_BODY);
        sg_buf_init(&r->out, MAX_OUT);
    }
    r->next = NULL;
    r->conn = NULL;
    r->rt = R_NOTFOUND;
    r->received = r->too_big = r->fail = r->out_status = 0;
    memset(&r->spec, 0, sizeof r->spec);
    return r;
}

static void req_put(stub_server *s, stub_req *r)
{
    /* Keep small buffers for the next request on the pool; a one-off big
     * body should not pin megabytes per idle struct. */
    if (r->body.cap > POOL_KEEP_BUF)
        sg_buf_free(&r->body);
    else
        sg_buf_reset(&r->body);
    if (r->out.cap > POOL_KEEP_BUF)
        sg_buf_free(&r->out);
    else
        sg_buf_reset(&r->out);
    pthread_mutex_lock(&s->pool_lock);
    if (s->pool_n < POOL_MAX) {
        r->next = s->pool;
        s->pool = r;
        s->pool_n++;
        r = NULL;
    }
    pthread_mutex_unlock(&s->pool_lock);
    if (r) {
        sg_buf_free(&r->body);
        sg_buf_free(&r->out);
        free(r);
    }
}

/* ---- big answers ------------------------------------------------------- */

/* {"big":"xxx…x"} of exactly STUB_BIG_BYTES, produced block by block. */
static ssize_t big_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    static const char head[] = "{\"big\":\"";
    const uint64_t total = STUB_BIG_BYTES, hl = sizeof head - 1;
    if (pos >= total) return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = (size_t)(total - pos < max ? total - pos : max);
    memset(buf, 'x', n);
    for (uint64_t p = pos; p < hl && p < pos + n; p++)
        buf[p - pos] = head[p];
    for (uint64_t p = pos > total - 2 ? pos : total - 2; p < pos + n; p++)
        buf[p - pos] = p == total - 2 ? '"' : '}';
    return (ssize_t)n;
}

/* One per answer: MHD guards a callback response's block buffer with a
 * mutex, so a shared one would serialise concurrent big answers. */
static struct MHD_Response *big_response(void)
{
    struct MHD_Response *r =
        MHD_create_response_from_callback(STUB_BIG_BYTES, 64 * 1024, big_reader, NULL, NULL);
    if (r) MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_CT);
    return r;
}

/* ---- the fake services ---------------------------------------------------- */

/* Timer callbacks, both under the timer lock (see stub_timer_add). */
static void arm_suspend(void *arg)
{
    MHD_suspend_connection(((stub_req *)arg)->conn);
}

static void fire_resume(void *arg)
{
    /* MHD calls the handler again, which answers (or gives up a hang). */
    MHD_resume_connection(((stub_req *)arg)->conn);
}

static enum MHD_Result answer_service(stub_server *s, stub_req *r)
{
    struct MHD_Connection *c = r->conn;
    if (r->out_status) return queue_copy(c, r->out_status, r->out.ptr, r->out.len);
    /* MHD_NO closes the connection without a byte of answer; a hang ends
     * the same way once its time is up or the server stops. */
    if (r->spec.mode == STUB_MODE_DROP || r->spec.mode == STUB_MODE_HANG) return MHD_NO;
    int status = r->fail ? 500 : r->spec.status ? r->spec.status : 200;
    if (r->spec.mode == STUB_MODE_NONJSON) return queue(c, status, s->r_nonjson);
    if (r->spec.mode == STUB_MODE_BIG) {
        struct MHD_Response *big = big_response();
        if (!big) return MHD_NO;
        enum MHD_Result ret = queue(c, status, big);
        MHD_destroy_response(big);
        return ret;
    }
    if (r->fail || status < 200 || status > 299) return queue(c, status, s->r_fail);
    if (r->rt == R_ANONYMIZE) return queue_copy(c, status, r->out.ptr, r->out.len);
    return queue(c, status, r->rt == R_EVENTS ? s->r_ack : s->r_process);
}

/* Overrides from the X-Stub-* headers; 0 with err set on a bad value. */
static int apply_headers(stub_req *r, stub_spec *sp, char *err, size_t errlen)
{
    static const struct {
        const char *header, *field;
    } map[] = {
        {"X-Stub-Status", "status"}, {"X-Stub-Delay-Ms", "delay_ms"}, {"X-Stub-Mode", "mode"}};
    for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
        const char *v = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, map[i].header);
        if (v && stub_spec_apply_text(sp, map[i].field, v, err, errlen) != SG_OK) return 0;
    }
    return 1;
}

/* The anonymizer's answer, built now because it needs the parsed body. */
static void build_anonymized(stub_req *r, const json_t *root)
{
    const json_t *id = json_is_object(root) ? json_object_get(root, "image_id") : NULL;
    char *idtext = id ? json_dumps(id, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    sg_buf_reset(&r->out);
    sg_status st = sg_buf_addf(&r->out, "{\"anonymized\": true, \"image_id\": %s, \"bytes\": %zu}",
                               idtext ? idtext : "null", r->body.len);
    if (st != SG_OK) {
        /* An image_id too big to echo: answer as if it were absent. */
        sg_buf_reset(&r->out);
        sg_buf_addf(&r->out, "{\"anonymized\": true, \"image_id\": null, \"bytes\": %zu}",
                    r->body.len);
    }
    free(idtext);
}

static enum MHD_Result start_service(stub_server *s, stub_req *r)
{
    stub_svc svc = svc_of(r->rt);
    const char *body = r->body.ptr ? r->body.ptr : "";
    size_t n = r->body.len;
    char err[256] = "";
    json_t *root = NULL;

    pthread_mutex_lock(&s->cfg_lock);
    stub_spec sp = s->cfg[svc];
    pthread_mutex_unlock(&s->cfg_lock);

    int has_stub = memmem(body, n, "\"_stub\"", 7) != NULL;
    if (has_stub || r->rt == R_ANONYMIZE || r->rt == R_EVENTS) root = parse(body, n);

    const json_t *payload = root;
    const char *saga_id = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Saga-Id");
    if (r->rt == R_EVENTS && json_is_object(root)) {
        payload = json_object_get(root, "payload");
        if (!s->quiet) print_event(root);
        if (!saga_id) saga_id = json_string_value(json_object_get(root, "saga_id"));
    }
    stub_ring_add(s->ring,
                  r->rt == R_ANONYMIZE ? "/anonymize"
                  : r->rt == R_EVENTS  ? "/events"
                                       : "/process",
                  saga_id, MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key"),
                  body, n);

    /* Per-request overrides: the body's _stub first, headers last. */
    const json_t *stub =
        has_stub && json_is_object(payload) ? json_object_get(payload, "_stub") : NULL;
    const json_t *o = json_is_object(stub) ? json_object_get(stub, stub_svc_name(svc)) : NULL;
    if (!o && svc == STUB_SVC_AI_MODEL && json_is_object(stub))
        o = json_object_get(stub, "ai-model");
    if (o && !json_is_null(o) && stub_spec_apply_json(&sp, o, err, sizeof err) != SG_OK) goto bad;
    if (!apply_headers(r, &sp, err, sizeof err)) goto bad;

    if (sp.fail_every > 0) {
        unsigned long long k = atomic_fetch_add(&s->seq[svc], 1) + 1;
        r->fail = k % (unsigned long long)sp.fail_every == 0;
    }
    if (r->rt == R_ANONYMIZE) build_anonymized(r, root);
    json_decref(root);
    root = NULL;
    r->spec = sp;

    int64_t wait = sp.mode == STUB_MODE_HANG ? STUB_HANG_MS : sp.delay_ms;
    /* If the timer refuses (shutting down), answer at once instead. */
    if (wait > 0 && stub_timer_add(s->timer, wait, arm_suspend, fire_resume, r) == SG_OK)
        return MHD_YES;
    return answer_service(s, r);

bad:
    json_decref(root);
    sg_buf_reset(&r->out);
    json_t *d = json_pack("{s:s+}", "detail", "bad stub injection: ", err);
    char *text = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (text) sg_buf_adds(&r->out, text);
    free(text);
    r->out_status = 400;
    return answer_service(s, r);
}

/* ---- test endpoints ----------------------------------------------------- */

static json_t *config_json(stub_server *s)
{
    json_t *o = json_object();
    pthread_mutex_lock(&s->cfg_lock);
    for (int i = 0; i < STUB_SVC_COUNT; i++)
        json_object_set_new(o, stub_svc_name((stub_svc)i), stub_spec_to_json(&s->cfg[i]));
    pthread_mutex_unlock(&s->cfg_lock);
    return o;
}

/* POST /_config: each service key present replaces that service's runtime
 * default wholesale (null = behave normally); absent keys stay as they are.
 * All or nothing: one bad spec changes nothing. */
static enum MHD_Result post_config(stub_server *s, stub_req *r)
{
    char err[256];
    stub_spec next[STUB_SVC_COUNT];
    int touched[STUB_SVC_COUNT] = {0};
    json_t *root = parse(r->body.ptr ? r->body.ptr : "", r->body.len);
    if (!json_is_object(root)) {
        json_decref(root);
        return queue_detail(r->conn, 400, "body must be a JSON object");
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        int i = 0;
        for (; i < STUB_SVC_COUNT; i++)
            if (strcmp(key, stub_svc_name((stub_svc)i)) == 0) break;
        if (i == STUB_SVC_COUNT && strcmp(key, "ai-model") == 0) i = STUB_SVC_AI_MODEL;
        if (i == STUB_SVC_COUNT) {
            snprintf(err, sizeof err, "unknown service '%s' (anonymizer|tokenizer|ai_model)", key);
            goto bad;
        }
        memset(&next[i], 0, sizeof next[i]);
        if (!json_is_null(v) && stub_spec_apply_json(&next[i], v, err, sizeof err) != SG_OK)
            goto bad;
        touched[i] = 1;
    }
    json_decref(root);
    pthread_mutex_lock(&s->cfg_lock);
    for (int i = 0; i < STUB_SVC_COUNT; i++) {
        if (!touched[i]) continue;
        s->cfg[i] = next[i];
        atomic_store(&s->seq[i], 0); /* fail_every counts from the new config */
    }
    pthread_mutex_unlock(&s->cfg_lock);
    return queue_json(r->conn, 200, config_json(s));
bad:
    json_decref(root);
    return queue_detail(r->conn, 400, err);
}

static enum MHD_Result get_requests(stub_server *s, stub_req *r)
{
    const char *saga = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "saga_id");
    sg_buf out;
    sg_buf_init(&out, MAX_DUMP);
    if (stub_ring_dump(s->ring, saga, &out) != SG_OK) {
        sg_buf_free(&out);
        return queue_detail(r->conn, 500, "recorded requests too large to dump");
    }
    size_t n;
    char *text = sg_buf_take(&out, &n);
    return queue_take(r->conn, 200, text, n);
}

static enum MHD_Result get_stats(stub_server *s, stub_req *r)
{
    char b[160];
    int n = snprintf(b, sizeof b, "{\"anonymize\": %llu, \"process\": %llu, \"events\": %llu}",
                     atomic_load(&s->count[STUB_SVC_ANONYMIZER]),
                     atomic_load(&s->count[STUB_SVC_AI_MODEL]),
                     atomic_load(&s->count[STUB_SVC_TOKENIZER]));
    return queue_copy(r->conn, 200, b, (size_t)n);
}

/* ---- MHD callbacks --------------------------------------------------------- */

static enum MHD_Result on_complete_request(stub_server *s, stub_req *r, const char *method)
{
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int post = strcmp(method, "POST") == 0;
    if (r->too_big) return queue(r->conn, 413, s->r_413);
    switch (r->rt) {
    case R_ANONYMIZE:
    case R_PROCESS:
    case R_EVENTS:
        return post ? start_service(s, r) : queue(r->conn, 405, s->r_405);
    case R_HEALTHZ:
        return get ? queue(r->conn, 200, s->r_health) : queue(r->conn, 405, s->r_405);
    case R_STATS:
        return get ? get_stats(s, r) : queue(r->conn, 405, s->r_405);
    case R_REQUESTS:
        if (get) return get_requests(s, r);
        if (strcmp(method, "DELETE") == 0) {
            stub_ring_clear(s->ring);
            return queue_copy(r->conn, 200, "{\"cleared\": true}", 17);
        }
        return queue(r->conn, 405, s->r_405);
    case R_CONFIG:
        if (get) return queue_json(r->conn, 200, config_json(s));
        return post ? post_config(s, r) : queue(r->conn, 405, s->r_405);
    case R_NOTFOUND:
        break;
    }
    return queue(r->conn, 404, s->r_404);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **con_cls)
{
    (void)version;
    stub_server *s = cls;
    stub_req *r = *con_cls;
    if (!r) {
        /* Headers are in. Count here so /_stats includes every request a
         * service received, even those it then fails or rejects. */
        r = req_get(s);
        r->conn = c;
        r->rt = route_of(url);
        *con_cls = r;
        if (is_service(r->rt)) atomic_fetch_add(&s->count[svc_of(r->rt)], 1);
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > MAX_BODY) {
            r->received = r->too_big = 1;
            return queue(c, 413, s->r_413); /* MHD closes: the body stays unread */
        }
        return MHD_YES;
    }
    if (*size) {
        /* Past the cap (chunked uploads have no Content-Length) the rest is
         * read and thrown away, then answered 413. */
        if (!r->too_big && sg_buf_add(&r->body, data, *size) != SG_OK) {
            r->too_big = 1;
            sg_buf_free(&r->body);
        }
        *size = 0;
        return MHD_YES;
    }
    if (r->received) return answer_service(s, r); /* resumed after a delay */
    r->received = 1;
    return on_complete_request(s, r, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)c;
    (void)toe;
    if (*con_cls) req_put(cls, *con_cls);
    *con_cls = NULL;
}

/* MHD reports every MHD_NO from the handler as an internal error, but
 * drop and hang return it on purpose: keep stderr for real problems. */
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    if (strncmp(line, "Application reported internal error", 35) == 0) return;
    fprintf(stderr, "sta-stubs: %s", line);
}

/* ---- lifecycle ------------------------------------------------------------- */

sg_status stub_server_start(stub_server **out, const stub_server_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    struct addrinfo *ai = NULL;
    stub_server *s = sg_xcalloc(1, sizeof *s);
    pthread_mutex_init(&s->cfg_lock, NULL);
    pthread_mutex_init(&s->pool_lock, NULL);
    s->quiet = o->quiet;
    memcpy(s->cfg, o->defaults, sizeof s->cfg);

    s->r_process = static_response(BODY_PROCESS, JSON_CT);
    s->r_ack = static_response(BODY_ACK, JSON_CT);
    s->r_nonjson = static_response(BODY_NONJSON, "text/plain");
    s->r_fail = static_response(BODY_FAIL, JSON_CT);
    s->r_health = static_response(BODY_HEALTH, JSON_CT);
    s->r_404 = static_response(BODY_404, JSON_CT);
    s->r_405 = static_response(BODY_405, JSON_CT);
    s->r_413 = static_response(BODY_413, JSON_CT);
    if (!s->r_process || !s->r_ack || !s->r_nonjson || !s->r_fail || !s->r_health || !s->r_404 ||
        !s->r_405 || !s->r_413) {
        snprintf(err, errlen, "cannot create responses");
        goto fail;
    }
    if (stub_ring_create(&s->ring, RING_ENTRIES, RING_BYTES, RING_BODY) != SG_OK ||
        stub_timer_create(&s->timer) != SG_OK) {
        snprintf(err, errlen, "cannot start the recorder or the timer thread");
        goto fail;
    }

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    int gai = getaddrinfo(o->host, o->port, &hints, &ai);
    if (gai != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", o->host, gai_strerror(gai));
        goto fail;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    flags |= MHD_is_feature_supported(MHD_FEATURE_EPOLL) == MHD_YES ? MHD_USE_EPOLL : MHD_USE_POLL;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    struct MHD_OptionItem opts[] = {
        {MHD_OPTION_SOCK_ADDR, 0, ai->ai_addr},
        {MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s},
        {MHD_OPTION_CONNECTION_LIMIT, CONN_LIMIT, NULL},
        {MHD_OPTION_CONNECTION_TIMEOUT, CONN_TIMEOUT_S, NULL},
        {MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, NULL},
        /* Must stay last: dropped for a single thread, where MHD wants no pool. */
        {MHD_OPTION_THREAD_POOL_SIZE, o->threads, NULL},
        {MHD_OPTION_END, 0, NULL},
    };
    if (o->threads <= 1) {
        size_t last = sizeof opts / sizeof *opts - 2;
        opts[last] = opts[last + 1];
    }
    /* The logger goes first so that MHD never uses its own. */
    s->d = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                            mhd_log, NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!s->d) {
        snprintf(err, errlen, "cannot listen on %s:%s", o->host, o->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : atoi(o->port);
    freeaddrinfo(ai);
    *out = s;
    return SG_OK;
fail:
    if (ai) freeaddrinfo(ai);
    stub_server_stop(s);
    return SG_EIO;
}

int stub_server_port(const stub_server *s)
{
    return s->port;
}

void stub_server_stop(stub_server *s)
{
    if (!s) return;
    /* Order matters: MHD refuses to stop with suspended connections, so the
     * timer resumes every delayed or hanging one (and refuses new ones)
     * before the daemon goes. */
    stub_timer_stop(s->timer);
    if (s->d) MHD_stop_daemon(s->d);
    stub_timer_destroy(s->timer);
    stub_ring_destroy(s->ring);
    struct MHD_Response *all[] = {s->r_process, s->r_ack, s->r_nonjson, s->r_fail,
                                  s->r_health,  s->r_404, s->r_405,     s->r_413};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]) MHD_destroy_response(all[i]);
    while (s->pool) {
        stub_req *r = s->pool;
        s->pool = r->next;
        sg_buf_free(&r->body);
        sg_buf_free(&r->out);
        free(r);
    }
    pthread_mutex_destroy(&s->cfg_lock);
    pthread_mutex_destroy(&s->pool_lock);
    free(s);
}
