/* The HTTP server in process, driven by libcurl, against fakes of the
 * engine, the store and the bus defined below (the linker takes these
 * instead of the real ones from sgcore, so the API is tested alone).
 *
 * The fake engine answers on its own thread, like the real loop thread,
 * so every POST goes through suspend and resume. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sg/alloc.h"
#include "sg/api.h"
#include "sg/buf.h"
#include "sg/def.h"
#include "api/render.h"

#define KNOWN_ID "0f8fad5b-d9cb-469f-a165-70867728950e"
#define RUNNING_ID "1f8fad5b-d9cb-469f-a165-70867728950e"

/* ---- fake engine ------------------------------------------------------- */

/* A start the fake engine holds, answered from its worker thread (or by
 * engine_flush for "hold" bodies). */
typedef struct held {
    sg_start in; /* owned */
    sg_start_cb cb;
    void *arg;
    struct held *next;
} held;

struct sg_engine {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    held *head, *tail; /* queue for the worker */
    held *parked;      /* "hold" requests, answered by engine_flush */
    int closed;        /* submit refuses */
    int stop;
    int submits;
    char last_key[256];
    int last_async;
    char last_body[256];
    char last_type[64]; /* the start's definition, "" for the default */
    pthread_t thread;
};

static struct sg_engine eng;
static atomic_int late_stored; /* see sg_store_get_by_idem */

