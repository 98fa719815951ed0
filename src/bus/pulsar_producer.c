/* Pulsar producers: one per event topic (LOOKUP with redirects, PRODUCER,
 * re-created after CLOSE_PRODUCER, an error or a lost session), sequence
 * ids that survive reconnects, receipts and send errors.
 *
 * A publish gets its sequence id when it is first sent on a ready producer
 * and keeps it: after a reconnect the publishes still outstanding are sent
 * again, in order, with the same ids, so that a broker with deduplication
 * drops those it already stored. A cancelled publish leaves every list at
 * once and is never sent again. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "pulsar_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

#define BACKOFF_MIN_MS 100u
#define BACKOFF_MAX_MS 10000u
#define MAX_REDIRECTS 8

static void request(producer *pr);

/* ------------------------------------------------------------ producers */

static void on_pr_retry(uv_timer_t *t)
{
    producer *pr = t->data;
    pr->state = PR_IDLE;
    if (pr->waiting || pr->sent) {
        pr->state = PR_LOOKUP;
        pr->ep = pr->pb->service;
        pr->authoritative = 0;
        pr->redirects = 0;
        request(pr);
    }
}

/* The producer is not usable: its publishes wait for the retry (or fail
 * now if the reason is permanent). Frames not yet written are taken back;
 * the retry sends them again. */
static void pr_fail(producer *pr, int permanent, const char *why)
{
    pulsar_bus *pb = pr->pb;
    snprintf(pr->why, sizeof pr->why, "%s", why);
    sg_log(SG_LOG_WARN, "pulsar: %s: %s", pr->topic, why);
    pr->state = PR_BACKOFF;
    pr->req_id = 0;
    ppub *p, *tmp;
    DL_FOREACH(pr->sent, p)
    {
        sg__pc_unqueue(p);
    }
    if (permanent) {
        DL_FOREACH_SAFE(pr->sent, p, tmp)
        {
            sg__pub_finish(pb, p, SG_EREFUSED, "pulsar: %s", why);
        }
        DL_FOREACH_SAFE(pr->waiting, p, tmp)
        {
            sg__pub_finish(pb, p, SG_EREFUSED, "pulsar: %s", why);
        }
    }
    unsigned wait = sg__pulsar_jitter(pr->backoff_ms);
    pr->backoff_ms = pr->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : pr->backoff_ms * 2;
    uv_timer_start(&pr->retry, on_pr_retry, wait, 0);
}

/* A LOOKUP or PRODUCER without an answer: try again from the lookup. */
static void on_request_timeout(uv_timer_t *t)
{
    producer *pr = t->data;
    if (pr->req_id == 0 || (pr->state != PR_LOOKUP && pr->state != PR_CREATING)) return;
    char why[128];
    snprintf(why, sizeof why, "no answer to %s within %u ms",
             pr->state == PR_LOOKUP ? "LOOKUP" : "PRODUCER", pr->pb->o.connect_timeout_ms);
    pr_fail(pr, 0, why);
}

/* Sends the request of pr's state (LOOKUP or PRODUCER) once pr->ep is
 * ready; until then the endpoint connects and sg__pr_ep_ready calls back.
 * The retry timer watches for the answer meanwhile. */
static void request(producer *pr)
{
    pulsar_bus *pb = pr->pb;
    endpoint *ep = pr->ep;
    pr->req_id = 0;
    if (!ep->ready) {
        sg__ep_want(ep);
        return;
    }
    pcmd cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    Pulsar__Proto__CommandLookupTopic lk = PULSAR__PROTO__COMMAND_LOOKUP_TOPIC__INIT;
    Pulsar__Proto__CommandProducer mk = PULSAR__PROTO__COMMAND_PRODUCER__INIT;
    pr->req_id = ++pb->next_req;
    if (pr->state == PR_LOOKUP) {
        cmd.type = PULSAR__PROTO__BASE_COMMAND__TYPE__LOOKUP;
        cmd.lookuptopic = &lk;
        lk.topic = pr->topic;
        lk.request_id = pr->req_id;
        lk.has_authoritative = 1;
        lk.authoritative = pr->authoritative;
    } else {
        cmd.type = PULSAR__PROTO__BASE_COMMAND__TYPE__PRODUCER;
        cmd.producer = &mk;
        mk.topic = pr->topic;
        mk.producer_id = pr->id;
        mk.request_id = pr->req_id;
        mk.producer_name = pb->o.producer;
    }
    size_t len;
    uint8_t *f = sg__pf_encode(&cmd, &len);
    sg__ep_send(ep, f, len, NULL);
    uv_timer_start(&pr->retry, on_request_timeout, pb->o.connect_timeout_ms, 0);
}

