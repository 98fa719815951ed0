/* The engine tests' fixture: a real SQLite store in a temp dir, the real
 * HTTP client and webhook bus, and an in-process fake of the user's three
 * services (libmicrohttpd, thread per connection so it may sleep). Included
 * by each tests/unit/engine/test_*.c that drives sagas. */
#ifndef SG_TEST_ENGINE_FIXTURE_H
#define SG_TEST_ENGINE_FIXTURE_H

#include <microhttpd.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "api/render.h" /* the engine's outcomes as the API answers them */
#include "sg/bus.h"
#include "sg/def.h"
#include "sg/engine.h"
#include "sg/http_client.h"
#include "sg/store.h"
#include "store/store_int.h" /* sg_store_fail_countdown */

/* ---- fake services ---------------------------------------------------- */

/* SVC_UNDO: POST /undo, an HTTP compensation in tests' own definitions. */
enum { SVC_ANON, SVC_TOKEN, SVC_COMP, SVC_AI, SVC_UNDO, NSVC };
static atomic_int fake_status[NSVC];
static atomic_int fake_delay_ms[NSVC];
static atomic_int fake_fail_left[NSVC]; /* answer 503 this many times first */
static atomic_int fake_hits[NSVC];
static atomic_int fake_anon_pad; /* > 0: the anonymizer's answer carries that many bytes more */
static atomic_int fake_retry_after_s[NSVC]; /* > 0: send Retry-After with non-2xx */
static char fake_idem[NSVC][128];           /* the last Idempotency-Key, under fake_mu */
static int fake_order[64], fake_norder;     /* services in the order hit, under fake_mu */
/* The first bodies POSTed to /events (the bus), in the order they came,
 * each cut at 4 KiB; under fake_mu. */
static char fake_events[16][4096];
static int fake_nevents;
static pthread_mutex_t fake_mu = PTHREAD_MUTEX_INITIALIZER;

typedef struct body {
    char buf[1 << 16];
    size_t len;
} body;

