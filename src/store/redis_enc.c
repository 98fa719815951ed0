/* The Redis backend's encoding of write operations: the arguments of
 * one call of the write script (layout: sg__rd_lua_write in redis_lua.c),
 * for redis_write.c. */
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"
#include "sg/alloc.h"

/* ---- encoding the operations (layout: sg__rd_lua_write) -------------------------- */

static void add_step_state(rd_args *a, const sg_step_rec *s)
{
    sg__rd_add_int(a, s->status);
    sg__rd_add_int(a, s->attempts);
    sg__rd_add_int(a, s->started_us);
    sg__rd_add_int(a, s->finished_us);
}

static void enc_saga_insert(rd_args *a, const sg_saga_rec *r)
{
    size_t nn = 4 + 3 * r->nsteps;
    char *nulls = sg_xmalloc(nn + 1);
    nulls[0] = r->def_name ? '0' : '1';
    nulls[1] = r->request ? '0' : '1';
    nulls[2] = r->idem_key ? '0' : '1';
    nulls[3] = r->error ? '0' : '1';
    for (size_t i = 0; i < r->nsteps; i++) {
        nulls[4 + 3 * i] = r->steps[i].name ? '0' : '1';
        nulls[5 + 3 * i] = r->steps[i].error ? '0' : '1';
        nulls[6 + 3 * i] = r->steps[i].response ? '0' : '1';
    }
    sg__rd_add_str(a, "SI");
    sg__rd_add_copy(a, nulls, nn);
    free(nulls);
    sg__rd_add_member(a, r->created_us, r->id);
    sg__rd_add_str(a, r->id);
    sg__rd_add_str(a, r->def_name);
    sg__rd_add_int(a, r->def_version);
    sg__rd_add_ref(a, r->request, r->request_len);
    sg__rd_add_str(a, r->idem_key);
    sg__rd_add_int(a, r->status);
    sg__rd_add_int(a, r->comp_status);
    sg__rd_add_str(a, r->error);
    sg__rd_add_int(a, r->created_us);
    sg__rd_add_int(a, r->updated_us);
    sg__rd_add_int(a, (int64_t)r->nsteps);
    sg__rd_add_str(a, r->trace.trace_id); /* "" = none */
    sg__rd_add_int(a, r->trace.flags);
    sg__rd_add_str(a, r->tracestate ? r->tracestate : "");
    for (size_t i = 0; i < r->nsteps; i++) {
        const sg_step_rec *s = &r->steps[i];
        sg__rd_add_str(a, s->name);
        add_step_state(a, s);
        sg__rd_add_str(a, s->error);
        sg__rd_add_ref(a, s->response, s->response_len);
        sg__rd_add_int(a, s->next_us);
    }
}

static void enc_event_insert(rd_args *a, const sg_event_rec *e)
{
    char nulls[6] = {e->topic ? '0' : '1',      e->target ? '0' : '1', e->payload ? '0' : '1',
                     e->last_error ? '0' : '1', e->method ? '0' : '1', e->headers ? '0' : '1'};
    sg__rd_add_str(a, "EI");
    sg__rd_add_copy(a, nulls, sizeof nulls);
    sg__rd_add_member(a, e->created_us, e->id);
    sg__rd_add_str(a, e->id);
    sg__rd_add_str(a, e->saga_id);
    sg__rd_add_str(a, e->topic);
    sg__rd_add_str(a, e->target);
    sg__rd_add_ref(a, e->payload, e->payload_len);
    sg__rd_add_int(a, e->created_us);
    sg__rd_add_int(a, e->deadline_us);
    sg__rd_add_int(a, e->compensation);
    sg__rd_add_int(a, e->step_index);
    sg__rd_add_int(a, e->status);
    sg__rd_add_int(a, e->attempts);
    sg__rd_add_str(a, e->last_error);
    sg__rd_add_int(a, e->updated_us);
    sg__rd_add_str(a, e->method);
    sg__rd_add_str(a, e->headers);
    sg__rd_add_int(a, e->timeout_ms);
}

