/* GET /metrics' text (sg/metrics.h): folds every thread's block and
 * writes the Prometheus text exposition format 0.0.4. */
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "metrics_int.h"

sg_status sg_metrics_escape_label(sg_buf *out, const char *v)
{
    sg_status st = SG_OK;
    for (const char *p = v ? v : ""; *p && st == SG_OK; p++) {
        if (*p == '\\')
            st = sg_buf_add(out, "\\\\", 2);
        else if (*p == '"')
            st = sg_buf_add(out, "\\\"", 2);
        else if (*p == '\n')
            st = sg_buf_add(out, "\\n", 2);
        else
            st = sg_buf_addc(out, *p);
    }
    return st;
}

/* A render in progress: the first failure sticks and later appends are
 * skipped, so the writers below need no error checks of their own. */
typedef struct out {
    sg_buf *b;
    sg_status st;
} out;

static void put(out *o, const char *s)
{
    if (o->st == SG_OK) o->st = sg_buf_adds(o->b, s);
}

static void put_u64(out *o, uint64_t v)
{
    if (o->st == SG_OK) o->st = sg_buf_addf(o->b, "%" PRIu64, v);
}

static void put_label(out *o, const char *name, const char *value, int first)
{
    put(o, first ? "{" : ",");
    put(o, name);
    put(o, "=\"");
    if (o->st == SG_OK) o->st = sg_metrics_escape_label(o->b, value);
    put(o, "\"");
}

/* HELP texts are literals here with no \ or newline to escape. */
static void family(out *o, const char *name, const char *help, const char *type)
{
    put(o, "# HELP ");
    put(o, name);
    put(o, " ");
    put(o, help);
    put(o, "\n# TYPE ");
    put(o, name);
    put(o, " ");
    put(o, type);
    put(o, "\n");
}

/* One histogram series: labels is "" or `k="v",…` (already escaped) and
 * goes before le. */
static void histogram(out *o, const char *name, const char *labels, const uint64_t *b, uint64_t sum,
                      const sg__buckets *bk)
{
    uint64_t cum = 0;
    for (size_t i = 0; i <= bk->n; i++) {
        cum += b[i];
        put(o, name);
        put(o, "_bucket{");
        put(o, labels);
        put(o, labels[0] ? ",le=\"" : "le=\"");
        put(o, i < bk->n ? bk->text[i] : "+Inf");
        put(o, "\"} ");
        put_u64(o, cum);
        put(o, "\n");
    }
    const char *open = labels[0] ? "{" : "";
    const char *close = labels[0] ? "}" : "";
    if (o->st != SG_OK) return;
    if (bk->sum_ns)
        o->st = sg_buf_addf(o->b, "%s_sum%s%s%s %" PRIu64 ".%09" PRIu64 "\n", name, open, labels,
                            close, sum / 1000000000u, sum % 1000000000u);
    else
        o->st = sg_buf_addf(o->b, "%s_sum%s%s%s %" PRIu64 "\n", name, open, labels, close, sum);
    if (o->st == SG_OK)
        o->st = sg_buf_addf(o->b, "%s_count%s%s%s %" PRIu64 "\n", name, open, labels, close, cum);
}

/* The sum over every block of one histogram (located by its offset in a
 * block, so one loop serves each series). */
static uint64_t fold_hist(size_t off, const sg__buckets *bk, uint64_t b[SG__HIST_MAX + 1])
{
    uint64_t sum = 0;
    memset(b, 0, sizeof(uint64_t) * (SG__HIST_MAX + 1));
    for (sg__block *k = sg__metrics_blocks(); k; k = k->next) {
        sg__hist *h = (sg__hist *)((char *)k + off);
        for (size_t i = 0; i <= bk->n; i++)
            b[i] += sg__get(&h->b[i]);
        sum += sg__get(&h->sum);
    }
    return sum;
}

static void sagas(out *o)
{
    size_t nt = sg__metrics_slots(SG__T_TYPE);
    const char *a, *unused;
    family(o, "sagad_sagas_started_total", "Sagas started (durably stored), by type.", "counter");
    for (size_t t = 0; t < nt; t++) {
        uint64_t v = 0;
        for (sg__block *k = sg__metrics_blocks(); k; k = k->next)
            v += sg__get(&k->started[t]);
        sg__metrics_slot(SG__T_TYPE, t, &a, &unused);
        if (t == 0 && v == 0) continue; /* no overflow: no "_other" series */
        put(o, "sagad_sagas_started_total");
        put_label(o, "type", a, 1);
        put(o, "} ");
        put_u64(o, v);
        put(o, "\n");
    }
    family(o, "sagad_sagas_finished_total", "Sagas that reached a final state, by type and status.",
           "counter");
    static const char *const status[2] = {"COMPLETED", "FAILED"};
    for (size_t t = 0; t < nt; t++) {
        uint64_t v[2] = {0, 0};
        for (sg__block *k = sg__metrics_blocks(); k; k = k->next)
            for (int s = 0; s < 2; s++)
                v[s] += sg__get(&k->finished[t][s]);
        if (t == 0 && v[0] + v[1] == 0) continue;
        sg__metrics_slot(SG__T_TYPE, t, &a, &unused);
        for (int s = 0; s < 2; s++) {
            put(o, "sagad_sagas_finished_total");
            put_label(o, "type", a, 1);
            put_label(o, "status", status[s], 0);
            put(o, "} ");
            put_u64(o, v[s]);
            put(o, "\n");
        }
    }
    int64_t inflight = 0;
    for (sg__block *k = sg__metrics_blocks(); k; k = k->next)
        inflight += atomic_load_explicit(&k->inflight, memory_order_relaxed);
    family(o, "sagad_sagas_in_flight", "Sagas in memory: started or resumed, not yet finished.",
           "gauge");
    if (o->st == SG_OK) o->st = sg_buf_addf(o->b, "sagad_sagas_in_flight %" PRId64 "\n", inflight);
    uint64_t purged = 0;
    for (sg__block *k = sg__metrics_blocks(); k; k = k->next)
        purged += sg__get(&k->purged);
    family(o, "sagad_sagas_purged_total",
           "Settled sagas deleted by retention (--retention), with their steps and events.",
           "counter");
    put(o, "sagad_sagas_purged_total ");
    put_u64(o, purged);
    put(o, "\n");
}

