/* JSON renderings of saga records (design §2).
 *
 * Output is compact JSON (no spaces), as the seed's FastAPI/Starlette
 * JSONResponse produced it. Raw JSON held by records (the request, step
 * responses) is spliced byte for byte: it was validated on the way in, and
 * re-encoding it would lose 64-bit integers, \u0000 and key order. */
#include "render.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "sg/json.h"
#include "sg/util.h"

/* A sticky-error writer: after the first failure every call is a no-op,
 * so renderers read as straight-line code and check once at the end. */
typedef struct emit {
    sg_buf *b; /* borrowed */
    sg_status st;
} emit;

static void put(emit *e, const char *s)
{
    if (e->st == SG_OK) e->st = sg_buf_adds(e->b, s);
}

/* Raw JSON bytes; NULL or empty (should not happen for stored records)
 * becomes null so the document stays valid. */
static void put_raw(emit *e, const char *p, size_t n)
{
    if (e->st != SG_OK) return;
    e->st = (p && n) ? sg_buf_add(e->b, p, n) : sg_buf_adds(e->b, "null");
}

/* A JSON string literal, or null for NULL. */
static void put_str(emit *e, const char *s)
{
    if (e->st == SG_OK) e->st = sg_json_add_cstr(e->b, s);
}

static void put_int(emit *e, int64_t v)
{
    if (e->st == SG_OK) e->st = sg_buf_addf(e->b, "%" PRId64, v);
}

/* ISO 8601 timestamp string, or null when the instant is unset (0). */
static void put_time(emit *e, int64_t us)
{
    if (us == 0) {
        put(e, "null");
        return;
    }
    char ts[SG_TIME_LEN + 1];
    sg_time_iso(us, ts);
    put_str(e, ts);
}

/* On failure, leave the caller's buffer as it was before the call. */
static sg_status finish(emit *e, size_t start)
{
    if (e->st != SG_OK) {
        e->b->len = start;
        if (e->b->ptr) e->b->ptr[start] = '\0';
    }
    return e->st;
}

/* The processed_data / data object: one member per completed step. */
static void put_results(emit *e, const sg_outcome *o)
{
    put(e, "{");
    for (size_t i = 0; i < o->noutputs; i++) {
        const sg_step_output *out = &o->outputs[i];
        if (i) put(e, ",");
        put_str(e, out->key);
        put(e, ":");
        if (out->text)
            put_str(e, out->text);
        else
            put_raw(e, out->json, out->json_len);
    }
    put(e, "}");
}

/* A step's compensation (design §6) in the words of a step: PENDING
 * until tried, RUNNING while retried, COMPLETED once delivered, PARKED. */
static void put_compensation(emit *e, const sg_comp_rec *c)
{
    const char *status = c->status == SG_EVENT_DELIVERED ? "COMPLETED"
                         : c->status == SG_EVENT_PARKED  ? "PARKED"
                         : c->attempts > 0               ? "RUNNING"
                                                         : "PENDING";
    put(e, ",\"compensation\":{\"status\":");
    put_str(e, status);
    put(e, ",\"attempts\":");
    put_int(e, c->attempts);
    put(e, ",\"started_at\":");
    put_time(e, c->started_us);
    put(e, ",\"finished_at\":");
    put_time(e, c->status == SG_EVENT_DELIVERED ? c->updated_us : 0);
    put(e, ",\"error\":");
    put_str(e, c->error);
    put(e, "}");
}

sg_status sg_render_saga(sg_buf *out, const sg_saga_rec *r, const sg_def *d)
{
    emit e = {out, SG_OK};
    size_t start = out->len;
    char key[48]; /* ",\"step<size_t>_status\":" */

    put(&e, "{\"id\":");
    put_str(&e, r->id);
    put(&e, ",\"request_data\":");
    put_raw(&e, r->request, r->request_len);
    for (size_t i = 0; i < r->nsteps; i++) {
        snprintf(key, sizeof key, ",\"step%zu_status\":", i + 1);
        put(&e, key);
        put_str(&e, sg_step_status_name(r->steps[i].status));
    }
    put(&e, ",\"overall_status\":");
    put_str(&e, sg_saga_status_name(r->status));
    put(&e, ",\"processed_data\":");
    sg_outcome o;
    sg_outcome_of(&o, r, d);
    put_results(&e, &o);
    sg_outcome_clear(&o);
    put(&e, ",\"created_at\":");
    put_time(&e, r->created_us);
    put(&e, ",\"updated_at\":");
    put_time(&e, sg_saga_rec_updated_us(r));
    put(&e, ",\"error\":");
    put_str(&e, r->error);
    put(&e, ",\"compensation_status\":");
    put_str(&e, sg_comp_status_name(r->comp_status));
    put(&e, ",\"type\":");
    put_str(&e, r->def_name);
    put(&e, ",\"version\":");
    put_int(&e, r->def_version);
    put(&e, ",\"trace_id\":"); /* null for a saga stored before sagad traced */
    put_str(&e, r->trace.trace_id[0] ? r->trace.trace_id : NULL);
    put(&e, ",\"steps\":[");
    for (size_t i = 0; i < r->nsteps; i++) {
        const sg_step_rec *s = &r->steps[i];
        put(&e, i ? ",{\"name\":" : "{\"name\":");
        put_str(&e, s->name ? s->name : "");
        put(&e, ",\"status\":");
        put_str(&e, sg_step_status_name(s->status));
        put(&e, ",\"attempts\":");
        put_int(&e, s->attempts);
        put(&e, ",\"started_at\":");
        put_time(&e, s->started_us);
        put(&e, ",\"finished_at\":");
        put_time(&e, s->finished_us);
        put(&e, ",\"error\":");
        put_str(&e, s->error);
        if (s->comp.present) put_compensation(&e, &s->comp);
        put(&e, "}");
    }
    put(&e, "]}");
    return finish(&e, start);
}

