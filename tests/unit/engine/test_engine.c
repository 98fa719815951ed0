/* Engine state machine tests: a real SQLite store in a temp dir, the real
 * HTTP client and webhook bus, and an in-process fake of the user's three
 * services (libmicrohttpd, thread per connection so it may sleep). */
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

enum { SVC_ANON, SVC_TOKEN, SVC_COMP, SVC_AI, NSVC };
static atomic_int fake_status[NSVC];
static atomic_int fake_delay_ms[NSVC];
static atomic_int fake_fail_left[NSVC]; /* answer 503 this many times first */
static atomic_int fake_hits[NSVC];

typedef struct body {
    char buf[1 << 16];
    size_t len;
} body;

static enum MHD_Result fake_handler(void *cls, struct MHD_Connection *c, const char *url,
                                    const char *method, const char *version, const char *upload,
                                    size_t *upload_size, void **ctx)
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
              : strstr(b->buf, "tokenizer_compensation") ? SVC_COMP
                                                         : SVC_TOKEN;
    atomic_fetch_add(&fake_hits[svc], 1);
    int delay = atomic_load(&fake_delay_ms[svc]);
    if (delay) usleep((useconds_t)delay * 1000);
    int status = atomic_load(&fake_status[svc]);
    if (atomic_load(&fake_fail_left[svc]) > 0) {
        atomic_fetch_sub(&fake_fail_left[svc], 1);
        status = 503;
    }
    const char *txt = svc == SVC_ANON ? "{\"anonymized\":true}" : "{\"result\":\"ok\"}";
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(txt), (void *)txt, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static void fake_done(void *cls, struct MHD_Connection *c, void **ctx,
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
    size_t max_inflight; /* 0 = engine default */
} fx;

static void reset_fakes(void)
{
    for (int i = 0; i < NSVC; i++) {
        fake_status[i] = 200;
        fake_delay_ms[i] = 0;
        fake_fail_left[i] = 0;
        fake_hits[i] = 0;
    }
}

static void open_engine(fx *f)
{
    char err[256], url[128];
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(sg_store_open(&f->store, f->db, &f->loop, NULL, err, sizeof err), SG_OK);
    assert_int_equal(sg_http_client_create(&f->http, &f->loop, NULL), SG_OK);
    snprintf(url, sizeof url, "%s/events", f->base);
    sg_bus_env env = {.loop = &f->loop, .http = f->http};
    assert_int_equal(sg_bus_create(&f->bus, url, &env, err, sizeof err), SG_OK);
    char anon[128], ai[128];
    snprintf(anon, sizeof anon, "%s/anonymize", f->base);
    snprintf(ai, sizeof ai, "%s/process", f->base);
    assert_int_equal(sg_def_create_sta(&f->def, anon, ai), SG_OK);
    sg_def_register(f->def);
    sg_engine_options eo = {.step_timeout_ms = f->timeout_ms,
                            .retry_min_ms = 20,
                            .retry_max_ms = 100,
                            .max_inflight = f->max_inflight};
    assert_int_equal(sg_engine_create(&f->eng, &f->loop, &eo, f->store, f->bus, f->http, f->def),
                     SG_OK);
    assert_int_equal(sg_engine_start(f->eng, err, sizeof err), SG_OK);
}

static void close_engine(fx *f)
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

static int setup(void **state)
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

static int teardown(void **state)
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

static void on_done(void *arg, const sg_outcome *o)
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

static void submit(fx *f, const char *json, const char *key, int async, answer *a)
{
    sg_start st = {.body = strdup(json), .body_len = strlen(json), .async = async};
    st.idem_key = key ? strdup(key) : NULL;
    a->async = async;
    assert_int_equal(sg_engine_submit(f->eng, &st, on_done, a), SG_OK);
    assert_null(st.body); /* taken */
}

static void start(fx *f, const char *json, int async, answer *a)
{
    submit(f, json, NULL, async, a);
    while (!a->done)
        uv_run(&f->loop, UV_RUN_ONCE);
}

static void get(fx *f, const char *id, sg_saga_rec *out)
{
    sg_store_reader *r;
    assert_int_equal(sg_store_reader_open(f->store, &r, NULL, 0), SG_OK);
    assert_int_equal(sg_store_get(r, id, out), SG_OK);
    sg_store_reader_close(r);
}