/* Sends (again) a publish that has its sequence id. */
static void send_pub(producer *pr, ppub *p)
{
    pulsar_bus *pb = pr->pb;
    Pulsar__Proto__KeyValue kv[5] = {PULSAR__PROTO__KEY_VALUE__INIT, PULSAR__PROTO__KEY_VALUE__INIT,
                                     PULSAR__PROTO__KEY_VALUE__INIT, PULSAR__PROTO__KEY_VALUE__INIT,
                                     PULSAR__PROTO__KEY_VALUE__INIT};
    Pulsar__Proto__KeyValue *props[5] = {&kv[0], &kv[1], &kv[2], &kv[3], &kv[4]};
    size_t nprops = 3;
    kv[0].key = "event_id";
    kv[0].value = p->event_id;
    kv[1].key = "saga_id";
    kv[1].value = p->saga_id;
    kv[2].key = "topic";
    kv[2].value = pr->evtopic;
    if (p->trace.parent[0]) {
        kv[nprops].key = "traceparent";
        kv[nprops++].value = p->trace.parent;
    }
    if (p->trace.state[0]) {
        kv[nprops].key = "tracestate";
        kv[nprops++].value = p->trace.state;
    }
    pmeta md = PULSAR__PROTO__MESSAGE_METADATA__INIT;
    md.producer_name = pr->name;
    md.sequence_id = p->seq;
    md.publish_time = p->publish_ms;
    md.n_properties = nprops;
    md.properties = props;
    md.partition_key = p->saga_id;
    Pulsar__Proto__CommandSend sd = PULSAR__PROTO__COMMAND_SEND__INIT;
    sd.producer_id = pr->id;
    sd.sequence_id = p->seq;
    pcmd cmd = PULSAR__PROTO__BASE_COMMAND__INIT;
    cmd.type = PULSAR__PROTO__BASE_COMMAND__TYPE__SEND;
    cmd.send = &sd;
    size_t len;
    uint8_t *f = sg__pf_encode_payload(&cmd, &md, p->payload, p->len, &len);
    if (len > pr->ep->max_frame + 4) {
        free(f);
        sg__pub_finish(pb, p, SG_ETOOBIG,
                       "pulsar: event of %zu bytes is over the broker's limit (%zu)", p->len,
                       pr->ep->max_frame - PF_PADDING);
        return;
    }
    sg__ep_send(pr->ep, f, len, p);
}

/* Gives the waiting publishes their sequence ids and sends them. */
static void send_waiting(producer *pr)
{
    while (pr->waiting && pr->state == PR_READY) {
        ppub *p = pr->waiting;
        DL_DELETE(pr->waiting, p);
        p->seq = pr->next_seq++;
        p->publish_ms = (uint64_t)(sg_now_us() / 1000);
        p->where = PUB_SENT;
        DL_APPEND(pr->sent, p);
        send_pub(pr, p);
    }
}

producer *sg__pr_get(pulsar_bus *pb, const char *evtopic)
{
    producer *pr;
    DL_FOREACH(pb->producers, pr)
    {
        if (strcmp(pr->evtopic, evtopic) == 0) return pr;
    }
    pr = sg_xcalloc(1, sizeof *pr);
    pr->pb = pb;
    pr->evtopic = sg_xstrdup(evtopic);
    size_t n = strlen(pb->o.tenant) + strlen(pb->o.ns) + strlen(evtopic) + 32;
    pr->topic = sg_xmalloc(n);
    snprintf(pr->topic, n, "persistent://%s/%s/%s", pb->o.tenant, pb->o.ns, evtopic);
    pr->id = ++pb->next_producer;
    pr->backoff_ms = BACKOFF_MIN_MS;
    pr->name = sg_xstrdup(pb->o.producer);
    uv_timer_init(pb->loop, &pr->retry);
    pr->retry.data = pr;
    pb->live++;
    DL_APPEND(pb->producers, pr);
    return pr;
}

void sg__pr_publish(producer *pr, ppub *p)
{
    p->pr = pr;
    p->where = PUB_WAITING;
    DL_APPEND(pr->waiting, p);
    sg__pub_track(pr->pb, p);
    if (pr->state == PR_READY) {
        send_waiting(pr);
    } else if (pr->state == PR_IDLE) {
        pr->state = PR_LOOKUP;
        pr->ep = pr->pb->service;
        pr->authoritative = 0;
        pr->redirects = 0;
        request(pr);
    }
}

/* ------------------------------------------------------- endpoint events */

