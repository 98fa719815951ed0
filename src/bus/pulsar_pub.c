/* Pulsar publishes' bookkeeping: their deadlines (one timer for all, an
 * ordered list), the finished ones whose callbacks an idle handle runs on a
 * later turn of the loop (never inside publish, never mid-frame), and
 * dropping them (cancel, destroy). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "pulsar_int.h"

static void on_deadline(uv_timer_t *t);

static void arm_deadline(pulsar_bus *pb)
{
    if (!pb->deadlines) {
        uv_timer_stop(&pb->deadline);
        return;
    }
    uint64_t now = uv_now(pb->loop), due = pb->deadlines->due_ms;
    uv_timer_start(&pb->deadline, on_deadline, due > now ? due - now : 0, 0);
}

/* Publishes mostly arrive with the same timeout: walking from the tail
 * finds their place at once. */
void sg__pub_track(pulsar_bus *pb, ppub *p)
{
    ppub *q = pb->deadlines ? pb->deadlines->dprev : NULL; /* the tail */
    while (q && q->due_ms > p->due_ms)
        q = q == pb->deadlines ? NULL : q->dprev;
    if (!q)
        DL_PREPEND2(pb->deadlines, p, dprev, dnext);
    else
        DL_APPEND_ELEM2(pb->deadlines, q, p, dprev, dnext);
    if (pb->deadlines == p) arm_deadline(pb);
}

/* Takes p off its producer's list, its queued frame and the deadlines. */
static void unlink_pub(pulsar_bus *pb, ppub *p)
{
    if (p->where == PUB_FINISHED) {
        DL_DELETE(pb->finished, p);
        return;
    }
    if (p->where == PUB_WAITING)
        DL_DELETE(p->pr->waiting, p);
    else
        DL_DELETE(p->pr->sent, p);
    sg__pc_unqueue(p);
    int head = pb->deadlines == p;
    DL_DELETE2(pb->deadlines, p, dprev, dnext);
    if (head) arm_deadline(pb);
}

static void on_idle(uv_idle_t *h);

void sg__pub_finish(pulsar_bus *pb, ppub *p, sg_status st, const char *fmt, ...)
{
    unlink_pub(pb, p);
    p->st = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof p->why, fmt, ap);
    va_end(ap);
    p->where = PUB_FINISHED;
    DL_APPEND(pb->finished, p);
    uv_idle_start(&pb->idle, on_idle);
}

static void pub_free(pulsar_bus *pb, ppub *p)
{
    pb->npending--;
    free(p->payload);
    free(p);
}

void sg__pub_drop(pulsar_bus *pb, ppub *p)
{
    unlink_pub(pb, p);
    pub_free(pb, p);
}

static void on_idle(uv_idle_t *h)
{
    pulsar_bus *pb = h->data;
    size_t budget = 0;
    ppub *p;
    DL_COUNT(pb->finished, p, budget);
    /* Only those finished now: a callback that publishes again waits for
     * the next turn, so chains of publishes cannot starve the loop. */
    while (budget-- > 0 && !pb->closing && pb->finished) {
        p = pb->finished;
        DL_DELETE(pb->finished, p);
        sg_bus_ack_cb done = p->done;
        void *arg = p->arg;
        sg_status st = p->st;
        char why[sizeof p->why];
        memcpy(why, p->why, sizeof why);
        pub_free(pb, p);
        done(arg, st, why); /* may publish, cancel or destroy the bus */
    }
    if (!pb->closing && !pb->finished) uv_idle_stop(&pb->idle);
}

/* Why p has not been acknowledged, for its timeout's reason. */
static const char *pending_why(const ppub *p, char *buf, size_t n)
{
    const producer *pr = p->pr;
    if (p->where == PUB_SENT && p->written && pr->state == PR_READY)
        snprintf(buf, n, "sent as sequence id %llu, no receipt yet", (unsigned long long)p->seq);
    else if (pr->ep && !pr->ep->ready)
        snprintf(buf, n, "not connected to %s: %s", pr->ep->url, pr->ep->why);
    else
        snprintf(buf, n, "producer for %s not ready: %s", pr->topic,
                 pr->why[0] ? pr->why : "being created");
    return buf;
}

static void on_deadline(uv_timer_t *t)
{
    pulsar_bus *pb = t->data;
    uint64_t now = uv_now(pb->loop);
    while (pb->deadlines && pb->deadlines->due_ms <= now) {
        ppub *p = pb->deadlines;
        char why[400];
        sg__pub_finish(pb, p, SG_ETIMEOUT, "pulsar: timed out after %ld ms (%s)", p->timeout_ms,
                       pending_why(p, why, sizeof why));
    }
    arm_deadline(pb);
}

int sg__pub_init(pulsar_bus *pb)
{
    if (uv_timer_init(pb->loop, &pb->deadline) != 0) return -1;
    pb->deadline.data = pb;
    if (uv_idle_init(pb->loop, &pb->idle) != 0) {
        uv_close((uv_handle_t *)&pb->deadline, NULL);
        return -1;
    }
    pb->idle.data = pb;
    pb->live += 2;
    return 0;
}

static void on_pb_handle_closed(uv_handle_t *h)
{
    sg__pulsar_unref(h->data);
}

void sg__pub_close(pulsar_bus *pb)
{
    while (pb->finished)
        sg__pub_drop(pb, pb->finished);
    uv_close((uv_handle_t *)&pb->deadline, on_pb_handle_closed);
    uv_close((uv_handle_t *)&pb->idle, on_pb_handle_closed);
}