/* Runs the loop until the saga's compensation is COMPLETED (or 5 s). */
static sg_comp_status wait_comp(fx *f, const char *id)
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

static void id_of(const answer *a, char id[SG_ID_LEN + 1])
{
    const char *p = strstr(a->r.body, "\"id\":\"");
    assert_non_null(p);
    memcpy(id, p + 6, SG_ID_LEN);
    id[SG_ID_LEN] = '\0';
}

static int pending_events(fx *f);

/* ---- tests ------------------------------------------------------------- */

static void all_steps_succeed(void **state)
{
    fx *f = *state;
    answer a = {0};
    start(f, "{\"image_id\":\"img_123\"}", 0, &a);
    assert_int_equal(a.r.status, 200);
    assert_non_null(strstr(a.r.body, "\"result\":\"Saga completada exitosamente\""));
    assert_non_null(strstr(a.r.body, "\"tokenizer_event\":\"event_published\""));
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    assert_int_equal(rec.status, SG_SAGA_COMPLETED);
    assert_int_equal(rec.comp_status, SG_COMP_NONE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(rec.steps[i].status, SG_STEP_COMPLETED);
        assert_int_equal(rec.steps[i].attempts, 1);
        assert_true(rec.steps[i].finished_us >= rec.steps[i].started_us);
    }
    assert_memory_equal(rec.steps[0].response, "{\"anonymized\":true}", 19);
    sg_saga_rec_free(&rec);
    free(a.r.body);
}