sg_status sg_engine_submit(sg_engine *e, sg_start *start, sg_start_cb cb, void *arg)
{
    pthread_mutex_lock(&e->mu);
    if (e->closed) {
        pthread_mutex_unlock(&e->mu);
        return SG_ECLOSED;
    }
    held *req = sg_xcalloc(1, sizeof *req);
    req->in = *start;
    req->cb = cb;
    req->arg = arg;
    start->body = start->idem_key = NULL; /* taken */
    e->submits++;
    snprintf(e->last_key, sizeof e->last_key, "%s", req->in.idem_key ? req->in.idem_key : "");
    snprintf(e->last_body, sizeof e->last_body, "%.*s", (int)req->in.body_len, req->in.body);
    e->last_async = req->in.async;
    snprintf(e->last_type, sizeof e->last_type, "%s", req->in.def ? req->in.def->name : "");
    if (strstr(req->in.body, "\"hold\"")) {
        req->next = e->parked;
        e->parked = req;
    } else {
        if (e->tail)
            e->tail->next = req;
        else
            e->head = req;
        e->tail = req;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return SG_OK;
}

/* The outcome a real engine would give, by marker in the body. */
static void engine_answer(held *req)
{
    sg_outcome o;
    sg_step_output echo = {.key = "echo", .json = req->in.body, .json_len = req->in.body_len};
    sg_outcome_running(&o, KNOWN_ID);
    if (strstr(req->in.body, "\"exists\"")) {
        /* A stored saga took the key meanwhile: the API looks it up. */
        sg_outcome_fail(&o, SG_EEXIST, "the Idempotency-Key belongs to a stored saga");
        atomic_store(&late_stored, 1);
        o.request = req->in.body;
        o.request_len = req->in.body_len;
    } else if (req->in.async) {
        /* accepted: 202 IN_PROGRESS */
    } else if (strstr(req->in.body, "\"busy\"")) {
        /* The engine's own refusal, as when too many sagas are in flight. */
        sg_outcome_fail(&o, SG_EBUSY, "too many sagas in flight; retry later");
    } else if (strstr(req->in.body, "\"fail\"")) {
        o.saga_status = SG_SAGA_FAILED;
        o.error = "boom";
        o.failed_step = 1;
    } else {
        o.saga_status = SG_SAGA_COMPLETED;
        o.result = "ok";
        o.outputs = &echo;
        o.noutputs = 1;
    }
    req->cb(req->arg, &o);
    free(req->in.body);
    free(req->in.idem_key);
    free(req);
}

static void *engine_main(void *arg)
{
    struct sg_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->head && !e->stop)
            pthread_cond_wait(&e->cv, &e->mu);
        if (!e->head) break;
        held *req = e->head;
        e->head = req->next;
        if (!e->head) e->tail = NULL;
        pthread_mutex_unlock(&e->mu);
        usleep(2000); /* the answer comes later than the suspend */
        engine_answer(req);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* Answers every held request (on the calling thread). */
static void engine_flush(void)
{
    pthread_mutex_lock(&eng.mu);
    held *req = eng.parked;
    eng.parked = NULL;
    pthread_mutex_unlock(&eng.mu);
    while (req) {
        held *next = req->next;
        engine_answer(req);
        req = next;
    }
}

/* Redrive and redelivery: answered at once, on the calling thread's
 * behalf from the worker's point of view (the API must cope). */
static int redrives, redelivers;

sg_status sg_engine_redrive(sg_engine *e, sg_saga_rec *rec, int async, sg_start_cb cb, void *arg)
{
    (void)e;
    redrives++;
    sg_outcome o;
    sg_outcome_running(&o, rec->id);
    if (!async) {
        o.saga_status = SG_SAGA_COMPLETED;
        o.result = "redriven";
    }
    cb(arg, &o);
    sg_saga_rec_free(rec);
    return SG_OK;
}

sg_status sg_engine_redeliver(sg_engine *e, sg_event_rec *ev, sg_cmd_cb cb, void *arg)
{
    (void)e;
    redelivers++;
    cb(arg, SG_OK, NULL);
    sg_event_rec_free(ev);
    return SG_OK;
}

/* ---- fake store and bus --------------------------------------------------- */

struct sg_store {
    int healthy;
};
struct sg_store_reader {
    int magic;
};
static struct sg_store store = {1};
static atomic_int readers_open;

sg_status sg_store_reader_open(sg_store *s, sg_store_reader **out, char *err, size_t errlen)
{
    (void)s, (void)err, (void)errlen;
    *out = sg_xcalloc(1, sizeof **out);
    (*out)->magic = 42;
    atomic_fetch_add(&readers_open, 1);
    return SG_OK;
}

void sg_store_reader_close(sg_store_reader *r)
{
    if (!r) return;
    assert_int_equal(r->magic, 42);
    atomic_fetch_sub(&readers_open, 1);
    free(r);
}

/* KNOWN_ID: COMPLETED, idem key "k1", request {"a":1}.
 * RUNNING_ID: IN_PROGRESS, idem key "k2", request {"b":2}. */
static void fill(sg_saga_rec *r, int running)
{
    static const char *names[] = {"anonymizer", "tokenizer", "ai_model"};
    memset(r, 0, sizeof *r);
    strcpy(r->id, running ? RUNNING_ID : KNOWN_ID);
    r->def_name = sg_xstrdup("sta");
    r->def_version = 1;
    r->request = sg_xstrdup(running ? "{\"b\":2}" : "{\"a\":1}");
    r->request_len = strlen(r->request);
    r->idem_key = sg_xstrdup(running ? "k2" : "k1");
    r->status = running ? SG_SAGA_IN_PROGRESS : SG_SAGA_COMPLETED;
    r->created_us = r->updated_us = INT64_C(1795860000000000);
    r->nsteps = 3;
    r->steps = sg_xcalloc(3, sizeof *r->steps);
    for (int i = 0; i < 3; i++) {
        r->steps[i].name = sg_xstrdup(names[i]);
        r->steps[i].status = running ? SG_STEP_PENDING : SG_STEP_COMPLETED;
    }
    if (!running) {
        r->steps[0].response = sg_xstrdup("{\"x\":1}");
        r->steps[0].response_len = 7;
        r->steps[2].response = sg_xstrdup("true");
        r->steps[2].response_len = 4;
    }
}

#define FAILED_ID "2f8fad5b-d9cb-469f-a165-70867728950e"
#define PARKED_ID "3f8fad5b-d9cb-469f-a165-70867728950e"
#define DONE_EV_ID "4f8fad5b-d9cb-469f-a165-70867728950e"

static void fill_event(sg_event_rec *e, int parked)
{
    memset(e, 0, sizeof *e);
    strcpy(e->id, parked ? PARKED_ID : DONE_EV_ID);
    strcpy(e->saga_id, KNOWN_ID);
    e->topic = sg_xstrdup("tokenizer_compensation");
    e->payload = sg_xstrdup("{}");
    e->payload_len = 2;
    e->compensation = 1;
    e->status = parked ? SG_EVENT_PARKED : SG_EVENT_DELIVERED;
    e->attempts = parked ? 7 : 1;
    e->last_error = parked ? sg_xstrdup("webhook answered HTTP 403") : NULL;
    e->created_us = INT64_C(1795860000000000);
}

sg_status sg_store_get_event(sg_store_reader *r, const char *id, sg_event_rec *out)
{
    assert_int_equal(r->magic, 42);
    memset(out, 0, sizeof *out);
    if (strcmp(id, PARKED_ID) == 0 || strcmp(id, DONE_EV_ID) == 0) {
        fill_event(out, strcmp(id, PARKED_ID) == 0);
        return SG_OK;
    }
    return SG_ENOTFOUND;
}

sg_status sg_store_list_events(sg_store_reader *r, const sg_list_query *q, sg_event_rec **out,
                               size_t *n, char next[SG_CURSOR_MAX])
{
    assert_int_equal(r->magic, 42);
    next[0] = '\0';
    *out = sg_xcalloc(2, sizeof **out);
    *n = 0;
    if (q->status < 0 || q->status == SG_EVENT_PARKED) fill_event(&(*out)[(*n)++], 1);
    if (q->status < 0 || q->status == SG_EVENT_DELIVERED) fill_event(&(*out)[(*n)++], 0);
    return SG_OK;
}

sg_status sg_store_get(sg_store_reader *r, const char *id, sg_saga_rec *out)
{
    assert_int_equal(r->magic, 42);
    memset(out, 0, sizeof *out);
    if (strcmp(id, KNOWN_ID) == 0)
        fill(out, 0);
    else if (strcmp(id, RUNNING_ID) == 0)
        fill(out, 1);
    else if (strcmp(id, FAILED_ID) == 0) {
        fill(out, 0);
        strcpy(out->id, FAILED_ID);
        out->status = SG_SAGA_FAILED;
        out->steps[0].status = SG_STEP_FAILED;
    } else
        return SG_ENOTFOUND;
    return SG_OK;
}

/* Key "late" belongs to a finished saga with request {"exists":1} that
 * appears in the store only once the fake engine has answered SG_EEXIST. */

sg_status sg_store_get_by_idem(sg_store_reader *r, const char *key, sg_saga_rec *out)
{
    assert_int_equal(r->magic, 42);
    memset(out, 0, sizeof *out);
    if (strcmp(key, "late") == 0) {
        if (!atomic_load(&late_stored)) return SG_ENOTFOUND;
        fill(out, 0);
        free(out->request);
        out->request = sg_xstrdup("{\"exists\":1}");
        out->request_len = strlen(out->request);
        return SG_OK;
    }
    if (strcmp(key, "k1") == 0)
        fill(out, 0);
    else if (strcmp(key, "k2") == 0)
        fill(out, 1);
    else
        return SG_ENOTFOUND;
    return SG_OK;
}

/* A listing of big_n records of about big_size bytes each, when big_n is
 * set: record i (newest first) has id "<i as %08x>-d9cb-...". */
static int big_n;
static size_t big_size;
static atomic_int list_calls;
static atomic_size_t list_max_limit;

static void fill_big(sg_saga_rec *r, int i)
{
    fill(r, 0);
    snprintf(r->id, sizeof r->id, "%08x-d9cb-469f-a165-70867728950e", (unsigned)i);
    free(r->request);
    char *req = sg_xmalloc(big_size + 16);
    int n = snprintf(req, big_size + 16, "{\"p\":\"");
    memset(req + n, 'x', big_size);
    strcpy(req + n + big_size, "\"}");
    r->request = req;
    r->request_len = strlen(req);
}

static sg_status list_big(const sg_list_query *q, sg_saga_rec **out, size_t *n,
                          char next[SG_CURSOR_MAX])
{
    int start = 0;
    if (q->after) {
        unsigned idx;
        if (sscanf(q->after, "after-%8x", &idx) != 1) return SG_EINVAL;
        start = (int)idx + 1;
    }
    size_t got = 0;
    *out = sg_xcalloc(q->limit, sizeof **out);
    for (int i = start; i < big_n && got < q->limit; i++)
        fill_big(&(*out)[got++], i);
    *n = got;
    if (start + (int)got < big_n) sg_store_cursor(&(*out)[got - 1], next);
    atomic_fetch_add(&list_calls, 1);
    if (q->limit > atomic_load(&list_max_limit)) atomic_store(&list_max_limit, q->limit);
    return SG_OK;
}

sg_status sg_store_list(sg_store_reader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                        char next[SG_CURSOR_MAX])
{
    assert_int_equal(r->magic, 42);
    *out = NULL;
    *n = 0;
    next[0] = '\0';
    if (big_n) return list_big(q, out, n, next);
    if (q->after && strcmp(q->after, "bad") == 0) return SG_EINVAL;
    *out = sg_xcalloc(2, sizeof **out);
    if (q->status != SG_SAGA_COMPLETED) fill(&(*out)[(*n)++], 1);
    if (q->status != SG_SAGA_IN_PROGRESS) fill(&(*out)[(*n)++], 0);
    if (q->limit == 1 && *n == 2) {
        sg_saga_rec_free(&(*out)[1]);
        *n = 1;
        strcpy(next, "c1");
    }
    return SG_OK;
}

/* The real one lives with the store; the fake list's cursors are its own. */
void sg_store_cursor(const sg_saga_rec *r, char out[SG_CURSOR_MAX])
{
    snprintf(out, SG_CURSOR_MAX, "after-%.8s", r->id);
}

/* GET /metrics reads the outbox counts: PENDING 1, DELIVERED 2, ... */
sg_status sg_store_count_events(sg_store_reader *r, uint64_t counts[SG_EVENT_STATUSES])
{
    assert_int_equal(r->magic, 42);
    for (int i = 0; i < SG_EVENT_STATUSES; i++)
        counts[i] = (uint64_t)i + 1;
    return SG_OK;
}

const char *sg_store_reader_error(const sg_store_reader *r)
{
    (void)r;
    return "";
}

sg_status sg_store_health(sg_store *s, char *why, size_t n)
{
    if (!s->healthy) snprintf(why, n, "disk full");
    return s->healthy ? SG_OK : SG_EIO;
}

struct sg_bus {
    int broker, ready;
};
static struct sg_bus bus = {0, 1};

int sg_bus_is_broker(const sg_bus *b)
{
    return b->broker;
}
sg_status sg_bus_health(sg_bus *b, char *why, size_t n)
{
    if (!b->ready) snprintf(why, n, "not connected");
    return b->ready ? SG_OK : SG_EUNAVAIL;
}
const char *sg_bus_name(const sg_bus *b)
{
    (void)b;
    return "nats";
}

/* ---- HTTP client ---------------------------------------------------------- */

typedef struct resp {
    long status;
    sg_buf body;
    char ctype[128];
    char location[128];
    char allow[128];
    char retry_after[32];
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    resp *r = arg;
    return sg_buf_add(&r->body, p, sz * n) == SG_OK ? sz * n : 0;
}

static void grab(const char *line, size_t len, const char *name, char *dst, size_t dstlen)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(line, name, nl) != 0) return;
    const char *v = line + nl;
    size_t vl = len - nl;
    while (vl && (*v == ' '))
        v++, vl--;
    while (vl && (v[vl - 1] == '\r' || v[vl - 1] == '\n'))
        vl--;
    snprintf(dst, dstlen, "%.*s", (int)vl, v);
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    resp *r = arg;
    grab(p, sz * n, "Content-Type:", r->ctype, sizeof r->ctype);
    grab(p, sz * n, "Location:", r->location, sizeof r->location);
    grab(p, sz * n, "Allow:", r->allow, sizeof r->allow);
    grab(p, sz * n, "Retry-After:", r->retry_after, sizeof r->retry_after);
    return sz * n;
}

