/* Running one attempt of a step: the HTTP call or the publish, what its
 * answer means (done, a transient failure worth a retry, or a permanent
 * one), and the backoff between attempts (design §1 "Step retries"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_int.h"
#include "sg/alloc.h"
#include "sg/crash.h"
#include "sg/json.h"
#include "sg/metrics.h"
#include "sg/util.h"
#include "template.h"

/* The running attempt ended with o: its duration, for GET /metrics. */
static void attempt_ended(saga *s, sg_metrics_outcome o)
{
    sg_metrics_step(s->def->name, s->def->steps[s->cur].name, o, uv_hrtime() - s->act_ns);
}

/* ---- backoff -------------------------------------------------------------- */

/* xorshift64*: jitter needs spread, not secrecy. */
static double jitter01(sg_engine *e)
{
    uint64_t x = e->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->rng = x;
    return (double)((x * 0x2545F4914F6CDD1DULL) >> 11) / 9007199254740992.0;
}

/* The wait before the attempt after `failed` attempts: full jitter over
 * backoff * multiplier^(failed-1), capped; never less than Retry-After. */
static uint64_t backoff_ms(sg_engine *e, const sg_retry *r, int failed, long retry_after_ms)
{
    double cap = (double)r->backoff_ms;
    for (int i = 1; i < failed && cap < (double)r->max_backoff_ms; i++)
        cap *= r->multiplier;
    if (cap > (double)r->max_backoff_ms) cap = (double)r->max_backoff_ms;
    uint64_t wait = (uint64_t)(cap * jitter01(e));
    if (retry_after_ms > 0 && wait < (uint64_t)retry_after_ms) wait = (uint64_t)retry_after_ms;
    return wait;
}

static void on_retry_due(uv_timer_t *t)
{
    sg__saga_next_attempt(t->data);
}

void sg__saga_wait(saga *s)
{
    uint64_t now = sg__mono_ms();
    uint64_t left = s->retry_due_ms > now ? s->retry_due_ms - now : 0;
    if (uv_timer_start(&s->timer, on_retry_due, left, 0) != 0) abort(); /* a live handle */
}

static void after_retry_saved(saga *s, sg_status st)
{
    if (st != SG_OK) {
        sg__saga_store_failed(s, st);
        return;
    }
    sg_crash_point("retry_wait");
    sg__saga_wait(s);
}

void sg__saga_attempt_failed(saga *s, const char *reason, int transient, long retry_after_ms)
{
    sg_step_rec *st = &s->rec.steps[s->cur];
    const sg_retry *r = &s->def->steps[s->cur].retry;
    int last = !transient || st->attempts >= r->attempts;
    attempt_ended(s, last ? SG_METRICS_FAILED : SG_METRICS_RETRY);
    if (last) {
        sg__saga_step_failed(s, reason);
        return;
    }
    uint64_t wait = backoff_ms(s->eng, r, st->attempts, retry_after_ms);
    free(st->error);
    st->error = sg_xstrdup(reason);
    /* Stored in wall time for a restart; waited out on the monotonic clock. */
    st->next_us = sg_now_us() + (int64_t)wait * 1000;
    s->retry_due_ms = sg__mono_ms() + wait;
    sg__saga_logf(s, SG_LOG_INFO, st->name, "RETRYING",
                  "saga %s step %zu/%zu %s attempt %d failed: %s; next attempt in %llu ms",
                  s->rec.id, s->cur + 1, s->rec.nsteps, st->name, st->attempts, reason,
                  (unsigned long long)wait);
    sg_write *w = sg_write_create();
    sg_write_step_update(w, s->rec.id, s->cur, st);
    sg__saga_commit(s, w, NULL, after_retry_saved);
}

/* ---- HTTP steps ------------------------------------------------------------- */

/* Design §1: connect errors, timeouts, dropped connections, 408, 429 and
 * 5xx are worth another attempt; other answers are final. */
static int transient_status(long status)
{
    return status == 408 || status == 429 || status >= 500;
}

static void on_http_done(void *arg, const sg_http_result *res)
{
    saga *s = arg;
    const char *url = s->def->steps[s->cur].action.url;
    char reason[512];
    int transient = 1;
    long retry_after = -1;
    s->call = NULL;
    free(s->body);
    s->body = NULL;
    sg_crash_point("http_after");
    switch (res->outcome) {
    case SG_HTTP_DONE:
        if (res->status < 200 || res->status > 299) {
            snprintf(reason, sizeof reason, "HTTP %ld from %s", res->status, url);
            transient = transient_status(res->status);
            if (res->status == 429 || res->status == 503) retry_after = res->retry_after_ms;
            break;
        }
        char jerr[200];
        if (sg_json_validate(res->body, res->body_len, jerr, sizeof jerr) == SG_OK) {
            attempt_ended(s, SG_METRICS_OK);
            sg__saga_step_done(s, res->body, res->body_len);
            return;
        }
        snprintf(reason, sizeof reason, "answer from %s is not JSON (%s)", url, jerr);
        transient = 0;
        break;
    case SG_HTTP_ERR_TIMEOUT:
        snprintf(reason, sizeof reason, "no answer from %s within %ld ms", url,
                 sg__step_timeout(s->eng, s->def, s->cur));
        break;
    case SG_HTTP_ERR_TOO_BIG:
        snprintf(reason, sizeof reason, "%s", res->error ? res->error : "answer too big");
        transient = 0;
        break;
    default:
        snprintf(reason, sizeof reason, "%s", res->error ? res->error : "request failed");
        break;
    }
    sg__saga_attempt_failed(s, reason, transient, retry_after);
}

