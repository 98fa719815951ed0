/* The saga, step and event records: contract names of their statuses, and
 * deep copies and frees. */
#include "sg/records.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sg/alloc.h"

const char *sg_step_status_name(sg_step_status s)
{
    static const char *n[] = {"PENDING", "RUNNING", "COMPLETED", "FAILED"};
    return (unsigned)s < 4 ? n[s] : "PENDING";
}

const char *sg_saga_status_name(sg_saga_status s)
{
    static const char *n[] = {"IN_PROGRESS", "COMPLETED", "FAILED"};
    return (unsigned)s < 3 ? n[s] : "IN_PROGRESS";
}

const char *sg_comp_status_name(sg_comp_status s)
{
    static const char *n[] = {"NONE", "PENDING", "COMPLETED", "PARKED"};
    return (unsigned)s < 4 ? n[s] : "NONE";
}

const char *sg_event_status_name(sg_event_status s)
{
    static const char *n[] = {"PENDING", "DELIVERED", "WITHDRAWN", "PARKED"};
    return (unsigned)s < 4 ? n[s] : "PENDING";
}

sg_status sg_event_status_parse(const char *s, sg_event_status *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, sg_event_status_name((sg_event_status)i)) == 0) {
            *out = (sg_event_status)i;
            return SG_OK;
        }
    return SG_EINVAL;
}

sg_status sg_saga_status_parse(const char *s, sg_saga_status *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, sg_saga_status_name((sg_saga_status)i)) == 0) {
            *out = (sg_saga_status)i;
            return SG_OK;
        }
    return SG_EINVAL;
}

void sg_step_rec_free(sg_step_rec *s)
{
    if (!s) return;
    free(s->name);
    free(s->error);
    free(s->response);
    free(s->comp.error);
    s->name = s->error = s->response = s->comp.error = NULL;
}

void sg_saga_rec_free(sg_saga_rec *r)
{
    if (!r) return;
    for (size_t i = 0; i < r->nsteps; i++)
        sg_step_rec_free(&r->steps[i]);
    free(r->steps);
    free(r->def_name);
    free(r->request);
    free(r->idem_key);
    free(r->error);
    free(r->tracestate);
    memset(r, 0, sizeof *r);
}

void sg_event_rec_free(sg_event_rec *e)
{
    if (!e) return;
    free(e->topic);
    free(e->target);
    free(e->payload);
    free(e->last_error);
    free(e->method);
    free(e->headers);
    e->topic = e->target = e->payload = e->last_error = e->method = e->headers = NULL;
}

int sg_event_header(const sg_event_rec *e, const char *name, char *out, size_t n)
{
    if (n) out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *p = e->headers; p && *p;) {
        const char *end = strchr(p, '\n');
        if (!end) end = p + strlen(p);
        if ((size_t)(end - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1, *ve = end;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
                ve--;
            if ((size_t)(ve - v) >= n) return 0;
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return 1;
        }
        p = *end ? end + 1 : end;
    }
    return 0;
}

static char *dup_raw(const char *p, size_t n)
{
    return p ? sg_xmemdup(p, n) : NULL;
}

void sg_step_rec_copy(sg_step_rec *dst, const sg_step_rec *src)
{
    *dst = *src;
    dst->name = sg_xstrdup(src->name);
    dst->error = sg_xstrdup(src->error);
    dst->response = dup_raw(src->response, src->response_len);
    dst->comp.error = sg_xstrdup(src->comp.error);
}

int64_t sg_saga_rec_updated_us(const sg_saga_rec *r)
{
    int64_t t = r->updated_us;
    for (size_t i = 0; i < r->nsteps; i++) {
        if (r->steps[i].started_us > t) t = r->steps[i].started_us;
        if (r->steps[i].finished_us > t) t = r->steps[i].finished_us;
    }
    return t;
}

void sg_saga_rec_copy(sg_saga_rec *dst, const sg_saga_rec *src)
{
    *dst = *src;
    dst->def_name = sg_xstrdup(src->def_name);
    dst->request = dup_raw(src->request, src->request_len);
    dst->idem_key = sg_xstrdup(src->idem_key);
    dst->error = sg_xstrdup(src->error);
    dst->tracestate = sg_xstrdup(src->tracestate);
    dst->steps = src->nsteps ? sg_xcalloc(src->nsteps, sizeof *dst->steps) : NULL;
    for (size_t i = 0; i < src->nsteps; i++)
        sg_step_rec_copy(&dst->steps[i], &src->steps[i]);
}

void sg_event_rec_copy(sg_event_rec *dst, const sg_event_rec *src)
{
    *dst = *src;
    dst->topic = sg_xstrdup(src->topic);
    dst->target = sg_xstrdup(src->target);
    dst->payload = dup_raw(src->payload, src->payload_len);
    dst->last_error = sg_xstrdup(src->last_error);
    dst->method = sg_xstrdup(src->method);
    dst->headers = sg_xstrdup(src->headers);
}
