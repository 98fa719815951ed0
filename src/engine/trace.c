/* The saga's W3C trace on the way out (design §7): the header lines every
 * downstream call and event carries (a new span id each), and the log
 * lines of a saga's transitions, which name its trace. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "sg/alloc.h"

size_t sg__trace_headers(const sg_saga_rec *r, sg__trace_hdrs *h, const char **out)
{
    if (!r->trace.trace_id[0]) return 0; /* stored by a sagad before tracing */
    char tp[SG_TRACEPARENT_LEN + 1];
    sg_trace_child(&r->trace, tp);
    snprintf(h->parent, sizeof h->parent, "traceparent: %s", tp);
    out[0] = h->parent;
    if (!r->tracestate) return 1;
    snprintf(h->state, sizeof h->state, "tracestate: %s", r->tracestate);
    out[1] = h->state;
    return 2;
}

void sg__trace_event(const sg_saga_rec *r, sg_event_rec *ev)
{
    sg__trace_hdrs h;
    const char *lines[2];
    size_t n = sg__trace_headers(r, &h, lines);
    if (!n) return;
    size_t len = ev->headers ? strlen(ev->headers) + 1 : 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(lines[i]) + 1;
    char *all = sg_xmalloc(len + 1), *p = all;
    if (ev->headers) p += sprintf(p, "%s\n", ev->headers);
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%s", i ? "\n" : "", lines[i]);
    free(ev->headers);
    ev->headers = all;
}

void sg__saga_logf(const saga *s, sg_log_level lvl, const char *step, const char *status,
                   const char *fmt, ...)
{
    sg_log_fields f = {.saga_id = s->rec.id,
                       .type = s->rec.def_name,
                       .trace_id = s->rec.trace.trace_id,
                       .step = step,
                       .status = status};
    va_list ap;
    va_start(ap, fmt);
    sg_log_saga_v(lvl, &f, fmt, ap);
    va_end(ap);
}

void sg__ev_logf(const sg_event_rec *ev, sg_log_level lvl, const char *event, const char *fmt, ...)
{
    /* The event carries its saga's trace: the id is the traceparent's
     * second field. */
    char tp[SG_TRACEPARENT_LEN + 1], id[SG_TRACE_ID_HEX + 1] = "";
    if (sg_event_header(ev, "traceparent", tp, sizeof tp) && strlen(tp) == SG_TRACEPARENT_LEN) {
        memcpy(id, tp + 3, SG_TRACE_ID_HEX);
        id[SG_TRACE_ID_HEX] = '\0';
    }
    sg_log_fields f = {.saga_id = ev->saga_id, .trace_id = id, .step = ev->topic, .event = event};
    va_list ap;
    va_start(ap, fmt);
    sg_log_saga_v(lvl, &f, fmt, ap);
    va_end(ap);
}
