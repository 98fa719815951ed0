/* Helpers every backend shares (declared in store_int.h): keyset cursors,
 * and handing read records over to callbacks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "sg/util.h"
#include "store_int.h"

/* ---- cursors -------------------------------------------------------------- */

sg_status sg_store_cursor_parse(const char *cursor, int64_t *created_us, char id[SG_ID_LEN + 1])
{
    const char *p = cursor;
    int64_t v = 0;
    size_t digits = 0;
    if (!cursor) return SG_EINVAL;
    /* 19 digits may still overflow int64_t, so check before multiplying. */
    for (; *p >= '0' && *p <= '9'; p++, digits++) {
        int d = *p - '0';
        if (v > (INT64_MAX - d) / 10) return SG_EINVAL;
        v = v * 10 + d;
    }
    if (digits == 0 || *p != '.') return SG_EINVAL;
    p++;
    if (strlen(p) != SG_ID_LEN || !sg_uuid_valid(p, SG_ID_LEN)) return SG_EINVAL;
    *created_us = v;
    memcpy(id, p, SG_ID_LEN + 1);
    return SG_OK;
}

void sg_store_cursor_format(char out[SG_CURSOR_MAX], int64_t created_us, const char *id)
{
    snprintf(out, SG_CURSOR_MAX, "%lld.%s", (long long)created_us, id);
}

void sg_store_free_sagas(sg_saga_rec *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_saga_rec_free(&v[i]);
    free(v);
}

void sg_store_free_events(sg_event_rec *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sg_event_rec_free(&v[i]);
    free(v);
}

void sg_store_hand_sagas(sg_saga_rec *v, size_t n, void (*cb)(void *arg, sg_saga_rec *rec),
                         void *arg)
{
    for (size_t i = 0; i < n; i++) {
        sg_saga_rec *rec = sg_xmalloc(sizeof *rec);
        *rec = v[i]; /* the members move */
        cb(arg, rec);
    }
    free(v);
}

void sg_store_hand_events(sg_event_rec *v, size_t n, void (*cb)(void *arg, sg_event_rec *ev),
                          void *arg)
{
    for (size_t i = 0; i < n; i++) {
        sg_event_rec *ev = sg_xmalloc(sizeof *ev);
        *ev = v[i];
        cb(arg, ev);
    }
    free(v);
}

sg_status sg_store_hand_page(sg_status st, sg_saga_rec *v, sg_event_rec **evs, size_t *nevs,
                             size_t n, sg_unfinished_cb cb, void *arg)
{
    for (size_t i = 0; i < n; i++) {
        if (st != SG_OK) {
            sg_saga_rec_free(&v[i]);
            sg_store_free_events(evs[i], nevs[i]);
            continue;
        }
        sg_saga_rec *rec = sg_xmalloc(sizeof *rec);
        *rec = v[i];
        cb(arg, rec, evs[i], nevs[i]);
    }
    free(v);
    free(evs);
    free(nevs);
    return st;
}

void sg_store_cursor(const sg_saga_rec *r, char out[SG_CURSOR_MAX])
{
    sg_store_cursor_format(out, r->created_us, r->id);
}

/* ---- trace ------------------------------------------------------------------- */

void sg_store_set_trace(sg_saga_rec *r, const char *id, size_t idlen, int64_t flags,
                        const char *state, size_t statelen)
{
    memset(&r->trace, 0, sizeof r->trace);
    free(r->tracestate);
    r->tracestate = NULL;
    if (!id || idlen != SG_TRACE_ID_HEX) return;
    memcpy(r->trace.trace_id, id, SG_TRACE_ID_HEX);
    r->trace.trace_id[SG_TRACE_ID_HEX] = '\0';
    if (!sg_trace_id_ok(r->trace.trace_id) || flags < 0 || flags > 255) {
        memset(&r->trace, 0, sizeof r->trace);
        return;
    }
    r->trace.flags = (uint8_t)flags;
    if (state && sg_tracestate_ok(state, statelen)) r->tracestate = sg_xmemdup(state, statelen);
}
