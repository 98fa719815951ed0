/* libFuzzer target for what sta-stubs parses (it ships with sagad, so its
 * parsers are ours too): injection specs from the command line
 * (status=N,delay=MS,mode=M,fail_every=K), from headers (one field) and
 * from JSON (_stub objects, POST /_config), and request paths. The input
 * is split on '\n': spec flag, header field, header value, JSON, path.
 * Accepted specs stay within their bounds; a refusal leaves the spec as it
 * was and says why. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stubs/server_int.h"
#include "stubs/stubs.h"

static char *field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const uint8_t *stop = nl ? nl : end;
    size_t n = (size_t)(stop - *p);
    char *s = malloc(n + 1);
    memcpy(s, *p, n);
    s[n] = '\0';
    *p = nl ? nl + 1 : end;
    return s;
}

static void bounded(const stub_spec *s)
{
    if (s->status != 0 && (s->status < 100 || s->status > 599)) abort();
    if (s->delay_ms < 0 || s->delay_ms > STUB_MAX_DELAY_MS) abort();
    if (s->mode < STUB_MODE_JSON || s->mode > STUB_MODE_BIG) abort();
    if (s->fail_every < 0) abort();
    json_t *j = stub_spec_to_json(s);
    if (!j) abort();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char *f[5];
    for (int i = 0; i < 5; i++)
        f[i] = field(&p, end);
    char err[512];

    stub_spec s, before;
    err[0] = '\0';
    if (stub_spec_parse_flag(f[0], &s, err, sizeof err) == SG_OK)
        bounded(&s);
    else if (!err[0])
        abort();
    memset(&s, 0, sizeof s);

    before = s;
    err[0] = '\0';
    if (stub_spec_apply_text(&s, f[1], f[2], err, sizeof err) == SG_OK)
        bounded(&s);
    else if (!err[0] || memcmp(&s, &before, sizeof s) != 0)
        abort();

    json_error_t je;
    json_t *j = json_loads(f[3], JSON_DECODE_ANY, &je);
    if (j && json_is_object(j)) {
        before = s;
        err[0] = '\0';
        if (stub_spec_apply_json(&s, j, err, sizeof err) == SG_OK)
            bounded(&s);
        else if (!err[0] || memcmp(&s, &before, sizeof s) != 0)
            abort();
    }
    json_decref(j);

    char name[STUB_NAME_MAX + 1];
    route r = stub__route_of(f[4], name);
    if (r == R_SVC && strlen(name) > STUB_NAME_MAX) abort();
    for (int i = 0; i < 5; i++)
        free(f[i]);
    return 0;
}