static uint16_t port;

/* One request; extra headers NULL-terminated. Returns the curl code. */
static CURLcode request_on(CURL *c, resp *r, const char *method, const char *path, const char *body,
                           long body_len, const char *const *headers)
{
    char url[256];
    struct curl_slist *hl = NULL;
    memset(r, 0, sizeof *r);
    sg_buf_init(&r->body, (size_t)64 << 20);
    snprintf(url, sizeof url, "http://127.0.0.1:%u%s", (unsigned)port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, body_len >= 0 ? body_len : (long)strlen(body));
    } else if (strcmp(method, "HEAD") != 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    hl = curl_slist_append(hl, "Expect:");
    for (size_t i = 0; headers && headers[i]; i++)
        hl = curl_slist_append(hl, headers[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(hl);
    if (!r->body.ptr) sg_buf_add(&r->body, "", 0);
    return rc;
}

static long request(resp *r, const char *method, const char *path, const char *body,
                    const char *const *headers)
{
    CURL *c = curl_easy_init();
    CURLcode rc = request_on(c, r, method, path, body, -1, headers);
    curl_easy_cleanup(c);
    assert_int_equal(rc, CURLE_OK);
    assert_string_equal(r->ctype, "application/json");
    return r->status;
}

static void resp_free(resp *r)
{
    sg_buf_free(&r->body);
}

/* ---- fixture -------------------------------------------------------------- */

static sg_api *api;

/* pending drops when MHD has finished sending, a moment after the client
 * has read the answer: poll for it. */
static size_t pending_settled(void)
{
    for (int i = 0; i < 2000 && sg_api_pending(api) != 0; i++)
        usleep(1000);
    return sg_api_pending(api);
}

static int setup(void **state)
{
    (void)state;
    memset(&eng, 0, sizeof eng);
    pthread_mutex_init(&eng.mu, NULL);
    pthread_cond_init(&eng.cv, NULL);
    pthread_create(&eng.thread, NULL, engine_main, &eng);
    store.healthy = 1;
    bus.broker = 0;
    bus.ready = 1;
    sg_api_options opt = {.host = "127.0.0.1",
                          .port = 0,
                          .max_body = 1024,
                          .threads = 4,
                          .conn_timeout_s = 5,
                          .max_connections = 1000};
    char err[256];
    assert_int_equal(sg_api_create(&api, &opt, &eng, &store, &bus, err, sizeof err), SG_OK);
    port = sg_api_port(api);
    assert_true(port != 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    sg_api_destroy(api);
    api = NULL;
    assert_int_equal(atomic_load(&readers_open), 0);
    engine_flush();
    pthread_mutex_lock(&eng.mu);
    eng.stop = 1;
    pthread_cond_signal(&eng.cv);
    pthread_mutex_unlock(&eng.mu);
    pthread_join(eng.thread, NULL);
    pthread_mutex_destroy(&eng.mu);
    pthread_cond_destroy(&eng.cv);
    return 0;
}

/* ---- tests ------------------------------------------------------------------ */

static void test_health_and_routing(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(request(&r, "GET", "/healthz", NULL, NULL), 200);
    assert_string_equal(r.body.ptr, "{\"status\":\"ok\"}");
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/readyz", NULL, NULL), 200);
    assert_string_equal(r.body.ptr, "{\"status\":\"ready\"}");
    assert_string_equal(r.retry_after, ""); /* only on 503s */
    resp_free(&r);
    bus.broker = 1;
    bus.ready = 0;
    assert_int_equal(request(&r, "GET", "/readyz", NULL, NULL), 503);
    assert_string_equal(r.body.ptr, "{\"detail\":\"bus nats: not connected\"}");
    assert_string_equal(r.retry_after, "1");
    resp_free(&r);
    bus.ready = 1;
    store.healthy = 0;
    assert_int_equal(request(&r, "GET", "/readyz", NULL, NULL), 503);
    assert_string_equal(r.body.ptr, "{\"detail\":\"store: disk full\"}");
    assert_string_equal(r.retry_after, "1");
    resp_free(&r);
    store.healthy = 1;

    assert_int_equal(request(&r, "GET", "/nope", NULL, NULL), 404);
    assert_string_equal(r.body.ptr, "{\"detail\":\"Not Found\"}");
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/saga", NULL, NULL), 405);
    assert_string_equal(r.body.ptr, "{\"detail\":\"Method Not Allowed\"}");
    assert_string_equal(r.allow, "POST");
    resp_free(&r);
    assert_int_equal(request(&r, "DELETE", "/saga/" KNOWN_ID, NULL, NULL), 405);
    assert_string_equal(r.allow, "GET, HEAD");
    resp_free(&r);
    assert_int_equal(request(&r, "PUT", "/healthz", "{}", NULL), 405);
    resp_free(&r);
}

/* The value of the sample line that starts with `series ` in text; -1 if none. */
static long long sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, series, n) == 0 && p[n] == ' ') return atoll(p + n + 1);
    return -1;
}

