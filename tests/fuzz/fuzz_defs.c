/* libFuzzer target for the definitions file (design §6): any bytes either
 * load or are refused with a reason; a file that loads reloads from each
 * type's canonical text into the same canonical text, and every HTTP body
 * and event payload template renders, against a fixed saga, to valid JSON
 * or to an error that says why. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/template.h"
#include "sg/def.h"

static const sg_def_defaults DFLT = {{2, 100, 2.0, 10000}};

/* The saga every template renders against: a request with a \u0000 and a
 * 64-bit integer; step answers that are JSON, missing, or not JSON. */
static const char REQUEST[] = "{\"total\":42.5,\"id\":\"x\\u0000y\",\"items\":[{\"sku\":\"A\"},"
                              "{\"sku\":\"B\"}],\"n\":9007199254740993,\"o\":{\"k\":[true,null]}}";
static const char *const ANSWERS[] = {"{\"id\":\"r-1\",\"list\":[1,2,{\"x\":\"y\"}]}", NULL, "[7]",
                                      "\"text\"", "not json"};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("SAGAD_ANONYMIZER_URL", "http://anonymizer-service/anonymize", 1);
    setenv("SAGAD_AI_MODEL_URL", "http://ai-model-service/process", 1);
    setenv("SG_F_HOST", "http://h:1", 1);
    setenv("SG_F_TOKEN", "t0ken", 1);
    return 0;
}

static void render_body(const sg_template *t, const sg_saga_rec *rec)
{
    char *out = NULL, err[256] = "";
    size_t len = 0;
    sg_status st = sg_template_render(t, rec, &out, &len, err, sizeof err);
    if (st != SG_OK) {
        if (!err[0] || out) abort(); /* a failure says why and returns nothing */
        return;
    }
    json_error_t je;
    json_t *v = json_loadb(out, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!v || strlen(out) > len) abort();
    json_decref(v);
    free(out);
}

static void check(const sg_def *d)
{
    if (!d->name || !d->canonical || d->nsteps < 1 || d->nsteps > SG_DEF_MAX_STEPS) abort();
    sg_def *again = NULL;
    char err[512];
    if (sg_def_parse_one(d->name, d->canonical, &DFLT, &again, err, sizeof err) != SG_OK) abort();
    if (strcmp(again->canonical, d->canonical) != 0 || again->nsteps != d->nsteps) abort();
    sg_def_destroy(again);

    sg_step_rec steps[SG_DEF_MAX_STEPS];
    memset(steps, 0, sizeof steps);
    for (size_t i = 0; i < d->nsteps; i++) {
        const char *a = ANSWERS[i % (sizeof ANSWERS / sizeof *ANSWERS)];
        steps[i].name = d->steps[i].name;
        steps[i].response = (char *)a;
        steps[i].response_len = a ? strlen(a) : 0;
    }
    sg_saga_rec rec = {.request = (char *)REQUEST,
                       .request_len = sizeof REQUEST - 1,
                       .nsteps = d->nsteps,
                       .steps = steps};
    for (size_t i = 0; i < d->nsteps; i++) {
        const sg_step_def *s = &d->steps[i];
        if (!s->name || !s->service || !s->result_key) abort();
        if (s->action.kind == SG_ACTION_HTTP && (!s->action.url || !s->action.method)) abort();
        if (s->action.kind == SG_ACTION_PUBLISH && (!s->action.topic || s->action.body)) abort();
        if (s->action.body) render_body(s->action.body, &rec);
        if (s->action.payload) render_body(s->action.payload, &rec);
        if (!s->has_compensation) continue;
        if (s->compensation.body) render_body(s->compensation.body, &rec);
        if (s->compensation.payload) render_body(s->compensation.payload, &rec);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sg_def **defs = NULL;
    size_t n = 0;
    char err[512] = "";
    if (sg_defs_parse((const char *)data, size, &DFLT, &defs, &n, err, sizeof err) != SG_OK) {
        if (!err[0] || defs || n) abort(); /* a refusal always says why, and returns nothing */
        return 0;
    }
    if (n < 1 || n > 32) abort();
    for (size_t i = 0; i < n; i++) {
        check(defs[i]);
        sg_def_destroy(defs[i]);
    }
    free(defs);
    return 0;
}
