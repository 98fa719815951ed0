/* Body and payload templates (template.h): compiled once, when a
 * definition loads, into a tree of constant JSON text, references with
 * their paths split and spliced strings (template_int.h), so that rendering
 * (template_render.c) only looks values up and writes. */
#include "template_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def_file_int.h"
#include "sg/alloc.h"
#include "sg/json.h"

/* ---- freeing ------------------------------------------------------------ */

static void ref_free(tpl_ref *r)
{
    for (size_t i = 0; i < r->nseg; i++)
        free(r->seg[i].key);
    free(r->seg);
}

static void node_free(tpl_node *nd)
{
    free(nd->text);
    ref_free(&nd->r);
    for (size_t i = 0; i < nd->n; i++) {
        if (nd->kind == T_SPLICE) {
            free(nd->pieces[i].text);
            ref_free(&nd->pieces[i].r);
        } else {
            node_free(&nd->kids[i]);
            if (nd->keys) free(nd->keys[i]);
        }
    }
    free(nd->pieces);
    free(nd->kids);
    free(nd->keys);
    free(nd->keylen);
    memset(nd, 0, sizeof *nd);
}

void sg_template_destroy(sg_template *t)
{
    if (!t) return;
    node_free(&t->root);
    for (size_t i = 0; i < t->nsteps; i++)
        free(t->names[i]);
    free(t->names);
    free(t);
}

int sg_template_uses_steps(const sg_template *t)
{
    return t && t->uses_steps;
}

/* ---- compiling ---------------------------------------------------------- */

typedef struct cctx {
    sg_template *t;
    const char *const *steps;
    char *err;
    size_t errlen;
    char place[SG__PLACE_MAX]; /* where in the body we are, "items[0].sku" */
} cctx;

static sg_status bad(cctx *c, const char *fmt, const char *what, size_t n)
{
    char shown[SG__SHOW_MAX], why[SG__PLACE_MAX];
    snprintf(why, sizeof why, fmt, sg__def_show(what, n, shown));
    if (c->err && c->errlen)
        snprintf(c->err, c->errlen, "%s%s%s", c->place, c->place[0] ? ": " : "", why);
    return SG_EINVAL;
}

/* A reference's path "a.0.b" (after the source) into r. */
static sg_status compile_path(cctx *c, tpl_ref *r, const char *p, size_t n, const char *whole,
                              size_t wlen)
{
    size_t nseg = 1;
    for (size_t i = 0; i < n; i++)
        nseg += p[i] == '.';
    r->seg = sg_xcalloc(nseg, sizeof *r->seg);
    for (size_t i = 0, start = 0; i <= n; i++) {
        if (i < n && p[i] != '.') continue;
        if (i == start) return bad(c, "%s has an empty path segment", whole, wlen);
        tpl_seg *s = &r->seg[r->nseg++];
        s->key = sg_xmemdup(p + start, i - start);
        s->len = i - start;
        s->is_index = strspn(s->key, "0123456789") == s->len;
        for (size_t k = 0; s->is_index && k < s->len; k++) {
            size_t d = (size_t)(s->key[k] - '0');
            s->index = s->index > (SIZE_MAX - d) / 10 ? SIZE_MAX : s->index * 10 + d;
        }
        start = i + 1;
    }
    return SG_OK;
}

static int starts(const char *p, size_t n, const char *word)
{
    size_t w = strlen(word);
    return n >= w && memcmp(p, word, w) == 0 && (n == w || p[w] == '.');
}

/* 1 if s[0..n) is name[0..k) then ".response", then nothing or ".". */
static int is_response(const char *s, size_t n, const char *name, size_t k)
{
    static const char resp[] = ".response";
    size_t r = sizeof resp - 1;
    return k && n >= k + r && memcmp(s, name, k) == 0 && memcmp(s + k, resp, r) == 0 &&
           (n == k + r || s[k + r] == '.');
}

