/* Engine state machine tests: each step failing, timeouts, compensation,
 * restart, idempotency, admission, store failures (fixture.h). */
#include "engine/fixture.h"

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
    rec.def_version = 1;
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

/* A PENDING step event whose saga has ended is withdrawn at start-up,
 * never delivered. */
static void recovery_withdraws_orphan_step_events(void **state)
{
    fx *f = *state;
    sg_saga_rec rec = {0};
    strcpy(rec.id, "21111111-2222-4333-8444-555555555555");
    rec.def_name = "sta";
    rec.def_version = 1;
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

/* --max-inflight-bytes counts what a saga holds: its request, the answers
 * kept for its final reply, and its queued writes, not the request alone. */
static void held_bytes_count_answers(void **state)
{
    fx *f = *state;
    close_engine(f);
    f->max_inflight_bytes = 40000;
    open_engine(f);
    fake_anon_pad = 30000;       /* the saga keeps a 30 KB answer */
    fake_delay_ms[SVC_AI] = 400; /* ... while step 3 runs */
    answer a = {0}, b = {0}, c = {0};
    submit(f, "{\"n\":1}", NULL, 1, &a);
    while (!a.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(a.r.status, 202);
    for (int i = 0; i < 400 && fake_hits[SVC_AI] == 0; i++) { /* into step 3 */
        uv_run(&f->loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    /* A 20 KB request fits beside the request alone, not beside the answer. */
    char big[20001];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = '\0';
    submit(f, big, NULL, 1, &b);
    while (!b.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(b.r.status, 503);
    for (int i = 0; i < 600 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    submit(f, big, NULL, 1, &c); /* room again once it ended */
    while (!c.done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(c.r.status, 202);
    for (int i = 0; i < 600 && sg_engine_active(f->eng); i++)
        uv_run(&f->loop, UV_RUN_ONCE);
    free(a.r.body);
    free(b.r.body);
    free(c.r.body);
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
        cmocka_unit_test_setup_teardown(held_bytes_count_answers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