static long long scrape(const char *series)
{
    resp r;
    CURL *c = curl_easy_init();
    assert_int_equal(request_on(c, &r, "GET", "/metrics", NULL, -1, NULL), CURLE_OK);
    curl_easy_cleanup(c);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
    assert_non_null(strstr(r.body.ptr, "# TYPE sagad_http_requests_total counter\n"));
    assert_int_equal(sample(r.body.ptr, "sagad_outbox_events{status=\"PENDING\"}"), 1);
    assert_int_equal(sample(r.body.ptr, "sagad_outbox_events{status=\"PARKED\"}"), 4);
    long long v = sample(r.body.ptr, series);
    resp_free(&r);
    return v < 0 ? 0 : v;
}

/* Each answer counts under its route's template and its status; a 405
 * under the route of its path, an unknown path under "other". */
static void test_metrics(void **state)
{
    (void)state;
    static const char *const series[] = {
        "sagad_http_requests_total{route=\"/healthz\",code=\"200\"}",
        "sagad_http_requests_total{route=\"other\",code=\"404\"}",
        "sagad_http_requests_total{route=\"/saga/{id}\",code=\"405\"}",
        "sagad_http_requests_total{route=\"/saga/{id}\",code=\"404\"}",
        "sagad_http_requests_total{route=\"/metrics\",code=\"200\"}",
    };
    long long before[5], want[5] = {2, 1, 1, 1, 5};
    for (int i = 0; i < 5; i++)
        before[i] = scrape(series[i]);
    resp r;
    assert_int_equal(request(&r, "GET", "/healthz", NULL, NULL), 200);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/healthz", NULL, NULL), 200);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/no/such/path/123", NULL, NULL), 404);
    resp_free(&r);
    assert_int_equal(request(&r, "DELETE", "/saga/" KNOWN_ID, NULL, NULL), 405);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/saga/not-an-id", NULL, NULL), 404);
    resp_free(&r);
    for (int i = 0; i < 5; i++)
        assert_int_equal(scrape(series[i]) - before[i], want[i]);
}

