/* The Redis backend's readers: each its own connection (reopened on the
 * next call after a failure), every query one call of the read script
 * (redis_lua.c) so that a saga and its events come from one moment, and
 * the records rebuilt from the hashes exactly as SQLite's rows give them
 * (an absent field is SQL NULL). Replies are checked for shape and size:
 * a wrong one fails the call, it never crashes it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_int.h"
#include "sg/alloc.h"

#define MAX_STEPS 100000 /* as SQLite's reader: a sane bound on a corrupt record */

/* ---- fields ---------------------------------------------------------------------- */

static int64_t num(const redisReply *v)
{
    char *end;
    long long x = strtoll(v->str, &end, 10);
    return end == v->str ? 0 : (int64_t)x;
}

static char *dup_val(const redisReply *v, size_t *len)
{
    if (len) *len = v->len;
    return sg_xmemdup(v->str, v->len);
}

static void set_id(char out[SG_ID_LEN + 1], const redisReply *v)
{
    size_t n = v->len > SG_ID_LEN ? SG_ID_LEN : v->len;
    memcpy(out, v->str, n);
    out[n] = '\0';
}

/* A hash as HGETALL answers it: an even array of strings. */
static int is_hash(const redisReply *h)
{
    if (h->type != REDIS_REPLY_ARRAY || h->elements % 2) return 0;
    for (size_t i = 0; i < h->elements; i++)
        if (h->element[i]->type != REDIS_REPLY_STRING) return 0;
    return 1;
}

#define FIELD(f, name) (strcmp((f)->str, (name)) == 0)

void sg__rd_to_event(const redisReply *h, sg_event_rec *e)
{
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (FIELD(f, "id"))
            set_id(e->id, v);
        else if (FIELD(f, "saga_id"))
            set_id(e->saga_id, v);
        else if (FIELD(f, "topic"))
            e->topic = dup_val(v, NULL);
        else if (FIELD(f, "target"))
            e->target = dup_val(v, NULL);
        else if (FIELD(f, "payload"))
            e->payload = dup_val(v, &e->payload_len);
        else if (FIELD(f, "created_us"))
            e->created_us = num(v);
        else if (FIELD(f, "deadline_us"))
            e->deadline_us = num(v);
        else if (FIELD(f, "compensation"))
            e->compensation = (int)num(v);
        else if (FIELD(f, "step_index"))
            e->step_index = (int)num(v);
        else if (FIELD(f, "status"))
            e->status = (sg_event_status)num(v);
        else if (FIELD(f, "attempts"))
            e->attempts = (int)num(v);
        else if (FIELD(f, "last_error"))
            e->last_error = dup_val(v, NULL);
        else if (FIELD(f, "updated_us"))
            e->updated_us = num(v);
        else if (FIELD(f, "method"))
            e->method = dup_val(v, NULL);
        else if (FIELD(f, "headers"))
            e->headers = dup_val(v, NULL);
        else if (FIELD(f, "timeout_ms"))
            e->timeout_ms = (long)num(v);
    }
}

/* A step field "s<i>.<name>" of a saga of nsteps: its step, or NULL. */
static sg_step_rec *step_of(sg_saga_rec *r, const char *f, const char **name)
{
    char *end;
    if (f[0] != 's' || f[1] < '0' || f[1] > '9') return NULL;
    unsigned long i = strtoul(f + 1, &end, 10);
    if (*end != '.' || i >= r->nsteps) return NULL;
    *name = end + 1;
    return &r->steps[i];
}

