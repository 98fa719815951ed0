/* Rendering a compiled template (template.h) for one saga: the
 * request and the step answers it names are parsed on first use, values
 * are looked up along precompiled paths, and the body is written as
 * compact JSON straight into a buffer capped at 8 MiB. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"
#include "sg/json.h"
#include "template_int.h"

#define RENDER_MAX ((size_t)8 << 20) /* bytes of a rendered body or payload */

typedef struct rctx {
    const sg_template *t;
    const sg_saga_rec *rec;
    json_t *request; /* parsed on first use */
    int have_request;
    json_t **resp; /* resp[i]: step i's answer, parsed on first use */
    unsigned char *have_resp;
    char *err;
    size_t errlen;
} rctx;

static sg_status rfail(rctx *c, sg_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static sg_status rfail(rctx *c, sg_status st, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* ---- writing JSON ------------------------------------------------------- */

/* The fewest of 15, 16 or 17 significant digits that read back as d; a
 * real keeps a '.' or an exponent, as jansson writes it. */
static sg_status write_real(sg_buf *b, double d)
{
    char s[40];
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(s, sizeof s, "%.*g", digits, d);
        if (strtod(s, NULL) == d) break;
    }
    if (!strpbrk(s, ".eE")) strcat(s, ".0");
    return sg_buf_adds(b, s);
}

sg_status sg__tpl_write(sg_buf *b, const json_t *v)
{
    sg_status st = SG_OK;
    size_t i = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        st = sg_buf_addc(b, '{');
        for (void *it = json_object_iter((json_t *)v); it && st == SG_OK;
             it = json_object_iter_next((json_t *)v, it)) {
            if (i++) st = sg_buf_addc(b, ',');
            if (st == SG_OK)
                st = sg_json_add_str(b, json_object_iter_key(it), json_object_iter_key_len(it));
            if (st == SG_OK) st = sg_buf_addc(b, ':');
            if (st == SG_OK) st = sg__tpl_write(b, json_object_iter_value(it));
        }
        return st == SG_OK ? sg_buf_addc(b, '}') : st;
    case JSON_ARRAY:
        st = sg_buf_addc(b, '[');
        for (; i < json_array_size(v) && st == SG_OK; i++) {
            if (i) st = sg_buf_addc(b, ',');
            if (st == SG_OK) st = sg__tpl_write(b, json_array_get(v, i));
        }
        return st == SG_OK ? sg_buf_addc(b, ']') : st;
    case JSON_STRING:
        return sg_json_add_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return sg_buf_addf(b, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    case JSON_REAL:
        return write_real(b, json_real_value(v));
    case JSON_TRUE:
        return sg_buf_adds(b, "true");
    case JSON_FALSE:
        return sg_buf_adds(b, "false");
    case JSON_NULL:
        break;
    }
    return sg_buf_adds(b, "null");
}

/* ---- looking values up -------------------------------------------------- */

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
            if (!c->request) return rfail(c, SG_EINVAL, "the request is not JSON: %s", je.text);
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

/* A string with references inside: its text is gathered first (capped
 * by what room is left), then written as one JSON string. */
static sg_status render_splice(rctx *c, const tpl_node *nd, sg_buf *out)
{
    sg_buf b;
    sg_status st = SG_OK;
    sg_buf_init(&b, out->max - out->len);
    for (size_t i = 0; i < nd->n && st == SG_OK; i++) {
        const tpl_piece *p = &nd->pieces[i];
        json_t *v = NULL;
        if (p->text)
            st = sg_buf_add(&b, p->text, p->len);
        else if ((st = lookup(c, &p->r, &v)) != SG_OK)
            break;
        else if (json_is_string(v))
            st = sg_buf_add(&b, json_string_value(v), json_string_length(v));
        else
            st = v ? sg__tpl_write(&b, v) : sg_buf_adds(&b, "null");
    }
    if (st == SG_OK) st = sg_json_add_str(out, b.ptr ? b.ptr : "", b.len);
    sg_buf_free(&b);
    return st;
}

static sg_status render_node(rctx *c, const tpl_node *nd, sg_buf *out)
{
    sg_status st = SG_OK;
    json_t *v = NULL;
    switch (nd->kind) {
    case T_CONST:
        return sg_buf_add(out, nd->text, nd->len);
    case T_REF:
        if ((st = lookup(c, &nd->r, &v)) != SG_OK) return st;
        return v ? sg__tpl_write(out, v) : sg_buf_adds(out, "null");
    case T_SPLICE:
        return render_splice(c, nd, out);
    case T_ARRAY:
    case T_OBJECT:
        break;
    }
    st = sg_buf_addc(out, nd->kind == T_ARRAY ? '[' : '{');
    for (size_t i = 0; i < nd->n && st == SG_OK; i++) {
        if (i) st = sg_buf_addc(out, ',');
        if (st == SG_OK && nd->keys) st = sg_buf_add(out, nd->keys[i], nd->keylen[i]);
        if (st == SG_OK) st = render_node(c, &nd->kids[i], out);
    }
    return st == SG_OK ? sg_buf_addc(out, nd->kind == T_ARRAY ? ']' : '}') : st;
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
    sg_buf b;
    sg_buf_init(&b, RENDER_MAX);
    sg_status st = render_node(&c, &t->root, &b);
    if (st == SG_ETOOBIG) rfail(&c, st, "the rendered template is over 8 MiB");
    if (st == SG_OK) *out = sg_buf_take(&b, len);
    sg_buf_free(&b);
    json_decref(c.request);
    for (size_t i = 0; i < t->nsteps; i++)
        json_decref(c.resp[i]);
    free(c.resp);
    free(c.have_resp);
    return st;
}
