/* The PostgreSQL backend's statements for each write operation (what
 * exec_batch sends for an sg_write; postgres_write.c runs the
 * transaction). */
#include <stdint.h>
#include <string.h>

#include "postgres_txn.h"
#include "sg/util.h"

/* ---- the statements of each operation ---------------------------------- */

static void bind_step_state(binder *b, int first, const sg_step_rec *s)
{
    b_int(b, first, s->status);
    b_int(b, first + 1, s->attempts);
    b_int(b, first + 2, s->started_us);
    b_int(b, first + 3, s->finished_us);
    b_blob(b, first + 4, s->error, s->error ? strlen(s->error) : 0);
    b_blob(b, first + 5, s->response, s->response_len);
    b_int(b, first + 6, s->next_us);
}

static void saga_insert(txn *t, const sg_saga_rec *r)
{
    binder b;
    b_init(&b, P_SAGA_INSERT);
    b_text(&b, 1, r->id);
    b_text(&b, 2, r->def_name);
    b_blob(&b, 3, r->request, r->request_len);
    b_blob(&b, 4, r->idem_key, r->idem_key ? strlen(r->idem_key) : 0);
    b_int(&b, 5, r->status);
    b_int(&b, 6, r->comp_status);
    b_blob(&b, 7, r->error, r->error ? strlen(r->error) : 0);
    b_int(&b, 8, r->created_us);
    b_int(&b, 9, r->updated_us);
    b_int(&b, 10, (int64_t)r->nsteps);
    b_int(&b, 11, r->def_version);
    b_text(&b, 12, t->be->owner);
    b_int(&b, 13, t->be->epoch);
    b_text(&b, 14, r->trace.trace_id[0] ? r->trace.trace_id : NULL);
    b_int(&b, 15, r->trace.flags);
    b_text(&b, 16, r->tracestate);
    sg__pg_tx_send(t, &b, t->cur, SG_EIO);
    for (size_t i = 0; i < r->nsteps; i++) {
        const sg_step_rec *s = &r->steps[i];
        b_init(&b, P_STEP_INSERT);
        b_text(&b, 1, r->id);
        b_int(&b, 2, (int64_t)i);
        b_text(&b, 3, s->name);
        bind_step_state(&b, 4, s);
        sg__pg_tx_send(t, &b, t->cur, SG_EIO);
    }
}

static void event_insert(txn *t, const sg_event_rec *e)
{
    binder b;
    b_init(&b, P_EVENT_INSERT);
    b_text(&b, 1, e->id);
    b_text(&b, 2, e->saga_id);
    b_text(&b, 3, e->topic);
    b_blob(&b, 4, e->target, e->target ? strlen(e->target) : 0);
    b_blob(&b, 5, e->payload, e->payload_len);
    b_int(&b, 6, e->created_us);
    b_int(&b, 7, e->deadline_us);
    b_int(&b, 8, e->compensation);
    b_int(&b, 9, e->step_index);
    b_int(&b, 10, e->status);
    b_int(&b, 11, e->attempts);
    b_blob(&b, 12, e->last_error, e->last_error ? strlen(e->last_error) : 0);
    b_int(&b, 13, e->updated_us);
    b_text(&b, 14, e->method);
    b_blob(&b, 15, e->headers, e->headers ? strlen(e->headers) : 0);
    b_int(&b, 16, e->timeout_ms);
    sg__pg_tx_send(t, &b, t->cur, SG_EIO);
}

