/* sg_render_*: exact bytes of the design §2 renderings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sg/alloc.h"
#include "api/render.h"

#define T0 INT64_C(1795860000000000) /* 2026-11-28T10:00:00.000000Z */

/* The STA definition of design §1, built here so the test does not depend
 * on the engine's sg_def_create_sta. Static strings: never freed. */
static sg_step_def sta_steps[] = {
    {"anonymizer",
     "Anonymizer",
     "anonymized",
     NULL,
     {.kind = SG_ACTION_HTTP, .url = "http://a/anonymize"},
     0,
     {0},
     {1, 100, 2.0, 10000},
     0},
    {"tokenizer",
     "Tokenizer",
     "tokenizer_event",
     "event_published",
     {.kind = SG_ACTION_PUBLISH, .topic = "tokenizer_event"},
     1,
     {.kind = SG_ACTION_PUBLISH, .topic = "tokenizer_compensation"},
     {1, 100, 2.0, 10000},
     0},
    {"ai_model",
     "AI Model Process",
     "ai_result",
     NULL,
     {.kind = SG_ACTION_HTTP, .url = "http://m/process"},
     0,
     {0},
     {1, 100, 2.0, 10000},
     0},
};
static sg_def sta = {"sta", "Saga completada exitosamente", 3, sta_steps, 1, NULL};

/* A record with n steps named s1..sN (or STA names for n == 3), each in
 * the given status; responses for completed steps are added by callers. */
static void make_rec(sg_saga_rec *r, const char *request, size_t nsteps,
                     const sg_step_status *status)
{
    static const char *sta_names[] = {"anonymizer", "tokenizer", "ai_model"};
    memset(r, 0, sizeof *r);
    strcpy(r->id, "0f8fad5b-d9cb-469f-a165-70867728950e");
    r->def_name = sg_xstrdup("sta");
    r->def_version = 1;
    r->request = sg_xstrdup(request);
    r->request_len = strlen(request);
    r->status = SG_SAGA_IN_PROGRESS;
    r->comp_status = SG_COMP_NONE;
    r->created_us = T0;
    r->updated_us = T0 + 1500000;
    r->nsteps = nsteps;
    r->steps = sg_xcalloc(nsteps, sizeof *r->steps);
    for (size_t i = 0; i < nsteps; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%zu", i + 1);
        r->steps[i].name = sg_xstrdup(nsteps == 3 ? sta_names[i] : name);
        r->steps[i].status = status[i];
        if (status[i] != SG_STEP_PENDING) {
            r->steps[i].attempts = 1;
            r->steps[i].started_us = T0 + (int64_t)i * 100000;
        }
        if (status[i] == SG_STEP_COMPLETED || status[i] == SG_STEP_FAILED)
            r->steps[i].finished_us = T0 + (int64_t)i * 100000 + 50000;
    }
}

static void set_response(sg_step_rec *s, const char *json)
{
    s->response = sg_xstrdup(json);
    s->response_len = strlen(json);
}

static char *render_saga(const sg_saga_rec *r, const sg_def *d)
{
    sg_buf b;
    sg_buf_init(&b, 1 << 20);
    assert_int_equal(sg_render_saga(&b, r, d), SG_OK);
    return sg_buf_take(&b, NULL);
}

static char *render_outcome(const sg_saga_rec *r, const sg_def *d, int *code)
{
    sg_buf b;
    sg_buf_init(&b, 1 << 20);
    sg_outcome o;
    sg_outcome_of(&o, r, d);
    assert_int_equal(sg_render_outcome(&b, &o, 0, code), SG_OK);
    sg_outcome_clear(&o);
    return sg_buf_take(&b, NULL);
}