static void test_get_saga(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(request(&r, "GET", "/saga/" KNOWN_ID, NULL, NULL), 200);
    assert_memory_equal(r.body.ptr, "{\"id\":\"" KNOWN_ID "\",\"request_data\":{\"a\":1},", 56);
    assert_non_null(strstr(r.body.ptr,
                           "\"processed_data\":{\"anonymized\":{\"x\":1},"
                           "\"tokenizer_event\":\"event_published\",\"ai_result\":true}"));
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/saga/3f8fad5b-d9cb-469f-a165-70867728950e", NULL, NULL),
                     404);
    assert_string_equal(r.body.ptr, "{\"detail\":\"Saga no encontrada\"}");
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/saga/not-a-uuid", NULL, NULL), 404);
    assert_string_equal(r.body.ptr, "{\"detail\":\"Saga no encontrada\"}");
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/saga/%00", NULL, NULL), 404);
    resp_free(&r);
    /* A NUL hidden in the path must not cut it down to a known id. */
    const char *nul_paths[] = {"/saga/" KNOWN_ID "%00", "/saga/" KNOWN_ID "%00junk",
                               "/saga/" KNOWN_ID "%00?x=1", "/saga/" KNOWN_ID "%00%00"};
    for (size_t i = 0; i < sizeof nul_paths / sizeof nul_paths[0]; i++) {
        assert_int_equal(request(&r, "GET", nul_paths[i], NULL, NULL), 404);
        assert_string_equal(r.body.ptr, "{\"detail\":\"Saga no encontrada\"}");
        resp_free(&r);
    }
    assert_int_equal(request(&r, "HEAD", "/saga/" KNOWN_ID "%00junk", NULL, NULL), 404);
    resp_free(&r);
    const char *nul_other[] = {"/healthz%00", "/sagas%00?limit=1", "/saga%00"};
    for (size_t i = 0; i < sizeof nul_other / sizeof nul_other[0]; i++) {
        assert_int_equal(request(&r, "GET", nul_other[i], NULL, NULL), 404);
        assert_string_equal(r.body.ptr, "{\"detail\":\"Not Found\"}");
        resp_free(&r);
    }
    int before = eng.submits;
    assert_int_equal(request(&r, "POST", "/saga%00", "{}", NULL), 404);
    resp_free(&r);
    assert_int_equal(eng.submits, before);
    /* An escaped '%' followed by "00" is no NUL, just not an id; and
     * "%000" is a NUL then '0'. A NUL in the query is the query's 400. */
    assert_int_equal(request(&r, "GET", "/saga/" KNOWN_ID "%2500", NULL, NULL), 404);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/saga/" KNOWN_ID "%000", NULL, NULL), 404);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?after=%00", NULL, NULL), 400);
    resp_free(&r);
    /* Still served right on a connection that saw such a request. */
    CURL *c = curl_easy_init();
    assert_int_equal(request_on(c, &r, "GET", "/saga/" KNOWN_ID "%00x", NULL, -1, NULL), CURLE_OK);
    assert_int_equal(r.status, 404);
    resp_free(&r);
    assert_int_equal(request_on(c, &r, "GET", "/saga/" KNOWN_ID, NULL, -1, NULL), CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    curl_easy_cleanup(c);
    assert_int_equal(request(&r, "HEAD", "/saga/" KNOWN_ID, NULL, NULL), 200);
    assert_int_equal(r.body.len, 0);
    resp_free(&r);
}

static void test_list(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(request(&r, "GET", "/sagas", NULL, NULL), 200);
    assert_memory_equal(r.body.ptr, "{\"sagas\":[{\"id\":\"" RUNNING_ID "\"", 17 + 36);
    assert_non_null(strstr(r.body.ptr, "},{\"id\":\"" KNOWN_ID "\""));
    assert_non_null(strstr(r.body.ptr, "]}],\"next\":null}"));
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?status=COMPLETED&limit=1", NULL, NULL), 200);
    assert_null(strstr(r.body.ptr, RUNNING_ID));
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?limit=1", NULL, NULL), 200);
    assert_non_null(strstr(r.body.ptr, "],\"next\":\"c1\"}"));
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?limit=0", NULL, NULL), 400);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?limit=1001", NULL, NULL), 400);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?status=DONE", NULL, NULL), 400);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?after=bad", NULL, NULL), 400);
    assert_string_equal(r.body.ptr, "{\"detail\":\"malformed cursor in after\"}");
    resp_free(&r);
}

/* Records too big for one page: the page ends within the budget, its next
 * cursor continues right after its last record, and the store is asked
 * for a few records at a time. */
static void test_list_big_records(void **state)
{
    (void)state;
    resp r;
    big_n = 40;
    big_size = (size_t)1 << 20;
    atomic_store(&list_calls, 0);
    atomic_store(&list_max_limit, 0);
    char seen[40] = {0};
    int total = 0, pages = 0;
    char path[128] = "/sagas?limit=1000";
    for (;;) {
        assert_int_equal(request(&r, "GET", path, NULL, NULL), 200);
        assert_true(r.body.len <= ((size_t)32 << 20));
        int count = 0, last = -1;
        for (const char *p = r.body.ptr; (p = strstr(p, "{\"id\":\"")); p++) {
            unsigned idx;
            assert_int_equal(sscanf(p + 7, "%8x", &idx), 1);
            assert_int_equal((int)idx, total + count); /* in order, no gap */
            assert_false(seen[idx]);
            seen[idx] = 1;
            last = (int)idx;
            count++;
        }
        assert_true(count >= 1);
        total += count;
        pages++;
        const char *next = strstr(r.body.ptr, "],\"next\":");
        assert_non_null(next);
        next += 9;
        if (strcmp(next, "null}") == 0) {
            resp_free(&r);
            break;
        }
        char want[64];
        snprintf(want, sizeof want, "\"after-%08x\"}", (unsigned)last);
        assert_string_equal(next, want);
        assert_true(count < 40);
        snprintf(path, sizeof path, "/sagas?limit=1000&after=after-%08x", (unsigned)last);
        resp_free(&r);
        assert_true(pages < 10);
    }
    assert_int_equal(total, 40);
    assert_int_equal(pages, 2);
    assert_true(atomic_load(&list_max_limit) <= 16);
    assert_true(atomic_load(&list_calls) >= 3);

    /* Small pages are untouched: the store's own cursor. */
    assert_int_equal(request(&r, "GET", "/sagas?limit=3", NULL, NULL), 200);
    assert_non_null(strstr(r.body.ptr, "],\"next\":\"after-00000002\"}"));
    resp_free(&r);
    big_n = 0;
}

static void test_post(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(request(&r, "POST", "/saga", "{\"image_id\":\"img_123\"}", NULL), 200);
    assert_string_equal(r.body.ptr,
                        "{\"id\":\"" KNOWN_ID
                        "\",\"result\":\"ok\",\"data\":{\"echo\":{\"image_id\":\"img_123\"}}}");
    assert_string_equal(eng.last_body, "{\"image_id\":\"img_123\"}");
    assert_int_equal(eng.last_async, 0);
    assert_string_equal(eng.last_key, "");
    resp_free(&r);

    assert_int_equal(request(&r, "POST", "/saga", "{\"mode\":\"fail\"}", NULL), 400);
    assert_string_equal(r.body.ptr, "{\"detail\":{\"id\":\"" KNOWN_ID "\",\"error\":\"boom\"}}");
    resp_free(&r);

    const char *async[] = {"Prefer: wait=5, respond-async", NULL};
    assert_int_equal(request(&r, "POST", "/saga", "{}", async), 202);
    assert_string_equal(r.location, "/saga/" KNOWN_ID);
    assert_int_equal(eng.last_async, 1);
    resp_free(&r);

    /* No Content-Type needed; any text type is fine too. */
    const char *text[] = {"Content-Type: text/plain", NULL};
    assert_int_equal(request(&r, "POST", "/saga", "{}", text), 200);
    resp_free(&r);
    assert_int_equal(pending_settled(), 0);
}

