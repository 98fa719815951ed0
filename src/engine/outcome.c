/* Typed outcomes of start requests and the Idempotency-Key decision: the
 * engine's side of the boundary that the API renders as HTTP. */
#include "sg/outcome.h"

#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"

#define DEFAULT_SUCCESS_TEXT "Saga completada exitosamente"
#define DEFAULT_EVENT_TEXT "event_published"

static void outputs_of(sg_outcome *o, const sg_saga_rec *r, const sg_def *d)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nsteps; i++)
        n += r->steps[i].status == SG_STEP_COMPLETED;
    if (!n) return;
    o->outputs = sg_xcalloc(n, sizeof *o->outputs);
    for (size_t i = 0; i < r->nsteps; i++) {
        const sg_step_rec *s = &r->steps[i];
        if (s->status != SG_STEP_COMPLETED) continue;
        /* A definition that no longer matches the record (changed between
         * versions) must not make us read past its steps. */
        const sg_step_def *sd = (d && i < d->nsteps) ? &d->steps[i] : NULL;
        sg_step_output *out = &o->outputs[o->noutputs++];
        out->key = (sd && sd->result_key) ? sd->result_key : s->name ? s->name : "";
        if (sd && sd->action.kind == SG_ACTION_PUBLISH) {
            out->text = sd->result_text ? sd->result_text : DEFAULT_EVENT_TEXT;
        } else {
            out->json = s->response;
            out->json_len = s->response_len;
        }
    }
}

void sg_outcome_of(sg_outcome *o, const sg_saga_rec *r, const sg_def *d)
{
    memset(o, 0, sizeof *o);
    o->status = SG_OK;
    memcpy(o->saga_id, r->id, sizeof o->saga_id);
    o->saga_status = r->status;
    if (r->status == SG_SAGA_COMPLETED)
        o->result = (d && d->success_text) ? d->success_text : DEFAULT_SUCCESS_TEXT;
    if (r->status == SG_SAGA_FAILED) {
        o->error = r->error ? r->error : "Saga failed";
        for (size_t i = 0; i < r->nsteps && !o->failed_step; i++)
            if (r->steps[i].status == SG_STEP_FAILED) o->failed_step = i + 1;
    }
    outputs_of(o, r, d);
}

void sg_outcome_running(sg_outcome *o, const char *saga_id)
{
    memset(o, 0, sizeof *o);
    o->status = SG_OK;
    memcpy(o->saga_id, saga_id, sizeof o->saga_id - 1);
    o->saga_status = SG_SAGA_IN_PROGRESS;
}

void sg_outcome_fail(sg_outcome *o, sg_status st, const char *detail)
{
    memset(o, 0, sizeof *o);
    o->status = st;
    o->detail = detail;
}

void sg_outcome_clear(sg_outcome *o)
{
    free(o->outputs);
    o->outputs = NULL;
    o->noutputs = 0;
}

sg_status sg_idem_check(const sg_saga_rec *holder, const char *body, size_t len)
{
    if (holder->request_len != len) return SG_ECONFLICT;
    if (len && memcmp(holder->request, body, len) != 0) return SG_ECONFLICT;
    return SG_OK;
}
