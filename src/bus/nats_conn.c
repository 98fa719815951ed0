/* The NATS bus's connection: the registry through which libnats
 * threads reach the loop, the connection made in the background (a probe
 * on the loop, then libnats' connect: sagad starts while the broker is
 * down), reconnects, and the JetStream stream created if missing.
 *
 * libnats' libuv adapter must attach a new connection from the loop
 * thread, so its retry-on-failed-connect (which connects from a thread of
 * its own) cannot be used: we retry on a timer. Each attempt first checks
 * with a non-blocking TCP connect that the server answers, because the
 * libnats handshake blocks the calling thread. Once connected, libnats
 * reconnects by itself, with its reconnect buffer off: a publish made while
 * disconnected fails at once instead of waiting to go out later. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/adapters/libuv.h>

#include "nats_int.h"
#include "sg/alloc.h"
#include "sg/util.h"

#define RETRY_MS 500 /* between connect attempts, and libnats' reconnect wait */
#define CONNECT_TIMEOUT_MS 2000

/* ------------------------------------------------------------- registry */

/* Live NATS buses; libnats' threads find theirs here by id. */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static nats_bus *reg_head;
static uint64_t reg_last_id;

void sg__nats_register(nats_bus *nb)
{
    pthread_mutex_lock(&reg_mu);
    nb->id = ++reg_last_id;
    nb->reg_next = reg_head;
    reg_head = nb;
    pthread_mutex_unlock(&reg_mu);
}

nats_item *sg__nats_unregister(nats_bus *nb)
{
    pthread_mutex_lock(&reg_mu);
    for (nats_bus **p = &reg_head; *p; p = &(*p)->reg_next)
        if (*p == nb) {
            *p = nb->reg_next;
            break;
        }
    nats_item *left = nb->inbox;
    nb->inbox = nb->inbox_tail = NULL;
    pthread_mutex_unlock(&reg_mu);
    return left;
}

nats_item *sg__nats_take_inbox(nats_bus *nb)
{
    pthread_mutex_lock(&reg_mu);
    nats_item *all = nb->inbox;
    nb->inbox = nb->inbox_tail = NULL;
    pthread_mutex_unlock(&reg_mu);
    return all;
}

/* Any thread: queues it for bus `id`'s loop, or drops it if that bus is gone. */
static void post(void *closure, nats_item *it)
{
    uint64_t id = (uint64_t)(uintptr_t)closure;
    pthread_mutex_lock(&reg_mu);
    nats_bus *nb = reg_head;
    while (nb && nb->id != id)
        nb = nb->reg_next;
    if (nb) {
        if (nb->inbox_tail)
            nb->inbox_tail->next = it;
        else
            nb->inbox = it;
        nb->inbox_tail = it;
        uv_async_send(&nb->async); /* open until unregistered */
        it = NULL;
    }
    pthread_mutex_unlock(&reg_mu);
    if (it) {
        natsMsg_Destroy(it->msg);
        free(it);
    }
}

/* libnats' ack subscription thread: the verdict on one publish. msg is
 * ours (to destroy); pa and pae live for this call only. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    nats_item *it = sg_xcalloc(1, sizeof *it);
    it->kind = ITEM_ACK;
    it->msg = msg;
    const char *subj = natsMsg_GetSubject(msg);
    if (!pae) {
        it->st = SG_OK;
        snprintf(it->why, sizeof it->why, "%s",
                 pa && pa->Duplicate ? "ok (JetStream already had this event id)" : "ok");
    } else if (pae->Err == NATS_TIMEOUT) {
        it->st = SG_ETIMEOUT;
        snprintf(it->why, sizeof it->why, "NATS: no JetStream ack in time");
    } else if (pae->Err == NATS_NO_RESPONDERS) {
        it->st = SG_EUNAVAIL;
        snprintf(it->why, sizeof it->why, "NATS: no JetStream stream takes subject '%s'",
                 subj ? subj : "");
    } else {
        /* An error code is JetStream's answer (limits, permissions): final. */
        it->st = pae->ErrCode ? SG_EREFUSED : SG_EIO;
        snprintf(it->why, sizeof it->why, "NATS: JetStream refused the event: %s (%s, code %d)",
                 pae->ErrText ? pae->ErrText : "", natsStatus_GetText(pae->Err), (int)pae->ErrCode);
    }
    post(closure, it);
}

static void post_event(void *closure, int kind)
{
    nats_item *it = sg_xcalloc(1, sizeof *it);
    it->kind = kind;
    post(closure, it);
}

/* libnats' callback thread. */
static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    post_event(closure, ITEM_DISCONNECTED);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    post_event(closure, ITEM_RECONNECTED);
}