static void test_completed_sta(void **state)
{
    (void)state;
    const sg_step_status st[] = {SG_STEP_COMPLETED, SG_STEP_COMPLETED, SG_STEP_COMPLETED};
    sg_saga_rec r;
    make_rec(&r, "{\"image_id\":\"img_123\",\"data\":\"datos de prueba\"}", 3, st);
    r.status = SG_SAGA_COMPLETED;
    set_response(&r.steps[0], "{\"image_id\": \"img_123\", \"anon\": true}");
    set_response(&r.steps[2], "[1, 2.5, \"x\"]");

    char *got = render_saga(&r, &sta);
    assert_string_equal(
        got, "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\","
             "\"request_data\":{\"image_id\":\"img_123\",\"data\":\"datos de prueba\"},"
             "\"step1_status\":\"COMPLETED\",\"step2_status\":\"COMPLETED\",\"step3_status\":"
             "\"COMPLETED\","
             "\"overall_status\":\"COMPLETED\","
             "\"processed_data\":{\"anonymized\":{\"image_id\": \"img_123\", \"anon\": true},"
             "\"tokenizer_event\":\"event_published\",\"ai_result\":[1, 2.5, \"x\"]},"
             "\"created_at\":\"2026-11-28T10:00:00.000000Z\",\"updated_at\":\"2026-11-28T10:00:01."
             "500000Z\","
             "\"error\":null,\"compensation_status\":\"NONE\","
             "\"type\":\"sta\",\"version\":1,"
             "\"trace_id\":null,"
             "\"steps\":["
             "{\"name\":\"anonymizer\",\"status\":\"COMPLETED\",\"attempts\":1,"
             "\"started_at\":\"2026-11-28T10:00:00.000000Z\",\"finished_at\":\"2026-11-28T10:00:00."
             "050000Z\",\"error\":null},"
             "{\"name\":\"tokenizer\",\"status\":\"COMPLETED\",\"attempts\":1,"
             "\"started_at\":\"2026-11-28T10:00:00.100000Z\",\"finished_at\":\"2026-11-28T10:00:00."
             "150000Z\",\"error\":null},"
             "{\"name\":\"ai_model\",\"status\":\"COMPLETED\",\"attempts\":1,"
             "\"started_at\":\"2026-11-28T10:00:00.200000Z\",\"finished_at\":\"2026-11-28T10:00:00."
             "250000Z\",\"error\":null}"
             "]}");
    free(got);

    int code = 0;
    got = render_outcome(&r, &sta, &code);
    assert_int_equal(code, 200);
    assert_string_equal(got,
                        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\","
                        "\"result\":\"Saga completada exitosamente\","
                        "\"data\":{\"anonymized\":{\"image_id\": \"img_123\", \"anon\": true},"
                        "\"tokenizer_event\":\"event_published\",\"ai_result\":[1, 2.5, \"x\"]}}");
    free(got);
    sg_saga_rec_free(&r);
}

