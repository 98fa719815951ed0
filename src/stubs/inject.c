/* Injection specs: how a stub should misbehave, from a command-line flag,
 * a `_stub` JSON object, /_config or X-Stub-* headers. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stubs.h"

static const char *const svc_names[STUB_SVC_COUNT] = {"anonymizer", "tokenizer", "ai_model"};
static const char *const mode_names[] = {"json", "nonjson", "drop", "hang", "big"};

const char *stub_svc_name(stub_svc s)
{
    return (unsigned)s < STUB_SVC_COUNT ? svc_names[s] : "?";
}

const char *stub_mode_name(stub_mode m)
{
    return (unsigned)m < sizeof mode_names / sizeof *mode_names ? mode_names[m] : "?";
}

static int mode_from(const char *s, size_t n, stub_mode *out)
{
    for (size_t i = 0; i < sizeof mode_names / sizeof *mode_names; i++) {
        if (strlen(mode_names[i]) == n && memcmp(mode_names[i], s, n) == 0) {
            *out = (stub_mode)i;
            return 1;
        }
    }
    return 0;
}

/* Sets an integer field, range checked the same way for every source, so
 * a flag, a body and a header accept exactly the same values. 0 with err
 * set (and s unchanged) if v is out of range. */
static int set_int(stub_spec *s, const char *field, long long v, char *err, size_t errlen)
{
    if (strcmp(field, "status") == 0 && (v != 0 && (v < 200 || v > 599))) {
        snprintf(err, errlen, "status must be 200..599 (got %lld)", v);
        return 0;
    }
    if (strcmp(field, "delay_ms") == 0 && (v < 0 || v > STUB_MAX_DELAY_MS)) {
        snprintf(err, errlen, "delay_ms must be 0..%d (got %lld)", STUB_MAX_DELAY_MS, v);
        return 0;
    }
    if (strcmp(field, "fail_every") == 0 && (v < 0 || v > 1000000000)) {
        snprintf(err, errlen, "fail_every must be >= 0 (got %lld)", v);
        return 0;
    }
    if (strcmp(field, "status") == 0) {
        s->status = (int)v;
    } else if (strcmp(field, "delay_ms") == 0) {
        s->delay_ms = (int)v;
    } else if (strcmp(field, "fail_every") == 0) {
        s->fail_every = (int)v;
    } else {
        /* Found by tests/fuzz/fuzz_stubs.c: any other name used to set
         * fail_every, unchecked (a negative one included). */
        snprintf(err, errlen, "unknown field '%s' (status|delay_ms|mode|fail_every)", field);
        return 0;
    }
    return 1;
}

/* Maps the accepted spellings to the canonical field name. */
static const char *canon_field(const char *k, size_t n)
{
    static const struct {
        const char *alias, *field;
    } map[] = {
        {"status", "status"}, {"delay_ms", "delay_ms"},     {"delay", "delay_ms"},
        {"mode", "mode"},     {"fail_every", "fail_every"},
    };
    for (size_t i = 0; i < sizeof map / sizeof *map; i++)
        if (strlen(map[i].alias) == n && memcmp(map[i].alias, k, n) == 0) return map[i].field;
    return NULL;
}

sg_status stub_spec_apply_text(stub_spec *io, const char *field, const char *value, char *err,
                               size_t errlen)
{
    stub_spec s = *io;
    if (strcmp(field, "mode") == 0) {
        if (!mode_from(value, strlen(value), &s.mode)) {
            snprintf(err, errlen, "unknown mode '%s' (json|nonjson|drop|hang|big)", value);
            goto fail;
        }
    } else {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end != '\0') {
            snprintf(err, errlen, "%s: '%s' is not an integer", field, value);
            goto fail;
        }
        if (!set_int(&s, field, v, err, errlen)) goto fail;
    }
    *io = s;
    return SG_OK;
fail:
    return SG_EINVAL;
}

sg_status stub_spec_parse_flag(const char *text, stub_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char *copy = strdup(text), *save = NULL;
    if (!copy) goto fail;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        const char *field = eq ? canon_field(item, (size_t)(eq - item)) : NULL;
        if (!field) {
            snprintf(err, errlen, "bad item '%s' (want status=N, delay=MS, mode=M, fail_every=K)",
                     item);
            goto fail;
        }
        if (stub_spec_apply_text(out, field, eq + 1, err, errlen) != SG_OK) goto fail;
    }
    free(copy);
    return SG_OK;
fail:
    free(copy);
    memset(out, 0, sizeof *out);
    return SG_EINVAL;
}

sg_status stub_spec_apply_json(stub_spec *io, const json_t *obj, char *err, size_t errlen)
{
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "a stub spec must be a JSON object");
        goto fail;
    }
    stub_spec s = *io;
    const char *key;
    json_t *v;
    /* json_object_foreach wants a non-const object; it only reads. */
    json_object_foreach((json_t *)obj, key, v)
    {
        const char *field = canon_field(key, strlen(key));
        if (!field) {
            snprintf(err, errlen, "unknown stub field '%s'", key);
            goto fail;
        }
        if (strcmp(field, "mode") == 0) {
            if (json_is_null(v)) {
                s.mode = STUB_MODE_JSON;
            } else if (!json_is_string(v) ||
                       !mode_from(json_string_value(v), json_string_length(v), &s.mode)) {
                snprintf(err, errlen, "mode must be one of json|nonjson|drop|hang|big");
                goto fail;
            }
            continue;
        }
        long long n = 0;
        if (json_is_integer(v)) {
            n = json_integer_value(v);
        } else if (json_is_real(v)) {
            /* Bodies are parsed with JSON_DECODE_INT_AS_REAL as a fallback. */
            double d = json_real_value(v);
            if (d != floor(d) || d < -1e12 || d > 1e12) {
                snprintf(err, errlen, "%s must be an integer", key);
                goto fail;
            }
            n = (long long)d;
        } else if (!json_is_null(v)) {
            snprintf(err, errlen, "%s must be an integer", key);
            goto fail;
        }
        if (!set_int(&s, field, n, err, errlen)) goto fail;
    }
    *io = s;
    return SG_OK;
fail:
    return SG_EINVAL;
}

json_t *stub_spec_to_json(const stub_spec *s)
{
    return json_pack("{s:i, s:i, s:s, s:i}", "status", s->status ? s->status : 200, "delay_ms",
                     s->delay_ms, "mode", stub_mode_name(s->mode), "fail_every", s->fail_every);
}