static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    post_event(closure, ITEM_CLOSED);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)sub;
    (void)closure;
    sg_log(SG_LOG_WARN, "NATS: asynchronous error: %s", natsStatus_GetText(err));
}

/* --------------------------------------------------------------- health */

void sg__nats_set_health(nats_bus *nb, int ready, const char *fmt, ...)
{
    uv_mutex_lock(&nb->hmu);
    nb->ready = ready;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nb->down_why, sizeof nb->down_why, fmt, ap);
    va_end(ap);
    uv_mutex_unlock(&nb->hmu);
}

/* --------------------------------------------------------------- stream */

static void start_work(nats_bus *nb);

/* Threadpool: the stream exists, or is created. Blocking requests are
 * fine here; the loop keeps reading their answers meanwhile. */
static void work_run(uv_work_t *w)
{
    nats_bus *nb = w->data;
    const nats_cfg *c = &nb->cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    nb->work_created = 0;
    natsStatus s = js_GetStreamInfo(&si, nb->js, c->stream, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
        jsStreamConfig sc;
        jsStreamConfig_Init(&sc);
        sc.Name = c->stream;
        sc.Subjects = (const char **)c->subjects;
        sc.SubjectsLen = c->nsubjects;
        sc.Storage = js_FileStorage;
        jerr = 0;
        s = js_AddStream(&si, nb->js, &sc, NULL, &jerr);
        nb->work_created = 1;
    }
    nb->work_why[0] = '\0';
    if (s != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        nb->work_st = SG_EUNAVAIL;
        snprintf(nb->work_why, sizeof nb->work_why, "stream %s: %s%s%s (code %d)", c->stream,
                 natsStatus_GetText(s), last ? ": " : "", last ? last : "", (int)jerr);
        return;
    }
    nb->work_st = SG_OK;
    /* An existing stream is used as it is; say which subjects it lacks. */
    for (int i = 0; i < c->nsubjects; i++) {
        int found = 0;
        for (int j = 0; si->Config && j < si->Config->SubjectsLen; j++)
            found |= strcmp(si->Config->Subjects[j], c->subjects[i]) == 0;
        size_t len = strlen(nb->work_why);
        if (!found && len + 1 < sizeof nb->work_why)
            snprintf(nb->work_why + len, sizeof nb->work_why - len, " %s", c->subjects[i]);
    }
    jsStreamInfo_Destroy(si);
}

static void drop_now(nats_bus *nb)
{
    uv_mutex_lock(&nb->hmu);
    natsConnection *nc = nb->nc;
    jsCtx *js = nb->js;
    nb->nc = NULL;
    nb->js = NULL;
    nb->ready = 0;
    uv_mutex_unlock(&nb->hmu);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc); /* the adapter closes its handles on the loop */
}

static void on_retry(uv_timer_t *t);

static void work_done(uv_work_t *w, int status)
{
    (void)status;
    nats_bus *nb = w->data;
    nb->working = 0;
    if (nb->drop_after) {
        nb->drop_after = 0;
        drop_now(nb);
        if (!nb->closing) uv_timer_start(&nb->retry, on_retry, RETRY_MS, 0);
    }
    if (!nb->closing && nb->nc) {
        if (nb->work_again) {
            nb->work_again = 0;
            start_work(nb);
        } else if (nb->work_st == SG_OK) {
            sg_log(SG_LOG_INFO, "NATS: stream %s %s on %s", nb->cfg.stream,
                   nb->work_created ? "created" : "found", nb->cfg.shown);
            if (nb->work_why[0])
                sg_log(SG_LOG_WARN, "NATS: stream %s does not list the subject(s)%s",
                       nb->cfg.stream, nb->work_why);
            sg__nats_set_health(nb, 1, "%s", "");
        } else {
            sg_log(SG_LOG_WARN, "NATS: %s; checking again in %d ms", nb->work_why, RETRY_MS * 2);
            sg__nats_set_health(nb, 0, "%s", nb->work_why);
            uv_timer_start(&nb->retry, on_retry, RETRY_MS * 2, 0);
        }
    }
    nb->work_again = 0;
    sg__nats_handle_closed(nb); /* may free nb: last */
}

static void start_work(nats_bus *nb)
{
    if (nb->working) {
        nb->work_again = 1;
        return;
    }
    nb->working = 1;
    nb->work.data = nb;
    nb->handles++;
    if (uv_queue_work(nb->loop, &nb->work, work_run, work_done) != 0) abort(); /* valid args */
}

/* ----------------------------------------------------- connect attempts */

static void attempt(nats_bus *nb);

static void on_retry(uv_timer_t *t)
{
    nats_bus *nb = t->data;
    if (nb->closing) return;
    if (!nb->nc)
        attempt(nb);
    else
        start_work(nb);
}

