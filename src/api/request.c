/* Pure request-parsing helpers of the HTTP API (see api_int.h). Everything
 * here reads bytes a peer sent, so every loop is bounded by the input and
 * nothing is copied into fixed buffers without a length check. */
#include "api_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "assets_int.h"
#include "sg/json.h"
#include "sg/records.h"

static int is_get(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

sg_api_route_kind sg_api_route(const char *method, const char *url, const char **id,
                               const char **allow)
{
    static const char saga_prefix[] = "/saga/";
    const char *dummy_id, *dummy_allow;
    if (!id) id = &dummy_id;
    if (!allow) allow = &dummy_allow;
    *id = NULL;
    *allow = NULL;
    if (!method || !url) return SG_ROUTE_NOT_FOUND;

    if (strcmp(url, "/saga") == 0) {
        if (strcmp(method, "POST") == 0) return SG_ROUTE_START;
        *allow = "POST";
        return SG_ROUTE_BAD_METHOD;
    }
    static const char sagas_prefix[] = "/sagas/";
    if (strncmp(url, sagas_prefix, sizeof sagas_prefix - 1) == 0 &&
        sg_api_type_valid(url + sizeof sagas_prefix - 1)) {
        if (strcmp(method, "POST") == 0) {
            *id = url + sizeof sagas_prefix - 1;
            return SG_ROUTE_START;
        }
        *allow = "POST";
        return SG_ROUTE_BAD_METHOD;
    }
    /* "/saga/<36-char id>/retry" and "/events/<36-char id>/redeliver" */
    static const struct {
        const char *prefix, *suffix;
        sg_api_route_kind kind;
    } ops[] = {
        {"/saga/", "/retry", SG_ROUTE_REDRIVE},
        {"/events/", "/redeliver", SG_ROUTE_REDELIVER},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        size_t pl = strlen(ops[i].prefix);
        if (strncmp(url, ops[i].prefix, pl) != 0 ||
            strlen(url) != pl + SG_ID_LEN + strlen(ops[i].suffix) ||
            strcmp(url + pl + SG_ID_LEN, ops[i].suffix) != 0)
            continue;
        if (strcmp(method, "POST") == 0) {
            *id = url + pl;
            return ops[i].kind;
        }
        *allow = "POST";
        return SG_ROUTE_BAD_METHOD;
    }
    if (strncmp(url, saga_prefix, sizeof saga_prefix - 1) == 0) {
        if (is_get(method)) {
            *id = url + sizeof saga_prefix - 1;
            return SG_ROUTE_GET;
        }
        *allow = "GET, HEAD";
        return SG_ROUTE_BAD_METHOD;
    }
    static const struct {
        const char *path;
        sg_api_route_kind kind;
    } reads[] = {
        {"/sagas", SG_ROUTE_LIST},
        {"/events", SG_ROUTE_EVENTS},
        {"/definitions", SG_ROUTE_DEFINITIONS},
        {"/healthz", SG_ROUTE_HEALTH},
        {"/readyz", SG_ROUTE_READY},
        {"/metrics", SG_ROUTE_METRICS},
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        if (strcmp(url, reads[i].path) != 0) continue;
        if (is_get(method)) return reads[i].kind;
        *allow = "GET, HEAD";
        return SG_ROUTE_BAD_METHOD;
    }
    int redirect = strcmp(url, "/ui") == 0;
    if (redirect || sg_asset_find(url)) {
        if (!is_get(method)) {
            *allow = "GET, HEAD";
            return SG_ROUTE_BAD_METHOD;
        }
        if (!redirect) return SG_ROUTE_ASSET;
        *allow = "/ui/";
        return SG_ROUTE_REDIRECT;
    }
    return SG_ROUTE_NOT_FOUND;
}

static int is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int sg_api_prefer_async(const char *value)
{
    static const char want[] = "respond-async";
    const size_t want_len = sizeof want - 1;
    const char *p = value;
    if (!p) return 0;
    while (*p) {
        /* One preference: skip leading space, take the token up to '=',
         * ';', ',' or space, then skip to the next top-level comma.
         * Quoted values may hold commas; honour quotes when skipping. */
        while (is_ows(*p) || *p == ',')
            p++;
        const char *tok = p;
        while (*p && *p != '=' && *p != ';' && *p != ',' && !is_ows(*p))
            p++;
        size_t n = (size_t)(p - tok);
        if (n == want_len && strncasecmp(tok, want, want_len) == 0) return 1;
        int quoted = 0;
        while (*p && (quoted || *p != ',')) {
            if (*p == '"')
                quoted = !quoted;
            else if (*p == '\\' && quoted && p[1])
                p++;
            p++;
        }
    }
    return 0;
}

int sg_api_idem_key_valid(const char *k)
{
    if (!k) return 0;
    size_t n = 0;
    for (; k[n]; n++) {
        if (n >= SG_API_IDEM_KEY_MAX) return 0;
        unsigned char c = (unsigned char)k[n];
        if (c < 0x20 || c > 0x7e) return 0;
    }
    return n > 0;
}

sg_status sg_api_parse_content_length(const char *v, uint64_t *out)
{
    uint64_t n = 0;
    if (!v || !*v) return SG_EINVAL;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9') return SG_EINVAL;
        unsigned d = (unsigned)(*p - '0');
        if (n > (UINT64_MAX - d) / 10) return SG_EINVAL;
        n = n * 10 + d;
    }
    *out = n;
    return SG_OK;
}

