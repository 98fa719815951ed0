/* The API's door: on the first call for a request (headers read, body
 * not yet), every route needs a configured bearer token but /healthz,
 * /readyz and the files compiled into the binary (the API description,
 * /docs and the dashboard's pages: no saga data, and a browser opening a
 * page cannot send a Bearer header; their API calls carry it). Anything
 * else is answered 401 at once, before any body is read or any work is
 * queued. */
#include <string.h>
#include <strings.h>

#include "server_int.h"

typedef struct seen {
    const char *value; /* the first Authorization header's value */
    size_t count;
} seen;

static enum MHD_Result count_auth(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    seen *s = cls;
    (void)kind;
    if (key && strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0) {
        if (s->count++ == 0) s->value = value;
    }
    return MHD_YES;
}

static enum MHD_Result refuse(struct MHD_Connection *c, sg_auth_verdict v)
{
    static const char missing[] = "{\"detail\":\"Not authenticated: send Authorization: Bearer "
                                  "<token>\"}";
    static const char bad[] = "{\"detail\":\"Invalid bearer token\"}";
    const char *body = v == SG_AUTH_MISSING ? missing : bad;
    /* RFC 6750 §3: no error code when no credentials came at all. */
    const char *challenge = v == SG_AUTH_MISSING
                                ? "Bearer realm=\"sagad\""
                                : "Bearer realm=\"sagad\", error=\"invalid_token\"";
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") !=
            MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, challenge) != MHD_YES ||
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES)
        goto fail;
    ret = MHD_queue_response(c, MHD_HTTP_UNAUTHORIZED, resp);
fail:
    MHD_destroy_response(resp);
    return ret;
}

int sg__auth_gate(sg_api *a, struct MHD_Connection *c, sg_api_route_kind route,
                  enum MHD_Result *ret)
{
    if (!a->auth || route == SG_ROUTE_HEALTH || route == SG_ROUTE_READY ||
        route == SG_ROUTE_ASSET || route == SG_ROUTE_REDIRECT)
        return 0;
    seen s = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_auth, &s);
    sg_auth_verdict v = sg_auth_check(a->auth, s.value, s.count);
    if (v == SG_AUTH_ALLOW) return 0;
    *ret = refuse(c, v);
    return 1;
}