static inline enum MHD_Result fake_handler(void *cls, struct MHD_Connection *c, const char *url,
                                           const char *method, const char *version,
                                           const char *upload, size_t *upload_size, void **ctx)
{
    (void)cls, (void)method, (void)version;
    body *b = *ctx;
    if (!b) {
        *ctx = calloc(1, sizeof *b);
        return MHD_YES;
    }
    if (*upload_size) {
        size_t n = *upload_size < sizeof b->buf - b->len - 1 ? *upload_size : 0;
        memcpy(b->buf + b->len, upload, n);
        b->len += n;
        *upload_size = 0;
        return MHD_YES;
    }
    int svc = strcmp(url, "/anonymize") == 0             ? SVC_ANON
              : strcmp(url, "/process") == 0             ? SVC_AI
              : strcmp(url, "/undo") == 0                ? SVC_UNDO
              : strstr(b->buf, "tokenizer_compensation") ? SVC_COMP
                                                         : SVC_TOKEN;
    atomic_fetch_add(&fake_hits[svc], 1);
    const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
    pthread_mutex_lock(&fake_mu);
    snprintf(fake_idem[svc], sizeof fake_idem[svc], "%s", key ? key : "");
    if (fake_norder < 64) fake_order[fake_norder++] = svc;
    if (strcmp(url, "/events") == 0 && fake_nevents < 16)
        snprintf(fake_events[fake_nevents++], sizeof *fake_events, "%.*s", (int)b->len, b->buf);
    pthread_mutex_unlock(&fake_mu);
    int delay = atomic_load(&fake_delay_ms[svc]);
    if (delay) usleep((useconds_t)delay * 1000);
    int status = atomic_load(&fake_status[svc]);
    if (atomic_load(&fake_fail_left[svc]) > 0) {
        atomic_fetch_sub(&fake_fail_left[svc], 1);
        status = 503;
    }
    const char *txt = svc == SVC_ANON ? "{\"anonymized\":true}" : "{\"result\":\"ok\"}";
    struct MHD_Response *r;
    int pad = svc == SVC_ANON ? atomic_load(&fake_anon_pad) : 0;
    if (pad > 0) {
        char *big = malloc((size_t)pad + 16);
        int n = snprintf(big, 16, "{\"p\":\"");
        memset(big + n, 'p', (size_t)pad);
        memcpy(big + n + pad, "\"}", 2);
        r = MHD_create_response_from_buffer((size_t)(n + pad + 2), big, MHD_RESPMEM_MUST_FREE);
    } else {
        r = MHD_create_response_from_buffer(strlen(txt), (void *)txt, MHD_RESPMEM_PERSISTENT);
    }
    int ra = atomic_load(&fake_retry_after_s[svc]);
    if (ra > 0 && (status < 200 || status > 299)) {
        char v[16];
        snprintf(v, sizeof v, "%d", ra);
        MHD_add_response_header(r, "Retry-After", v);
    }
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static inline void fake_done(void *cls, struct MHD_Connection *c, void **ctx,
                             enum MHD_RequestTerminationCode toe)
{
    (void)cls, (void)c, (void)toe;
    free(*ctx);
    *ctx = NULL;
}

/* ---- fixture ---------------------------------------------------------- */

typedef struct fx {
    struct MHD_Daemon *fake;
    char dir[64], db[128], base[64];
    uv_loop_t loop;
    sg_store *store;
    sg_http_client *http;
    sg_bus *bus;
    sg_def *def;
    sg_engine *eng;
    long timeout_ms;
    size_t max_inflight;       /* 0 = engine default */
    size_t max_inflight_bytes; /* 0 = engine default */
    sg_retry retry;            /* attempts 0 = the definition's default */
    long park_after_s;         /* 0 = engine default */
    int undo;                  /* give step 1 an HTTP compensation, POST /undo */
    /* A definitions file (design §6) to run instead of the STA saga, its
     * first type the default; ${SG_T_BASE} in its URLs is the fakes'
     * base URL. Borrowed. */
    const char *defs;
} fx;

static inline void reset_fakes(void)
{
    for (int i = 0; i < NSVC; i++) {
        fake_status[i] = 200;
        fake_delay_ms[i] = 0;
        fake_fail_left[i] = 0;
        fake_hits[i] = 0;
        fake_retry_after_s[i] = 0;
        fake_anon_pad = 0;
        fake_idem[i][0] = '\0';
    }
    fake_norder = 0;
    fake_nevents = 0;
}

static inline void open_engine(fx *f)
{
    char err[256], url[128];
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(sg_store_open(&f->store, f->db, &f->loop, NULL, err, sizeof err), SG_OK);
    assert_int_equal(sg_http_client_create(&f->http, &f->loop, NULL), SG_OK);
    snprintf(url, sizeof url, "%s/events", f->base);
    sg_bus_env env = {.loop = &f->loop, .http = f->http};
    assert_int_equal(sg_bus_create(&f->bus, url, &env, err, sizeof err), SG_OK);
    if (f->defs) {
        sg_def **defs;
        size_t n;
        setenv("SG_T_BASE", f->base, 1);
        assert_int_equal(sg_defs_parse(f->defs, strlen(f->defs), NULL, &defs, &n, err, sizeof err),
                         SG_OK);
        f->def = defs[0];
        sg_def_install(defs, n); /* before the engine starts: recovery finds them */
    } else {
        char anon[128], ai[128];
        snprintf(anon, sizeof anon, "%s/anonymize", f->base);
        snprintf(ai, sizeof ai, "%s/process", f->base);
        assert_int_equal(sg_def_create_sta(&f->def, anon, ai), SG_OK);
        if (f->retry.attempts > 0) sg_def_set_retry(f->def, &f->retry);
        if (f->undo) {
            char undo[128];
            snprintf(undo, sizeof undo, "%s/undo", f->base);
            f->def->steps[0].has_compensation = 1;
            f->def->steps[0].compensation.kind = SG_ACTION_HTTP;
            f->def->steps[0].compensation.url = strdup(undo);
        }
        sg_def_register(f->def);
    }
    sg_engine_options eo = {.step_timeout_ms = f->timeout_ms,
                            .retry_min_ms = 20,
                            .retry_max_ms = 100,
                            .max_inflight = f->max_inflight,
                            .max_inflight_bytes = f->max_inflight_bytes,
                            .park_after_s = f->park_after_s};
    assert_int_equal(sg_engine_create(&f->eng, &f->loop, &eo, f->store, f->bus, f->http, f->def),
                     SG_OK);
    assert_int_equal(sg_engine_start(f->eng, err, sizeof err), SG_OK);
}

static inline void close_engine(fx *f)
{
    sg_engine_halt(f->eng);
    sg_store_close(f->store);
    sg_engine_destroy(f->eng);
    sg_bus_destroy(f->bus);
    sg_http_client_destroy(f->http);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    sg_def_clear();
}

static inline int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    reset_fakes();
    f->fake = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0,
                               NULL, NULL, fake_handler, NULL, MHD_OPTION_NOTIFY_COMPLETED,
                               fake_done, NULL, MHD_OPTION_END);
    assert_non_null(f->fake);
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(f->fake, MHD_DAEMON_INFO_BIND_PORT);
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u", (unsigned)di->port);
    snprintf(f->dir, sizeof f->dir, "/tmp/sg-engine-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->db, sizeof f->db, "%s/t.db", f->dir);
    f->timeout_ms = 500;
    open_engine(f);
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    fx *f = *state;
    close_engine(f);
    MHD_stop_daemon(f->fake);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0) return 1;
    free(f);
    return 0;
}

