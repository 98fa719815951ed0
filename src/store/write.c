/* sg_write: a list of store operations that commit together. Every
 * argument is deep-copied so the caller may free or reuse its records as
 * soon as the call returns; the write owns its copies until destroyed. */
#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "store_int.h"

sg_write *sg_write_create(void)
{
    return sg_xcalloc(1, sizeof(sg_write));
}

static void op_free(sg_write_op *op)
{
    switch (op->kind) {
    case SG_WOP_SAGA_INSERT:
        sg_saga_rec_free(&op->u.saga_insert);
        break;
    case SG_WOP_SAGA_UPDATE:
        free(op->u.saga_update.id);
        free(op->u.saga_update.error);
        break;
    case SG_WOP_STEP_UPDATE:
        free(op->u.step_update.saga_id);
        sg_step_rec_free(&op->u.step_update.step);
        break;
    case SG_WOP_EVENT_INSERT:
        sg_event_rec_free(&op->u.event_insert);
        break;
    case SG_WOP_EVENT_UPDATE:
        free(op->u.event_update.id);
        free(op->u.event_update.last_error);
        break;
    case SG_WOP_SAGA_EXPECT:
        free(op->u.saga_expect.id);
        break;
    case SG_WOP_EVENT_EXPECT:
        free(op->u.event_expect.id);
        break;
    case SG_WOP_DEF_INSERT:
        free(op->u.def_insert.name);
        free(op->u.def_insert.canonical);
        break;
    case SG_WOP_EVENT_TRIED:
        free(op->u.event_tried.id);
        break;
    case SG_WOP_WITHDRAW_ORPHANS:
    case SG_WOP_PURGE:
        break;
    case SG_WOP_SAGA_CLAIM:
        free(op->u.saga_claim);
        break;
    }
}

void sg_write_destroy(sg_write *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->nops; i++)
        op_free(&w->ops[i]);
    free(w->ops);
    free(w);
}

/* Appends a zeroed op of the given kind; the pointer is valid until the
 * next append. */
