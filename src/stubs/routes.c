/* The stubs' routes: the three fake services, the named ones under
 * /svc/<name> and the test endpoints (/_requests, /_stats, /_config,
 * /healthz), and what each one answers. */
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "server_int.h"

#define MAX_DUMP ((size_t)1 << 30) /* GET /_requests answer */

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

route stub__route_of(const char *url, char *name)
{
    if (strncmp(url, "/svc/", 5) == 0) {
        size_t n = strlen(url + 5);
        if (!stub_name_ok(url + 5, n)) return R_NOTFOUND;
        memcpy(name, url + 5, n + 1);
        return R_SVC;
    }
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

/* ---- the fake services ------------------------------------------------ */

enum MHD_Result stub__answer_service(stub_server *s, stub_req *r)
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
    if (r->rt == R_ANONYMIZE || r->rt == R_SVC)
        return queue_copy(c, status, r->out.ptr, r->out.len);
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

/* A named service's answer: {"id", "service", "method"}. */
static void build_named(stub_req *r, const char *id)
{
    sg_buf_reset(&r->out);
    sg_buf_addf(&r->out, "{\"id\":\"%s\",\"service\":\"%s\",\"method\":\"%s\"}", id, r->name,
                r->method);
}

typedef struct header_box {
    stub_header h[STUB_REC_HEADERS];
    size_t n;
} header_box;

static enum MHD_Result collect_test_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           const char *value)
{
    (void)kind;
    header_box *b = cls;
    if (value && strncasecmp(key, "X-Test-", 7) == 0 && b->n < STUB_REC_HEADERS)
        b->h[b->n++] = (stub_header){key, value};
    return MHD_YES;
}

/* Records r with the answer it is about to get (stub__answer_service
 * decides the same way). */
static void record(stub_server *s, stub_req *r, const char *saga_id)
{
    stub_answer a = {.mode = r->spec.mode, .delay_ms = r->spec.delay_ms};
    if (r->out_status) {
        a = (stub_answer){.status = r->out_status, .mode = STUB_MODE_JSON};
    } else if (r->spec.mode != STUB_MODE_DROP && r->spec.mode != STUB_MODE_HANG) {
        a.status = r->fail ? 500 : r->spec.status ? r->spec.status : 200;
    }
    char path[STUB_NAME_MAX + 16];
    snprintf(path, sizeof path, "%s%s",
             r->rt == R_ANONYMIZE ? "/anonymize"
             : r->rt == R_EVENTS  ? "/events"
             : r->rt == R_SVC     ? "/svc/"
                                  : "/process",
             r->rt == R_SVC ? r->name : "");
    header_box hb = {.n = 0};
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_test_header, &hb);
    stub_rec_in in = {
        .path = path,
        .method = r->method,
        .saga_id = saga_id,
        .idem_key = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key"),
        .compensation =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Saga-Compensation"),
        .owner = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Saga-Owner"),
        .traceparent = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "traceparent"),
        .tracestate = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "tracestate"),
        .headers = hb.h,
        .nheaders = hb.n,
        .body = r->body.ptr ? r->body.ptr : "",
        .len = r->body.len,
    };
    stub_ring_add(s->ring, &in, &a);
}

static enum MHD_Result start_service(stub_server *s, stub_req *r)
{
    int named = r->rt == R_SVC;
    stub_svc svc = named ? STUB_SVC_COUNT : stub__svc_of(r->rt);
    const char *body = r->body.ptr ? r->body.ptr : "";
    size_t n = r->body.len;
    char err[256] = "", id[STUB_NAME_MAX + 32], key[STUB_NAME_MAX + 8];
    json_t *root = NULL;
    stub_spec sp;

    if (named) {
        stub_names_arrive(s->names, r->name, &sp, id, sizeof id);
        snprintf(key, sizeof key, "svc/%s", r->name);
    } else {
        pthread_mutex_lock(&s->cfg_lock);
        sp = s->cfg[svc];
        pthread_mutex_unlock(&s->cfg_lock);
        snprintf(key, sizeof key, "%s", stub_svc_name(svc));
    }

    int has_stub = memmem(body, n, "\"_stub\"", 7) != NULL;
    if (has_stub || r->rt == R_ANONYMIZE || r->rt == R_EVENTS) root = parse(body, n);

    const json_t *payload = root;
    const char *topic = NULL; /* of an event */
    const char *saga_id = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Saga-Id");
    if (r->rt == R_EVENTS && json_is_object(root)) {
        payload = json_object_get(root, "payload");
        topic = json_string_value(json_object_get(root, "topic"));
        if (!s->quiet) print_event(root);
        if (!saga_id) saga_id = json_string_value(json_object_get(root, "saga_id"));
    }
    /* Per-request overrides: the body's _stub first, headers last. An
     * event looks for its topic's key first (so that a test can break a
     * step's event and not its compensation), then "tokenizer"; a named
     * service for "svc/<name>". */
    const json_t *stub =
        has_stub && json_is_object(payload) ? json_object_get(payload, "_stub") : NULL;
    const json_t *o = json_is_object(stub) && topic ? json_object_get(stub, topic) : NULL;
    if (!o && json_is_object(stub)) o = json_object_get(stub, key);
    if (!o && svc == STUB_SVC_AI_MODEL && json_is_object(stub))
        o = json_object_get(stub, "ai-model");
    if (o && !json_is_null(o) && stub_spec_apply_json(&sp, o, err, sizeof err) != SG_OK) goto bad;
    if (!apply_headers(r, &sp, err, sizeof err)) goto bad;

