/* Pulsar broker endpoints: one per broker address, each with at most one
 * session (pulsar_conn.c) at a time. The service endpoint (the --bus
 * address) reconnects with jittered exponential backoff for as long as the
 * bus lives and backs /readyz; the others connect when a lookup or a
 * producer needs them, and their producers retry if they fail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "pulsar_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 10000u
#define MAX_ENDPOINTS 64 /* brokers a lookup may send us to, in all */

unsigned sg__pulsar_jitter(unsigned ms)
{
    return ms / 2 + (unsigned)(rand() % (int)(ms / 2 + 1));
}

static void on_retry(uv_timer_t *t)
{
    endpoint *ep = t->data;
    ep->retrying = 0;
    if (!ep->pb->closing && !ep->cur) ep->cur = sg__pc_start(ep);
}

endpoint *sg__ep_get(pulsar_bus *pb, const char *host, int port, int tls)
{
    endpoint *ep;
    size_t n = 0;
    DL_FOREACH(pb->eps, ep)
    {
        if (ep->port == port && ep->tls == tls && strcmp(ep->host, host) == 0) return ep;
        n++;
    }
    if (n >= MAX_ENDPOINTS) return NULL;
    ep = sg_xcalloc(1, sizeof *ep);
    ep->pb = pb;
    ep->host = sg_xstrdup(host);
    ep->port = port;
    ep->tls = tls;
    ep->backoff_ms = BACKOFF_MIN_MS;
    int v6 = strchr(host, ':') != NULL;
    char url[300];
    snprintf(url, sizeof url, "%s://%s%s%s:%d", tls ? "pulsar+ssl" : "pulsar", v6 ? "[" : "", host,
             v6 ? "]" : "", port);
    ep->url = sg_xstrdup(url);
    snprintf(ep->why, sizeof ep->why, "not connected yet");
    uv_timer_init(pb->loop, &ep->retry);
    ep->retry.data = ep;
    pb->live++;
    DL_APPEND(pb->eps, ep);
    return ep;
}

void sg__ep_want(endpoint *ep)
{
    if (ep->pb->closing || ep->cur || ep->retrying) return;
    ep->cur = sg__pc_start(ep);
}

int sg__ep_send(endpoint *ep, uint8_t *frame, size_t len, ppub *pub)
{
    if (!ep->ready || !sg__pc_ready(ep->cur)) {
        free(frame);
        return -1;
    }
    sg__pc_queue(ep->cur, frame, len, pub);
    return 0;
}

void sg__ep_fail(endpoint *ep, const char *why)
{
    if (ep->cur) sg__pc_close(ep->cur, why);
}

void sg__ep_up(endpoint *ep, size_t max_frame)
{
    ep->ready = 1;
    ep->max_frame = max_frame;
    ep->backoff_ms = BACKOFF_MIN_MS;
    ep->fails = 0;
    ep->why[0] = '\0';
    if (ep->service) sg__pulsar_health(ep->pb, 1, "");
    sg__pr_ep_ready(ep);
}

void sg__ep_down(endpoint *ep, const char *why)
{
    int was_ready = ep->ready;
    ep->cur = NULL;
    ep->ready = 0;
    snprintf(ep->why, sizeof ep->why, "%s", why);
    /* The first failure in a row is worth a warning; a broker that stays
     * down is retried quietly. */
    sg_log(was_ready || ep->fails == 0 ? SG_LOG_WARN : SG_LOG_DEBUG, "pulsar: %s: %s", ep->url,
           why);
    ep->fails++;
    if (ep->service) {
        unsigned wait = sg__pulsar_jitter(ep->backoff_ms);
        ep->backoff_ms = ep->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ep->backoff_ms * 2;
        ep->retrying = 1;
        uv_timer_start(&ep->retry, on_retry, wait, 0);
        char h[400];
        snprintf(h, sizeof h, "not connected to %s: %s (next attempt in %u ms)", ep->url, why,
                 wait);
        sg__pulsar_health(ep->pb, 0, h);
    }
    sg__pr_ep_down(ep);
}

static void on_ep_closed(uv_handle_t *h)
{
    endpoint *ep = h->data;
    pulsar_bus *pb = ep->pb;
    free(ep->host);
    free(ep->url);
    free(ep);
    sg__pulsar_unref(pb);
}

void sg__ep_close_all(pulsar_bus *pb)
{
    while (pb->eps) {
        endpoint *ep = pb->eps;
        DL_DELETE(pb->eps, ep);
        if (ep->cur) sg__pc_close(ep->cur, "closing");
        ep->cur = NULL;
        uv_close((uv_handle_t *)&ep->retry, on_ep_closed);
    }
    pb->service = NULL;
}