/* The inside of "${...}" (p[0..n)) into r; whole is the "${...}" text. */
static sg_status compile_ref(cctx *c, tpl_ref *r, const char *p, size_t n, const char *whole,
                             size_t wlen)
{
    static const char resp[] = ".response";
    if (starts(p, n, "request")) {
        r->from = TPL_REQUEST;
        if (n == 7) return SG_OK;
        return compile_path(c, r, p + 8, n - 8, whole, wlen);
    }
    if (starts(p, n, "steps") && n > 6) {
        /* A step name may hold dots: the longest known name followed by
         * ".response" wins. */
        const char *name = p + 6;
        size_t left = n - 6, best = SIZE_MAX, blen = 0;
        for (size_t i = 0; i < c->t->nsteps; i++) {
            size_t k = strlen(c->steps[i]);
            if (k >= blen && is_response(name, left, c->steps[i], k)) best = i, blen = k;
        }
        if (best != SIZE_MAX) {
            r->from = (int)best;
            c->t->uses_steps = 1;
            if (!c->t->names[best]) c->t->names[best] = sg_xstrdup(c->steps[best]);
            size_t rest = left - blen - (sizeof resp - 1); /* "" or ".<path>" */
            if (rest == 0) return SG_OK;
            return compile_path(c, r, name + blen + sizeof resp, rest - 1, whole, wlen);
        }
        for (size_t k = 1; k < left; k++) /* the shape of one, but no such step before */
            if (name[k] == '.' && is_response(name, left, name, k))
                return bad(c, "%s names a step that does not run before this one", whole, wlen);
    }
    return bad(c, "%s is neither ${request...} nor ${steps.<name>.response...}", whole, wlen);
}

/* A string with at least one "${": a reference alone or a splice. */
static sg_status compile_string(cctx *c, tpl_node *nd, const char *s, size_t n)
{
    size_t cap = 4, at = 0;
    nd->kind = T_SPLICE;
    nd->pieces = sg_xcalloc(cap, sizeof *nd->pieces);
    while (at < n) {
        if (nd->n + 2 > cap) {
            nd->pieces = sg_xrealloc(nd->pieces, 2 * cap * sizeof *nd->pieces);
            memset(nd->pieces + cap, 0, cap * sizeof *nd->pieces);
            cap *= 2;
        }
        const char *open = memmem(s + at, n - at, "${", 2);
        size_t lit = open ? (size_t)(open - s) - at : n - at;
        if (lit) {
            tpl_piece *p = &nd->pieces[nd->n++];
            p->text = sg_xmemdup(s + at, lit);
            p->len = lit;
        }
        if (!open) break;
        size_t from = (size_t)(open - s);
        const char *close = memchr(s + from + 2, '}', n - from - 2);
        if (!close) return bad(c, "%s has no closing }", s + from, n - from);
        size_t wlen = (size_t)(close - open) + 1;
        sg_status st = compile_ref(c, &nd->pieces[nd->n++].r, open + 2, wlen - 3, open, wlen);
        if (st != SG_OK) return st;
        at = from + wlen;
    }
    if (nd->n == 1 && !nd->pieces[0].text) { /* exactly one reference: keeps its type */
        nd->kind = T_REF;
        nd->r = nd->pieces[0].r;
        free(nd->pieces);
        nd->pieces = NULL;
        nd->n = 0;
    }
    return SG_OK;
}

static sg_status compile_node(cctx *c, tpl_node *nd, const json_t *v, int *constant);

/* One member or element: the place grows by its key or index meanwhile. */
static sg_status compile_kid(cctx *c, tpl_node *nd, const json_t *v, const char *key, size_t i,
                             int *constant)
{
    size_t used = strlen(c->place);
    char shown[SG__SHOW_MAX];
    if (key)
        snprintf(c->place + used, sizeof c->place - used, "%s%s", used ? "." : "",
                 key[0] ? sg__def_show(key, strlen(key), shown) : "\"\"");
    else
        snprintf(c->place + used, sizeof c->place - used, "[%zu]", i);
    sg_status st = compile_node(c, nd, v, constant);
    if (st == SG_OK) c->place[used] = '\0';
    return st;
}