void sg__pr_ep_ready(endpoint *ep)
{
    producer *pr;
    DL_FOREACH(ep->pb->producers, pr)
    {
        if (pr->ep == ep && pr->req_id == 0 && (pr->state == PR_LOOKUP || pr->state == PR_CREATING))
            request(pr);
    }
}

void sg__pr_ep_down(endpoint *ep)
{
    producer *pr;
    char why[400];
    DL_FOREACH(ep->pb->producers, pr)
    {
        if (pr->ep != ep || pr->state < PR_LOOKUP) continue;
        if (pr->state == PR_LOOKUP && pr->req_id == 0 && ep->service) continue; /* waits */
        snprintf(why, sizeof why, "connection to %s lost: %s", ep->url, ep->why);
        pr_fail(pr, 0, why);
    }
}

/* ------------------------------------------------------------- responses */

static producer *by_request(pulsar_bus *pb, endpoint *ep, uint64_t req)
{
    producer *pr;
    DL_FOREACH(pb->producers, pr)
    {
        if (pr->ep == ep && pr->req_id == req && req != 0) return pr;
    }
    return NULL;
}

static producer *by_id(pulsar_bus *pb, endpoint *ep, uint64_t id)
{
    producer *pr;
    DL_FOREACH(pb->producers, pr)
    {
        if (pr->id == id) return pr->ep == ep && pr->state == PR_READY ? pr : NULL;
    }
    return NULL;
}

static ppub *by_seq(producer *pr, uint64_t seq)
{
    ppub *p;
    DL_FOREACH(pr->sent, p)
    {
        if (p->seq == seq) return p;
    }
    return NULL;
}

static void on_lookup(producer *pr, const Pulsar__Proto__CommandLookupTopicResponse *r)
{
    pulsar_bus *pb = pr->pb;
    char why[512], eb[32];
    int type = r->has_response ? (int)r->response : -1;
    if (type == PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Failed || type < 0) {
        int err = r->has_error ? (int)r->error : PULSAR__PROTO__SERVER_ERROR__UnknownError;
        snprintf(why, sizeof why, "lookup failed: %s: %s", sg__pf_error_name(err, eb),
                 r->message ? r->message : "");
        pr_fail(pr, sg__pf_error_permanent(err), why);
        return;
    }
    const char *url = pb->o.tls ? r->brokerserviceurltls : r->brokerserviceurl;
    char *host = NULL;
    int port = 0, tls = 0;
    if (!url || sg__pulsar_parse_addr(url, &host, &port, &tls) != 0 || tls != pb->o.tls) {
        snprintf(why, sizeof why, "lookup answered no usable %s broker URL ('%s')",
                 pb->o.tls ? "pulsar+ssl://" : "pulsar://", url ? url : "");
        free(host);
        pr_fail(pr, 0, why);
        return;
    }
    endpoint *next = sg__ep_get(pb, host, port, tls);
    free(host);
    if (!next) {
        pr_fail(pr, 0, "lookup answered one broker too many");
        return;
    }
    if (type == PULSAR__PROTO__COMMAND_LOOKUP_TOPIC_RESPONSE__LOOKUP_TYPE__Redirect) {
        if (++pr->redirects > MAX_REDIRECTS) {
            pr_fail(pr, 0, "lookup redirected too many times");
            return;
        }
        sg_log(SG_LOG_DEBUG, "pulsar: %s: lookup redirected to %s", pr->topic, next->url);
        pr->ep = next;
        pr->authoritative = r->has_authoritative && r->authoritative;
        request(pr);
        return;
    }
    pr->ep = next;
    pr->state = PR_CREATING;
    request(pr);
}

static void on_producer(producer *pr, const Pulsar__Proto__CommandProducerSuccess *r)
{
    if (r->has_producer_ready && !r->producer_ready) return; /* another success follows */
    uv_timer_stop(&pr->retry);
    pr->req_id = 0;
    if (r->producer_name && strcmp(r->producer_name, pr->name) != 0) {
        free(pr->name);
        pr->name = sg_xstrdup(r->producer_name);
    }
    int64_t last = r->has_last_sequence_id ? r->last_sequence_id : -1;
    if (last >= 0 && (uint64_t)last + 1 > pr->next_seq) pr->next_seq = (uint64_t)last + 1;
    pr->state = PR_READY;
    pr->backoff_ms = BACKOFF_MIN_MS;
    pr->why[0] = '\0';
    sg_log(SG_LOG_INFO, "pulsar: producer '%s' on %s ready at %s (last sequence id %lld)", pr->name,
           pr->topic, pr->ep->url, (long long)last);
    /* Outstanding ones first, in order and with their ids: the broker's
     * deduplication drops those it stored before the reconnect. */
    ppub *p, *tmp;
    DL_FOREACH_SAFE(pr->sent, p, tmp)
    {
        send_pub(pr, p);
    }
    send_waiting(pr);
}