static void to_saga(const redisReply *h, sg_saga_rec *r)
{
    const redisReply *tid = NULL, *tstate = NULL;
    int64_t tflags = 0;
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (FIELD(f, "id"))
            set_id(r->id, v);
        else if (FIELD(f, "def_name"))
            r->def_name = dup_val(v, NULL);
        else if (FIELD(f, "def_version"))
            r->def_version = (int)num(v);
        else if (FIELD(f, "request"))
            r->request = dup_val(v, &r->request_len);
        else if (FIELD(f, "idem_key"))
            r->idem_key = dup_val(v, NULL);
        else if (FIELD(f, "status"))
            r->status = (sg_saga_status)num(v);
        else if (FIELD(f, "comp_status"))
            r->comp_status = (sg_comp_status)num(v);
        else if (FIELD(f, "error"))
            r->error = dup_val(v, NULL);
        else if (FIELD(f, "created_us"))
            r->created_us = num(v);
        else if (FIELD(f, "updated_us"))
            r->updated_us = num(v);
        else if (FIELD(f, "nsteps")) {
            int64_t n = num(v);
            r->nsteps = n > 0 && n < MAX_STEPS ? (size_t)n : 0;
        } else if (FIELD(f, "trace_id"))
            tid = v;
        else if (FIELD(f, "trace_flags"))
            tflags = num(v);
        else if (FIELD(f, "tracestate"))
            tstate = v;
    }
    if (tid)
        sg_store_set_trace(r, tid->str, tid->len, tflags, tstate ? tstate->str : NULL,
                           tstate ? tstate->len : 0);
    r->steps = r->nsteps ? sg_xcalloc(r->nsteps, sizeof *r->steps) : NULL;
    for (size_t i = 0; r->nsteps && i + 1 < h->elements; i += 2) {
        const redisReply *v = h->element[i + 1];
        const char *n;
        sg_step_rec *s = step_of(r, h->element[i]->str, &n);
        if (!s) continue;
        if (!strcmp(n, "name"))
            s->name = dup_val(v, NULL);
        else if (!strcmp(n, "status"))
            s->status = (sg_step_status)num(v);
        else if (!strcmp(n, "attempts"))
            s->attempts = (int)num(v);
        else if (!strcmp(n, "started_us"))
            s->started_us = num(v);
        else if (!strcmp(n, "finished_us"))
            s->finished_us = num(v);
        else if (!strcmp(n, "next_us"))
            s->next_us = num(v);
        else if (!strcmp(n, "error"))
            s->error = dup_val(v, NULL);
        else if (!strcmp(n, "response"))
            s->response = dup_val(v, &s->response_len);
    }
}

/* The compensation view of r's steps from one compensation event (they
 * come oldest first: each step keeps its newest). */
static void apply_comp(sg_saga_rec *r, const redisReply *h)
{
    int64_t idx = -1, st = 0, att = 0, cus = 0, uus = 0, sus = 0;
    const redisReply *err = NULL;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const redisReply *f = h->element[i], *v = h->element[i + 1];
        if (FIELD(f, "step_index"))
            idx = num(v);
        else if (FIELD(f, "status"))
            st = num(v);
        else if (FIELD(f, "attempts"))
            att = num(v);
        else if (FIELD(f, "created_us"))
            cus = num(v);
        else if (FIELD(f, "updated_us"))
            uus = num(v);
        else if (FIELD(f, "started_us"))
            sus = num(v);
        else if (FIELD(f, "last_error"))
            err = v;
    }
    if (idx < 0 || (uint64_t)idx >= r->nsteps) return;
    sg_comp_rec *c = &r->steps[idx].comp;
    free(c->error);
    c->present = 1;
    c->status = (sg_event_status)st;
    c->attempts = (int)att;
    c->created_us = cus;
    c->updated_us = uus;
    c->started_us = sus;
    c->error = err ? dup_val(err, NULL) : NULL;
}

/* ---- calls ------------------------------------------------------------------------- */

sg_status sg__rd_reader_open(sg_store_backend *b, sg_store_breader **out, char *err, size_t errlen)
{
    *out = NULL;
    redisContext *c = sg__rd_connect(&b->a, b, err, errlen);
    if (!c) return SG_EIO;
    sg_store_breader *r = sg_xcalloc(1, sizeof *r);
    r->be = b;
    r->c = c;
    *out = r;
    return SG_OK;
}

void sg__rd_reader_close(sg_store_breader *r)
{
    if (!r) return;
    if (r->c) redisFree(r->c);
    free(r);
}

/* One command on the reader's connection (reconnecting first if it was
 * lost; once more if the server lost the scripts). An error reply is a
 * failure: NULL with err set. */
redisReply *sg__rd_call(sg_store_breader *r, int n, const char **argv, char *err, size_t errlen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        if (!r->c && !(r->c = sg__rd_connect(&r->be->a, r->be, err, errlen))) return NULL;
        redisReply *rep = sg__rd_cmd(&r->c, n, argv, NULL, "read", err, errlen);
        if (!rep) return NULL;
        if (rep->type != REDIS_REPLY_ERROR) return rep;
        int noscript = !strncmp(sg__rd_reply_text(rep), "NOSCRIPT", 8);
        snprintf(err, errlen, "Redis read: %s", sg__rd_reply_text(rep));
        freeReplyObject(rep);
        if (!noscript) return NULL;
        redisFree(r->c);
        r->c = NULL;
    }
    return NULL;
}

/* The read script with argv[0..n) after its digest. */
redisReply *sg__rd_script(sg_store_breader *r, int n, const char **args, char *err, size_t errlen)
{
    const char *argv[10] = {"EVALSHA", r->be->sha_read, "0"};
    for (int i = 0; i < n && i < 7; i++)
        argv[3 + i] = args[i];
    return sg__rd_call(r, 3 + n, argv, err, errlen);
}

