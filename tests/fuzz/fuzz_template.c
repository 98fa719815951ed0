/* libFuzzer target for body templates (src/engine/template*.c) on their
 * own, closer than fuzz_defs gets: the input is either one JSON string
 * (first byte even: the rest, as the string's bytes if valid UTF-8, is
 * where ${...} references are parsed) or a whole JSON document (first
 * byte odd).
 * What compiles renders, against a fixed saga whose request and answers
 * are JSON, missing or not JSON, to valid JSON or to an error that says
 * why; what does not compile says why. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/template.h"

static const char REQUEST[] = "{\"total\":42.5,\"id\":\"x\\u0000y\",\"items\":[{\"sku\":\"A\"},"
                              "{\"sku\":\"B\"}],\"n\":9007199254740993,\"o\":{\"k\":[true,null]},"
                              "\"s\":\"\\\"quoted\\\" and \\\\ \\u00e9\"}";
static const char *const STEPS[] = {"anonymizer", "tokenizer", "ai-model"};
static const char *const ANSWERS[] = {"{\"id\":\"r-1\",\"list\":[1,2,{\"x\":\"y\"}]}", NULL,
                                      "not json"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    json_t *v;
    if (data[0] % 2 == 0) {
        /* A definitions file is JSON: its strings are valid UTF-8. */
        v = json_stringn((const char *)data + 1, size - 1);
    } else {
        json_error_t je;
        v = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    }
    if (!v) return 0;
    /* Step k sees the steps before it: compile as each of the three. */
    for (size_t k = 0; k < 3; k++) {
        sg_template *t = NULL;
        char err[512] = "";
        if (sg_template_compile(&t, v, STEPS, k, err, sizeof err) != SG_OK) {
            if (t || !err[0]) abort();
            continue;
        }
        if (!t) abort();
        sg_step_rec steps[3];
        memset(steps, 0, sizeof steps);
        for (size_t i = 0; i < 3; i++) {
            steps[i].name = (char *)STEPS[i];
            steps[i].response = (char *)ANSWERS[i];
            steps[i].response_len = ANSWERS[i] ? strlen(ANSWERS[i]) : 0;
        }
        sg_saga_rec rec = {.request = (char *)REQUEST,
                           .request_len = sizeof REQUEST - 1,
                           .nsteps = 3,
                           .steps = steps};
        char *out = NULL;
        size_t len = 0;
        err[0] = '\0';
        if (sg_template_render(t, &rec, &out, &len, err, sizeof err) == SG_OK) {
            json_error_t je;
            json_t *r = json_loadb(out, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
            if (!r) abort(); /* what renders is JSON */
            json_decref(r);
            free(out);
        } else if (out || !err[0]) {
            abort();
        }
        sg_template_destroy(t);
    }
    json_decref(v);
    return 0;
}