/* ---- driving a saga ---------------------------------------------------- */

/* The engine's outcome, rendered as the API would answer it. */
typedef struct answer {
    int done;
    int async;
    sg_status st; /* the outcome's status */
    char req[64]; /* SG_EEXIST: the body handed back */
    struct {
        int status;
        char *body;
        char location[64];
    } r;
} answer;

static inline void on_done(void *arg, const sg_outcome *o)
{
    answer *a = arg;
    sg_buf b;
    sg_buf_init(&b, (size_t)1 << 30);
    assert_int_equal(sg_render_outcome(&b, o, a->async, &a->r.status), SG_OK);
    a->r.body = sg_buf_take(&b, NULL);
    a->st = o->status;
    if (o->request) snprintf(a->req, sizeof a->req, "%.*s", (int)o->request_len, o->request);
    if (a->r.status == 202) snprintf(a->r.location, sizeof a->r.location, "/saga/%s", o->saga_id);
    a->done = 1;
}

static inline void submit(fx *f, const char *json, const char *key, int async, answer *a)
{
    sg_start st = {.body = strdup(json), .body_len = strlen(json), .async = async};
    st.idem_key = key ? strdup(key) : NULL;
    a->async = async;
    assert_int_equal(sg_engine_submit(f->eng, &st, on_done, a), SG_OK);
    assert_null(st.body); /* taken */
}

static inline void start(fx *f, const char *json, int async, answer *a)
{
    submit(f, json, NULL, async, a);
    while (!a->done)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static inline void get(fx *f, const char *id, sg_saga_rec *out)
{
    sg_store_reader *r;
    assert_int_equal(sg_store_reader_open(f->store, &r, NULL, 0), SG_OK);
    assert_int_equal(sg_store_get(r, id, out), SG_OK);
    sg_store_reader_close(r);
}

/* Runs the loop until the saga's compensation is COMPLETED (or 5 s). */
static inline sg_comp_status wait_comp(fx *f, const char *id)
{
    for (int i = 0; i < 500; i++) {
        sg_saga_rec rec = {0};
        get(f, id, &rec);
        sg_comp_status c = rec.comp_status;
        sg_saga_rec_free(&rec);
        if (c != SG_COMP_PENDING) return c;
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    return SG_COMP_PENDING;
}

static inline void id_of(const answer *a, char id[SG_ID_LEN + 1])
{
    const char *p = strstr(a->r.body, "\"id\":\"");
    assert_non_null(p);
    memcpy(id, p + 6, SG_ID_LEN);
    id[SG_ID_LEN] = '\0';
}

static inline void count_event(void *arg, sg_event_rec *ev)
{
    (*(int *)arg)++;
    sg_event_rec_free(ev);
    free(ev);
}

static inline int pending_events(fx *f)
{
    sg_store_reader *r;
    assert_int_equal(sg_store_reader_open(f->store, &r, NULL, 0), SG_OK);
    int n = 0;
    assert_int_equal(sg_store_load_pending_events(r, count_event, &n), SG_OK);
    sg_store_reader_close(r);
    return n;
}

#endif
