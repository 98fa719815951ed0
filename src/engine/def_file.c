/* The definitions file (design §6): its top level and each saga type,
 * checked into sg_def values with the first error named by its place;
 * the steps are def_step.c's. */
#include "def_file_int.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sg/alloc.h"

#define MAX_SAGAS 32
#define MAX_RESULT 256
#define SUCCESS_TEXT "Saga completada exitosamente"

sg_status sg__def_fail(sg__dctx *c, const char *place, const char *fmt, ...)
{
    if (!c->err || !c->errlen) return SG_EINVAL;
    int n = place[0] ? snprintf(c->err, c->errlen, "%s: ", place) : 0;
    if (n >= 0 && (size_t)n < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return SG_EINVAL;
}

const char *sg__def_show(const char *s, size_t n, char out[SG__SHOW_MAX])
{
    size_t take = n > 64 ? 64 : n;
    if (take < n) /* do not cut a UTF-8 sequence: back off its continuation bytes */
        while (take > 0 && ((unsigned char)s[take] & 0xc0) == 0x80)
            take--;
    for (size_t i = 0; i < take; i++)
        out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    strcpy(out + take, take < n ? "..." : "");
    return out;
}

const char *sg__def_at(char out[SG__PLACE_MAX], const char *place, const char *key)
{
    char shown[SG__SHOW_MAX];
    snprintf(out, SG__PLACE_MAX, "%s%s%s", place, place[0] ? "." : "",
             sg__def_show(key, strlen(key), shown));
    return out;
}

sg_status sg__def_keys(sg__dctx *c, const char *place, const json_t *o, const char *const *keys)
{
    for (void *it = json_object_iter((json_t *)o); it;
         it = json_object_iter_next((json_t *)o, it)) {
        const char *k = json_object_iter_key(it);
        const char *const *ok = keys;
        while (*ok && strcmp(*ok, k) != 0)
            ok++;
        if (!*ok) {
            char at[SG__PLACE_MAX];
            return sg__def_fail(c, sg__def_at(at, place, k), "unknown key");
        }
    }
    return SG_OK;
}

int sg__def_name_ok(const char *s, size_t n, size_t max)
{
    static const char ok[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
    if (n < 1 || n > max) return 0;
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(ok, s[i])) return 0;
    return 1;
}

sg_status sg__def_int(sg__dctx *c, const char *place, const json_t *o, const char *key,
                      long long min, long long max, int required, long long *out)
{
    char at[SG__PLACE_MAX];
    const json_t *v = json_object_get(o, key);
    sg__def_at(at, place, key);
    if (!v) return required ? sg__def_fail(c, at, "missing") : SG_OK;
    if (!json_is_integer(v)) return sg__def_fail(c, at, "expected an integer");
    long long x = json_integer_value(v);
    if (x < min || x > max) return sg__def_fail(c, at, "must be %lld to %lld", min, max);
    *out = x;
    return SG_OK;
}

sg_status sg__def_str(sg__dctx *c, const char *place, const json_t *o, const char *key, size_t max,
                      int required, const json_t **out)
{
    char at[SG__PLACE_MAX];
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    sg__def_at(at, place, key);
    if (!v) return required ? sg__def_fail(c, at, "missing") : SG_OK;
    if (!json_is_string(v)) return sg__def_fail(c, at, "expected a string");
    if (json_string_length(v) > max) return sg__def_fail(c, at, "longer than %zu bytes", max);
    *out = v;
    return SG_OK;
}

/* One saga type: o is its object, place "sagas.<name>". */
static sg_status parse_saga(sg__dctx *c, const char *name, const json_t *o, const char *place,
                            sg_def **out)
{
    static const char *const keys[] = {"version", "steps", "result", NULL};
    char at[SG__PLACE_MAX];
    sg_def *d = NULL;
    const json_t *result, *steps;
    long long version = 0;
    sg_status st;
    *out = NULL;
    if (!json_is_object(o)) return sg__def_fail(c, place, "expected an object");
    if ((st = sg__def_keys(c, place, o, keys)) != SG_OK) return st;
    if ((st = sg__def_int(c, place, o, "version", 1, INT_MAX, 1, &version)) != SG_OK) return st;
    if ((st = sg__def_str(c, place, o, "result", MAX_RESULT, 0, &result)) != SG_OK) return st;
    steps = json_object_get(o, "steps");
    sg__def_at(at, place, "steps");
    if (!steps) return sg__def_fail(c, at, "missing");
    if (!json_is_array(steps)) return sg__def_fail(c, at, "expected an array");
    if (json_array_size(steps) == 0) return sg__def_fail(c, at, "no steps");
    if (json_array_size(steps) > SG_DEF_MAX_STEPS)
        return sg__def_fail(c, at, "more than %d steps", SG_DEF_MAX_STEPS);

    d = sg_xcalloc(1, sizeof *d);
    d->name = sg_xstrdup(name);
    d->version = (int)version;
    d->success_text = sg_xstrdup(result ? json_string_value(result) : SUCCESS_TEXT);
    if ((st = sg__def_steps(c, place, steps, d)) != SG_OK) goto fail;
    /* Before any ${ENV} is expanded: o is the text as written. */
    d->canonical = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    if (!d->canonical) {
        st = SG_ENOMEM;
        sg__def_fail(c, place, "out of memory");
        goto fail;
    }
    *out = d;
    return SG_OK;
fail:
    sg_def_destroy(d);
    return st;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n", s[i]) || !s[i]) return 0;
    return 1;
}

/* text as one JSON value, duplicate keys refused; place prefixes errors. */
static json_t *load(sg__dctx *c, const char *place, const char *text, size_t len)
{
    json_error_t je;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (v) return v;
    if (json_error_code(&je) == json_error_null_character) /* not jansson's flag name */
        snprintf(je.text, sizeof je.text, "\\u0000 is not allowed in the file");
    sg__def_fail(c, place, "line %d, column %d: %s", je.line, je.column, je.text);
    return v;
}

/* The file up to the saga types: *root is the document (the caller's to
 * release, even on failure), *sagas its "sagas" object. */
static sg_status top_level(sg__dctx *c, const char *text, size_t len, json_t **root,
                           const json_t **sagas)
{
    static const char *const keys[] = {"sagas", "default", NULL};
    if (!text || blank(text, len)) return sg__def_fail(c, "", "the file is empty");
    const char *nul = memchr(text, '\0', len); /* jansson would call it the end of the file */
    if (nul)
        return sg__def_fail(c, "", "the file has a NUL byte at offset %zu", (size_t)(nul - text));
    if (!(*root = load(c, "", text, len))) return SG_EINVAL;
    if (!json_is_object(*root)) return sg__def_fail(c, "", "the file is not a JSON object");
    sg_status st = sg__def_keys(c, "", *root, keys);
    if (st != SG_OK) return st;
    *sagas = json_object_get(*root, "sagas");
    if (!*sagas) return sg__def_fail(c, "sagas", "missing");
    if (!json_is_object(*sagas)) return sg__def_fail(c, "sagas", "expected an object");
    if (json_object_size(*sagas) == 0) return sg__def_fail(c, "sagas", "no saga types");
    if (json_object_size(*sagas) > MAX_SAGAS)
        return sg__def_fail(c, "sagas", "more than %d saga types", MAX_SAGAS);
    return SG_OK;
}

/* Where the type "default" names is in defs[0..count): 0 when absent. */
static sg_status find_default(sg__dctx *c, const json_t *root, sg_def *const *defs, size_t count,
                              size_t *first)
{
    const json_t *dname = json_object_get(root, "default");
    char shown[SG__SHOW_MAX];
    *first = 0;
    if (!dname) return SG_OK;
    if (!json_is_string(dname)) return sg__def_fail(c, "default", "expected a string");
    while (*first < count && strcmp(defs[*first]->name, json_string_value(dname)) != 0)
        (*first)++;
    if (*first < count) return SG_OK;
    return sg__def_fail(c, "default", "\"%s\" is not a saga in this file",
                        sg__def_show(json_string_value(dname), json_string_length(dname), shown));
}

sg_status sg_defs_parse(const char *text, size_t len, const sg_def_defaults *dflt, sg_def ***out,
                        size_t *n, char *err, size_t errlen)
{
    sg__dctx c = {err, errlen, dflt ? dflt->retry : SG_RETRY_DEFAULT};
    sg_def **defs = NULL;
    size_t count = 0, first;
    json_t *root = NULL;
    const json_t *sagas = NULL;
    sg_status st;
    *out = NULL;
    *n = 0;
    if (err && errlen) err[0] = '\0';
    if ((st = top_level(&c, text, len, &root, &sagas)) != SG_OK) goto fail;
    defs = sg_xcalloc(json_object_size(sagas), sizeof *defs);
    for (void *it = json_object_iter((json_t *)sagas); it;
         it = json_object_iter_next((json_t *)sagas, it)) {
        const char *k = json_object_iter_key(it);
        char at[SG__PLACE_MAX];
        sg__def_at(at, "sagas", k);
        if (!sg__def_name_ok(k, strlen(k), SG_DEF_MAX_NAME)) {
            st = sg__def_fail(&c, at, "a type name must be 1 to %d of A-Z a-z 0-9 _ . -",
                              SG_DEF_MAX_NAME);
            goto fail;
        }
        if ((st = parse_saga(&c, k, json_object_iter_value(it), at, &defs[count])) != SG_OK)
            goto fail;
        count++;
    }
    if ((st = find_default(&c, root, defs, count, &first)) != SG_OK) goto fail;
    /* The default type first, the others in file order. */
    sg_def *head = defs[first];
    memmove(defs + 1, defs, first * sizeof *defs);
    defs[0] = head;
    json_decref(root);
    *out = defs;
    *n = count;
    return SG_OK;
fail:
    for (size_t i = 0; i < count; i++)
        sg_def_destroy(defs[i]);
    free(defs);
    json_decref(root);
    return st;
}

sg_status sg_def_parse_one(const char *name, const char *canonical, const sg_def_defaults *dflt,
                           sg_def **out, char *err, size_t errlen)
{
    sg__dctx c = {err, errlen, dflt ? dflt->retry : SG_RETRY_DEFAULT};
    char at[SG__PLACE_MAX];
    json_t *o = NULL;
    sg_status st = SG_EINVAL;
    *out = NULL;
    if (err && errlen) err[0] = '\0';
    sg__def_at(at, "sagas", name ? name : "");
    if (!name || !sg__def_name_ok(name, strlen(name), SG_DEF_MAX_NAME))
        st = sg__def_fail(&c, at, "a type name must be 1 to %d of A-Z a-z 0-9 _ . -",
                          SG_DEF_MAX_NAME);
    else if (!canonical || blank(canonical, strlen(canonical)))
        st = sg__def_fail(&c, at, "empty definition");
    else if ((o = load(&c, at, canonical, strlen(canonical))))
        st = parse_saga(&c, name, o, at, out);
    json_decref(o);
    return st;
}