static void step1_failure_stops_the_saga(void **state)
{
    fx *f = *state;
    fake_status[SVC_ANON] = 500;
    answer a = {0};
    start(f, "{\"x\":1}", 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_non_null(strstr(a.r.body, "Error en Step 1 (Anonymizer): HTTP 500"));
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    assert_int_equal(rec.status, SG_SAGA_FAILED);
    assert_int_equal(rec.steps[0].status, SG_STEP_FAILED);
    assert_int_equal(rec.steps[1].status, SG_STEP_PENDING);
    assert_int_equal(rec.steps[2].status, SG_STEP_PENDING);
    assert_int_equal(rec.comp_status, SG_COMP_NONE);
    assert_int_equal(fake_hits[SVC_TOKEN] + fake_hits[SVC_AI], 0);
    sg_saga_rec_free(&rec);
    free(a.r.body);
}

static void step2_nack_withdraws_the_event(void **state)
{
    fx *f = *state;
    fake_status[SVC_TOKEN] = 503;
    answer a = {0};
    start(f, "{\"x\":2}", 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_non_null(strstr(a.r.body, "Error en Step 2 (Tokenizer): "));
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    assert_int_equal(rec.steps[1].status, SG_STEP_FAILED);
    assert_int_equal(rec.steps[2].status, SG_STEP_PENDING);
    assert_int_equal(fake_hits[SVC_AI], 0);
    sg_saga_rec_free(&rec);
    assert_int_equal(pending_events(f), 0); /* withdrawn, never delivered later */
    free(a.r.body);
}

/* Design §1, in doubt means delivered: an event sent but not acknowledged
 * in time may have reached the consumer, so when its step fails for good
 * the step's compensation goes out. */
static void step2_timeout_is_in_doubt_and_compensated(void **state)
{
    fx *f = *state;
    fake_delay_ms[SVC_TOKEN] = 1500; /* > 500 ms step timeout */
    answer a = {0};
    start(f, "{\"x\":3}", 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_non_null(
        strstr(a.r.body, "Error en Step 2 (Tokenizer): event not acknowledged within 500 ms"));
    assert_int_equal(fake_hits[SVC_AI], 0);
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    assert_int_equal(wait_comp(f, id), SG_COMP_COMPLETED);
    assert_true(fake_hits[SVC_COMP] >= 1);
    assert_int_equal(pending_events(f), 0);
    free(a.r.body);
}

static void step3_failure_compensates(void **state)
{
    fx *f = *state;
    fake_status[SVC_AI] = 500;
    fake_fail_left[SVC_COMP] = 3; /* the transport refuses thrice, then takes it */
    answer a = {0};
    start(f, "{\"x\":4}", 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_non_null(strstr(a.r.body, "Error en Step 3 (AI Model Process): HTTP 500"));
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    assert_int_equal(rec.status, SG_SAGA_FAILED);
    sg_saga_rec_free(&rec);
    assert_int_equal(wait_comp(f, id), SG_COMP_COMPLETED);
    assert_int_equal(fake_hits[SVC_COMP], 4);
    assert_int_equal(pending_events(f), 0);
    free(a.r.body);
}

static void step3_timeout_fails(void **state)
{
    fx *f = *state;
    fake_delay_ms[SVC_AI] = 1500;
    answer a = {0};
    start(f, "{\"x\":5}", 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_non_null(strstr(a.r.body, "Error en Step 3 (AI Model Process): no answer from"));
    free(a.r.body);
}

static void async_answers_when_durable(void **state)
{
    fx *f = *state;
    fake_delay_ms[SVC_AI] = 200;
    answer a = {0};
    start(f, "{\"x\":6}", 1, &a);
    assert_int_equal(a.r.status, 202);
    assert_non_null(strstr(a.r.body, "\"overall_status\":\"IN_PROGRESS\""));
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    char loc[64];
    snprintf(loc, sizeof loc, "/saga/%s", id);
    assert_string_equal(a.r.location, loc);
    sg_saga_rec rec = {0};
    get(f, id, &rec); /* durable before the answer */
    sg_saga_rec_free(&rec);
    for (int i = 0; i < 300 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    get(f, id, &rec);
    assert_int_equal(rec.status, SG_SAGA_COMPLETED);
    sg_saga_rec_free(&rec);
    free(a.r.body);
}

static void idempotency_key_joins_the_first_saga(void **state)
{
    fx *f = *state;
    fake_delay_ms[SVC_AI] = 100;
    answer a = {0}, b = {0}, c = {0};
    answer *ans[3] = {&a, &b, &c};
    const char *bodies[3] = {"{\"k\":1}", "{\"k\":1}", "{\"k\":2}"};
    for (int i = 0; i < 3; i++)
        submit(f, bodies[i], "key-1", 0, ans[i]);
    while (!a.done || !b.done || !c.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(a.r.status, 200);
    assert_string_equal(a.r.body, b.r.body);
    assert_int_equal(c.r.status, 422);
    assert_int_equal(fake_hits[SVC_ANON], 1);
    free(a.r.body);
    free(b.r.body);
    free(c.r.body);
}

static void restart_resumes_a_running_step(void **state)
{
    fx *f = *state;
    /* A saga that was in step 3 when the process died. */
    sg_saga_rec rec = {0};
    strcpy(rec.id, "11111111-2222-4333-8444-555555555555");
    rec.def_name = "sta";
    rec.request = "{\"r\":1}";
    rec.request_len = 7;
    rec.status = SG_SAGA_IN_PROGRESS;
    rec.created_us = rec.updated_us = 1;
    sg_step_rec steps[3] = {{.name = "anonymizer",
                             .status = SG_STEP_COMPLETED,
                             .attempts = 1,
                             .response = "{}",
                             .response_len = 2},
                            {.name = "tokenizer", .status = SG_STEP_COMPLETED, .attempts = 1},
                            {.name = "ai_model", .status = SG_STEP_RUNNING, .attempts = 1}};
    rec.nsteps = 3;
    rec.steps = steps;
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &rec);
    assert_int_equal(sg_store_commit_sync(f->store, w), SG_OK);

    close_engine(f);
    open_engine(f);
    for (int i = 0; i < 300 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    sg_saga_rec got = {0};
    get(f, rec.id, &got);
    assert_int_equal(got.status, SG_SAGA_COMPLETED);
    assert_int_equal(got.steps[2].attempts, 2);
    assert_int_equal(fake_hits[SVC_AI], 1);
    assert_int_equal(fake_hits[SVC_ANON], 0);
    sg_saga_rec_free(&got);
}

static void count_event(void *arg, sg_event_rec *ev)
{
    (*(int *)arg)++;
    sg_event_rec_free(ev);
    free(ev);
}

static int pending_events(fx *f)
{
    sg_store_reader *r;
    assert_int_equal(sg_store_reader_open(f->store, &r, NULL, 0), SG_OK);
    int n = 0;
    assert_int_equal(sg_store_load_pending_events(r, count_event, &n), SG_OK);
    sg_store_reader_close(r);
    return n;
}

/* A PENDING step event whose saga has ended is withdrawn at start-up,
 * never delivered. */
static void recovery_withdraws_orphan_step_events(void **state)
{
    fx *f = *state;
    sg_saga_rec rec = {0};
    strcpy(rec.id, "21111111-2222-4333-8444-555555555555");
    rec.def_name = "sta";
    rec.request = "{}";
    rec.request_len = 2;
    rec.status = SG_SAGA_FAILED;
    rec.created_us = rec.updated_us = 1;
    sg_step_rec steps[3] = {{.name = "anonymizer", .status = SG_STEP_COMPLETED},
                            {.name = "tokenizer", .status = SG_STEP_FAILED},
                            {.name = "ai_model"}};
    rec.nsteps = 3;
    rec.steps = steps;
    sg_event_rec ev = {.id = "31111111-2222-4333-8444-555555555555",
                       .topic = "tokenizer_event",
                       .payload = "{}",
                       .payload_len = 2,
                       .created_us = 1,
                       .deadline_us = INT64_MAX,
                       .step_index = 1};
    strcpy(ev.saga_id, rec.id);
    sg_write *w = sg_write_create();
    sg_write_saga_insert(w, &rec);
    sg_write_event_insert(w, &ev);
    assert_int_equal(sg_store_commit_sync(f->store, w), SG_OK);
    assert_int_equal(pending_events(f), 1);
    close_engine(f);
    open_engine(f);
    for (int i = 0; i < 100; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(pending_events(f), 0);
    assert_int_equal(fake_hits[SVC_TOKEN], 0);
}

/* Beyond max_inflight sagas in memory a new start is refused with 503;
 * joining an existing saga by Idempotency-Key is still fine. */
static void admission_is_bounded(void **state)
{
    fx *f = *state;
    close_engine(f);
    f->max_inflight = 2;
    open_engine(f);
    fake_delay_ms[SVC_AI] = 300;
    answer a[3] = {{0}};
    for (int i = 0; i < 3; i++)
        submit(f, "{\"n\":1}", NULL, 1, &a[i]);
    while (!a[0].done || !a[1].done || !a[2].done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(a[0].r.status, 202);
    assert_int_equal(a[1].r.status, 202);
    assert_int_equal(a[2].r.status, 503);
    assert_non_null(strstr(a[2].r.body, "too many sagas in flight"));
    for (int i = 0; i < 300 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    answer b = {0};
    start(f, "{\"n\":2}", 0, &b); /* room again */
    assert_int_equal(b.r.status, 200);
    for (int i = 0; i < 3; i++)
        free(a[i].r.body);
    free(b.r.body);
    f->max_inflight = 0;
}

/* Failure injection: the Nth store statement fails, for N = 1, 2, ... until
 * a saga runs without reaching it. Each time the client gets an answer
 * (200, 400 or 503), nothing crashes or leaks, and after a restart the
 * saga (if its creation committed) ends COMPLETED or FAILED with no event
 * left to deliver. */
static void store_failure_at_every_statement(void **state)
{
    fx *f = *state;
    for (int n = 1; n < 200; n++) {
        atomic_store(&sg_store_fail_countdown, n);
        answer a = {0};
        start(f, "{\"inject\":1}", 0, &a);
        int reached = atomic_load(&sg_store_fail_countdown) == 0;
        atomic_store(&sg_store_fail_countdown, 0);
        assert_true(a.r.status == 200 || a.r.status == 400 || a.r.status == 503);
        for (int i = 0; i < 300 && sg_engine_active(f->eng); i++)
            uv_run(&f->loop, UV_RUN_ONCE);
        free(a.r.body);
        close_engine(f);
        open_engine(f); /* recovery */
        for (int i = 0; i < 500 && sg_engine_active(f->eng); i++)
            uv_run(&f->loop, UV_RUN_ONCE);
        assert_int_equal(sg_engine_active(f->eng), 0);
        sg_store_reader *r;
        assert_int_equal(sg_store_reader_open(f->store, &r, NULL, 0), SG_OK);
        sg_list_query q = {.status = SG_SAGA_IN_PROGRESS, .limit = 10};
        sg_saga_rec *recs = NULL;
        size_t nrec = 0;
        char next[SG_CURSOR_MAX];
        assert_int_equal(sg_store_list(r, &q, &recs, &nrec, next), SG_OK);
        assert_int_equal(nrec, 0);
        free(recs);
        sg_store_reader_close(r);
        assert_int_equal(pending_events(f), 0);
        if (!reached) return; /* the saga ran past every statement */
    }
    fail_msg("the injected failure was still reached after 200 statements");
}

/* A start still queued when the engine halts (a start-up that fails after
 * the API opened) is refused and never stored. */
static void halt_refuses_queued_starts(void **state)
{
    fx *f = *state;
    answer a = {0};
    submit(f, "{\"q\":1}", NULL, 0, &a);
    sg_engine_halt(f->eng); /* before the loop ever ran the intake */
    assert_true(a.done);
    assert_int_equal(a.st, SG_ECLOSED);
    assert_int_equal(a.r.status, 503);
    assert_string_equal(a.r.body, "{\"detail\":\"sagad is shutting down\"}");
    free(a.r.body);
    sg_store_reader *r;
    sg_list_query q = {.status = -1, .limit = 10};
    sg_saga_rec *recs = NULL;
    size_t n = 99;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_reader_open(f->store, &r, NULL, 0), SG_OK);
    assert_int_equal(sg_store_list(r, &q, &recs, &n, next), SG_OK);
    assert_int_equal(n, 0);
    free(recs);
    sg_store_reader_close(r);
    answer b = {0};
    sg_start st = {.body = strdup("{}"), .body_len = 2};
    assert_int_equal(sg_engine_submit(f->eng, &st, on_done, &b), SG_ECLOSED);
    assert_non_null(st.body); /* refused: still the caller's */
    free(st.body);
}

/* A key whose saga has left memory is taken in the store: the engine does
 * not read the store on the loop, it hands the start back (SG_EEXIST) with
 * its body so the API can compare. */
static void stored_key_is_left_to_the_caller(void **state)
{
    fx *f = *state;
    answer a = {0}, b = {0};
    submit(f, "{\"s\":1}", "stored-key", 0, &a);
    while (!a.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(a.r.status, 200);
    for (int i = 0; i < 100 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
    assert_int_equal(sg_engine_active(f->eng), 0);
    submit(f, "{\"s\":1}", "stored-key", 0, &b);
    while (!b.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(b.st, SG_EEXIST);
    assert_string_equal(b.req, "{\"s\":1}");
    assert_int_equal(fake_hits[SVC_ANON], 1);
    free(a.r.body);
    free(b.r.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(all_steps_succeed, setup, teardown),
        cmocka_unit_test_setup_teardown(step1_failure_stops_the_saga, setup, teardown),
        cmocka_unit_test_setup_teardown(step2_nack_withdraws_the_event, setup, teardown),
        cmocka_unit_test_setup_teardown(step2_timeout_is_in_doubt_and_compensated, setup, teardown),
        cmocka_unit_test_setup_teardown(step3_failure_compensates, setup, teardown),
        cmocka_unit_test_setup_teardown(step3_timeout_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(async_answers_when_durable, setup, teardown),
        cmocka_unit_test_setup_teardown(idempotency_key_joins_the_first_saga, setup, teardown),
        cmocka_unit_test_setup_teardown(restart_resumes_a_running_step, setup, teardown),
        cmocka_unit_test_setup_teardown(store_failure_at_every_statement, setup, teardown),
        cmocka_unit_test_setup_teardown(admission_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(recovery_withdraws_orphan_step_events, setup, teardown),
        cmocka_unit_test_setup_teardown(halt_refuses_queued_starts, setup, teardown),
        cmocka_unit_test_setup_teardown(stored_key_is_left_to_the_caller, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
