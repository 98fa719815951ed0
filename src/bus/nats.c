/* "nats://host:port" and "tls://host:port" (the same over TLS, nats_tls.c)
 * bus: publishes each envelope to NATS JetStream, subject
 * = topic, header Nats-Msg-Id = event id (JetStream drops a retried
 * duplicate within its stream's duplicate window); the JetStream publish
 * ack acknowledges it. The connection, the URL and the stream are in
 * nats_conn.c; see nats_int.h for who runs on which thread.
 *
 * A publish is an asynchronous JetStream publish: libnats hands the message
 * back to our ack handler (on its own thread) with the verdict, and the
 * handler queues it for the loop, where we find the publish by that message.
 * Deadlines run on the loop (one timer for the earliest); a publish that
 * timed out or was cancelled is forgotten, and when libnats hands its
 * message back later, the message is just freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utlist.h>

#include "nats_int.h"
#include "sg/alloc.h"

/* libnats keeps a message this much longer than our deadline, then frees it
 * through the ack handler even if no ack ever comes. */
#define LIBNATS_SLACK_MS 2000

void sg__nats_free(nats_bus *nb)
{
    sg__nats_cfg_free(&nb->cfg);
    uv_mutex_destroy(&nb->hmu);
    free(nb);
}

void sg__nats_handle_closed(nats_bus *nb)
{
    if (--nb->handles == 0 && nb->closing) sg__nats_free(nb);
}

static void on_handle_closed(uv_handle_t *h)
{
    sg__nats_handle_closed(h->data);
}

/* ------------------------------------------------------------ publishes */

static void pub_drop(nats_bus *nb, nats_pub *p)
{
    DL_DELETE(nb->pubs, p);
    HASH_DEL(nb->by_msg, p);
    free(p); /* its message stays libnats' until handed back */
}

static void on_expiry(uv_timer_t *t);

/* Arms the timer for the earliest deadline. */
static void arm(nats_bus *nb)
{
    if (!nb->pubs) {
        uv_timer_stop(&nb->expiry);
        return;
    }
    uint64_t now = uv_now(nb->loop);
    uint64_t in = nb->pubs->due > now ? nb->pubs->due - now : 0;
    uv_timer_start(&nb->expiry, on_expiry, in, 0);
}

static void on_expiry(uv_timer_t *t)
{
    nats_bus *nb = t->data;
    uint64_t now = uv_now(nb->loop);
    while (!nb->closing && nb->pubs && nb->pubs->due <= now) {
        nats_pub *p = nb->pubs;
        sg_bus_ack_cb done = p->done;
        void *arg = p->arg;
        char why[128];
        snprintf(why, sizeof why, "NATS: no JetStream ack within %ld ms", p->timeout_ms);
        pub_drop(nb, p);
        done(arg, SG_ETIMEOUT, why); /* may publish, cancel or destroy the bus */
    }
    if (!nb->closing) arm(nb);
}

static void on_ack(nats_bus *nb, nats_item *it)
{
    nats_pub *p = NULL;
    HASH_FIND_PTR(nb->by_msg, &it->msg, p);
    natsMsg_Destroy(it->msg); /* after the lookup: until now no publish could reuse its address */
    it->msg = NULL;
    if (!p) return; /* timed out or cancelled: forgotten */
    sg_bus_ack_cb done = p->done;
    void *arg = p->arg;
    pub_drop(nb, p);
    done(arg, it->st, it->why); /* may publish, cancel or destroy the bus */
}

static void free_items(nats_item *it)
{
    while (it) {
        nats_item *next = it->next;
        natsMsg_Destroy(it->msg);
        free(it);
        it = next;
    }
}

/* What libnats' threads queued. */
static void on_async(uv_async_t *a)
{
    nats_bus *nb = a->data;
    nats_item *it = sg__nats_take_inbox(nb);
    while (it && !nb->closing) {
        nats_item *next = it->next;
        if (it->kind == ITEM_ACK)
            on_ack(nb, it);
        else
            sg__nats_conn_event(nb, it->kind);
        free(it);
        it = next;
    }
    free_items(it); /* the bus was destroyed by a callback */
}