static void test_failed_sta(void **state)
{
    (void)state;
    const sg_step_status st[] = {SG_STEP_COMPLETED, SG_STEP_COMPLETED, SG_STEP_FAILED};
    sg_saga_rec r;
    make_rec(&r, "{\"a\":1}", 3, st);
    r.status = SG_SAGA_FAILED;
    r.comp_status = SG_COMP_PENDING;
    r.error = sg_xstrdup("Error en Step 3 (AI Model Process): HTTP 500 \"boom\"\n");
    r.steps[2].attempts = 2;
    r.steps[2].error = sg_xstrdup("HTTP 500 \"boom\"\n");
    set_response(&r.steps[0], "{}");
    memcpy(r.trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736", SG_TRACE_ID_HEX + 1);

    char *got = render_saga(&r, &sta);
    assert_string_equal(
        got,
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"request_data\":{\"a\":1},"
        "\"step1_status\":\"COMPLETED\",\"step2_status\":\"COMPLETED\",\"step3_status\":\"FAILED\","
        "\"overall_status\":\"FAILED\","
        "\"processed_data\":{\"anonymized\":{},\"tokenizer_event\":\"event_published\"},"
        "\"created_at\":\"2026-11-28T10:00:00.000000Z\",\"updated_at\":\"2026-11-28T10:00:01."
        "500000Z\","
        "\"error\":\"Error en Step 3 (AI Model Process): HTTP 500 \\\"boom\\\"\\n\","
        "\"compensation_status\":\"PENDING\","
        "\"type\":\"sta\",\"version\":1,"
        "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
        "\"steps\":["
        "{\"name\":\"anonymizer\",\"status\":\"COMPLETED\",\"attempts\":1,"
        "\"started_at\":\"2026-11-28T10:00:00.000000Z\",\"finished_at\":\"2026-11-28T10:00:00."
        "050000Z\",\"error\":null},"
        "{\"name\":\"tokenizer\",\"status\":\"COMPLETED\",\"attempts\":1,"
        "\"started_at\":\"2026-11-28T10:00:00.100000Z\",\"finished_at\":\"2026-11-28T10:00:00."
        "150000Z\",\"error\":null},"
        "{\"name\":\"ai_model\",\"status\":\"FAILED\",\"attempts\":2,"
        "\"started_at\":\"2026-11-28T10:00:00.200000Z\",\"finished_at\":\"2026-11-28T10:00:00."
        "250000Z\","
        "\"error\":\"HTTP 500 \\\"boom\\\"\\n\"}"
        "]}");
    free(got);

    int code = 0;
    got = render_outcome(&r, &sta, &code);
    assert_int_equal(code, 400);
    assert_string_equal(
        got, "{\"detail\":{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\","
             "\"error\":\"Error en Step 3 (AI Model Process): HTTP 500 \\\"boom\\\"\\n\"}}");
    free(got);
    sg_saga_rec_free(&r);
}

static void test_in_progress(void **state)
{
    (void)state;
    const sg_step_status st[] = {SG_STEP_COMPLETED, SG_STEP_RUNNING, SG_STEP_PENDING};
    sg_saga_rec r;
    make_rec(&r, "{}", 3, st);
    set_response(&r.steps[0], "\"anon\"");

    char *got = render_saga(&r, &sta);
    assert_string_equal(
        got,
        "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"request_data\":{},"
        "\"step1_status\":\"COMPLETED\",\"step2_status\":\"RUNNING\",\"step3_status\":\"PENDING\","
        "\"overall_status\":\"IN_PROGRESS\",\"processed_data\":{\"anonymized\":\"anon\"},"
        "\"created_at\":\"2026-11-28T10:00:00.000000Z\",\"updated_at\":\"2026-11-28T10:00:01."
        "500000Z\","
        "\"error\":null,\"compensation_status\":\"NONE\","
        "\"type\":\"sta\",\"version\":1,"
        "\"trace_id\":null,"
        "\"steps\":["
        "{\"name\":\"anonymizer\",\"status\":\"COMPLETED\",\"attempts\":1,"
        "\"started_at\":\"2026-11-28T10:00:00.000000Z\",\"finished_at\":\"2026-11-28T10:00:00."
        "050000Z\",\"error\":null},"
        "{\"name\":\"tokenizer\",\"status\":\"RUNNING\",\"attempts\":1,"
        "\"started_at\":\"2026-11-28T10:00:00.100000Z\",\"finished_at\":null,\"error\":null},"
        "{\"name\":\"ai_model\",\"status\":\"PENDING\",\"attempts\":0,"
        "\"started_at\":null,\"finished_at\":null,\"error\":null}"
        "]}");
    free(got);

    int code = 0;
    got = render_outcome(&r, &sta, &code);
    assert_int_equal(code, 202);
    assert_string_equal(got, "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\","
                             "\"overall_status\":\"IN_PROGRESS\"}");
    free(got);

    /* The saga's row as its creation wrote it (a step moving on writes
     * only the steps): updated_at is the newest step time, step 2's start. */
    r.updated_us = T0;
    got = render_saga(&r, &sta);
    assert_non_null(strstr(got, "\"updated_at\":\"2026-11-28T10:00:00.100000Z\""));
    free(got);
    sg_saga_rec_free(&r);
}

/* The request is spliced as posted: \u0000 stays an escape, 2^63-1 and
 * bigger integers keep every digit, key order and spacing survive. */
static void test_request_verbatim(void **state)
{
    (void)state;
    static const char req[] = "{ \"z\" : \"a\\u0000b\", \"n\": 9223372036854775807,"
                              " \"big\": 123456789012345678901234567890, \"u\": \"\xc3\xb1\" }";
    const sg_step_status st[] = {SG_STEP_PENDING};
    sg_saga_rec r;
    make_rec(&r, req, 1, st);
    char *got = render_saga(&r, NULL);
    char want[512];
    snprintf(want, sizeof want,
             "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"request_data\":%s,", req);
    assert_memory_equal(got, want, strlen(want));
    free(got);
    sg_saga_rec_free(&r);
}

/* stepN_status follows the record, however many steps it has. */
static void test_step_count(void **state)
{
    (void)state;
    const sg_step_status st2[] = {SG_STEP_COMPLETED, SG_STEP_FAILED};
    const sg_step_status st5[] = {SG_STEP_COMPLETED, SG_STEP_COMPLETED, SG_STEP_COMPLETED,
                                  SG_STEP_RUNNING, SG_STEP_PENDING};
    sg_saga_rec r;
    make_rec(&r, "{}", 2, st2);
    char *got = render_saga(&r, NULL);
    assert_non_null(strstr(got, "\"request_data\":{},\"step1_status\":\"COMPLETED\","
                                "\"step2_status\":\"FAILED\",\"overall_status\""));
    assert_null(strstr(got, "step3_status"));
    free(got);
    sg_saga_rec_free(&r);

    make_rec(&r, "{}", 5, st5);
    set_response(&r.steps[0], "1");
    set_response(&r.steps[2], "{\"k\":[]}");
    got = render_saga(&r, NULL);
    assert_non_null(strstr(got, "\"step1_status\":\"COMPLETED\",\"step2_status\":\"COMPLETED\","
                                "\"step3_status\":\"COMPLETED\",\"step4_status\":\"RUNNING\","
                                "\"step5_status\":\"PENDING\",\"overall_status\":\"IN_PROGRESS\""));
    assert_null(strstr(got, "step6_status"));
    /* No definition: step names as keys, the raw response or null. */
    assert_non_null(strstr(got, "\"processed_data\":{\"s1\":1,\"s2\":null,\"s3\":{\"k\":[]}},"));
    free(got);
    sg_saga_rec_free(&r);
}

/* A definition with fewer steps than the record must not be overrun. */
static void test_def_mismatch(void **state)
{
    (void)state;
    sg_def small = {"sta", "ok", 1, sta_steps, 1, NULL};
    const sg_step_status st[] = {SG_STEP_COMPLETED, SG_STEP_COMPLETED};
    sg_saga_rec r;
    make_rec(&r, "{}", 2, st);
    r.status = SG_SAGA_COMPLETED;
    set_response(&r.steps[0], "2");
    set_response(&r.steps[1], "3");
    int code = 0;
    char *got = render_outcome(&r, &small, &code);
    assert_int_equal(code, 200);
    assert_string_equal(got, "{\"id\":\"0f8fad5b-d9cb-469f-a165-70867728950e\",\"result\":\"ok\","
                             "\"data\":{\"anonymized\":2,\"s2\":3}}");
    free(got);
    sg_saga_rec_free(&r);
}

static void test_detail_and_cap(void **state)
{
    (void)state;
    sg_buf b;
    sg_buf_init(&b, 64);
    assert_int_equal(sg_render_detail(&b, "Saga no encontrada"), SG_OK);
    assert_string_equal(b.ptr, "{\"detail\":\"Saga no encontrada\"}");
    sg_buf_reset(&b);
    assert_int_equal(sg_render_detail(&b, "tab\there \"q\""), SG_OK);
    assert_string_equal(b.ptr, "{\"detail\":\"tab\\there \\\"q\\\"\"}");
    sg_buf_free(&b);

    /* Over the cap: an error, and the buffer is left as it was. */
    const sg_step_status st[] = {SG_STEP_PENDING};
    sg_saga_rec r;
    make_rec(&r, "{}", 1, st);
    sg_buf_init(&b, 100);
    assert_int_equal(sg_buf_adds(&b, "prefix"), SG_OK);
    assert_int_equal(sg_render_saga(&b, &r, NULL), SG_ETOOBIG);
    assert_int_equal(b.len, 6);
    assert_string_equal(b.ptr, "prefix");
    int code = 7;
    r.status = SG_SAGA_COMPLETED;
    sg_buf_reset(&b);
    b.max = 10;
    sg_outcome o;
    sg_outcome_of(&o, &r, NULL);
    assert_int_equal(sg_render_outcome(&b, &o, 0, &code), SG_ETOOBIG);
    sg_outcome_clear(&o);
    assert_int_equal(code, 0);
    assert_int_equal(b.len, 0);
    sg_buf_free(&b);
    sg_saga_rec_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_completed_sta),  cmocka_unit_test(test_failed_sta),
        cmocka_unit_test(test_in_progress),    cmocka_unit_test(test_request_verbatim),
        cmocka_unit_test(test_step_count),     cmocka_unit_test(test_def_mismatch),
        cmocka_unit_test(test_detail_and_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
