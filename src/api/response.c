/* Queueing JSON answers on libmicrohttpd connections: one place sets the
 * headers every answer carries. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "render.h"
#include "server_int.h"
#include "sg/alloc.h"

#define DETAIL_MAX ((size_t)4096)

enum MHD_Result sg__send_json(struct MHD_Connection *c, unsigned status, char *body, size_t len,
                              const char *allow, const char *location)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") != MHD_YES)
        goto fail;
    if (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) goto fail;
    if (location && MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location) != MHD_YES)
        goto fail;
    /* Every 503 (shutting down, overloaded, store trouble, not ready) is
     * temporary: tell clients when to come back. */
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1") != MHD_YES)
        goto fail;
    ret = MHD_queue_response(c, status, resp);
    if (ret == MHD_YES) sg__metrics_answered(status);
fail:
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result sg__send_literal(struct MHD_Connection *c, unsigned status, const char *json)
{
    return sg__send_json(c, status, sg_xstrdup(json), strlen(json), NULL, NULL);
}

enum MHD_Result sg__send_buf(struct MHD_Connection *c, unsigned status, sg_buf *b,
                             const char *location)
{
    size_t len;
    char *body = sg_buf_take(b, &len);
    return sg__send_json(c, status, body, len, NULL, location);
}

enum MHD_Result sg__send_detail(struct MHD_Connection *c, unsigned status, const char *msg,
                                const char *allow)
{
    sg_buf b;
    sg_buf_init(&b, DETAIL_MAX + 6 * strlen(msg)); /* an escape is at most 6 bytes */
    if (sg_render_detail(&b, msg) != SG_OK) {
        sg_buf_reset(&b);
        sg_render_detail(&b, "error");
    }
    size_t len;
    char *body = sg_buf_take(&b, &len);
    return sg__send_json(c, status, body, len, allow, NULL);
}

enum MHD_Result sg__send_detailf(struct MHD_Connection *c, unsigned status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return sg__send_detail(c, status, msg, NULL);
}

enum MHD_Result sg__send_asset(struct MHD_Connection *c, const sg_asset *f)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    static const char *const headers[][2] = {
        {MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache"},
        {"X-Content-Type-Options", "nosniff"},
        {"Content-Security-Policy",
         "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"},
    };
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, f->mime) != MHD_YES) goto fail;
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++)
        if (MHD_add_response_header(resp, headers[i][0], headers[i][1]) != MHD_YES) goto fail;
    ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    if (ret == MHD_YES) sg__metrics_answered(MHD_HTTP_OK);
fail:
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result sg__send_redirect(struct MHD_Connection *c, const char *location)
{
    static const char body[] = "{\"detail\":\"Moved\"}";
    return sg__send_json(c, MHD_HTTP_PERMANENT_REDIRECT, sg_xstrdup(body), sizeof body - 1, NULL,
                         location);
}