sg_status sg_render_outcome(sg_buf *out, const sg_outcome *o, int async, int *http_status)
{
    emit e = {out, SG_OK};
    size_t start = out->len;
    int code;

    if (o->status == SG_ECONFLICT) {
        code = 422;
        put(&e, "{\"detail\":");
        put_str(&e, SG_RENDER_IDEM_CONFLICT);
        put(&e, "}");
    } else if (o->status != SG_OK) {
        code = 503;
        put(&e, "{\"detail\":");
        put_str(&e, o->detail ? o->detail : sg_status_text(o->status));
        put(&e, "}");
    } else if (async || o->saga_status == SG_SAGA_IN_PROGRESS) {
        code = 202;
        put(&e, "{\"id\":");
        put_str(&e, o->saga_id);
        put(&e, ",\"overall_status\":");
        put_str(&e, sg_saga_status_name(o->saga_status));
        put(&e, "}");
    } else if (o->saga_status == SG_SAGA_COMPLETED) {
        code = 200;
        put(&e, "{\"id\":");
        put_str(&e, o->saga_id);
        put(&e, ",\"result\":");
        put_str(&e, o->result ? o->result : "Saga completada exitosamente");
        put(&e, ",\"data\":");
        put_results(&e, o);
        put(&e, "}");
    } else {
        code = 400;
        put(&e, "{\"detail\":{\"id\":");
        put_str(&e, o->saga_id);
        put(&e, ",\"error\":");
        put_str(&e, o->error ? o->error : "Saga failed");
        put(&e, "}}");
    }
    sg_status st = finish(&e, start);
    if (http_status) *http_status = st == SG_OK ? code : 0;
    return st;
}

sg_status sg_render_event(sg_buf *out, const sg_event_rec *ev)
{
    emit e = {out, SG_OK};
    size_t start = out->len;
    int http = ev->target != NULL; /* an HTTP compensation: its topic is its step */

    put(&e, "{\"id\":");
    put_str(&e, ev->id);
    put(&e, ",\"topic\":");
    put_str(&e, http ? NULL : ev->topic);
    put(&e, ",\"url\":");
    put_str(&e, ev->target);
    put(&e, ",\"saga_id\":");
    put_str(&e, ev->saga_id);
    put(&e, ",\"status\":");
    put_str(&e, sg_event_status_name(ev->status));
    put(&e, ",\"attempts\":");
    put_int(&e, ev->attempts);
    put(&e, ",\"last_error\":");
    put_str(&e, ev->last_error);
    put(&e, ",\"created_at\":");
    put_time(&e, ev->created_us);
    put(&e, ",\"updated_at\":");
    put_time(&e, ev->updated_us ? ev->updated_us : ev->created_us);
    put(&e, "}");
    return finish(&e, start);
}

/* {"http":{"url":…}} or {"publish":{"topic":…}}, as the definitions file
 * writes an action. */
static void put_action(emit *e, const sg_action *a)
{
    if (a->kind == SG_ACTION_HTTP) {
        put(e, "{\"http\":{\"method\":");
        put_str(e, a->method ? a->method : "POST");
        put(e, ",\"url\":");
        put_str(e, a->url);
    } else {
        put(e, "{\"publish\":{\"topic\":");
        put_str(e, a->topic);
    }
    put(e, "}}");
}

sg_status sg_render_definition(sg_buf *out, const sg_def *d, int is_default, const int *versions,
                               size_t nversions)
{
    emit e = {out, SG_OK};
    size_t start = out->len;
    put(&e, "{\"name\":");
    put_str(&e, d->name);
    put(&e, ",\"version\":");
    put_int(&e, d->version);
    put(&e, ",\"versions\":[");
    for (size_t i = 0; i < nversions; i++) {
        if (i) put(&e, ",");
        put_int(&e, versions[i]);
    }
    put(&e, "]");
    put(&e, is_default ? ",\"default\":true" : ",\"default\":false");
    put(&e, ",\"steps\":[");
    for (size_t i = 0; i < d->nsteps; i++) {
        const sg_step_def *st = &d->steps[i];
        put(&e, i ? ",{\"name\":" : "{\"name\":");
        put_str(&e, st->name);
        put(&e, ",\"label\":");
        put_str(&e, st->service);
        put(&e, ",\"output\":");
        put_str(&e, st->result_key);
        put(&e, ",\"action\":");
        put_action(&e, &st->action);
        put(&e, ",\"compensate\":");
        if (st->has_compensation)
            put_action(&e, &st->compensation);
        else
            put(&e, "null");
        put(&e, ",\"retry\":{\"attempts\":");
        put_int(&e, st->retry.attempts);
        put(&e, ",\"backoff_ms\":");
        put_int(&e, st->retry.backoff_ms);
        put(&e, ",\"max_backoff_ms\":");
        put_int(&e, st->retry.max_backoff_ms);
        put(&e, "},\"timeout_ms\":");
        if (st->timeout_ms > 0)
            put_int(&e, st->timeout_ms);
        else
            put(&e, "null");
        put(&e, "}");
    }
    put(&e, "]}");
    return finish(&e, start);
}

sg_status sg_render_detail(sg_buf *out, const char *msg)
{
    emit e = {out, SG_OK};
    size_t start = out->len;

    put(&e, "{\"detail\":");
    put_str(&e, msg ? msg : "");
    put(&e, "}");
    return finish(&e, start);
}