static void attempt_failed(nats_bus *nb, const char *why)
{
    nb->connecting = 0;
    sg__nats_set_health(nb, 0, "cannot connect to %s: %s", nb->cfg.shown, why);
    if (!nb->warned)
        sg_log(SG_LOG_WARN, "NATS: cannot connect to %s: %s; retrying every %d ms", nb->cfg.shown,
               why, RETRY_MS);
    nb->warned = 1;
    if (!nb->closing) uv_timer_start(&nb->retry, on_retry, RETRY_MS, 0);
}

/* The server answered a TCP connect: libnats' handshake is quick now. */
static void connect_now(nats_bus *nb)
{
    natsConnection *nc = NULL;
    natsStatus s = natsConnection_Connect(&nc, nb->opts);
    if (s != NATS_OK) {
        const char *last = nats_GetLastError(NULL);
        char why[300];
        if (s == NATS_SECURE_CONNECTION_WANTED)
            snprintf(why, sizeof why, "the server does not offer TLS, which tls:// requires");
        else
            sg__nats_tls_why(&nb->cfg, last && *last ? last : natsStatus_GetText(s), why,
                             sizeof why);
        attempt_failed(nb, why);
        return;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = (void *)(uintptr_t)nb->id;
    jo.PublishAsync.MaxPending = 0; /* never stall the loop: the engine bounds what is in flight */
    jsCtx *js = NULL;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) {
        natsConnection_Destroy(nc);
        attempt_failed(nb, natsStatus_GetText(s));
        return;
    }
    uv_mutex_lock(&nb->hmu);
    nb->nc = nc;
    nb->js = js;
    snprintf(nb->down_why, sizeof nb->down_why, "stream %s not checked yet", nb->cfg.stream);
    uv_mutex_unlock(&nb->hmu);
    nb->connecting = 0;
    nb->warned = 0;
    sg_log(SG_LOG_INFO, "NATS: connected to %s", nb->cfg.shown);
    start_work(nb);
}

static void probe_next(nats_bus *nb, struct addrinfo *ai);

static void on_probe_closed(uv_handle_t *h)
{
    nats_bus *nb = h->data;
    struct addrinfo *next = nb->probe_ai ? nb->probe_ai->ai_next : NULL;
    int st = nb->probe_status;
    if (nb->closing || st == 0 || !next) {
        uv_freeaddrinfo(nb->probe_all);
        nb->probe_all = NULL;
    }
    if (!nb->closing) {
        if (st == 0)
            connect_now(nb);
        else if (nb->probe_all)
            probe_next(nb, next);
        else
            attempt_failed(nb, uv_strerror(st));
    }
    sg__nats_handle_closed(nb); /* may free nb: last */
}

static void on_probe(uv_connect_t *req, int status)
{
    nats_bus *nb = req->data;
    nb->probe_status = status;
    if (!uv_is_closing((uv_handle_t *)&nb->probe))
        uv_close((uv_handle_t *)&nb->probe, on_probe_closed);
    sg__nats_handle_closed(nb); /* the request; the handle is still open */
}

static void probe_next(nats_bus *nb, struct addrinfo *ai)
{
    nb->probe_ai = ai;
    if (uv_tcp_init(nb->loop, &nb->probe) != 0) abort(); /* a valid loop */
    nb->probe.data = nb;
    nb->handles++;
    nb->probe_req.data = nb;
    int rc = uv_tcp_connect(&nb->probe_req, &nb->probe, ai->ai_addr, on_probe);
    if (rc != 0) {
        nb->probe_status = rc;
        uv_close((uv_handle_t *)&nb->probe, on_probe_closed);
        return;
    }
    nb->handles++;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    nats_bus *nb = req->data;
    if (nb->closing || status != 0 || !res) {
        uv_freeaddrinfo(res);
        if (!nb->closing) attempt_failed(nb, status ? uv_strerror(status) : "host not found");
        sg__nats_handle_closed(nb);
        return;
    }
    nb->probe_all = res;
    probe_next(nb, res);
    sg__nats_handle_closed(nb);
}