void sg__rd_enc_op(rd_args *a, const sg_write_op *op)
{
    switch (op->kind) {
    case SG_WOP_SAGA_INSERT:
        enc_saga_insert(a, &op->u.saga_insert);
        break;
    case SG_WOP_SAGA_UPDATE:
        sg__rd_add_str(a, "SU");
        sg__rd_add_str(a, op->u.saga_update.error ? "0" : "1");
        sg__rd_add_str(a, op->u.saga_update.id);
        sg__rd_add_int(a, op->u.saga_update.status);
        sg__rd_add_int(a, op->u.saga_update.comp);
        sg__rd_add_str(a, op->u.saga_update.error);
        sg__rd_add_int(a, op->u.saga_update.updated_us);
        break;
    case SG_WOP_STEP_UPDATE: {
        const sg_step_rec *s = &op->u.step_update.step;
        char nulls[2] = {s->error ? '0' : '1', s->response ? '0' : '1'};
        sg__rd_add_str(a, "TU");
        sg__rd_add_copy(a, nulls, 2);
        sg__rd_add_str(a, op->u.step_update.saga_id);
        /* An index past int64 matches no step, as in SQLite. */
        sg__rd_add_int(a,
                       op->u.step_update.index > INT64_MAX ? -1 : (int64_t)op->u.step_update.index);
        add_step_state(a, s);
        sg__rd_add_str(a, s->error);
        sg__rd_add_ref(a, s->response, s->response_len);
        sg__rd_add_int(a, s->next_us);
        break;
    }
    case SG_WOP_EVENT_INSERT:
        enc_event_insert(a, &op->u.event_insert);
        break;
    case SG_WOP_EVENT_UPDATE:
        sg__rd_add_str(a, "EU");
        sg__rd_add_str(a, op->u.event_update.last_error ? "0" : "1");
        sg__rd_add_str(a, op->u.event_update.id);
        sg__rd_add_int(a, op->u.event_update.status);
        sg__rd_add_int(a, op->u.event_update.attempts);
        sg__rd_add_str(a, op->u.event_update.last_error);
        sg__rd_add_int(a, op->u.event_update.updated_us);
        break;
    case SG_WOP_SAGA_EXPECT:
        sg__rd_add_str(a, "SX");
        sg__rd_add_str(a, op->u.saga_expect.id);
        sg__rd_add_int(a, op->u.saga_expect.status);
        sg__rd_add_int(a, op->u.saga_expect.comp);
        break;
    case SG_WOP_EVENT_EXPECT:
        sg__rd_add_str(a, "EX");
        sg__rd_add_str(a, op->u.event_expect.id);
        sg__rd_add_int(a, op->u.event_expect.status);
        break;
    case SG_WOP_DEF_INSERT: {
        char nulls[2] = {op->u.def_insert.name ? '0' : '1', op->u.def_insert.canonical ? '0' : '1'};
        sg__rd_add_str(a, "DI");
        sg__rd_add_copy(a, nulls, 2);
        sg__rd_add_str(a, op->u.def_insert.name);
        sg__rd_add_int(a, op->u.def_insert.version);
        sg__rd_add_str(a, op->u.def_insert.canonical);
        sg__rd_add_int(a, op->u.def_insert.created_us);
        break;
    }
    case SG_WOP_EVENT_TRIED:
        sg__rd_add_str(a, "ET");
        sg__rd_add_str(a, op->u.event_tried.id);
        sg__rd_add_int(a, op->u.event_tried.us);
        break;
    case SG_WOP_WITHDRAW_ORPHANS:
        sg__rd_add_str(a, "WO");
        break;
    case SG_WOP_SAGA_CLAIM:
        sg__rd_add_str(a, "SC");
        sg__rd_add_str(a, op->u.saga_claim);
        break;
    case SG_WOP_PURGE: {
        /* The cut-off as an index member "<digits>:": every member of a
         * saga created before it sorts below it (redis_lua.c, PU). */
        sg__rd_add_str(a, "PU");
        sg__rd_add_member(a, op->u.purge.before_us, "");
        sg__rd_add_int(a, op->u.purge.before_us);
        sg__rd_add_int(a, (int64_t)op->u.purge.limit);
        sg__rd_add_int(a, (int64_t)op->u.purge.seq); /* makes its fingerprint its own */
        break;
    }
    }
}