static void test_post_bad_input(void **state)
{
    (void)state;
    resp r;
    int before = eng.submits;
    assert_int_equal(request(&r, "POST", "/saga", "{\"a\":", NULL), 400);
    assert_non_null(strstr(r.body.ptr, "{\"detail\":\"invalid JSON"));
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/saga", "", NULL), 400);
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/saga", "[1]", NULL), 422);
    assert_string_equal(r.body.ptr, "{\"detail\":\"the body must be a JSON object\"}");
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/saga", "{\"a\":\"\xff\"}", NULL), 400);
    resp_free(&r);

    /* Over the 1024-byte cap: announced, and chunked (no length). */
    char big[2000];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    assert_int_equal(request(&r, "POST", "/saga", big, NULL), 413);
    assert_string_equal(r.body.ptr, "{\"detail\":\"request body larger than 1024 bytes\"}");
    resp_free(&r);
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    assert_int_equal(request(&r, "POST", "/saga", big, chunked), 413);
    resp_free(&r);
    /* Exactly at the cap is fine. */
    big[1023] = '}';
    big[1024] = '\0';
    assert_int_equal(request(&r, "POST", "/saga", big, NULL), 200);
    resp_free(&r);
    before++;

    char longkey[300] = "Idempotency-Key: ";
    memset(longkey + strlen(longkey), 'k', 201);
    const char *badkey[] = {longkey, NULL};
    assert_int_equal(request(&r, "POST", "/saga", "{}", badkey), 400);
    assert_non_null(strstr(r.body.ptr, "Idempotency-Key"));
    resp_free(&r);
    const char *twokeys[] = {"Idempotency-Key: a", "Idempotency-Key: b", NULL};
    assert_int_equal(request(&r, "POST", "/saga", "{}", twokeys), 400);
    resp_free(&r);
    assert_int_equal(eng.submits, before);
}

static void test_idempotency(void **state)
{
    (void)state;
    resp r;
    int before = eng.submits;
    const char *k1[] = {"Idempotency-Key: k1", NULL};
    assert_int_equal(request(&r, "POST", "/saga", "{\"a\":1}", k1), 200);
    assert_string_equal(r.body.ptr,
                        "{\"id\":\"" KNOWN_ID "\",\"result\":\"Saga completada exitosamente\","
                        "\"data\":{\"anonymized\":{\"x\":1},\"tokenizer_event\":"
                        "\"event_published\",\"ai_result\":true}}");
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/saga", "{\"a\": 1}", k1), 422);
    assert_string_equal(r.body.ptr,
                        "{\"detail\":\"Idempotency-Key reused with a different request body\"}");
    resp_free(&r);
    const char *k1async[] = {"Idempotency-Key: k1", "Prefer: respond-async", NULL};
    assert_int_equal(request(&r, "POST", "/saga", "{\"a\":1}", k1async), 202);
    assert_string_equal(r.location, "/saga/" KNOWN_ID);
    assert_string_equal(r.body.ptr, "{\"id\":\"" KNOWN_ID "\",\"overall_status\":\"COMPLETED\"}");
    resp_free(&r);
    assert_int_equal(eng.submits, before); /* all answered from the store */

    /* In progress: the engine gets it, with the key. */
    const char *k2[] = {"Idempotency-Key: k2", NULL};
    assert_int_equal(request(&r, "POST", "/saga", "{\"b\":2}", k2), 200);
    assert_int_equal(eng.submits, before + 1);
    assert_string_equal(eng.last_key, "k2");
    resp_free(&r);
    /* Unknown key: the engine gets it too. */
    const char *k3[] = {"Idempotency-Key: new key 3", NULL};
    assert_int_equal(request(&r, "POST", "/saga", "{\"c\":3}", k3), 200);
    assert_string_equal(eng.last_key, "new key 3");
    resp_free(&r);
}

/* The engine found the key taken by a stored saga (it committed between
 * our lookup and the engine's insert): the API reads that saga itself and
 * answers for it, or 422 for another body. */
static void test_key_taken_meanwhile(void **state)
{
    (void)state;
    resp r;
    const char *late[] = {"Idempotency-Key: late", NULL};
    atomic_store(&late_stored, 0);
    int before = eng.submits;
    assert_int_equal(request(&r, "POST", "/saga", "{\"exists\":1}", late), 200);
    assert_int_equal(eng.submits, before + 1);
    assert_string_equal(r.body.ptr,
                        "{\"id\":\"" KNOWN_ID "\",\"result\":\"Saga completada exitosamente\","
                        "\"data\":{\"anonymized\":{\"x\":1},\"tokenizer_event\":"
                        "\"event_published\",\"ai_result\":true}}");
    resp_free(&r);

    atomic_store(&late_stored, 0);
    const char *late_async[] = {"Idempotency-Key: late", "Prefer: respond-async", NULL};
    before = eng.submits;
    assert_int_equal(request(&r, "POST", "/saga", "{\"exists\":1}", late_async), 202);
    assert_int_equal(eng.submits, before + 1);
    assert_string_equal(r.body.ptr, "{\"id\":\"" KNOWN_ID "\",\"overall_status\":\"COMPLETED\"}");
    assert_string_equal(r.location, "/saga/" KNOWN_ID);
    resp_free(&r);

    atomic_store(&late_stored, 0);
    before = eng.submits;
    assert_int_equal(request(&r, "POST", "/saga", "{\"exists\":2}", late), 422);
    assert_int_equal(eng.submits, before + 1);
    assert_string_equal(r.body.ptr,
                        "{\"detail\":\"Idempotency-Key reused with a different request body\"}");
    resp_free(&r);
    assert_int_equal(pending_settled(), 0);
}