/* limit and after of a listing (both NULL or "" when absent). */
static sg_status parse_page(const char *limit, const char *after, sg_list_query *q, char *err,
                            size_t errlen)
{
    if (limit && *limit) {
        /* Digits only and at most 4 of them (after leading zeros) keeps
         * the arithmetic trivially in range. */
        const char *p = limit;
        while (*p == '0')
            p++;
        size_t nd = strspn(p, "0123456789");
        int ok = p[nd] == '\0' && nd <= 4;
        unsigned long v = 0;
        for (size_t i = 0; ok && i < nd; i++)
            v = v * 10 + (unsigned long)(p[i] - '0');
        if (!ok || v < 1 || v > SG_API_LIMIT_MAX) {
            snprintf(err, errlen, "limit must be an integer from 1 to %d", SG_API_LIMIT_MAX);
            return SG_EINVAL;
        }
        q->limit = v;
    }
    if (after && *after) {
        /* The store's cursors are shorter than SG_CURSOR_MAX; anything
         * longer cannot be one of ours. */
        if (strlen(after) >= SG_CURSOR_MAX) {
            snprintf(err, errlen, "malformed cursor in after");
            return SG_EINVAL;
        }
        q->after = after;
    }
    return SG_OK;
}

int sg_api_type_valid(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    return n >= 1 && n <= SG_API_TYPE_MAX &&
           strspn(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.") == n;
}

static sg_status parse_query(int events, const char *status, const char *limit, const char *after,
                             const char *type, sg_list_query *q, char *err, size_t errlen)
{
    q->status = -1;
    q->limit = SG_API_LIMIT_DEFAULT;
    q->after = NULL;
    q->type = NULL;
    if (type && *type) {
        if (!sg_api_type_valid(type)) {
            snprintf(err, errlen, "type must be 1 to %d of A-Z a-z 0-9 _ - .", SG_API_TYPE_MAX);
            goto fail;
        }
        q->type = type;
    }
    if (status && *status) {
        sg_saga_status ss;
        sg_event_status es;
        if (events ? sg_event_status_parse(status, &es) != SG_OK
                   : sg_saga_status_parse(status, &ss) != SG_OK) {
            snprintf(err, errlen,
                     events ? "status must be PENDING, DELIVERED, PARKED or WITHDRAWN"
                            : "status must be IN_PROGRESS, COMPLETED or FAILED");
            goto fail;
        }
        q->status = events ? (int)es : (int)ss;
    }
    if (parse_page(limit, after, q, err, errlen) == SG_OK) return SG_OK;
fail:
    q->status = -1;
    q->limit = SG_API_LIMIT_DEFAULT;
    q->after = NULL;
    q->type = NULL;
    return SG_EINVAL;
}

sg_status sg_api_parse_list_query(const char *status, const char *limit, const char *after,
                                  const char *type, sg_list_query *q, char *err, size_t errlen)
{
    return parse_query(0, status, limit, after, type, q, err, errlen);
}

sg_status sg_api_parse_event_query(const char *status, const char *limit, const char *after,
                                   sg_list_query *q, char *err, size_t errlen)
{
    return parse_query(1, status, limit, after, NULL, q, err, errlen);
}

sg_status sg_api_check_body(const char *body, size_t len, char *err, size_t errlen)
{
    if (sg_json_validate(body, len, err, errlen) != SG_OK) return SG_EINVAL;
    /* Valid JSON is an object exactly when its first non-blank byte is
     * '{', which spares a second parse. */
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
        i++;
    if (i < len && body[i] == '{') return SG_OK;
    snprintf(err, errlen, "the body must be a JSON object");
    return SG_ETYPE;
}
