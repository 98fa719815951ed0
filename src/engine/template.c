/* Body templates (template.h): compiled once when a definition loads into
 * a tree of constants, references and spliced strings, so that rendering
 * only looks values up and builds the body with jansson. */
#include "template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "def_file_int.h"
#include "sg/alloc.h"
#include "sg/buf.h"

#define RENDER_MAX ((size_t)8 << 20) /* bytes of a rendered body */
#define FROM_REQUEST (-1)

typedef struct seg {
    char *key; /* owned */
    size_t len;
    int is_index; /* all digits: an array index when the value is an array */
    size_t index; /* SIZE_MAX when it does not fit */
} seg;

typedef struct ref {
    int from; /* FROM_REQUEST or a step's index */
    size_t nseg;
    seg *seg; /* owned */
} ref;

typedef struct piece {
    char *text; /* a literal (owned), or NULL for the reference r */
    size_t len;
    ref r;
} piece;

typedef enum { N_CONST, N_REF, N_SPLICE, N_ARRAY, N_OBJECT } node_kind;

typedef struct node {
    node_kind kind;
    json_t *value; /* CONST: owned copy */
    ref r;         /* REF */
    size_t n;      /* SPLICE: pieces; ARRAY, OBJECT: kids */
    piece *pieces;
    struct node *kids;
    char **keys; /* OBJECT: kids[i] is member keys[i] (keylen[i] bytes) */
    size_t *keylen;
} node;

struct sg_template {
    node root;
    int uses_steps;
    int uses_request;
    size_t nsteps; /* the steps it may name */
    char **names;  /* names[i] of the steps it names (others NULL), for messages */
};

/* ---- freeing ------------------------------------------------------------ */

static void ref_free(ref *r)
{
    for (size_t i = 0; i < r->nseg; i++)
        free(r->seg[i].key);
    free(r->seg);
}

