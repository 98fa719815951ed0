/* libFuzzer target: whatever a client posts, sagad either rejects it with a
 * reason or accepts it, exactly as jansson would (the reference below: the
 * rest of sagad parses bodies with jansson), and every document it then
 * renders around those bytes (the saga record, the sync answer, the event
 * envelope) is valid JSON that carries the input back unchanged. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sg/bus.h"
#include "sg/json.h"
#include "api/render.h"

static void must_be_json(const sg_buf *b)
{
    json_error_t je;
    json_t *v = json_loadb(b->ptr, b->len, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!v) abort();
    json_decref(v);
}

/* Nesting within SG_JSON_MAX_DEPTH, by brackets outside strings: exact
 * for any text jansson accepts. */
static int depth_ok(const char *t, size_t n)
{
    int depth = 0, in_str = 0;
    for (size_t i = 0; i < n; i++) {
        if (in_str) {
            if (t[i] == '\\')
                i++;
            else if (t[i] == '"')
                in_str = 0;
        } else if (t[i] == '"') {
            in_str = 1;
        } else if (t[i] == '[' || t[i] == '{') {
            if (++depth > SG_JSON_MAX_DEPTH) return 0;
        } else if (t[i] == ']' || t[i] == '}') {
            depth--;
        }
    }
    return 1;
}

/* jansson's answer, but for its one quirk: it skips a raw NUL byte after
 * a number or a literal ("[1\0]"), which sagad refuses. */
static int jansson_accepts(const char *t, size_t n)
{
    if (memchr(t, '\0', n) || !depth_ok(t, n)) return 0;
    json_error_t je;
    json_t *v = json_loadb(t, n, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    json_decref(v);
    return v != NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    const char *text = (const char *)data;
    int ok = sg_json_validate(text, size, err, sizeof err) == SG_OK;
    if (ok != jansson_accepts(text, size)) abort();
    if (!ok) {
        if (!err[0]) abort(); /* a rejection always says why */
        return 0;
    }
    sg_step_rec steps[2] = {
        {.name = "a",
         .status = SG_STEP_COMPLETED,
         .attempts = 1,
         .started_us = 1,
         .finished_us = 2,
         .response = (char *)text,
         .response_len = size},
        {.name = "b", .status = SG_STEP_FAILED, .attempts = 1},
    };
    sg_saga_rec rec = {.id = "00000000-0000-4000-8000-000000000000",
                       .def_name = "x",
                       .request = (char *)text,
                       .request_len = size,
                       .status = SG_SAGA_FAILED,
                       .error = "Error en Step 2 (B): x",
                       .created_us = 1,
                       .updated_us = 2,
                       .nsteps = 2,
                       .steps = steps};
    /* error strings are C strings: a NUL-terminated copy of the input */
    char *cstr = malloc(size + 1);
    memcpy(cstr, text, size);
    cstr[size] = '\0';
    steps[1].error = cstr;
    sg_buf b;
    sg_buf_init(&b, (size_t)-1);
    if (sg_render_saga(&b, &rec, NULL) != SG_OK) abort();
    must_be_json(&b);
    sg_buf_reset(&b);
    int status = 0;
    sg_outcome o;
    sg_outcome_of(&o, &rec, NULL);
    if (sg_render_outcome(&b, &o, 0, &status) != SG_OK || status != 400) abort();
    sg_outcome_clear(&o);
    must_be_json(&b);
    sg_buf_reset(&b);
    sg_event_rec ev = {.id = "00000000-0000-4000-8000-000000000001",
                       .saga_id = "00000000-0000-4000-8000-000000000000",
                       .topic = "t",
                       .payload = (char *)text,
                       .payload_len = size,
                       .created_us = 1};
    if (sg_event_envelope(&b, &ev) != SG_OK) abort();
    must_be_json(&b);
    if (!memmem(b.ptr, b.len, text, size)) abort(); /* payload spliced verbatim */
    sg_buf_free(&b);
    free(cstr);
    return 0;
}
