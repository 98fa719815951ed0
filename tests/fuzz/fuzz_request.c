/* libFuzzer target for the API's request parsing: routes, Prefer,
 * Idempotency-Key, Content-Length and the GET /sagas and /events queries.
 * The input is split on '\n' into method, url, prefer, key,
 * content-length, status, limit, after. Nothing may crash, and every
 * accepted value must satisfy the documented bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"

static char *field(const uint8_t **p, const uint8_t *end)
{
    const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
    const uint8_t *stop = nl ? nl : end;
    size_t n = (size_t)(stop - *p);
    char *s = malloc(n + 1);
    memcpy(s, *p, n);
    s[n] = '\0'; /* an embedded NUL just ends the C string early, as with MHD */
    *p = nl ? nl + 1 : end;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data, *end = data + size;
    char *f[8];
    for (int i = 0; i < 8; i++)
        f[i] = field(&p, end);

    const char *id = NULL, *allow = NULL;
    sg_api_route_kind k = sg_api_route(f[0], f[1], &id, &allow);
    if (k == SG_ROUTE_GET && (!id || id < f[1] || id > f[1] + strlen(f[1]))) abort();
    if (k == SG_ROUTE_BAD_METHOD && !allow) abort();

    (void)sg_api_prefer_async(f[2]);
    if (sg_api_idem_key_valid(f[3])) {
        size_t n = strlen(f[3]);
        if (n < 1 || n > SG_API_IDEM_KEY_MAX) abort();
        for (size_t i = 0; i < n; i++)
            if (f[3][i] < 0x20 || f[3][i] > 0x7e) abort();
    }
    uint64_t cl;
    (void)sg_api_parse_content_length(f[4], &cl);

    sg_list_query q;
    char err[128];
    if (sg_api_parse_list_query(f[5], f[6], f[7], f[3], &q, err, sizeof err) == SG_OK) {
        if (q.limit < 1 || q.limit > SG_API_LIMIT_MAX) abort();
        if (q.status < -1 || q.status > 2) abort();
    } else if (!err[0]) {
        abort(); /* a refusal always says why */
    }
    /* GET /events reads the same three arguments with outbox statuses. */
    err[0] = '\0';
    if (sg_api_parse_event_query(f[5], f[6], f[7], &q, err, sizeof err) == SG_OK) {
        if (q.limit < 1 || q.limit > SG_API_LIMIT_MAX) abort();
    } else if (!err[0]) {
        abort();
    }
    for (int i = 0; i < 8; i++)
        free(f[i]);
    return 0;
}
