/* The Redis backend's reads of the outbox (recovery loads, the operator's
 * listing, one event) and of the stored definition versions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"
#include "sg/alloc.h"

/* Up to limit events of index (a key without "sagad:") from bound, in
 * direction desc, appended to *v (n, cap); *got says how many came. */
static sg_status events_page(sg_store_breader *r, const char *index, int desc, const char *bound,
                             size_t limit, sg_event_rec **v, size_t *n, size_t *cap, size_t *got,
                             char *err, size_t errlen)
{
    char lim[24];
    snprintf(lim, sizeof lim, "%zu", limit);
    const char *args[] = {"events", index, desc ? "desc" : "asc", bound, lim};
    redisReply *rep = sg__rd_script(r, 5, args, err, errlen);
    if (!rep) return SG_EIO;
    if (sg__rd_check_entries(rep, err, errlen) != 0) {
        freeReplyObject(rep);
        return SG_EIO;
    }
    for (size_t i = 0; i < rep->elements; i++) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *v = sg_xrealloc(*v, *cap * sizeof **v);
        }
        sg__rd_to_event(rep->element[i]->element[0], &(*v)[(*n)++]);
    }
    *got = rep->elements;
    freeReplyObject(rep);
    return SG_OK;
}

/* Every event of index, oldest first, appended to *v (n, cap). */
static sg_status events_all(sg_store_breader *r, const char *index, sg_event_rec **v, size_t *n,
                            size_t *cap, char *err, size_t errlen)
{
    size_t got = SG_RD_CHUNK, first = *n;
    sg_status st = SG_OK;
    while (st == SG_OK && got == SG_RD_CHUNK) {
        char bound[SG_RD_KEY_LEN + 2];
        int after = *n > first;
        const sg_event_rec *last = after ? &(*v)[*n - 1] : NULL;
        sg__rd_page_bound(bound, sizeof bound, 0, last ? last->created_us : 0, last ? last->id : "",
                          after);
        st = events_page(r, index, 0, bound, SG_RD_CHUNK, v, n, cap, &got, err, errlen);
    }
    return st;
}

static int older(const sg_event_rec *a, const sg_event_rec *b)
{
    if (a->created_us != b->created_us) return a->created_us < b->created_us ? -1 : 1;
    return strcmp(a->id, b->id);
}

static int cmp_events(const void *a, const void *b)
{
    return older(a, b);
}

/* Every event of the indexes (nidx of them), oldest first, each to cb. */
static sg_status load_events(sg_store_breader *r, const char *const *idx, size_t nidx,
                             void (*cb)(void *arg, sg_event_rec *ev), void *arg, char *err,
                             size_t errlen)
{
    sg_event_rec *v = NULL;
    size_t n = 0, cap = 0;
    for (size_t i = 0; i < nidx; i++) {
        if (events_all(r, idx[i], &v, &n, &cap, err, errlen) != SG_OK) {
            sg_store_free_events(v, n);
            return SG_EIO;
        }
    }
    /* Several indexes: one order, as SQLite's ORDER BY created_us, id. */
    if (nidx > 1 && n > 1) qsort(v, n, sizeof *v, cmp_events);
    sg_store_hand_events(v, n, cb, arg);
    return SG_OK;
}

sg_status sg__rd_load_pending_events(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                     void *arg, char *err, size_t errlen)
{
    char index[64];
    sg__rd_own_index(index, sizeof index, r->be, "ev");
    const char *const idx[] = {index};
    return load_events(r, idx, 1, cb, arg, err, errlen);
}

sg_status sg__rd_load_compensations(sg_store_breader *r, void (*cb)(void *arg, sg_event_rec *ev),
                                    void *arg, char *err, size_t errlen)
{
    char index[64];
    sg__rd_own_index(index, sizeof index, r->be, "comps");
    const char *const idx[] = {index};
    return load_events(r, idx, 1, cb, arg, err, errlen);
}

sg_status sg__rd_list_events(sg_store_breader *r, const sg_list_query *q, sg_event_rec **out,
                             size_t *n, char next[SG_CURSOR_MAX], char *err, size_t errlen)
{
    char cid[SG_ID_LEN + 1] = "", bound[SG_RD_KEY_LEN + 2], index[32];
    int64_t cus = 0;
    if (q->after && sg_store_cursor_parse(q->after, &cus, cid) != SG_OK) {
        snprintf(err, errlen, "malformed list cursor");
        return SG_EINVAL;
    }
    if (q->status >= 0)
        snprintf(index, sizeof index, "events:st:%d", q->status);
    else
        snprintf(index, sizeof index, "events");
    sg__rd_page_bound(bound, sizeof bound, 1, cus, cid, q->after != NULL);
    sg_event_rec *v = NULL;
    size_t got = 0, cap = 0, came = 0;
    if (events_page(r, index, 1, bound, q->limit + 1, &v, &got, &cap, &came, err, errlen) !=
        SG_OK) {
        sg_store_free_events(v, got);
        return SG_EIO;
    }
    if (got > q->limit) {
        for (size_t i = q->limit; i < got; i++)
            sg_event_rec_free(&v[i]);
        got = q->limit;
        sg_store_cursor_format(next, v[got - 1].created_us, v[got - 1].id);
    }
    *out = v;
    *n = got;
    return SG_OK;
}