    if (sp.fail_every > 0) {
        unsigned long long k =
            named ? stub_names_tick(s->names, r->name) : atomic_fetch_add(&s->seq[svc], 1) + 1;
        r->fail = k % (unsigned long long)sp.fail_every == 0;
    }
    if (r->rt == R_ANONYMIZE) build_anonymized(r, root);
    if (named) build_named(r, id);
    r->spec = sp;
    record(s, r, saga_id); /* saga_id may point into root */
    json_decref(root);
    root = NULL;

    int64_t wait = sp.mode == STUB_MODE_HANG ? STUB_HANG_MS : sp.delay_ms;
    if (wait > 0 && stub__delay(s, r, wait)) return MHD_YES;
    return stub__answer_service(s, r);

bad:
    sg_buf_reset(&r->out);
    json_t *d = json_pack("{s:s+}", "detail", "bad stub injection: ", err);
    char *text = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    if (text) sg_buf_adds(&r->out, text);
    free(text);
    r->out_status = 400;
    record(s, r, saga_id);
    json_decref(root);
    return stub__answer_service(s, r);
}

/* ---- test endpoints ----------------------------------------------------- */

static json_t *config_json(stub_server *s)
{
    json_t *o = json_object();
    pthread_mutex_lock(&s->cfg_lock);
    for (int i = 0; i < STUB_SVC_COUNT; i++)
        json_object_set_new(o, stub_svc_name((stub_svc)i), stub_spec_to_json(&s->cfg[i]));
    pthread_mutex_unlock(&s->cfg_lock);
    stub_names_config_json(s->names, o);
    return o;
}

/* POST /_config: each service key present (or "svc/<name>") replaces that
 * service's runtime default wholesale (null = behave normally); absent
 * keys stay as they are. All or nothing: one bad spec changes nothing. */
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
        if (strncmp(key, "svc/", 4) == 0) continue; /* stub_names_configure's */
        int i = 0;
        for (; i < STUB_SVC_COUNT; i++)
            if (strcmp(key, stub_svc_name((stub_svc)i)) == 0) break;
        if (i == STUB_SVC_COUNT && strcmp(key, "ai-model") == 0) i = STUB_SVC_AI_MODEL;
        if (i == STUB_SVC_COUNT) {
            snprintf(err, sizeof err,
                     "unknown service '%.80s' (anonymizer|tokenizer|ai_model|svc/NAME)", key);
            goto bad;
        }
        memset(&next[i], 0, sizeof next[i]);
        if (!json_is_null(v) && stub_spec_apply_json(&next[i], v, err, sizeof err) != SG_OK)
            goto bad;
        touched[i] = 1;
    }
    if (stub_names_configure(s->names, root, err, sizeof err) != SG_OK) goto bad;
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
    char b[200];
    int n = snprintf(
        b, sizeof b, "{\"anonymize\": %llu, \"process\": %llu, \"events\": %llu, \"svc\": %llu}",
        atomic_load(&s->count[STUB_SVC_ANONYMIZER]), atomic_load(&s->count[STUB_SVC_AI_MODEL]),
        atomic_load(&s->count[STUB_SVC_TOKENIZER]), atomic_load(&s->svc_count));
    return queue_copy(r->conn, 200, b, (size_t)n);
}

/* ---- dispatch ---------------------------------------------------------- */

enum MHD_Result stub__answer(stub_server *s, stub_req *r, const char *method)
{
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int post = strcmp(method, "POST") == 0;
    if (r->too_big) return queue(r->conn, 413, s->r_413);
    switch (r->rt) {
    case R_ANONYMIZE:
    case R_PROCESS:
    case R_EVENTS:
        if (!post) return queue(r->conn, 405, s->r_405);
        snprintf(r->method, sizeof r->method, "POST");
        return start_service(s, r);
    case R_SVC:
        if (!post && strcmp(method, "GET") != 0 && strcmp(method, "PUT") != 0 &&
            strcmp(method, "PATCH") != 0 && strcmp(method, "DELETE") != 0)
            return queue(r->conn, 405, s->r_405);
        snprintf(r->method, sizeof r->method, "%s", method);
        return start_service(s, r);
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

/* ---- prebuilt answers -------------------------------------------------- */

sg_status stub__responses_create(stub_server *s)
{
    s->r_process = static_response(BODY_PROCESS, JSON_CT);
    s->r_ack = static_response(BODY_ACK, JSON_CT);
    s->r_nonjson = static_response(BODY_NONJSON, "text/plain");
    s->r_fail = static_response(BODY_FAIL, JSON_CT);
    s->r_health = static_response(BODY_HEALTH, JSON_CT);
    s->r_404 = static_response(BODY_404, JSON_CT);
    s->r_405 = static_response(BODY_405, JSON_CT);
    s->r_413 = static_response(BODY_413, JSON_CT);
    if (!s->r_process || !s->r_ack || !s->r_nonjson || !s->r_fail || !s->r_health || !s->r_404 ||
        !s->r_405 || !s->r_413)
        return SG_ENOMEM;
    return SG_OK;
}

void stub__responses_destroy(stub_server *s)
{
    struct MHD_Response *all[] = {s->r_process, s->r_ack, s->r_nonjson, s->r_fail,
                                  s->r_health,  s->r_404, s->r_405,     s->r_413};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (all[i]) MHD_destroy_response(all[i]);
}
