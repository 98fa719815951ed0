/* The trace context of a POST that starts or redrives a saga (design §7):
 * a valid traceparent is continued, anything else is ignored (the saga
 * starts a trace of its own); never a reason to refuse the request. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "start_int.h"
#include "sg/alloc.h"

typedef struct trace_scan {
    int nparent;
    const char *parent;                /* borrowed from MHD */
    char state[SG_TRACESTATE_MAX + 1]; /* tracestate headers joined by ',' */
    size_t state_len;
    int state_bad; /* too long once joined */
} trace_scan;

static enum MHD_Result scan(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    trace_scan *t = cls;
    (void)kind;
    if (!key || !value) return MHD_YES;
    if (strcasecmp(key, "traceparent") == 0) {
        t->nparent++;
        t->parent = value;
    } else if (strcasecmp(key, "tracestate") == 0 && *value) {
        /* The spec lets a tracestate come in several headers: one list. */
        size_t n = strlen(value), sep = t->state_len ? 1 : 0;
        if (t->state_len + sep + n > SG_TRACESTATE_MAX) {
            t->state_bad = 1;
            return MHD_YES;
        }
        if (sep) t->state[t->state_len++] = ',';
        memcpy(t->state + t->state_len, value, n);
        t->state_len += n;
        t->state[t->state_len] = '\0';
    }
    return MHD_YES;
}

void sg__api_trace(struct MHD_Connection *c, sg_trace *out, char **state)
{
    trace_scan t = {0};
    memset(out, 0, sizeof *out);
    *state = NULL;
    MHD_get_connection_values(c, MHD_HEADER_KIND, scan, &t);
    /* Two traceparents cannot both be the parent: neither is. */
    if (t.nparent != 1 || !sg_trace_parse(t.parent, strlen(t.parent), out, NULL)) {
        memset(out, 0, sizeof *out);
        return; /* and a tracestate without its traceparent means nothing */
    }
    if (!t.state_bad && sg_tracestate_ok(t.state, t.state_len)) *state = sg_xstrdup(t.state);
}