/* The operator routes: redrive, the outbox listing and redelivery. */
static void test_operator_routes(void **state)
{
    (void)state;
    resp r;
    redrives = redelivers = 0;
    assert_int_equal(request(&r, "POST", "/saga/" FAILED_ID "/retry", "", NULL), 200);
    assert_non_null(strstr(r.body.ptr, "\"result\":\"redriven\""));
    resp_free(&r);
    const char *async[] = {"Prefer: respond-async", NULL};
    assert_int_equal(request(&r, "POST", "/saga/" FAILED_ID "/retry", NULL, async), 202);
    assert_string_equal(r.location, "/saga/" FAILED_ID);
    resp_free(&r);
    assert_int_equal(redrives, 2);
    assert_int_equal(request(&r, "POST", "/saga/" KNOWN_ID "/retry", "", NULL), 409);
    assert_string_equal(
        r.body.ptr, "{\"detail\":\"the saga is COMPLETED: only a FAILED saga can be retried\"}");
    resp_free(&r);
    assert_int_equal(
        request(&r, "POST", "/saga/5f8fad5b-d9cb-469f-a165-70867728950e/retry", "", NULL), 404);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/saga/" FAILED_ID "/retry", NULL, NULL), 405);
    assert_string_equal(r.allow, "POST");
    resp_free(&r);
    assert_int_equal(redrives, 2);

    assert_int_equal(request(&r, "GET", "/events?status=PARKED", NULL, NULL), 200);
    assert_string_equal(r.body.ptr,
                        "{\"events\":[{\"id\":\"" PARKED_ID
                        "\",\"topic\":\"tokenizer_compensation\",\"url\":null,"
                        "\"saga_id\":\"" KNOWN_ID "\",\"status\":\"PARKED\",\"attempts\":7,"
                        "\"last_error\":\"webhook answered HTTP "
                        "403\",\"created_at\":\"2026-11-28T10:00:00.000000Z\","
                        "\"updated_at\":\"2026-11-28T10:00:00.000000Z\"}],\"next\":null}");
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/events?status=LOST", NULL, NULL), 400);
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/events/" PARKED_ID "/redeliver", "", NULL), 202);
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/events/" DONE_EV_ID "/redeliver", "", NULL), 409);
    assert_string_equal(r.body.ptr, "{\"detail\":\"the event is DELIVERED, not PARKED\"}");
    resp_free(&r);
    assert_int_equal(
        request(&r, "POST", "/events/6f8fad5b-d9cb-469f-a165-70867728950e/redeliver", "", NULL),
        404);
    resp_free(&r);
    assert_int_equal(redelivers, 1);
    assert_int_equal(pending_settled(), 0);
}

/* Saga types: POST /sagas/{type}, GET /definitions, GET /sagas?type=. */
static void test_types(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(request(&r, "POST", "/sagas/sta", "{\"t\":1}", NULL), 200);
    assert_string_equal(eng.last_type, "sta");
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/saga", "{\"t\":2}", NULL), 200);
    assert_string_equal(eng.last_type, ""); /* the default */
    resp_free(&r);
    int before = eng.submits;
    assert_int_equal(request(&r, "POST", "/sagas/order", "{}", NULL), 404);
    assert_string_equal(r.body.ptr, "{\"detail\":\"unknown saga type 'order' (known: sta)\"}");
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/sagas/a%20b", "{}", NULL), 404);
    resp_free(&r);
    assert_int_equal(eng.submits, before);

    assert_int_equal(request(&r, "GET", "/definitions", NULL, NULL), 200);
    assert_non_null(strstr(r.body.ptr, "{\"definitions\":[{\"name\":\"sta\",\"version\":1,"
                                       "\"versions\":[1],"
                                       "\"default\":true,\"steps\":[{\"name\":\"anonymizer\","
                                       "\"label\":\"Anonymizer\",\"output\":\"anonymized\","
                                       "\"action\":{\"http\":{\"method\":\"POST\","
                                       "\"url\":\"http://a/anonymize\"}},"
                                       "\"compensate\":null,"));
    assert_non_null(strstr(r.body.ptr, "\"compensate\":{\"publish\":{\"topic\":"
                                       "\"tokenizer_compensation\"}}"));
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?type=sta", NULL, NULL), 200);
    resp_free(&r);
    assert_int_equal(request(&r, "GET", "/sagas?type=a/b", NULL, NULL), 400);
    resp_free(&r);
    assert_int_equal(pending_settled(), 0);
}

static void test_keepalive(void **state)
{
    (void)state;
    CURL *c = curl_easy_init();
    resp r;
    assert_int_equal(request_on(c, &r, "POST", "/saga", "{}", -1, NULL), CURLE_OK);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(request_on(c, &r, "GET", "/saga/" KNOWN_ID, NULL, -1, NULL), CURLE_OK);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        assert_int_equal(request_on(c, &r, "POST", "/saga", "{\"i\":1}", -1, NULL), CURLE_OK);
        assert_int_equal(r.status, 200);
        resp_free(&r);
        long connects = -1;
        curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
        assert_int_equal(connects, 0); /* reused */
    }
    curl_easy_cleanup(c);
}