static sg_status nats_publish(void *state, const sg_event_rec *ev, char *envelope, size_t len,
                              long timeout_ms, sg_bus_ack_cb done, void *arg, void **pub)
{
    nats_bus *nb = state;
    *pub = NULL;
    if (nb->closing || !nb->js || natsConnection_Status(nb->nc) != NATS_CONN_STATUS_CONNECTED) {
        free(envelope);
        return nb->closing ? SG_ECLOSED : SG_EUNAVAIL;
    }
    if (timeout_ms < 1) timeout_ms = 1;
    natsMsg *msg = NULL;
    natsStatus s = natsMsg_Create(&msg, ev->topic, NULL, envelope, (int)len);
    free(envelope); /* copied */
    if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", ev->id);
    sg__bus_trace_ctx tc;
    sg__bus_trace(ev, &tc);
    if (s == NATS_OK && tc.parent[0]) s = natsMsgHeader_Set(msg, "traceparent", tc.parent);
    if (s == NATS_OK && tc.state[0]) s = natsMsgHeader_Set(msg, "tracestate", tc.state);
    if (s != NATS_OK) {
        natsMsg_Destroy(msg);
        return s == NATS_INVALID_SUBJECT ? SG_EINVAL : SG_EIO;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms + LIBNATS_SLACK_MS;
    po.ExpectStream = nb->cfg.stream; /* not another stream that took the subject */
    natsMsg *sent = msg;
    /* Fails at once while disconnected: no reconnect buffer (nats_conn.c). */
    s = js_PublishMsgAsync(nb->js, &msg, &po);
    if (s != NATS_OK) {
        natsMsg_Destroy(msg); /* still ours */
        return s == NATS_MAX_PAYLOAD ? SG_ETOOBIG : SG_EUNAVAIL;
    }
    nats_pub *p = sg_xcalloc(1, sizeof *p);
    p->msg = sent; /* libnats' now; handed back to on_pub_ack, never before the loop sees it */
    p->timeout_ms = timeout_ms;
    p->due = uv_now(nb->loop) + (uint64_t)timeout_ms;
    p->done = done;
    p->arg = arg;
    HASH_ADD_PTR(nb->by_msg, msg, p);
    /* Deadlines mostly arrive in order: walk back from the tail. */
    nats_pub *after = nb->pubs ? nb->pubs->prev : NULL;
    while (after && after->due > p->due)
        after = after == nb->pubs ? NULL : after->prev;
    if (!after)
        DL_PREPEND(nb->pubs, p);
    else if (after == nb->pubs->prev)
        DL_APPEND(nb->pubs, p);
    else
        DL_APPEND_ELEM(nb->pubs, after, p);
    if (nb->pubs == p) arm(nb);
    *pub = p;
    return SG_OK;
}

static void nats_cancel(void *state, void *pub)
{
    nats_bus *nb = state;
    nats_pub *p = pub;
    int first = nb->pubs == p;
    pub_drop(nb, p);
    if (first) arm(nb);
}

/* ------------------------------------------------------------ lifetime */

static sg_status nats_create(void **state, const char *scheme, const char *url,
                             const sg_bus_env *env, char *err, size_t errlen)
{
    (void)scheme;
    *state = NULL;
    nats_bus *nb = sg_xcalloc(1, sizeof *nb);
    sg_status st = sg__nats_cfg_parse(&nb->cfg, url, err, errlen);
    if (st != SG_OK) {
        free(nb);
        return st;
    }
    /* --ca-file: the process-wide private CA, unless the URL names its own. */
    if (!nb->cfg.ca && !nb->cfg.insecure && env->ca_file) nb->cfg.ca = sg_xstrdup(env->ca_file);
    nb->loop = env->loop;
    if (uv_mutex_init(&nb->hmu) != 0) abort();
    /* Only fail for a bad loop: a programming error. */
    if (uv_async_init(nb->loop, &nb->async, on_async) != 0) abort();
    if (uv_timer_init(nb->loop, &nb->retry) != 0) abort();
    if (uv_timer_init(nb->loop, &nb->expiry) != 0) abort();
    nb->async.data = nb->retry.data = nb->expiry.data = nb;
    nb->handles = 3;
    sg__nats_register(nb);
    if ((st = sg__nats_start(nb, err, errlen)) != SG_OK) {
        nb->closing = 1;
        sg__nats_unregister(nb);
        sg__nats_conn_stop(nb);
        uv_close((uv_handle_t *)&nb->async, on_handle_closed);
        uv_close((uv_handle_t *)&nb->retry, on_handle_closed);
        uv_close((uv_handle_t *)&nb->expiry, on_handle_closed);
        return st; /* freed by the last close callback */
    }
    *state = nb;
    return SG_OK;
}

static void nats_destroy(void *state)
{
    nats_bus *nb = state;
    if (!nb) return;
    nb->closing = 1;
    /* From now on no libnats thread reaches nb. */
    free_items(sg__nats_unregister(nb));
    while (nb->pubs)
        pub_drop(nb, nb->pubs);
    sg__nats_conn_stop(nb);
    uv_close((uv_handle_t *)&nb->async, on_handle_closed);
    uv_close((uv_handle_t *)&nb->retry, on_handle_closed);
    uv_close((uv_handle_t *)&nb->expiry, on_handle_closed);
}

static sg_status nats_health(void *state, char *why, size_t n)
{
    nats_bus *nb = state;
    sg_status st = SG_EUNAVAIL;
    uv_mutex_lock(&nb->hmu);
    if (!nb->ready || !nb->nc)
        snprintf(why, n, "%s", nb->down_why);
    else if (natsConnection_Status(nb->nc) != NATS_CONN_STATUS_CONNECTED)
        snprintf(why, n, "connection to %s lost; reconnecting", nb->cfg.shown);
    else
        st = SG_OK;
    uv_mutex_unlock(&nb->hmu);
    return st;
}

static const char *const schemes[] = {"nats", "tls", NULL};

const struct sg_bus_ops sg_bus_nats_ops = {
    .schemes = schemes,
    .name = "nats",
    .is_broker = 1,
    .create = nats_create,
    .destroy = nats_destroy,
    .publish = nats_publish,
    .cancel = nats_cancel,
    .health = nats_health,
};