static void attempt(nats_bus *nb)
{
    if (nb->closing || nb->nc || nb->connecting) return;
    nb->connecting = 1;
    char port[16];
    snprintf(port, sizeof port, "%d", nb->cfg.port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    nb->resolve.data = nb;
    int rc = uv_getaddrinfo(nb->loop, &nb->resolve, on_resolved, nb->cfg.host, port, &hints);
    if (rc != 0) {
        attempt_failed(nb, uv_strerror(rc));
        return;
    }
    nb->handles++;
}

/* ------------------------------------------------------ start and stop */

sg_status sg__nats_start(nats_bus *nb, char *err, size_t errlen)
{
    const nats_cfg *c = &nb->cfg;
    void *id = (void *)(uintptr_t)nb->id;
    natsLibuv_Init();
    natsLibuv_SetThreadLocalLoop(nb->loop); /* this is the loop's thread */
    natsStatus s = natsOptions_Create(&nb->opts);
    if (s == NATS_OK) s = natsOptions_SetURL(nb->opts, c->server);
    if (s == NATS_OK && c->user) s = natsOptions_SetUserInfo(nb->opts, c->user, c->password);
    if (s == NATS_OK && c->token) s = natsOptions_SetToken(nb->opts, c->token);
    if (s == NATS_OK) s = natsOptions_SetName(nb->opts, "sagad");
    if (s == NATS_OK)
        s = natsOptions_SetEventLoop(nb->opts, nb->loop, natsLibuv_Attach, natsLibuv_Read,
                                     natsLibuv_Write, natsLibuv_Detach);
    /* No reconnect buffer: a publish while disconnected fails now, never
     * goes out after the reconnect (its step may have been withdrawn). */
    if (s == NATS_OK) s = natsOptions_SetReconnectBufSize(nb->opts, 0);
    if (s == NATS_OK) s = natsOptions_SetMaxReconnect(nb->opts, -1);
    if (s == NATS_OK) s = natsOptions_SetReconnectWait(nb->opts, RETRY_MS);
    if (s == NATS_OK) s = natsOptions_SetTimeout(nb->opts, CONNECT_TIMEOUT_MS);
    if (s == NATS_OK) s = natsOptions_SetPingInterval(nb->opts, 5000);
    if (s == NATS_OK) s = natsOptions_SetMaxPingsOut(nb->opts, 3);
    /* Written out from the loop right away, not by libnats' flusher thread. */
    if (s == NATS_OK) s = natsOptions_SetSendAsap(nb->opts, true);
    if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(nb->opts, on_disconnected, id);
    if (s == NATS_OK) s = natsOptions_SetReconnectedCB(nb->opts, on_reconnected, id);
    if (s == NATS_OK) s = natsOptions_SetClosedCB(nb->opts, on_closed, id);
    if (s == NATS_OK) s = natsOptions_SetErrorHandler(nb->opts, on_async_error, id);
    if (s != NATS_OK) {
        if (err && errlen)
            snprintf(err, errlen, "NATS bus: cannot set up the client: %s", natsStatus_GetText(s));
        return SG_EIO;
    }
    sg_status st = sg__nats_tls_setup(nb->opts, c, err, errlen);
    if (st != SG_OK) return st;
    sg__nats_set_health(nb, 0, "connecting to %s", c->shown);
    attempt(nb);
    return SG_OK;
}

void sg__nats_conn_event(nats_bus *nb, int kind)
{
    switch (kind) {
    /* An event may come late, from a connection since replaced or back up:
     * each one is checked against the connection as it is now. */
    case ITEM_DISCONNECTED:
        sg_log(SG_LOG_WARN, "NATS: disconnected from %s; reconnecting", nb->cfg.shown);
        if (nb->nc && natsConnection_Status(nb->nc) == NATS_CONN_STATUS_CONNECTED) break;
        sg__nats_set_health(nb, 0, "disconnected from %s; reconnecting", nb->cfg.shown);
        break;
    case ITEM_RECONNECTED:
        sg_log(SG_LOG_INFO, "NATS: reconnected to %s", nb->cfg.shown);
        if (nb->nc) start_work(nb);
        break;
    case ITEM_CLOSED:
        if (!nb->nc || natsConnection_Status(nb->nc) != NATS_CONN_STATUS_CLOSED) break;
        sg_log(SG_LOG_WARN, "NATS: connection to %s closed; connecting again", nb->cfg.shown);
        sg__nats_conn_stop(nb);
        if (!nb->nc) uv_timer_start(&nb->retry, on_retry, RETRY_MS, 0);
        break;
    }
}

void sg__nats_conn_stop(nats_bus *nb)
{
    if (nb->working) {
        if (nb->nc) natsConnection_Close(nb->nc); /* the stream work's request ends now */
        nb->drop_after = 1;
    } else if (nb->nc) {
        drop_now(nb);
    }
    if (nb->closing) {
        if (nb->connecting && !nb->probe_all) uv_cancel((uv_req_t *)&nb->resolve);
        if (nb->probe_all && !uv_is_closing((uv_handle_t *)&nb->probe))
            uv_close((uv_handle_t *)&nb->probe, on_probe_closed);
        natsOptions_Destroy(nb->opts);
        nb->opts = NULL;
    }
}