static void test_concurrent(void **state)
{
    (void)state;
    enum { N = 64 };
    CURLM *m = curl_multi_init();
    CURL *h[N];
    resp rs[N];
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/saga", (unsigned)port);
    for (int i = 0; i < N; i++) {
        memset(&rs[i], 0, sizeof rs[i]);
        sg_buf_init(&rs[i].body, 4096);
        h[i] = curl_easy_init();
        curl_easy_setopt(h[i], CURLOPT_URL, url);
        curl_easy_setopt(h[i], CURLOPT_POSTFIELDS, "{\"n\":1}");
        curl_easy_setopt(h[i], CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h[i], CURLOPT_WRITEDATA, &rs[i]);
        curl_multi_add_handle(m, h[i]);
    }
    int running = 1;
    while (running) {
        curl_multi_perform(m, &running);
        if (running) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    for (int i = 0; i < N; i++) {
        long st = 0;
        curl_easy_getinfo(h[i], CURLINFO_RESPONSE_CODE, &st);
        assert_int_equal(st, 200);
        curl_multi_remove_handle(m, h[i]);
        curl_easy_cleanup(h[i]);
        sg_buf_free(&rs[i].body);
    }
    curl_multi_cleanup(m);
    assert_int_equal(pending_settled(), 0);
}

static void test_engine_closed(void **state)
{
    (void)state;
    resp r;
    pthread_mutex_lock(&eng.mu);
    eng.closed = 1;
    pthread_mutex_unlock(&eng.mu);
    assert_int_equal(request(&r, "POST", "/saga", "{}", NULL), 503);
    assert_string_equal(r.body.ptr, "{\"detail\":\"shutting down\"}");
    assert_string_equal(r.retry_after, "1");
    resp_free(&r);
    pthread_mutex_lock(&eng.mu);
    eng.closed = 0;
    pthread_mutex_unlock(&eng.mu);
    assert_int_equal(pending_settled(), 0);
}

/* The engine's own 503 (overloaded) goes out with Retry-After too. */
static void test_engine_busy(void **state)
{
    (void)state;
    resp r;
    assert_int_equal(request(&r, "POST", "/saga", "{\"mode\":\"busy\"}", NULL), 503);
    assert_string_equal(r.body.ptr, "{\"detail\":\"too many sagas in flight; retry later\"}");
    assert_string_equal(r.retry_after, "1");
    resp_free(&r);
    assert_int_equal(request(&r, "POST", "/saga", "{}", NULL), 200);
    assert_string_equal(r.retry_after, "");
    resp_free(&r);
    assert_int_equal(pending_settled(), 0);
}

/* A request the engine is still holding when the API goes away: destroy
 * must not hang or crash, and the engine's late answer must be harmless. */
typedef struct held_client {
    CURLcode rc;
    long status;
    char body[128];
    char retry_after[32];
} held_client;

static void *held_main(void *arg)
{
    held_client *hc = arg;
    CURL *c = curl_easy_init();
    resp r;
    hc->rc = request_on(c, &r, "POST", "/saga", "{\"mode\":\"hold\"}", -1, NULL);
    hc->status = r.status;
    snprintf(hc->body, sizeof hc->body, "%s", r.body.ptr ? r.body.ptr : "");
    snprintf(hc->retry_after, sizeof hc->retry_after, "%s", r.retry_after);
    resp_free(&r);
    curl_easy_cleanup(c);
    return NULL;
}

static void test_destroy_while_held(void **state)
{
    (void)state;
    held_client hc;
    memset(&hc, 0, sizeof hc);
    pthread_t t;
    pthread_create(&t, NULL, held_main, &hc);
    for (int i = 0; i < 2000 && sg_api_pending(api) == 0; i++)
        usleep(1000);
    assert_int_equal(sg_api_pending(api), 1);
    sg_api_quiesce(api);
    sg_api_destroy(api);
    api = NULL;
    pthread_join(t, NULL);
    /* destroy gives the 503 time to get out before it stops MHD. */
    assert_int_equal(hc.rc, CURLE_OK);
    assert_int_equal(hc.status, 503);
    assert_string_equal(hc.body, "{\"detail\":\"shutting down\"}");
    assert_string_equal(hc.retry_after, "1");
    engine_flush(); /* the late answer: on_done after destroy */
}

static void test_quiesce(void **state)
{
    (void)state;
    resp r;
    /* An open keep-alive connection is still served after quiesce. */
    CURL *c = curl_easy_init();
    assert_int_equal(request_on(c, &r, "GET", "/healthz", NULL, -1, NULL), CURLE_OK);
    resp_free(&r);
    sg_api_quiesce(api);
    sg_api_quiesce(api); /* idempotent */
    assert_int_equal(request_on(c, &r, "GET", "/readyz", NULL, -1, NULL), CURLE_OK);
    assert_int_equal(r.status, 503);
    resp_free(&r);
    curl_easy_cleanup(c);
    /* A new connection is refused. */
    c = curl_easy_init();
    assert_int_not_equal(request_on(c, &r, "GET", "/healthz", NULL, -1, NULL), CURLE_OK);
    resp_free(&r);
    curl_easy_cleanup(c);
}

/* After quiesce and destroy the listening socket is closed: the port can
 * be listened on again. */
static void test_destroy_frees_port(void **state)
{
    (void)state;
    sg_api_quiesce(api);
    sg_api_destroy(api);
    api = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(fd, 1), 0);
    close(fd);
}

static void test_bind_errors(void **state)
{
    (void)state;
    sg_api *b = NULL;
    char err[256];
    sg_api_options opt = {.host = "127.0.0.1",
                          .port = port,
                          .max_body = 1024,
                          .threads = 1,
                          .conn_timeout_s = 5,
                          .max_connections = 100};
    assert_int_not_equal(sg_api_create(&b, &opt, &eng, &store, &bus, err, sizeof err), SG_OK);
    assert_null(b);
    assert_non_null(strstr(err, "in use"));
    opt.host = "no-such-host.invalid";
    opt.port = 0;
    assert_int_not_equal(sg_api_create(&b, &opt, &eng, &store, &bus, err, sizeof err), SG_OK);
    assert_non_null(strstr(err, "no-such-host.invalid"));
    /* One thread, IPv6 loopback if the host has it. */
    opt.host = "[::1]";
    if (sg_api_create(&b, &opt, &eng, &store, &bus, err, sizeof err) == SG_OK) {
        assert_true(sg_api_port(b) != 0);
        sg_api_destroy(b);
    }
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    sg_def *d = NULL;
    sg_def_create_sta(&d, "http://a/anonymize", "http://m/process");
    sg_def_register(d);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_and_routing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_saga, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_list_big_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_taken_meanwhile, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_types, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_engine_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_while_held, setup, teardown),
        cmocka_unit_test_setup_teardown(test_quiesce, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_frees_port, setup, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    sg_def_clear();
    curl_global_cleanup();
    return rc;
}