/* A hash's HGETALL: 0 if it is one (an even array of strings). */
static int hash_ok(const redisReply *h)
{
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2 || h->elements > SG_RD_MAX_ELEMENTS)
        return 0;
    for (size_t i = 0; i < h->elements; i++)
        if (h->element[i]->type != REDIS_REPLY_STRING) return 0;
    return 1;
}

sg_status sg__rd_get_event(sg_store_breader *r, const char *id, sg_event_rec *out, char *err,
                           size_t errlen)
{
    size_t kl = strlen(id) + sizeof "sagad:event:";
    char *key = sg_xmalloc(kl); /* owned */
    snprintf(key, kl, "sagad:event:%s", id);
    const char *argv[] = {"HGETALL", key};
    redisReply *rep = sg__rd_call(r, 2, argv, err, errlen);
    free(key);
    if (!rep) return SG_EIO;
    sg_status st = SG_EIO;
    if (!hash_ok(rep)) {
        snprintf(err, errlen, "Redis read: unexpected reply");
    } else if (rep->elements == 0) {
        st = SG_ENOTFOUND;
    } else {
        sg__rd_to_event(rep, out);
        st = SG_OK;
    }
    freeReplyObject(rep);
    return st;
}

/* The per-status indexes' sizes (ZCARD: O(1) each). */
sg_status sg__rd_count_events(sg_store_breader *r, uint64_t counts[SG_EVENT_STATUSES], char *err,
                              size_t errlen)
{
    for (int s = 0; s < SG_EVENT_STATUSES; s++) {
        char key[32];
        snprintf(key, sizeof key, "sagad:events:st:%d", s);
        const char *argv[] = {"ZCARD", key};
        redisReply *rep = sg__rd_call(r, 2, argv, err, errlen);
        if (!rep) return SG_EIO;
        int ok = rep->type == REDIS_REPLY_INTEGER && rep->integer >= 0;
        if (ok) counts[s] = (uint64_t)rep->integer;
        freeReplyObject(rep);
        if (!ok) {
            snprintf(err, errlen, "Redis read: unexpected reply");
            return SG_EIO;
        }
    }
    return SG_OK;
}

/* ---- definitions ------------------------------------------------------------------ */

typedef struct def_row {
    const char *name; /* borrowed from the reply */
    size_t name_len;
    int version;
    const char *body; /* borrowed */
} def_row;

/* By name (as SQLite's BINARY collation: bytes, then length), then version. */
static int cmp_defs(const void *pa, const void *pb)
{
    const def_row *a = pa, *b = pb;
    size_t m = a->name_len < b->name_len ? a->name_len : b->name_len;
    int c = memcmp(a->name, b->name, m);
    if (c) return c;
    if (a->name_len != b->name_len) return a->name_len < b->name_len ? -1 : 1;
    return (a->version > b->version) - (a->version < b->version);
}

sg_status sg__rd_load_defs(sg_store_breader *r, sg_def_row_cb cb, void *arg, char *err,
                           size_t errlen)
{
    const char *argv[] = {"HGETALL", "sagad:defs"};
    redisReply *rep = sg__rd_call(r, 2, argv, err, errlen);
    if (!rep) return SG_EIO;
    if (!hash_ok(rep)) {
        snprintf(err, errlen, "Redis read: unexpected reply");
        freeReplyObject(rep);
        return SG_EIO;
    }
    size_t n = 0;
    def_row *v = rep->elements ? sg_xcalloc(rep->elements / 2, sizeof *v) : NULL;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const redisReply *f = rep->element[i];
        /* "<name>\n<version>": the name is what precedes the last '\n'. */
        const char *nl = NULL;
        for (size_t k = 0; k < f->len; k++)
            if (f->str[k] == '\n') nl = f->str + k;
        if (!nl) continue;
        v[n].name = f->str;
        v[n].name_len = (size_t)(nl - f->str);
        v[n].version = atoi(nl + 1);
        v[n].body = rep->element[i + 1]->str;
        n++;
    }
    if (n > 1) qsort(v, n, sizeof *v, cmp_defs);
    for (size_t i = 0; i < n; i++) {
        /* The name, cut out of its field (the callback wants a string). */
        char *name = sg_xmemdup(v[i].name, v[i].name_len); /* owned */
        cb(arg, name, v[i].version, v[i].body);
        free(name);
    }
    free(v);
    freeReplyObject(rep);
    return SG_OK;
}
