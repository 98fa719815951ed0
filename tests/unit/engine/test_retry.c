/* Design §1 "Retries, parking and redrive": step retries (transient or
 * permanent, Retry-After, a backoff that survives a restart, the same event
 * id), compensations in order and parked, redelivery and redrive. */
#include "engine/fixture.h"

/* Runs the loop until cond(f, arg) holds or about ms pass. */
static int run_until(fx *f, int (*cond)(fx *, const void *), const void *arg, int ms)
{
    for (int i = 0; i < ms / 5; i++) {
        if (cond(f, arg)) return 1;
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    return cond(f, arg);
}

static int comp_is(fx *f, const void *arg)
{
    const char *id = ((const char *const *)arg)[0];
    sg_comp_status want = (sg_comp_status)(intptr_t)((const void *const *)arg)[1];
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    int ok = rec.comp_status == want;
    sg_saga_rec_free(&rec);
    return ok;
}

static int wait_comp_is(fx *f, const char *id, sg_comp_status want, int ms)
{
    const void *arg[2] = {id, (const void *)(intptr_t)want};
    return run_until(f, comp_is, arg, ms);
}

/* The saga's events with the given topic (caller frees with events_free). */
static size_t events_of(fx *f, const char *saga_id, const char *topic, sg_event_rec *out,
                        size_t max)
{
    sg_store_reader *r;
    assert_int_equal(sg_store_reader_open(f->store, &r, NULL, 0), SG_OK);
    sg_list_query q = {.status = -1, .limit = 100};
    sg_event_rec *evs = NULL;
    size_t n = 0, got = 0;
    char next[SG_CURSOR_MAX];
    assert_int_equal(sg_store_list_events(r, &q, &evs, &n, next), SG_OK);
    for (size_t i = 0; i < n; i++) {
        if (got < max && strcmp(evs[i].saga_id, saga_id) == 0 && evs[i].topic &&
            strcmp(evs[i].topic, topic) == 0)
            out[got++] = evs[i];
        else
            sg_event_rec_free(&evs[i]);
    }
    free(evs);
    sg_store_reader_close(r);
    return got;
}

static void use_retry(fx *f, int attempts, long backoff_ms)
{
    close_engine(f);
    f->retry = (sg_retry){attempts, backoff_ms, 2.0, backoff_ms * 4};
    open_engine(f);
}

/* ---- step retries --------------------------------------------------------- */

static void transient_failures_are_retried_with_one_key(void **state)
{
    fx *f = *state;
    use_retry(f, 3, 10);
    fake_fail_left[SVC_ANON] = 2; /* 503, 503, then 200 */
    answer a = {0};
    start(f, "{\"t\":1}", 0, &a);
    assert_int_equal(a.r.status, 200);
    char id[SG_ID_LEN + 1], key[128];
    id_of(&a, id);
    assert_int_equal(fake_hits[SVC_ANON], 3);
    snprintf(key, sizeof key, "%s:anonymizer", id);
    assert_string_equal(fake_idem[SVC_ANON], key);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    assert_int_equal(rec.steps[0].attempts, 3);
    assert_null(rec.steps[0].error); /* cleared by the success */
    assert_int_equal(rec.steps[0].next_us, 0);
    sg_saga_rec_free(&rec);
    free(a.r.body);
}

static void permanent_failures_are_not(void **state)
{
    fx *f = *state;
    use_retry(f, 3, 10);
    fake_status[SVC_ANON] = 404;
    answer a = {0};
    start(f, "{\"t\":2}", 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_non_null(strstr(a.r.body, "Error en Step 1 (Anonymizer): HTTP 404"));
    assert_int_equal(fake_hits[SVC_ANON], 1);
    free(a.r.body);
}

static void retries_run_out(void **state)
{
    fx *f = *state;
    use_retry(f, 2, 10);
    fake_status[SVC_AI] = 500;
    answer a = {0};
    start(f, "{\"t\":3}", 0, &a);
    assert_int_equal(a.r.status, 400);
    assert_int_equal(fake_hits[SVC_AI], 2);
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    assert_int_equal(rec.steps[2].attempts, 2);
    assert_int_equal(rec.steps[2].status, SG_STEP_FAILED);
    sg_saga_rec_free(&rec);
    free(a.r.body);
}

static void retry_after_is_honoured(void **state)
{
    fx *f = *state;
    use_retry(f, 2, 1);
    fake_fail_left[SVC_ANON] = 1;
    fake_retry_after_s[SVC_ANON] = 1;
    uint64_t t0 = uv_hrtime();
    answer a = {0};
    start(f, "{\"t\":4}", 0, &a);
    assert_int_equal(a.r.status, 200);
    assert_true(uv_hrtime() - t0 >= 1000000000ull); /* waited at least Retry-After */
    assert_int_equal(fake_hits[SVC_ANON], 2);
    free(a.r.body);
}

/* The publish step, retried after a "not now", keeps its event id. */
static void publish_retry_keeps_the_event_id(void **state)
{
    fx *f = *state;
    use_retry(f, 2, 10);
    fake_fail_left[SVC_TOKEN] = 1;
    answer a = {0};
    start(f, "{\"t\":5}", 0, &a);
    assert_int_equal(a.r.status, 200);
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    sg_event_rec ev[4];
    assert_int_equal(events_of(f, id, "tokenizer_event", ev, 4), 1);
    assert_int_equal(ev[0].status, SG_EVENT_DELIVERED);
    assert_int_equal(ev[0].attempts, 2);
    sg_event_rec_free(&ev[0]);
    assert_int_equal(fake_hits[SVC_TOKEN], 2);
    assert_int_equal(fake_hits[SVC_COMP], 0); /* a refusal is an answer: nothing in doubt */
    free(a.r.body);
}

static int next_attempt_stored(fx *f, const void *id)
{
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    int ok = rec.steps[0].next_us != 0;
    sg_saga_rec_free(&rec);
    return ok;
}

/* A restart during a backoff waits out the rest of it. */
static void backoff_survives_a_restart(void **state)
{
    fx *f = *state;
    use_retry(f, 2, 1);
    fake_fail_left[SVC_ANON] = 1;
    fake_retry_after_s[SVC_ANON] = 2;
    answer a = {0};
    submit(f, "{\"t\":6}", NULL, 1, &a);
    while (!a.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    assert_true(run_until(f, next_attempt_stored, id, 3000));
    uint64_t failed_at = uv_hrtime();
    close_engine(f);
    open_engine(f);
    for (int i = 0; i < 100; i++) { /* about half a second: still waiting */
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_int_equal(fake_hits[SVC_ANON], 1);
    for (int i = 0; i < 1000 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_true(uv_hrtime() - failed_at >= 1800000000ull);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    assert_int_equal(rec.status, SG_SAGA_COMPLETED);
    assert_int_equal(rec.steps[0].attempts, 2);
    sg_saga_rec_free(&rec);
    free(a.r.body);
}

/* ---- compensations: order, parking, redelivery ------------------------------- */

typedef struct cmd {
    int done;
    sg_status st;
} cmd;

static void on_cmd(void *arg, sg_status st, const char *detail)
{
    cmd *c = arg;
    (void)detail;
    c->st = st;
    c->done = 1;
}

static sg_status redeliver(fx *f, sg_event_rec *ev)
{
    cmd c = {0};
    assert_int_equal(sg_engine_redeliver(f->eng, ev, on_cmd, &c), SG_OK);
    while (!c.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    return c.st;
}

/* Latest step first; a refused compensation parks, the one behind it
 * waits, and a redelivery takes both up again. */
static void compensations_in_order_park_and_redeliver(void **state)
{
    fx *f = *state;
    close_engine(f);
    f->undo = 1;
    open_engine(f);
    fake_status[SVC_AI] = 500;
    fake_status[SVC_COMP] = 403; /* refused for good: parked */
    answer a = {0};
    start(f, "{\"t\":7}", 0, &a);
    assert_int_equal(a.r.status, 400);
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    assert_true(wait_comp_is(f, id, SG_COMP_PARKED, 3000));
    for (int i = 0; i < 40; i++) { /* the HTTP compensation behind it waits */
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(5000);
    }
    assert_int_equal(fake_hits[SVC_COMP], 1);
    assert_int_equal(fake_hits[SVC_UNDO], 0);
    sg_event_rec ev[2];
    assert_int_equal(events_of(f, id, "tokenizer_compensation", ev, 2), 1);
    assert_int_equal(ev[0].status, SG_EVENT_PARKED);
    assert_non_null(strstr(ev[0].last_error, "403"));

    fake_status[SVC_COMP] = 200;
    sg_event_rec again;
    sg_event_rec_copy(&again, &ev[0]);
    assert_int_equal(redeliver(f, &ev[0]), SG_OK);
    assert_true(wait_comp_is(f, id, SG_COMP_COMPLETED, 3000));
    assert_int_equal(fake_hits[SVC_UNDO], 1);
    pthread_mutex_lock(&fake_mu);
    int comp_at = -1, undo_at = -1;
    for (int i = 0; i < fake_norder; i++) {
        if (fake_order[i] == SVC_COMP) comp_at = i;
        if (fake_order[i] == SVC_UNDO && undo_at < 0) undo_at = i;
    }
    char key[128];
    snprintf(key, sizeof key, "%s:anonymizer:compensate", id);
    assert_string_equal(fake_idem[SVC_UNDO], key);
    pthread_mutex_unlock(&fake_mu);
    assert_true(comp_at >= 0 && undo_at > comp_at);
    /* Not parked any more: a second redelivery is refused. */
    assert_int_equal(redeliver(f, &again), SG_ECONFLICT);
    free(a.r.body);
}

/* Still undelivered after --park-after: parked, kept. */
static void undelivered_compensations_park_after_a_while(void **state)
{
    fx *f = *state;
    close_engine(f);
    f->park_after_s = 1;
    open_engine(f);
    fake_status[SVC_AI] = 500;
    fake_status[SVC_COMP] = 503;
    answer a = {0};
    start(f, "{\"t\":8}", 0, &a);
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    assert_true(wait_comp_is(f, id, SG_COMP_PARKED, 4000));
    sg_event_rec ev[2];
    assert_int_equal(events_of(f, id, "tokenizer_compensation", ev, 2), 1);
    assert_int_equal(ev[0].status, SG_EVENT_PARKED);
    assert_true(ev[0].attempts > 1);
    assert_non_null(strstr(ev[0].last_error, "park-after"));
    sg_event_rec_free(&ev[0]);
    free(a.r.body);
}

/* ---- redrive ------------------------------------------------------------------ */

static void redrive_answer(fx *f, const char *id, int async, answer *a)
{
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    a->async = async;
    assert_int_equal(sg_engine_redrive(f->eng, &rec, async, on_done, a), SG_OK);
    assert_null(rec.steps); /* taken */
}

static void redrive_runs_the_failed_step_again(void **state)
{
    fx *f = *state;
    fake_status[SVC_ANON] = 404;
    answer a = {0}, b = {0}, c = {0};
    start(f, "{\"t\":9}", 0, &a);
    assert_int_equal(a.r.status, 400);
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    fake_status[SVC_ANON] = 200;
    /* Two at once start it once; both get its answer. */
    redrive_answer(f, id, 0, &b);
    redrive_answer(f, id, 0, &c);
    while (!b.done || !c.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(b.r.status, 200);
    assert_string_equal(b.r.body, c.r.body);
    assert_non_null(strstr(b.r.body, id)); /* the same saga */
    assert_int_equal(fake_hits[SVC_ANON], 2);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    assert_int_equal(rec.status, SG_SAGA_COMPLETED);
    assert_int_equal(rec.steps[0].attempts, 2);
    assert_null(rec.error);
    sg_saga_rec_free(&rec);
    free(a.r.body);
    free(b.r.body);
    free(c.r.body);
}

/* The store decides: a saga whose compensation is out cannot be redriven,
 * whatever the caller believed. */
static void redrive_is_refused_once_compensated(void **state)
{
    fx *f = *state;
    fake_status[SVC_AI] = 500;
    answer a = {0}, b = {0};
    start(f, "{\"t\":10}", 0, &a);
    char id[SG_ID_LEN + 1];
    id_of(&a, id);
    assert_int_equal(wait_comp(f, id), SG_COMP_COMPLETED);
    sg_saga_rec rec = {0};
    get(f, id, &rec);
    rec.comp_status = SG_COMP_NONE; /* a stale view */
    b.async = 0;
    assert_int_equal(sg_engine_redrive(f->eng, &rec, 0, on_done, &b), SG_OK);
    while (!b.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(b.st, SG_ECONFLICT);
    assert_int_equal(fake_hits[SVC_AI], 1);
    free(a.r.body);
    free(b.r.body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(transient_failures_are_retried_with_one_key, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(permanent_failures_are_not, setup, teardown),
        cmocka_unit_test_setup_teardown(retries_run_out, setup, teardown),
        cmocka_unit_test_setup_teardown(retry_after_is_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(publish_retry_keeps_the_event_id, setup, teardown),
        cmocka_unit_test_setup_teardown(backoff_survives_a_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(compensations_in_order_park_and_redeliver, setup, teardown),
        cmocka_unit_test_setup_teardown(undelivered_compensations_park_after_a_while, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(redrive_runs_the_failed_step_again, setup, teardown),
        cmocka_unit_test_setup_teardown(redrive_is_refused_once_compensated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