static void steps(out *o)
{
    static const char *const outcome[SG_METRICS_OUTCOMES] = {"ok", "retry", "failed"};
    family(o, "sagad_step_duration_seconds",
           "Duration of each step attempt, by saga type, step and outcome.", "histogram");
    size_t ns = sg__metrics_slots(SG__T_STEP);
    for (size_t i = 0; i < ns && o->st == SG_OK; i++) {
        for (int oc = 0; oc < SG_METRICS_OUTCOMES; oc++) {
            uint64_t b[SG__HIST_MAX + 1];
            size_t off = offsetof(sg__block, steps) +
                         (i * SG_METRICS_OUTCOMES + (size_t)oc) * sizeof(sg__hist);
            uint64_t sum = fold_hist(off, &sg__step_buckets, b);
            uint64_t count = 0;
            for (size_t j = 0; j <= sg__step_buckets.n; j++)
                count += b[j];
            if (!count) continue; /* only what happened: types x steps x outcomes is large */
            const char *type, *step;
            sg__metrics_slot(SG__T_STEP, i, &type, &step);
            sg_buf labels;
            sg_buf_init(&labels, 4096);
            out lo = {&labels, SG_OK};
            put_label(&lo, "type", type, 0);
            put_label(&lo, "step", step, 0);
            put_label(&lo, "outcome", outcome[oc], 0);
            /* put_label opens each with ','; the histogram wants none first */
            if (lo.st == SG_OK)
                histogram(o, "sagad_step_duration_seconds", labels.ptr + 1, b, sum,
                          &sg__step_buckets);
            else if (o->st == SG_OK)
                o->st = lo.st;
            sg_buf_free(&labels);
        }
    }
}

static void store(out *o)
{
    uint64_t b[SG__HIST_MAX + 1];
    uint64_t sum = fold_hist(offsetof(sg__block, commit), &sg__commit_buckets, b);
    family(o, "sagad_store_commit_seconds", "Time to commit one group transaction of the store.",
           "histogram");
    histogram(o, "sagad_store_commit_seconds", "", b, sum, &sg__commit_buckets);
    sum = fold_hist(offsetof(sg__block, batch), &sg__batch_buckets, b);
    family(o, "sagad_store_batch_writes", "Saga writes per committed store transaction.",
           "histogram");
    histogram(o, "sagad_store_batch_writes", "", b, sum, &sg__batch_buckets);
}

static void http(out *o)
{
    family(o, "sagad_http_requests_total", "HTTP requests answered, by route template and status.",
           "counter");
    size_t nr = sg__metrics_slots(SG__T_ROUTE);
    for (size_t r = 0; r < nr; r++) {
        const char *route, *unused;
        sg__metrics_slot(SG__T_ROUTE, r, &route, &unused);
        for (size_t c = 0; c < SG__NCODES; c++) {
            uint64_t v = 0;
            for (sg__block *k = sg__metrics_blocks(); k; k = k->next)
                v += sg__get(&k->http[r][c]);
            if (!v) continue;
            char code[8];
            snprintf(code, sizeof code, "%u", c ? (unsigned)c + 99 : 0u);
            put(o, "sagad_http_requests_total");
            put_label(o, "route", route, 1);
            put_label(o, "code", code, 0);
            put(o, "} ");
            put_u64(o, v);
            put(o, "\n");
        }
    }
}

sg_status sg_metrics_render(sg_buf *b, const sg_metrics_outbox *outbox, size_t noutbox)
{
    out o = {b, SG_OK};
    sagas(&o);
    steps(&o);
    if (noutbox) {
        family(&o, "sagad_outbox_events",
               "Outbox entries (events and HTTP compensations), by status.", "gauge");
        for (size_t i = 0; i < noutbox; i++) {
            put(&o, "sagad_outbox_events");
            put_label(&o, "status", outbox[i].status, 1);
            put(&o, "} ");
            put_u64(&o, outbox[i].count);
            put(&o, "\n");
        }
    }
    store(&o);
    http(&o);
    return o.st;
}
