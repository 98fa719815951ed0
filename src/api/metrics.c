/* GET /metrics (design §7) and the count of every answer by route template
 * and status code (sagad_http_requests_total). The counters themselves are
 * sg/metrics.h's; this file names routes and reads the outbox counts. */
#include <stdlib.h>
#include <string.h>

#include "server_int.h"
#include "sg/metrics.h"
#include "sg/records.h"

#define METRICS_MAX ((size_t)16 << 20) /* far above what the bounded tables render */

/* The route this MHD thread answers now: a static template, so the label
 * set is bounded whatever paths clients send. */
static _Thread_local const char *current = "other";

static const char *label_of(sg_api_route_kind route, const char *url, const char *id)
{
    switch (route) {
    case SG_ROUTE_START:
        return id ? "/sagas/{type}" : "/saga";
    case SG_ROUTE_GET:
        return "/saga/{id}";
    case SG_ROUTE_LIST:
        return "/sagas";
    case SG_ROUTE_HEALTH:
        return "/healthz";
    case SG_ROUTE_READY:
        return "/readyz";
    case SG_ROUTE_REDRIVE:
        return "/saga/{id}/retry";
    case SG_ROUTE_EVENTS:
        return "/events";
    case SG_ROUTE_REDELIVER:
        return "/events/{id}/redeliver";
    case SG_ROUTE_DEFINITIONS:
        return "/definitions";
    case SG_ROUTE_ASSET: {
        const sg_asset *f = sg_asset_find(url); /* the files compiled in: a fixed set */
        return f ? f->path : "other";
    }
    case SG_ROUTE_REDIRECT:
        return "/ui";
    case SG_ROUTE_METRICS:
        return "/metrics";
    case SG_ROUTE_BAD_METHOD:
    case SG_ROUTE_NOT_FOUND:
    default:
        return "other";
    }
}

void sg__metrics_route(sg_api_route_kind route, const char *url, const char *id, const char *allow)
{
    if (route == SG_ROUTE_BAD_METHOD) {
        /* A 405 counts under the path's route: route it again with a
         * method it takes (allow is "POST" or "GET, HEAD"). */
        const char *ok = allow && strncmp(allow, "POST", 4) == 0 ? "POST" : "GET";
        const char *id2 = NULL, *allow2 = NULL;
        route = sg_api_route(ok, url, &id2, &allow2);
        id = id2;
        if (route == SG_ROUTE_BAD_METHOD || route == SG_ROUTE_REDIRECT) route = SG_ROUTE_NOT_FOUND;
    }
    current = label_of(route, url, id);
}

void sg__metrics_answered(unsigned code)
{
    sg_metrics_http(current, code);
}

enum MHD_Result sg__serve_metrics(sg_api *a, struct MHD_Connection *c)
{
    char err[256];
    uint64_t counts[SG_EVENT_STATUSES];
    sg_metrics_outbox ob[SG_EVENT_STATUSES];
    size_t nob = 0;
    /* One grouped count of the outbox per scrape, on this thread's reader:
     * the store's truth (also what other sagad sharing it changed), and
     * nothing on the saga path. A store that cannot count, or cannot be
     * read now, leaves the family out rather than report a wrong value. */
    sg_store_reader *r = sg__api_reader(a, err, sizeof err);
    if (r && sg_store_count_events(r, counts) == SG_OK)
        for (int s = 0; s < SG_EVENT_STATUSES; s++)
            ob[nob++] = (sg_metrics_outbox){sg_event_status_name((sg_event_status)s), counts[s]};

    sg_buf b;
    sg_buf_init(&b, METRICS_MAX);
    if (sg_metrics_render(&b, ob, nob) != SG_OK) {
        sg_buf_free(&b);
        return sg__send_detail(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "metrics too large", NULL);
    }
    size_t len;
    char *body = sg_buf_take(&b, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, body, free);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    enum MHD_Result ret = MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, SG_METRICS_CONTENT_TYPE) ==
            MHD_YES &&
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") == MHD_YES)
        ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
    if (ret == MHD_YES) sg__metrics_answered(MHD_HTTP_OK);
    MHD_destroy_response(resp);
    return ret;
}