static void on_send_result(pulsar_bus *pb, endpoint *ep, producer *pr, uint64_t seq,
                           const Pulsar__Proto__CommandSendError *e)
{
    ppub *p = by_seq(pr, seq);
    if (!p) {
        /* Cancelled, timed out, or a second receipt: nobody waits. */
        sg_log(SG_LOG_DEBUG, "pulsar: %s: %s for sequence id %llu that nobody waits for", pr->topic,
               e ? "send error" : "receipt", (unsigned long long)seq);
        return;
    }
    if (!e) {
        sg__pub_finish(pb, p, SG_OK, "%s", sg_status_text(SG_OK));
        return;
    }
    char eb[32], why[512];
    snprintf(why, sizeof why, "the broker refused sequence id %llu on %s: %s: %s",
             (unsigned long long)seq, pr->topic, sg__pf_error_name(e->error, eb),
             e->message ? e->message : "");
    if (sg__pf_error_permanent(e->error)) {
        sg__pub_finish(pb, p, SG_EREFUSED, "pulsar: %s", why);
        return;
    }
    /* Transient (a persistence error, a busy broker): as Pulsar's own
     * clients do, drop the session; the producer comes back and sends the
     * outstanding publishes again with their ids. */
    sg__ep_fail(ep, why);
}

void sg__pr_frame(endpoint *ep, const pframe *f)
{
    pulsar_bus *pb = ep->pb;
    const pcmd *c = f->cmd;
    producer *pr;
    char why[512], eb[32];
    switch (c->type) {
    case PULSAR__PROTO__BASE_COMMAND__TYPE__LOOKUP_RESPONSE:
        pr = by_request(pb, ep, c->lookuptopicresponse->request_id);
        if (pr && pr->state == PR_LOOKUP) on_lookup(pr, c->lookuptopicresponse);
        return;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__PRODUCER_SUCCESS:
        pr = by_request(pb, ep, c->producer_success->request_id);
        if (pr && pr->state == PR_CREATING) on_producer(pr, c->producer_success);
        return;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__ERROR:
        pr = by_request(pb, ep, c->error->request_id);
        snprintf(why, sizeof why, "%s failed: %s: %s",
                 pr && pr->state == PR_LOOKUP ? "lookup" : "creating the producer",
                 sg__pf_error_name(c->error->error, eb),
                 c->error->message ? c->error->message : "");
        if (pr)
            pr_fail(pr, sg__pf_error_permanent(c->error->error), why);
        else
            sg_log(SG_LOG_WARN, "pulsar: %s: error for no request of ours: %s", ep->url, why);
        return;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__SEND_RECEIPT:
        pr = by_id(pb, ep, c->send_receipt->producer_id);
        if (pr) on_send_result(pb, ep, pr, c->send_receipt->sequence_id, NULL);
        return;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__SEND_ERROR:
        pr = by_id(pb, ep, c->send_error->producer_id);
        if (pr) on_send_result(pb, ep, pr, c->send_error->sequence_id, c->send_error);
        return;
    case PULSAR__PROTO__BASE_COMMAND__TYPE__CLOSE_PRODUCER:
        pr = by_id(pb, ep, c->close_producer->producer_id);
        if (!pr) return;
        /* The topic moves (unload, rebalancing): look it up again soon. */
        pr->backoff_ms = BACKOFF_MIN_MS;
        pr_fail(pr, 0, "the broker closed the producer");
        return;
    default:
        sg_log(SG_LOG_DEBUG, "pulsar: %s: command %d ignored", ep->url, (int)c->type);
        return;
    }
}

/* ------------------------------------------------------------- lifetime */

static void on_pr_closed(uv_handle_t *h)
{
    producer *pr = h->data;
    pulsar_bus *pb = pr->pb;
    free(pr->topic);
    free(pr->evtopic);
    free(pr->name);
    free(pr);
    sg__pulsar_unref(pb);
}

void sg__pr_close_all(pulsar_bus *pb)
{
    while (pb->producers) {
        producer *pr = pb->producers;
        while (pr->waiting)
            sg__pub_drop(pb, pr->waiting);
        while (pr->sent)
            sg__pub_drop(pb, pr->sent);
        DL_DELETE(pb->producers, pr);
        uv_close((uv_handle_t *)&pr->retry, on_pr_closed);
    }
}