static void call_http(saga *s)
{
    const sg_step_def *d = &s->def->steps[s->cur];
    char h_saga[64], h_idem[256];
    snprintf(h_saga, sizeof h_saga, "X-Saga-Id: %s", s->rec.id);
    snprintf(h_idem, sizeof h_idem, "Idempotency-Key: %s:%s", s->rec.id, d->name);
    const char *headers[SG__CALL_HEADERS + 1] = {h_saga, h_idem};
    size_t nh = 2;
    if (s->eng->owner_header[0]) headers[nh++] = s->eng->owner_header;
    sg__trace_hdrs th; /* each attempt is a call of its own: a new span id */
    nh += sg__trace_headers(&s->rec, &th, headers + nh);
    for (char **h = d->action.headers; h && *h && nh < SG__CALL_HEADERS; h++)
        headers[nh++] = *h;
    headers[nh] = NULL;
    sg_http_request req = {
        .url = d->action.url,
        .method = d->action.method,
        .body = s->rec.request,
        .body_len = s->rec.request_len,
        .headers = headers,
        .timeout_ms = sg__step_timeout(s->eng, s->def, s->cur),
    };
    if (d->action.body) {
        char why[256];
        free(s->body);
        s->body = NULL;
        if (sg_template_render(d->action.body, &s->rec, &s->body, &req.body_len, why, sizeof why) !=
            SG_OK) {
            /* Nothing another attempt could change: the same inputs. */
            char reason[320];
            snprintf(reason, sizeof reason, "cannot build the request body: %s", why);
            sg__saga_attempt_failed(s, reason, 0, -1);
            return;
        }
        req.body = s->body;
    }
    sg_crash_point("http_before");
    if (sg_http_post(s->eng->http, &req, on_http_done, s, &s->call) != SG_OK) {
        s->call = NULL;
        free(s->body);
        s->body = NULL;
        sg__saga_attempt_failed(s, "could not start the HTTP call", 1, -1);
    }
}

/* ---- publish steps -------------------------------------------------------------- */

static void on_ack(void *arg, sg_status st, const char *why)
{
    saga *s = arg;
    s->pub->pub = NULL;
    uv_timer_stop(&s->timer);
    sg_crash_point("publish_after");
    if (st == SG_OK) {
        attempt_ended(s, SG_METRICS_OK);
        sg__saga_step_done(s, NULL, 0);
        return;
    }
    /* No answer (a timeout, a dropped connection) leaves the event in
     * doubt: the consumer may have it. A refusal is an answer. */
    if (st == SG_ETIMEOUT || st == SG_EIO) s->in_doubt = 1;
    char reason[512];
    snprintf(reason, sizeof reason, "event not acknowledged: %s", why ? why : sg_status_text(st));
    sg__saga_attempt_failed(s, reason, st != SG_EREFUSED, -1);
}

static void on_deadline(uv_timer_t *t)
{
    saga *s = t->data;
    if (s->pub->pub) {
        /* Withdrawn from the transport before any next attempt; it was
         * handed over, so it may have arrived. */
        sg_bus_cancel(s->eng->bus, s->pub->pub);
        s->in_doubt = 1;
    }
    s->pub->pub = NULL;
    char reason[128];
    snprintf(reason, sizeof reason, "event not acknowledged within %ld ms",
             sg__step_timeout(s->eng, s->def, s->cur));
    sg__saga_attempt_failed(s, reason, 1, -1);
}

static void publish(saga *s)
{
    outbox_ev *ev = s->pub;
    uint64_t timeout = (uint64_t)sg__step_timeout(s->eng, s->def, s->cur);
    if (!ev) { /* its payload could not be built: the same inputs fail again */
        sg__saga_attempt_failed(s, s->pub_error ? s->pub_error : "no event to publish", 0, -1);
        return;
    }
    ev->rec.attempts++;
    sg_crash_point("publish_before");
    if (sg_bus_publish(s->eng->bus, &ev->rec, (long)timeout, on_ack, s, &ev->pub) != SG_OK) {
        ev->pub = NULL; /* never handed over: nothing in doubt */
        sg__saga_attempt_failed(s, "could not hand the event to the bus", 1, -1);
        return;
    }
    /* Timed on the monotonic clock, which no clock step moves. */
    if (uv_timer_start(&s->timer, on_deadline, timeout, 0) != 0) abort(); /* a live handle */
}

void sg__saga_act(saga *s)
{
    if (!sg__lease_held(s->eng)) { /* another sagad may run it now */
        s->lease_waiting = 1;
        return;
    }
    s->act_ns = uv_hrtime();
    if (s->def->steps[s->cur].action.kind == SG_ACTION_HTTP)
        call_http(s);
    else
        publish(s);
}

void sg__saga_lease_resume(sg_engine *e)
{
    saga *s, *tmp;
    HASH_ITER(hh, e->sagas, s, tmp)
    {
        if (!s->lease_waiting) continue;
        s->lease_waiting = 0;
        sg__saga_act(s);
    }
}
