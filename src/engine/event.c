/* A saga's outbox entries as they are made: the event of a publish step,
 * and the compensations planned when a step fails for good. Each one's
 * payload (an event's, or an HTTP compensation's body) is rendered here,
 * once, and stored with the entry, so that every retry, restart and
 * redelivery sends the same bytes under the same id (design §1, §4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utlist.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/util.h"
#include "template.h"

/* ev->payload from t, or the request as posted when t is NULL. On failure
 * ev->payload is NULL and why says what went wrong. */
static sg_status render_payload(const saga *s, const sg_template *t, sg_event_rec *ev, char *why,
                                size_t whylen)
{
    if (!t) {
        ev->payload = sg_xmemdup(s->rec.request, s->rec.request_len);
        ev->payload_len = s->rec.request_len;
        return SG_OK;
    }
    return sg_template_render(t, &s->rec, &ev->payload, &ev->payload_len, why, whylen);
}

outbox_ev *sg__event_step(saga *s, size_t i, char *why, size_t whylen)
{
    const sg_step_def *d = &s->def->steps[i];
    const sg_step_rec *st = &s->rec.steps[i];
    sg_event_rec ev = {0};
    char rwhy[256];
    if (render_payload(s, d->action.payload, &ev, rwhy, sizeof rwhy) != SG_OK) goto fail;
    sg_uuid_v7(ev.id);
    memcpy(ev.saga_id, s->rec.id, sizeof ev.saga_id);
    ev.topic = sg_xstrdup(d->action.topic);
    ev.created_us = st->started_us;
    /* The first attempt's. */
    ev.deadline_us = st->started_us + sg__step_timeout(s->eng, s->def, i) * 1000;
    ev.step_index = (int)i;
    outbox_ev *oe = sg__ev_create(s->eng, &ev);
    sg__trace_event(&s->rec, &oe->rec);
    return oe;
fail:
    snprintf(why, whylen, "cannot build the event payload: %s", rwhy);
    sg_event_rec_free(&ev);
    return NULL;
}

/* An HTTP compensation as an outbox entry: all it needs to be called
 * after a restart, the body rendered now from what the saga has. */
static void http_compensation(const saga *s, size_t j, sg_event_rec *ev)
{
    const sg_step_def *d = &s->def->steps[j];
    const sg_action *a = &d->compensation;
    ev->topic = sg_xstrdup(d->name); /* its step, for the Idempotency-Key */
    ev->target = sg_xstrdup(a->url);
    ev->method = a->method && strcmp(a->method, "POST") != 0 ? sg_xstrdup(a->method) : NULL;
    ev->timeout_ms = d->timeout_ms;
    size_t n = 0;
    for (char **h = a->headers; h && *h; h++)
        n += strlen(*h) + 1;
    if (n) {
        ev->headers = sg_xmalloc(n);
        ev->headers[0] = '\0';
        for (char **h = a->headers; h && *h; h++) {
            if (h != a->headers) strcat(ev->headers, "\n");
            strcat(ev->headers, *h);
        }
    }
}

/* The payload of step j's compensation. The saga has failed already, and
 * a compensation must go out whatever happens: one whose template cannot
 * be rendered (inputs were validated on the way in, so only its size can
 * fail) carries the request instead, as an HTTP compensation's body. */
static void compensation_payload(const saga *s, size_t j, sg_event_rec *ev)
{
    const sg_step_def *d = &s->def->steps[j];
    const sg_action *a = &d->compensation;
    const sg_template *t = a->kind == SG_ACTION_HTTP ? a->body : a->payload;
    char why[256];
    if (render_payload(s, t, ev, why, sizeof why) == SG_OK) return;
    sg_log(SG_LOG_ERROR, "saga %s: compensation of %s sends the request as its %s: %s", s->rec.id,
           d->name, a->kind == SG_ACTION_HTTP ? "body" : "payload", why);
    render_payload(s, NULL, ev, why, sizeof why);
}

outbox_ev *sg__event_plan_compensations(saga *s, sg_write *w)
{
    outbox_ev *list = NULL;
    for (size_t j = s->cur + 1; j-- > 0;) {
        const sg_step_def *d = &s->def->steps[j];
        int due = j == s->cur ? s->in_doubt : s->rec.steps[j].status == SG_STEP_COMPLETED;
        if (!d->has_compensation || !due) continue;
        sg_event_rec ev = {0};
        sg_uuid_v7(ev.id);
        memcpy(ev.saga_id, s->rec.id, sizeof ev.saga_id);
        if (d->compensation.kind == SG_ACTION_PUBLISH)
            ev.topic = sg_xstrdup(d->compensation.topic);
        else
            http_compensation(s, j, &ev);
        compensation_payload(s, j, &ev);
        ev.created_us = ev.updated_us = sg_now_us();
        ev.compensation = 1;
        ev.step_index = (int)j;
        sg__trace_event(&s->rec, &ev);
        outbox_ev *oe = sg__ev_create(s->eng, &ev);
        sg_write_event_insert(w, &oe->rec);
        DL_APPEND(list, oe);
    }
    return list;
}