static void apply_op(txn *t, const sg_write_op *op)
{
    binder b;
    switch (op->kind) {
    case SG_WOP_SAGA_INSERT:
        saga_insert(t, &op->u.saga_insert);
        return;
    case SG_WOP_SAGA_UPDATE:
        b_init(&b, P_SAGA_UPDATE);
        b_text(&b, 1, op->u.saga_update.id);
        b_int(&b, 2, op->u.saga_update.status);
        b_int(&b, 3, op->u.saga_update.comp);
        b_blob(&b, 4, op->u.saga_update.error,
               op->u.saga_update.error ? strlen(op->u.saga_update.error) : 0);
        b_int(&b, 5, op->u.saga_update.updated_us);
        b_text(&b, 6, t->be->owner);
        sg__pg_tx_send(t, &b, t->cur, SG_ENOTFOUND);
        return;
    case SG_WOP_STEP_UPDATE:
        if (op->u.step_update.index > INT64_MAX) {
            sg__pg_tx_fail(t, SG_ENOTFOUND, "update step", "no such step");
            return;
        }
        b_init(&b, P_STEP_UPDATE);
        b_text(&b, 1, op->u.step_update.saga_id);
        b_int(&b, 2, (int64_t)op->u.step_update.index);
        bind_step_state(&b, 3, &op->u.step_update.step);
        sg__pg_tx_send(t, &b, t->cur, SG_ENOTFOUND);
        return;
    case SG_WOP_EVENT_INSERT:
        event_insert(t, &op->u.event_insert);
        return;
    case SG_WOP_EVENT_UPDATE:
        b_init(&b, P_EVENT_UPDATE);
        b_text(&b, 1, op->u.event_update.id);
        b_int(&b, 2, op->u.event_update.status);
        b_int(&b, 3, op->u.event_update.attempts);
        b_blob(&b, 4, op->u.event_update.last_error,
               op->u.event_update.last_error ? strlen(op->u.event_update.last_error) : 0);
        b_int(&b, 5, op->u.event_update.updated_us);
        sg__pg_tx_send(t, &b, t->cur, SG_ENOTFOUND);
        /* The compensation rule; a step event's saga is not found. */
        if (op->u.event_update.status == SG_EVENT_WITHDRAWN) return;
        b_init(&b, P_COMP_DONE);
        b_text(&b, 1, op->u.event_update.id);
        b_int(&b, 2, sg_now_us());
        sg__pg_tx_send(t, &b, t->cur, SG_EIO);
        return;
    case SG_WOP_SAGA_EXPECT:
        b_init(&b, P_SAGA_EXPECT);
        b_text(&b, 1, op->u.saga_expect.id);
        b_int(&b, 2, op->u.saga_expect.status);
        b_int(&b, 3, op->u.saga_expect.comp);
        sg__pg_tx_send(t, &b, t->cur, SG_ECONFLICT);
        return;
    case SG_WOP_EVENT_EXPECT:
        b_init(&b, P_EVENT_EXPECT);
        b_text(&b, 1, op->u.event_expect.id);
        b_int(&b, 2, op->u.event_expect.status);
        sg__pg_tx_send(t, &b, t->cur, SG_ECONFLICT);
        return;
    case SG_WOP_DEF_INSERT:
        b_init(&b, P_DEF_INSERT);
        b_text(&b, 1, op->u.def_insert.name);
        b_int(&b, 2, op->u.def_insert.version);
        b_text(&b, 3, op->u.def_insert.canonical);
        b_int(&b, 4, op->u.def_insert.created_us);
        sg__pg_tx_send(t, &b, t->cur, SG_ECONFLICT);
        return;
    case SG_WOP_EVENT_TRIED:
        b_init(&b, P_EVENT_TRIED);
        b_text(&b, 1, op->u.event_tried.id);
        b_int(&b, 2, op->u.event_tried.us);
        sg__pg_tx_send(t, &b, t->cur, SG_EIO);
        return;
    case SG_WOP_WITHDRAW_ORPHANS:
        b_init(&b, P_WITHDRAW_ORPHANS);
        b_text(&b, 1, t->be->owner);
        sg__pg_tx_send(t, &b, t->cur, SG_EIO);
        return;
    case SG_WOP_SAGA_CLAIM:
        b_init(&b, P_SAGA_CLAIM);
        b_text(&b, 1, op->u.saga_claim);
        b_text(&b, 2, t->be->owner);
        b_int(&b, 3, t->be->epoch);
        sg__pg_tx_send(t, &b, t->cur, SG_ENOTFOUND);
        return;
    case SG_WOP_PURGE:
        b_init(&b, P_PURGE);
        b_int(&b, 1, op->u.purge.before_us);
        b_int(&b, 2, (int64_t)op->u.purge.limit);
        b.rows = op->u.purge.purged;
        sg__pg_tx_send(t, &b, t->cur, SG_EIO);
        return;
    }
    sg__pg_tx_fail(t, SG_EINVAL, "write", "unknown operation");
}

void sg__pg_apply_write(txn *t, const sg_write *w, size_t i)
{
    t->cur = i;
    for (size_t k = 0; k < w->nops && !t->failed; k++)
        apply_op(t, &w->ops[k]);
}