/* A reply of entries {{hash, hash...}...}: 0 if well formed. */
int sg__rd_check_entries(const redisReply *rep, char *err, size_t errlen)
{
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements > SG_RD_MAX_ELEMENTS) goto bad;
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 || e->elements > SG_RD_MAX_ELEMENTS)
            goto bad;
        for (size_t k = 0; k < e->elements; k++)
            if (!is_hash(e->element[k])) goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen, "Redis read: unexpected reply");
    return -1;
}

/* The events that came with a saga entry, as records (*evs owned). */
static void entry_events(const redisReply *e, sg_event_rec **evs, size_t *nevs)
{
    *nevs = e->elements - 1;
    *evs = *nevs ? sg_xcalloc(*nevs, sizeof **evs) : NULL;
    for (size_t k = 1; k < e->elements; k++)
        sg__rd_to_event(e->element[k], &(*evs)[k - 1]);
}

/* Appends the sagas of rep to *v (n, cap); mode "c" applies their
 * compensations; with evs (mode "p") each saga's events go there. */
static void take_sagas(const redisReply *rep, int comps, sg_saga_rec **v, size_t *n, size_t *cap,
                       sg_event_rec ***evs, size_t **nevs)
{
    for (size_t i = 0; i < rep->elements; i++) {
        const redisReply *e = rep->element[i];
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *v = sg_xrealloc(*v, *cap * sizeof **v);
            if (evs) {
                *evs = sg_xrealloc(*evs, *cap * sizeof **evs);
                *nevs = sg_xrealloc(*nevs, *cap * sizeof **nevs);
            }
        }
        sg_saga_rec *r = &(*v)[*n];
        to_saga(e->element[0], r);
        if (comps)
            for (size_t k = 1; k < e->elements; k++)
                apply_comp(r, e->element[k]);
        if (evs) entry_events(e, &(*evs)[*n], &(*nevs)[*n]);
        (*n)++;
    }
}

/* One page of an index: "(" member bound after a cursor, else the end. */
void sg__rd_page_bound(char *out, size_t n, int desc, int64_t cus, const char *cid, int after)
{
    char m[SG_RD_KEY_LEN + 1];
    if (!after) {
        snprintf(out, n, "%s", desc ? "+" : "-");
        return;
    }
    sg__rd_member(m, cus, cid);
    snprintf(out, n, "(%s", m);
}

/* ---- sagas ------------------------------------------------------------------------- */

static sg_status get_one(sg_store_breader *r, const char *op, const char *key, sg_saga_rec *out,
                         char *err, size_t errlen)
{
    const char *args[] = {op, key, "c"};
    redisReply *rep = sg__rd_script(r, 3, args, err, errlen);
    if (!rep) return SG_EIO;
    sg_status st = SG_EIO;
    if (sg__rd_check_entries(rep, err, errlen) == 0) {
        st = rep->elements ? SG_OK : SG_ENOTFOUND;
        if (rep->elements) {
            sg_saga_rec *v = NULL;
            size_t n = 0, cap = 0;
            take_sagas(rep, 1, &v, &n, &cap, NULL, NULL);
            *out = v[0];
            free(v);
        }
    }
    freeReplyObject(rep);
    return st;
}

sg_status sg__rd_get(sg_store_breader *r, const char *id, sg_saga_rec *out, char *err,
                     size_t errlen)
{
    return get_one(r, "get", id, out, err, errlen);
}

sg_status sg__rd_get_by_idem(sg_store_breader *r, const char *key, sg_saga_rec *out, char *err,
                             size_t errlen)
{
    return get_one(r, "idem", key, out, err, errlen);
}

sg_status sg__rd_list(sg_store_breader *r, const sg_list_query *q, sg_saga_rec **out, size_t *n,
                      char next[SG_CURSOR_MAX], char *err, size_t errlen)
{
    char cid[SG_ID_LEN + 1] = "", bound[SG_RD_KEY_LEN + 2], lim[24];
    int64_t cus = 0;
    if (q->after && sg_store_cursor_parse(q->after, &cus, cid) != SG_OK) {
        snprintf(err, errlen, "malformed list cursor");
        return SG_EINVAL;
    }
    size_t tl = q->type ? strlen(q->type) : 0;
    char *index = sg_xmalloc(tl + 48); /* owned */
    if (q->status >= 0 && q->type)
        snprintf(index, tl + 48, "sagas:st:%d:type:%s", q->status, q->type);
    else if (q->status >= 0)
        snprintf(index, tl + 48, "sagas:st:%d", q->status);
    else if (q->type)
        snprintf(index, tl + 48, "sagas:type:%s", q->type);
    else
        snprintf(index, tl + 48, "sagas");
    sg__rd_page_bound(bound, sizeof bound, 1, cus, cid, q->after != NULL);
    snprintf(lim, sizeof lim, "%zu", q->limit + 1);
    const char *args[] = {"sagas", index, "desc", bound, lim, "c"};
    redisReply *rep = sg__rd_script(r, 6, args, err, errlen);
    free(index);
    if (!rep) return SG_EIO;
    if (sg__rd_check_entries(rep, err, errlen) != 0) {
        freeReplyObject(rep);
        return SG_EIO;
    }
    sg_saga_rec *v = NULL;
    size_t got = 0, cap = 0;
    take_sagas(rep, 1, &v, &got, &cap, NULL, NULL);
    freeReplyObject(rep);
    if (got > q->limit) {
        for (size_t i = q->limit; i < got; i++)
            sg_saga_rec_free(&v[i]);
        got = q->limit;
        sg_store_cursor_format(next, v[got - 1].created_us, v[got - 1].id);
    }
    *out = v;
    *n = got;
    return SG_OK;
}

