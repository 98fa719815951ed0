/* Rendering a compiled body template (template.h) for one saga: the
 * request and the step answers it names are parsed on first use, values
 * are looked up along precompiled paths, and the body is built with
 * jansson and dumped compact under an 8 MiB cap. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "sg/buf.h"
#include "template_int.h"

#define RENDER_MAX ((size_t)8 << 20) /* bytes of a rendered body */

typedef struct rctx {
    const sg_template *t;
    const sg_saga_rec *rec;
    json_t *request; /* parsed on first use */
    int have_request;
    json_t **resp; /* resp[i]: step i's answer, parsed on first use */
    unsigned char *have_resp;
    size_t spliced; /* bytes of spliced strings so far: they count against the cap */
    char *err;
    size_t errlen;
} rctx;

static sg_status rfail(rctx *c, sg_status st, const char *fmt, const char *a, const char *b)
{
    if (c->err && c->errlen) snprintf(c->err, c->errlen, fmt, a, b);
    return st;
}

/* Raw JSON text as a value; an integer past 64 bits is read as a real
 * rather than refused, as the API's validation does. */
static json_t *load(const char *text, size_t len, json_error_t *je)
{
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *v = json_loadb(text, len, flags, je);
    if (!v && json_error_code(je) == json_error_numeric_overflow)
        v = json_loadb(text, len, flags | JSON_DECODE_INT_AS_REAL, je);
    return v;
}

/* The root a reference starts from: NULL when it is missing. */
static sg_status source(rctx *c, int from, json_t **root)
{
    json_error_t je;
    *root = NULL;
    if (from == TPL_REQUEST) {
        if (!c->have_request && c->rec->request) {
            c->request = load(c->rec->request, c->rec->request_len, &je);
            if (!c->request)
                return rfail(c, SG_EINVAL, "the request is not JSON: %s%s", je.text, "");
        }
        c->have_request = 1;
        *root = c->request;
        return SG_OK;
    }
    size_t i = (size_t)from;
    if (i >= c->rec->nsteps) return SG_OK;
    const sg_step_rec *s = &c->rec->steps[i];
    if (!c->have_resp[i] && s->response) {
        c->resp[i] = load(s->response, s->response_len, &je);
        if (!c->resp[i])
            return rfail(c, SG_EINVAL, "the response of step %s is not JSON: %s", c->t->names[i],
                         je.text);
    }
    c->have_resp[i] = 1;
    *root = c->resp[i];
    return SG_OK;
}

/* The value r names (borrowed), NULL when missing. */
static sg_status lookup(rctx *c, const tpl_ref *r, json_t **out)
{
    json_t *v;
    sg_status st = source(c, r->from, &v);
    for (size_t i = 0; st == SG_OK && v && i < r->nseg; i++) {
        const tpl_seg *s = &r->seg[i];
        if (json_is_array(v) && s->is_index)
            v = json_array_get(v, s->index);
        else if (json_is_object(v))
            v = json_object_getn(v, s->key, s->len);
        else
            v = NULL;
    }
    *out = st == SG_OK ? v : NULL;
    return st;
}

static int dump_to_buf(const char *p, size_t n, void *b)
{
    return sg_buf_add(b, p, n) == SG_OK ? 0 : -1;
}

static sg_status too_big(rctx *c)
{
    return rfail(c, SG_ETOOBIG, "the rendered body is over %s%s", "8 MiB", "");
}

static sg_status render_splice(rctx *c, const tpl_node *nd, json_t **out)
{
    sg_buf b;
    sg_status st = SG_OK;
    sg_buf_init(&b, RENDER_MAX - c->spliced);
    for (size_t i = 0; i < nd->n && st == SG_OK; i++) {
        const tpl_piece *p = &nd->pieces[i];
        json_t *v = NULL;
        if (p->text) {
            st = sg_buf_add(&b, p->text, p->len);
        } else if ((st = lookup(c, &p->r, &v)) != SG_OK) {
            break;
        } else if (json_is_string(v)) {
            st = sg_buf_add(&b, json_string_value(v), json_string_length(v));
        } else if (!v) {
            st = sg_buf_adds(&b, "null");
        } else if (json_dump_callback(v, dump_to_buf, &b, JSON_COMPACT | JSON_ENCODE_ANY)) {
            st = SG_ETOOBIG;
        }
    }
    if (st == SG_ETOOBIG) st = too_big(c);
    if (st == SG_OK) {
        c->spliced += b.len;
        *out = json_stringn(b.ptr ? b.ptr : "", b.len);
        if (!*out) st = SG_ENOMEM;
    }
    sg_buf_free(&b);
    return st;
}

static sg_status render_node(rctx *c, const tpl_node *nd, json_t **out)
{
    sg_status st = SG_OK;
    json_t *v = NULL;
    *out = NULL;
    switch (nd->kind) {
    case T_CONST:
        *out = json_incref(nd->value);
        return SG_OK;
    case T_REF:
        st = lookup(c, &nd->r, &v);
        if (st == SG_OK) *out = v ? json_incref(v) : json_null();
        return st;
    case T_SPLICE:
        return render_splice(c, nd, out);
    case T_ARRAY:
    case T_OBJECT:
        break;
    }
    json_t *all = nd->kind == T_ARRAY ? json_array() : json_object();
    for (size_t i = 0; i < nd->n && st == SG_OK; i++) {
        if ((st = render_node(c, &nd->kids[i], &v)) != SG_OK) break;
        int rc = nd->kind == T_ARRAY ? json_array_append_new(all, v)
                                     : json_object_setn_new(all, nd->keys[i], nd->keylen[i], v);
        if (rc) st = SG_ENOMEM;
    }
    if (st == SG_OK)
        *out = all;
    else
        json_decref(all);
    return st;
}

sg_status sg_template_render(const sg_template *t, const sg_saga_rec *rec, char **out, size_t *len,
                             char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    if (err && errlen) err[0] = '\0';
    rctx c = {.t = t, .rec = rec, .err = err, .errlen = errlen};
    c.resp = sg_xcalloc(t->nsteps, sizeof *c.resp);
    c.have_resp = sg_xcalloc(t->nsteps, 1);
    json_t *body = NULL;
    sg_buf b;
    sg_buf_init(&b, RENDER_MAX);
    sg_status st = render_node(&c, &t->root, &body);
    if (st != SG_OK) goto done;
    if (json_dump_callback(body, dump_to_buf, &b, JSON_COMPACT | JSON_ENCODE_ANY)) {
        st = too_big(&c);
        goto done;
    }
    *out = sg_buf_take(&b, len);
done:
    sg_buf_free(&b);
    json_decref(body);
    json_decref(c.request);
    for (size_t i = 0; i < t->nsteps; i++)
        json_decref(c.resp[i]);
    free(c.resp);
    free(c.have_resp);
    return st;
}