/* nd becomes the constant v, kept as its JSON text. */
static void make_const(tpl_node *nd, const json_t *v)
{
    sg_buf b;
    sg_buf_init(&b, SIZE_MAX);
    sg__tpl_write(&b, v); /* no cap: cannot fail */
    nd->kind = T_CONST;
    nd->text = sg_buf_take(&b, &nd->len);
    sg_buf_free(&b);
}

/* "key": as JSON text. */
static char *key_text(const char *key, size_t n, size_t *len)
{
    sg_buf b;
    sg_buf_init(&b, SIZE_MAX);
    sg_json_add_str(&b, key, n);
    sg_buf_addc(&b, ':');
    char *text = sg_buf_take(&b, len);
    sg_buf_free(&b);
    return text;
}

/* A container: its kids are compiled; constant ones become text only if
 * some kid is not constant (else the caller keeps the whole as text). */
static sg_status compile_container(cctx *c, tpl_node *nd, const json_t *v, int *constant)
{
    int obj = json_is_object(v);
    size_t n = obj ? json_object_size(v) : json_array_size(v), i;
    const json_t **src = sg_xcalloc(n, sizeof *src);
    int *kconst = sg_xcalloc(n, sizeof *kconst);
    sg_status st = SG_OK;
    nd->kind = obj ? T_OBJECT : T_ARRAY;
    nd->kids = sg_xcalloc(n, sizeof *nd->kids);
    nd->n = n;
    if (obj) {
        nd->keys = sg_xcalloc(n, sizeof *nd->keys);
        nd->keylen = sg_xcalloc(n, sizeof *nd->keylen);
    }
    void *it = obj ? json_object_iter((json_t *)v) : NULL;
    for (i = 0; i < n; i++) {
        const char *key = NULL;
        if (obj) {
            key = json_object_iter_key(it);
            src[i] = json_object_iter_value(it);
            nd->keys[i] = key_text(key, json_object_iter_key_len(it), &nd->keylen[i]);
            it = json_object_iter_next((json_t *)v, it);
        } else {
            src[i] = json_array_get(v, i);
        }
        if ((st = compile_kid(c, &nd->kids[i], src[i], key, i, &kconst[i])) != SG_OK) goto done;
    }
    *constant = 1;
    for (i = 0; i < n; i++)
        *constant &= kconst[i];
    for (i = 0; i < n && !*constant; i++)
        if (kconst[i]) make_const(&nd->kids[i], src[i]);
done:
    free(src);
    free(kconst);
    return st;
}

/* Compiles v into nd, or only sets *constant when v names nothing (the
 * caller then keeps a copy of it). */
static sg_status compile_node(cctx *c, tpl_node *nd, const json_t *v, int *constant)
{
    *constant = 0;
    if (json_is_object(v) || json_is_array(v)) return compile_container(c, nd, v, constant);
    const char *s = json_is_string(v) ? json_string_value(v) : NULL;
    size_t n = s ? json_string_length(v) : 0;
    if (s && memmem(s, n, "${", 2)) return compile_string(c, nd, s, n);
    *constant = 1;
    return SG_OK;
}

sg_status sg_template_compile(sg_template **out, const json_t *v, const char *const *steps,
                              size_t nsteps, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    if (!v) return SG_EINVAL;
    sg_template *t = sg_xcalloc(1, sizeof *t);
    t->nsteps = nsteps;
    t->names = sg_xcalloc(nsteps, sizeof *t->names);
    cctx c = {.t = t, .steps = steps, .err = err, .errlen = errlen};
    int constant;
    sg_status st = compile_node(&c, &t->root, v, &constant);
    if (st != SG_OK) goto fail;
    if (constant) {
        node_free(&t->root);
        make_const(&t->root, v);
    }
    *out = t;
    return SG_OK;
fail:
    sg_template_destroy(t);
    return st;
}