static void node_free(node *nd)
{
    json_decref(nd->value);
    ref_free(&nd->r);
    for (size_t i = 0; i < nd->n; i++) {
        if (nd->kind == N_SPLICE) {
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
static sg_status compile_path(cctx *c, ref *r, const char *p, size_t n, const char *whole,
                              size_t wlen)
{
    size_t nseg = 1;
    for (size_t i = 0; i < n; i++)
        nseg += p[i] == '.';
    r->seg = sg_xcalloc(nseg, sizeof *r->seg);
    for (size_t i = 0, start = 0; i <= n; i++) {
        if (i < n && p[i] != '.') continue;
        if (i == start) return bad(c, "%s has an empty path segment", whole, wlen);
        seg *s = &r->seg[r->nseg++];
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

/* The inside of "${...}" (p[0..n)) into r; whole is the "${...}" text. */
static sg_status compile_ref(cctx *c, ref *r, const char *p, size_t n, const char *whole,
                             size_t wlen)
{
    static const char resp[] = ".response";
    if (starts(p, n, "request")) {
        r->from = FROM_REQUEST;
        c->t->uses_request = 1;
        if (n == 7) return SG_OK;
        return compile_path(c, r, p + 8, n - 8, whole, wlen);
    }
    if (starts(p, n, "steps") && n > 6) {
        const char *name = p + 6, *end = memchr(name, '.', n - 6);
        size_t nlen = end ? (size_t)(end - name) : n - 6;
        size_t rest = n - 6 - nlen; /* ".response..." */
        if (nlen && rest >= sizeof resp - 1 && memcmp(end, resp, sizeof resp - 1) == 0 &&
            (rest == sizeof resp - 1 || end[sizeof resp - 1] == '.')) {
            size_t i = 0;
            while (i < c->t->nsteps &&
                   !(strlen(c->steps[i]) == nlen && memcmp(c->steps[i], name, nlen) == 0))
                i++;
            if (i == c->t->nsteps)
                return bad(c, "%s names a step that does not run before this one", whole, wlen);
            r->from = (int)i;
            c->t->uses_steps = 1;
            if (!c->t->names[i]) c->t->names[i] = sg_xstrdup(c->steps[i]);
            rest -= sizeof resp - 1;
            if (rest == 0) return SG_OK;
            return compile_path(c, r, end + sizeof resp, rest - 1, whole, wlen);
        }
    }
    return bad(c, "%s is neither ${request...} nor ${steps.<name>.response...}", whole, wlen);
}

/* A string with at least one "${": a reference alone or a splice. */
static sg_status compile_string(cctx *c, node *nd, const char *s, size_t n)
{
    size_t cap = 4, at = 0;
    nd->kind = N_SPLICE;
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
            piece *p = &nd->pieces[nd->n++];
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
        nd->kind = N_REF;
        nd->r = nd->pieces[0].r;
        free(nd->pieces);
        nd->pieces = NULL;
        nd->n = 0;
    }
    return SG_OK;
}

static sg_status compile_node(cctx *c, node *nd, const json_t *v, int *constant);

/* One member or element: the place grows by its key or index meanwhile. */
static sg_status compile_kid(cctx *c, node *nd, const json_t *v, const char *key, size_t i,
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

/* A container: its kids are compiled; constant ones become copies only if
 * some kid is not constant (else the caller copies the whole). */
static sg_status compile_container(cctx *c, node *nd, const json_t *v, int *constant)
{
    int obj = json_is_object(v);
    size_t n = obj ? json_object_size(v) : json_array_size(v), i = 0;
    int *kconst = sg_xcalloc(n, sizeof *kconst);
    sg_status st = SG_OK;
    nd->kind = obj ? N_OBJECT : N_ARRAY;
    nd->kids = sg_xcalloc(n, sizeof *nd->kids);
    nd->n = n;
    if (obj) {
        nd->keys = sg_xcalloc(n, sizeof *nd->keys);
        nd->keylen = sg_xcalloc(n, sizeof *nd->keylen);
    }
    void *it = obj ? json_object_iter((json_t *)v) : NULL;
    for (; i < n; i++) {
        const json_t *kv = obj ? json_object_iter_value(it) : json_array_get(v, i);
        if (obj) {
            nd->keylen[i] = json_object_iter_key_len(it);
            nd->keys[i] = sg_xmemdup(json_object_iter_key(it), nd->keylen[i]);
            it = json_object_iter_next((json_t *)v, it);
        }
        st = compile_kid(c, &nd->kids[i], kv, obj ? nd->keys[i] : NULL, i, &kconst[i]);
        if (st != SG_OK) goto done;
    }
    *constant = 1;
    for (i = 0; i < n; i++)
        *constant &= kconst[i];
    for (i = 0; i < n && !*constant; i++) {
        if (!kconst[i]) continue;
        nd->kids[i].kind = N_CONST;
        nd->kids[i].value = json_deep_copy(obj ? json_object_getn(v, nd->keys[i], nd->keylen[i])
                                               : json_array_get(v, i));
    }
done:
    free(kconst);
    return st;
}

/* Compiles v into nd, or only sets *constant when v names nothing (the
 * caller then keeps a copy of it). */
static sg_status compile_node(cctx *c, node *nd, const json_t *v, int *constant)
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
        t->root.kind = N_CONST;
        t->root.value = json_deep_copy(v);
    }
    *out = t;
    return SG_OK;
fail:
    sg_template_destroy(t);
    return st;
}

/* ---- rendering ---------------------------------------------------------- */

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
    if (from == FROM_REQUEST) {
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
static sg_status lookup(rctx *c, const ref *r, json_t **out)
{
    json_t *v;
    sg_status st = source(c, r->from, &v);
    for (size_t i = 0; st == SG_OK && v && i < r->nseg; i++) {
        const seg *s = &r->seg[i];
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

static sg_status render_splice(rctx *c, const node *nd, json_t **out)
{
    sg_buf b;
    sg_status st = SG_OK;
    sg_buf_init(&b, RENDER_MAX - c->spliced);
    for (size_t i = 0; i < nd->n && st == SG_OK; i++) {
        const piece *p = &nd->pieces[i];
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

static sg_status render_node(rctx *c, const node *nd, json_t **out)
{
    sg_status st = SG_OK;
    json_t *v = NULL;
    *out = NULL;
    switch (nd->kind) {
    case N_CONST:
        *out = json_incref(nd->value);
        return SG_OK;
    case N_REF:
        st = lookup(c, &nd->r, &v);
        if (st == SG_OK) *out = v ? json_incref(v) : json_null();
        return st;
    case N_SPLICE:
        return render_splice(c, nd, out);
    case N_ARRAY:
    case N_OBJECT:
        break;
    }
    json_t *all = nd->kind == N_ARRAY ? json_array() : json_object();
    for (size_t i = 0; i < nd->n && st == SG_OK; i++) {
        if ((st = render_node(c, &nd->kids[i], &v)) != SG_OK) break;
        int rc = nd->kind == N_ARRAY ? json_array_append_new(all, v)
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