static sg_write_op *push(sg_write *w, sg_write_kind kind)
{
    assert(w); /* a NULL write here would silently lose a state change */
    if (w->nops == w->cap) {
        w->cap = w->cap ? w->cap * 2 : 4;
        w->ops = sg_xrealloc(w->ops, w->cap * sizeof *w->ops);
    }
    sg_write_op *op = &w->ops[w->nops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    return op;
}

void sg_write_saga_insert(sg_write *w, const sg_saga_rec *r)
{
    assert(r);
    sg_saga_rec_copy(&push(w, SG_WOP_SAGA_INSERT)->u.saga_insert, r);
}

void sg_write_saga_update(sg_write *w, const char *id, sg_saga_status st, sg_comp_status comp,
                          const char *error, int64_t updated_us)
{
    assert(id);
    sg_write_op *op = push(w, SG_WOP_SAGA_UPDATE);
    op->u.saga_update.id = sg_xstrdup(id);
    op->u.saga_update.status = st;
    op->u.saga_update.comp = comp;
    op->u.saga_update.error = sg_xstrdup(error);
    op->u.saga_update.updated_us = updated_us;
}

void sg_write_step_update(sg_write *w, const char *saga_id, size_t index, const sg_step_rec *s)
{
    assert(saga_id && s);
    sg_write_op *op = push(w, SG_WOP_STEP_UPDATE);
    op->u.step_update.saga_id = sg_xstrdup(saga_id);
    op->u.step_update.index = index;
    sg_step_rec_copy(&op->u.step_update.step, s);
}

void sg_write_event_insert(sg_write *w, const sg_event_rec *e)
{
    assert(e);
    sg_event_rec_copy(&push(w, SG_WOP_EVENT_INSERT)->u.event_insert, e);
}

void sg_write_event_update(sg_write *w, const char *event_id, sg_event_status st, int attempts,
                           const char *last_error, int64_t updated_us)
{
    assert(event_id);
    sg_write_op *op = push(w, SG_WOP_EVENT_UPDATE);
    op->u.event_update.id = sg_xstrdup(event_id);
    op->u.event_update.status = st;
    op->u.event_update.attempts = attempts;
    op->u.event_update.last_error = sg_xstrdup(last_error);
    op->u.event_update.updated_us = updated_us;
}

void sg_write_event_tried(sg_write *w, const char *event_id, int64_t first_try_us)
{
    assert(event_id);
    sg_write_op *op = push(w, SG_WOP_EVENT_TRIED);
    op->u.event_tried.id = sg_xstrdup(event_id);
    op->u.event_tried.us = first_try_us;
}

void sg_write_saga_expect_first(sg_write *w, const char *id, sg_saga_status st, sg_comp_status comp)
{
    sg_write_saga_expect(w, id, st, comp);
    sg_write_op guard = w->ops[w->nops - 1];
    memmove(&w->ops[1], &w->ops[0], (w->nops - 1) * sizeof *w->ops);
    w->ops[0] = guard;
}

void sg_write_saga_claim(sg_write *w, const char *id)
{
    assert(id);
    push(w, SG_WOP_SAGA_CLAIM)->u.saga_claim = sg_xstrdup(id);
}

void sg_write_saga_expect(sg_write *w, const char *id, sg_saga_status st, sg_comp_status comp)
{
    assert(id);
    sg_write_op *op = push(w, SG_WOP_SAGA_EXPECT);
    op->u.saga_expect.id = sg_xstrdup(id);
    op->u.saga_expect.status = st;
    op->u.saga_expect.comp = comp;
}

void sg_write_event_expect(sg_write *w, const char *event_id, sg_event_status st)
{
    assert(event_id);
    sg_write_op *op = push(w, SG_WOP_EVENT_EXPECT);
    op->u.event_expect.id = sg_xstrdup(event_id);
    op->u.event_expect.status = st;
}

void sg_write_def_insert(sg_write *w, const char *name, int version, const char *canonical,
                         int64_t created_us)
{
    assert(name && canonical); /* the built-in STA saga (no text) is never stored */
    sg_write_op *op = push(w, SG_WOP_DEF_INSERT);
    op->u.def_insert.name = sg_xstrdup(name);
    op->u.def_insert.version = version;
    op->u.def_insert.canonical = sg_xstrdup(canonical);
    op->u.def_insert.created_us = created_us;
}

void sg_write_withdraw_orphans(sg_write *w)
{
    push(w, SG_WOP_WITHDRAW_ORPHANS);
}

void sg_write_purge(sg_write *w, int64_t before_us, size_t limit, size_t *purged)
{
    assert(limit > 0 && purged);
    sg_write_op *op = push(w, SG_WOP_PURGE);
    op->u.purge.before_us = before_us;
    op->u.purge.limit = limit;
    op->u.purge.purged = purged;
    static _Atomic uint64_t seq;
    op->u.purge.seq = atomic_fetch_add(&seq, 1) + 1;
    *purged = 0;
}

size_t sg_write_count(const sg_write *w)
{
    return w ? w->nops : 0;
}

static size_t step_size(const sg_step_rec *s)
{
    return s->response_len + (s->error ? strlen(s->error) : 0);
}

size_t sg_write_size(const sg_write *w)
{
    size_t n = w ? sizeof *w + w->cap * sizeof *w->ops : 0;
    for (size_t i = 0; w && i < w->nops; i++) {
        const sg_write_op *op = &w->ops[i];
        switch (op->kind) {
        case SG_WOP_SAGA_INSERT:
            n += op->u.saga_insert.request_len;
            for (size_t k = 0; k < op->u.saga_insert.nsteps; k++)
                n += sizeof(sg_step_rec) + step_size(&op->u.saga_insert.steps[k]);
            break;
        case SG_WOP_STEP_UPDATE:
            n += step_size(&op->u.step_update.step);
            break;
        case SG_WOP_EVENT_INSERT:
            n += op->u.event_insert.payload_len;
            break;
        case SG_WOP_DEF_INSERT:
            n += strlen(op->u.def_insert.canonical);
            break;
        default:
            break;
        }
    }
    return n;
}
