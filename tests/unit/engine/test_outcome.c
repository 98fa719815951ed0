/* sg_outcome and the Idempotency-Key decision: the typed boundary between
 * the engine and the API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "sg/alloc.h"
#include "sg/outcome.h"

#define ID "0f8fad5b-d9cb-469f-a165-70867728950e"

static sg_step_rec step(const char *name, sg_step_status st, const char *response)
{
    sg_step_rec s = {.name = (char *)name, .status = st};
    if (response) {
        s.response = (char *)response;
        s.response_len = strlen(response);
    }
    return s;
}

static sg_def *sta(void)
{
    sg_def *d = NULL;
    assert_int_equal(sg_def_create_sta(&d, "http://a/x", "http://b/y"), SG_OK);
    return d;
}

static void completed_saga_has_every_output(void **state)
{
    (void)state;
    sg_def *d = sta();
    sg_step_rec steps[3] = {step("anonymizer", SG_STEP_COMPLETED, "{\"x\":1}"),
                            step("tokenizer", SG_STEP_COMPLETED, NULL),
                            step("ai_model", SG_STEP_COMPLETED, "true")};
    sg_saga_rec r = {.id = ID, .status = SG_SAGA_COMPLETED, .nsteps = 3, .steps = steps};
    sg_outcome o;
    sg_outcome_of(&o, &r, d);
    assert_int_equal(o.status, SG_OK);
    assert_string_equal(o.saga_id, ID);
    assert_int_equal(o.saga_status, SG_SAGA_COMPLETED);
    assert_string_equal(o.result, "Saga completada exitosamente");
    assert_int_equal(o.failed_step, 0);
    assert_null(o.error);
    assert_int_equal(o.noutputs, 3);
    assert_string_equal(o.outputs[0].key, "anonymized");
    assert_memory_equal(o.outputs[0].json, "{\"x\":1}", o.outputs[0].json_len);
    assert_null(o.outputs[0].text);
    assert_string_equal(o.outputs[1].key, "tokenizer_event");
    assert_string_equal(o.outputs[1].text, "event_published");
    assert_null(o.outputs[1].json);
    assert_string_equal(o.outputs[2].key, "ai_result");
    assert_int_equal(o.outputs[2].json_len, 4);
    sg_outcome_clear(&o);
    assert_null(o.outputs);
    assert_int_equal(o.noutputs, 0);
    sg_def_destroy(d);
}

static void failed_saga_names_its_step(void **state)
{
    (void)state;
    sg_def *d = sta();
    sg_step_rec steps[3] = {step("anonymizer", SG_STEP_COMPLETED, "{}"),
                            step("tokenizer", SG_STEP_FAILED, NULL),
                            step("ai_model", SG_STEP_PENDING, NULL)};
    sg_saga_rec r = {.id = ID,
                     .status = SG_SAGA_FAILED,
                     .error = "Error en Step 2 (Tokenizer): down",
                     .nsteps = 3,
                     .steps = steps};
    sg_outcome o;
    sg_outcome_of(&o, &r, d);
    assert_int_equal(o.saga_status, SG_SAGA_FAILED);
    assert_int_equal(o.failed_step, 2);
    assert_string_equal(o.error, "Error en Step 2 (Tokenizer): down");
    assert_null(o.result);
    assert_int_equal(o.noutputs, 1); /* only completed steps */
    sg_outcome_clear(&o);
    sg_def_destroy(d);
}

/* Without its definition (unknown, or with fewer steps than the record),
 * step names are the keys and answers are kept raw. */
static void unknown_definition_falls_back_to_names(void **state)
{
    (void)state;
    sg_step_rec steps[2] = {step("one", SG_STEP_COMPLETED, "1"),
                            step("two", SG_STEP_COMPLETED, "2")};
    sg_saga_rec r = {.id = ID, .status = SG_SAGA_IN_PROGRESS, .nsteps = 2, .steps = steps};
    sg_outcome o;
    sg_outcome_of(&o, &r, NULL);
    assert_int_equal(o.noutputs, 2);
    assert_string_equal(o.outputs[0].key, "one");
    assert_string_equal(o.outputs[1].key, "two");
    assert_null(o.result);
    sg_outcome_clear(&o);
}

static void running_and_failures_carry_no_saga_data(void **state)
{
    (void)state;
    sg_outcome o;
    sg_outcome_running(&o, ID);
    assert_int_equal(o.status, SG_OK);
    assert_string_equal(o.saga_id, ID);
    assert_int_equal(o.saga_status, SG_SAGA_IN_PROGRESS);
    assert_int_equal(o.noutputs, 0);
    sg_outcome_fail(&o, SG_EBUSY, "too many");
    assert_int_equal(o.status, SG_EBUSY);
    assert_string_equal(o.detail, "too many");
    assert_string_equal(o.saga_id, "");
    sg_outcome_clear(&o);
}

static void idempotency_is_byte_equality(void **state)
{
    (void)state;
    sg_saga_rec holder = {.request = "{\"a\":1}", .request_len = 7};
    assert_int_equal(sg_idem_check(&holder, "{\"a\":1}", 7), SG_OK);
    assert_int_equal(sg_idem_check(&holder, "{\"a\": 1}", 8), SG_ECONFLICT); /* same JSON */
    assert_int_equal(sg_idem_check(&holder, "{\"a\":2}", 7), SG_ECONFLICT);
    assert_int_equal(sg_idem_check(&holder, "{\"a\":1}", 6), SG_ECONFLICT);
    /* \u0000 and bytes after it count. */
    sg_saga_rec nul = {.request = "{\"z\":\"\0x\"}", .request_len = 10};
    assert_int_equal(sg_idem_check(&nul, "{\"z\":\"\0x\"}", 10), SG_OK);
    assert_int_equal(sg_idem_check(&nul, "{\"z\":\"\0y\"}", 10), SG_ECONFLICT);
    sg_saga_rec empty = {.request = "", .request_len = 0};
    assert_int_equal(sg_idem_check(&empty, "", 0), SG_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(completed_saga_has_every_output),
        cmocka_unit_test(failed_saga_names_its_step),
        cmocka_unit_test(unknown_definition_falls_back_to_names),
        cmocka_unit_test(running_and_failures_carry_no_saga_data),
        cmocka_unit_test(idempotency_is_byte_equality),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