/* Up to limit sagas of index ascending after (cus, cid) (after = 0: from
 * the start) with mode's events; appended to *v. *last gets how many came. */
static sg_status page_up(sg_store_breader *r, const char *index, int after, int64_t cus,
                         const char *cid, size_t limit, const char *mode, sg_saga_rec **v,
                         size_t *n, size_t *cap, sg_event_rec ***evs, size_t **nevs, size_t *got,
                         char *err, size_t errlen)
{
    char bound[SG_RD_KEY_LEN + 2], lim[24];
    sg__rd_page_bound(bound, sizeof bound, 0, cus, cid, after);
    snprintf(lim, sizeof lim, "%zu", limit);
    const char *args[] = {"sagas", index, "asc", bound, lim, mode};
    redisReply *rep = sg__rd_script(r, 6, args, err, errlen);
    if (!rep) return SG_EIO;
    if (sg__rd_check_entries(rep, err, errlen) != 0) {
        freeReplyObject(rep);
        return SG_EIO;
    }
    size_t before = *n;
    take_sagas(rep, 0, v, n, cap, evs, nevs);
    *got = *n - before;
    freeReplyObject(rep);
    return SG_OK;
}

sg_status sg__rd_load_unfinished(sg_store_breader *r, void (*cb)(void *arg, sg_saga_rec *rec),
                                 void *arg, char *err, size_t errlen)
{
    sg_saga_rec *v = NULL;
    size_t n = 0, cap = 0, got = SG_RD_CHUNK;
    sg_status st = SG_OK;
    char index[64];
    sg__rd_own_index(index, sizeof index, r->be, "run");
    while (st == SG_OK && got == SG_RD_CHUNK) {
        int after = n > 0;
        st = page_up(r, index, after, after ? v[n - 1].created_us : 0, after ? v[n - 1].id : "",
                     SG_RD_CHUNK, "n", &v, &n, &cap, NULL, NULL, &got, err, errlen);
    }
    if (st != SG_OK) {
        sg_store_free_sagas(v, n);
        return st;
    }
    sg_store_hand_sagas(v, n, cb, arg);
    return SG_OK;
}

sg_status sg__rd_load_unfinished_page(sg_store_breader *r, const char *after, size_t limit,
                                      sg_unfinished_cb cb, void *arg, char next[SG_CURSOR_MAX],
                                      char *err, size_t errlen)
{
    char cid[SG_ID_LEN + 1] = "";
    int64_t cus = 0;
    if (after && sg_store_cursor_parse(after, &cus, cid) != SG_OK) {
        snprintf(err, errlen, "malformed recovery cursor");
        return SG_EINVAL;
    }
    sg_saga_rec *v = NULL;
    sg_event_rec **evs = NULL;
    size_t *nevs = NULL, n = 0, cap = 0, got = 0;
    char index[64];
    sg__rd_own_index(index, sizeof index, r->be, "run");
    sg_status st = page_up(r, index, after != NULL, cus, cid, limit, "p", &v, &n, &cap, &evs, &nevs,
                           &got, err, errlen);
    if (st == SG_OK && n == limit && n > 0)
        sg_store_cursor_format(next, v[n - 1].created_us, v[n - 1].id);
    return sg_store_hand_page(st, v, evs, nevs, n, cb, arg);
}

sg_status sg__rd_has_orphans(sg_store_breader *r, int *yes, char *err, size_t errlen)
{
    const char *args[] = {"orphans", r->be->owner};
    redisReply *rep = sg__rd_script(r, 2, args, err, errlen);
    if (!rep) return SG_EIO;
    sg_status st = SG_OK;
    if (rep->type == REDIS_REPLY_INTEGER) {
        *yes = rep->integer == 1;
    } else {
        snprintf(err, errlen, "Redis read: unexpected reply");
        st = SG_EIO;
    }
    freeReplyObject(rep);
    return st;
}
