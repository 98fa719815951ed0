/* Engine internals shared by engine.c (lifecycle, intake, recovery),
 * saga.c (the step state machine), answer.c (starting sagas and answering
 * their requests) and outbox.c (compensation delivery). Everything here
 * belongs to the loop thread except the intake queue (under lock). */
#ifndef SG_ENGINE_INT_H
#define SG_ENGINE_INT_H

#include <pthread.h>
#include <uthash.h>
#include <uv.h>

#include "sg/engine.h"

typedef struct saga saga;
typedef struct outbox_ev outbox_ev;
typedef struct comp_queue comp_queue;
typedef struct sg_recovery sg_recovery;
typedef struct sg_adopter sg_adopter;
typedef struct sg_purger sg_purger;

/* What the API hands over: a start, a redrive or a redelivery. */
typedef enum { REQ_START, REQ_REDRIVE, REQ_REDELIVER } req_kind;

/* A request from submit until it is answered; engine-owned. */
typedef struct start_req {
    req_kind kind;
    sg_start in; /* body and idem_key owned (REQ_REDRIVE: in.async only) */
    sg_start_cb cb;
    void *arg;
    sg_saga_rec saga;              /* REQ_REDRIVE: the failed saga; owned */
    sg_event_rec event;            /* REQ_REDELIVER: the parked event; owned */
    sg_cmd_cb cmd_cb;              /* REQ_REDELIVER's answer */
    struct start_req *prev, *next; /* the intake queue, then its saga's waiters */
} start_req;

struct saga {
    sg_engine *eng;
    sg_saga_rec rec; /* mirror of the committed state (plus what is committing) */
    const sg_def *def;
    size_t cur;                 /* step being run */
    int durable;                /* its insert has committed */
    int writing;                /* a store write is in flight: at most one at a time */
    size_t held;                /* request and answers kept, counted in eng->held_bytes */
    int finished;               /* final state committed */
    int redriven;               /* started by POST /saga/{id}/retry: later retries join it */
    size_t done_unlogged;       /* 1 + a step completed by the write in flight, not yet logged */
    int failed_unlogged;        /* the current step failed for good; logged with the saga's end */
    int in_doubt;               /* the PUBLISH step's event may have reached the consumer */
    int lease_waiting;          /* its action waits for the store lease to be renewed */
    int resume_guard;           /* resumed from the store: its first write checks the state
                                   it was read in (a later recovery pass may have read it
                                   again while it ran here and ended) */
    sg_comp_status resume_comp; /* the comp_status it was read with */
    uint64_t retry_due_ms;      /* in a backoff: monotonic ms of the next attempt */
    uint64_t act_ns;            /* uv_hrtime() when the running attempt began (metrics) */
    sg_http_call *call;         /* HTTP step in flight */
    char *body;                 /* its rendered body template, kept until it ends; owned */
    outbox_ev *pub;             /* PUBLISH step's event */
    char *pub_error;            /* why that event could not be made (NULL pub); owned */
    start_req *waiters;         /* answered by sg__saga_answer */
    uv_timer_t timer;           /* publish deadline or backoff; closed before free */
    UT_hash_handle hh;          /* eng->sagas by rec.id */
    UT_hash_handle hh_idem;     /* eng->by_idem by rec.idem_key */
};

struct outbox_ev {
    sg_engine *eng;
    sg_event_rec rec;
    sg_bus_pub *pub;        /* bus publish in flight */
    sg_http_call *call;     /* HTTP compensation in flight */
    uv_timer_t timer;       /* redelivery backoff */
    int64_t first_try_us;   /* a compensation's first attempt in this process; 0 = none */
    int lease_waiting;      /* its attempt waits for the store lease to be renewed */
    comp_queue *q;          /* a compensation's: its saga's queue (outbox.c) */
    outbox_ev *prev, *next; /* q->list, or a list being built */
    UT_hash_handle hh;      /* recovery's step events by saga id */
};

struct sg_engine {
    uv_loop_t *loop;
    sg_engine_options opt;
    sg_store *store;
    sg_bus *bus;
    sg_http_client *http;
    const sg_def *def;

    pthread_mutex_t lock; /* guards intake and closed */
    start_req *intake;
    int closed;
    uv_async_t async;

    int accepting;
    int halted;
    saga *sagas;         /* by id */
    saga *by_idem;       /* by Idempotency-Key, sagas in memory only */
    comp_queue *cqueues; /* undelivered compensations, one queue per saga */
    size_t nsagas;
    size_t nwaiting;
    size_t held_bytes;        /* what sagas in memory hold (requests, answers, queued
                                 writes) + compensation payloads: --max-inflight-bytes */
    uint64_t rng;             /* backoff jitter (act.c) */
    sg_recovery *recovery;    /* recover.c's; NULL before start */
    int recover_again;        /* a takeover brought sagas: another recovery pass */
    sg_adopter *adopter;      /* lease.c's; NULL unless the store is shared */
    sg_purger *purger;        /* purge.c's; NULL without --retention */
    int fenced;               /* the store lease is lost: nothing more starts */
    int lease_lapsed;         /* not renewed in time: actions wait for a renewal */
    char owner[SG_OWNER_MAX]; /* "<owner>/<epoch>" on a shared store, else "" */
    /* "X-Saga-Owner: <owner>/<epoch>", sent on every downstream call (a
     * fencing token); "" when the store is not shared. Made once. */
    char owner_header[SG_OWNER_MAX + 16];
};

/* Headers of one downstream call: sagad's own (X-Saga-Id,
 * Idempotency-Key, X-Saga-Compensation, X-Saga-Owner, traceparent,
 * tracestate) and the definition's. */
#define SG__CALL_HEADERS (SG_DEF_MAX_HEADERS + 6)

/* Each attempt's time limit for step i of d: its own, else the flag's. */
static inline long sg__step_timeout(const sg_engine *e, const sg_def *d, size_t i)
{
    return d->steps[i].timeout_ms > 0 ? d->steps[i].timeout_ms : e->opt.step_timeout_ms;
}

/* Monotonic milliseconds, for deadlines kept in memory. */
uint64_t sg__mono_ms(void);

/* answer.c: turning start requests into sagas and outcomes. */
void sg__start(sg_engine *e, start_req *req);
void sg__redrive(sg_engine *e, start_req *req);
void sg__answer(sg_engine *e, start_req *req, const sg_outcome *o);
void sg__answer_fail(sg_engine *e, start_req *req, sg_status st, const char *detail);
/* Answers the waiters that can be answered now: async ones once the saga
 * is durable, sync ones once its final state is. */
void sg__saga_answer(saga *s);
void sg__saga_fail_waiters(saga *s, sg_status st, const char *detail);

/* saga.c: the state machine. */
void sg__saga_step_done(saga *s, const char *resp, size_t len);
/* The current step failed for good: the saga ends FAILED (compensating). */
void sg__saga_step_failed(saga *s, const char *reason);
/* Starts the next attempt of the current step (its count committed first). */
void sg__saga_next_attempt(saga *s);
void sg__saga_store_failed(saga *s, sg_status st);
saga *sg__saga_new(sg_engine *e, const sg_def *def);
void sg__saga_index(saga *s);
void sg__saga_resume(sg_engine *e, sg_saga_rec *rec, outbox_ev *pending);
void sg__saga_halt(saga *s);
void sg__saga_free(saga *s);
/* Marks step i RUNNING in memory; a PUBLISH step also gets its outbox event,
 * inserted by w (or s->pub_error when its payload cannot be built). */
void sg__saga_begin_step(saga *s, size_t i, sg_write *w);
typedef void (*sg__then_fn)(saga *s, sg_status st);
/* Submits w for s; then(s, status) runs once it is durable or failed. */
void sg__saga_commit(saga *s, sg_write *w, outbox_ev *comps, sg__then_fn then);
/* act.c: runs the current step (its RUNNING state is committed). */
void sg__saga_act(saga *s);
/* An attempt failed: another after a backoff if the failure is transient
 * and the policy allows, else sg__saga_step_failed. */
void sg__saga_attempt_failed(saga *s, const char *reason, int transient, long retry_after_ms);
/* Arms the timer for the next attempt at s->retry_due_ms. */
void sg__saga_wait(saga *s);
void sg__saga_log_step(saga *s, size_t i);

/* trace.c: the saga's trace on downstream calls, events and log lines. */
typedef struct sg__trace_hdrs {
    char parent[16 + SG_TRACEPARENT_LEN]; /* "traceparent: <value>" */
    char state[16 + SG_TRACESTATE_MAX];   /* "tracestate: <value>" */
} sg__trace_hdrs;
/* The header lines of one downstream call in r's trace (a new span id),
 * kept in h, pointed to from out[0..1]; returns how many (0 for a saga
 * without a trace, 2 with a tracestate). */
size_t sg__trace_headers(const sg_saga_rec *r, sg__trace_hdrs *h, const char **out);
/* Appends those lines (a new span id) to ev->headers: an event carries
 * its trace context through the outbox, across restarts. */
void sg__trace_event(const sg_saga_rec *r, sg_event_rec *ev);
/* A transition's log line with s's id, type and trace id (step and status
 * may be NULL). */
void sg__saga_logf(const saga *s, sg_log_level lvl, const char *step, const char *status,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same for an outbox event (its trace id read from its traceparent). */
void sg__ev_logf(const sg_event_rec *ev, sg_log_level lvl, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* recover.c: start-up recovery, streamed as room frees up. */
sg_status sg__recover_start(sg_engine *e, char *err, size_t errlen);
/* Reads the next page of unfinished sagas if there is room (after a saga
 * leaves memory). */
void sg__recover_more(sg_engine *e);
void sg__recover_halt(sg_engine *e); /* waits for a read in flight */
void sg__recover_free(sg_engine *e);

/* recover.c: after a takeover, one more pass over this process's
 * unfinished sagas (those already in memory are skipped), as soon as the
 * pass in progress, if any, is done. */
void sg__recover_again(sg_engine *e);

/* lease.c: shared stores (design §7). */
/* 1 while this process holds its store lease (always, for a store that is
 * not shared); else 0: nothing with effects outside may start. A lease
 * lost for good (another process took its sagas over) is reported once
 * (opt.on_fenced); one merely not renewed in time (the store out of
 * reach) makes actions wait (their lease_waiting flags) until a renewal,
 * when the lease tick starts them again. */
int sg__lease_held(sg_engine *e);
/* act.c / outbox.c: start what waited for the lease. */
void sg__saga_lease_resume(sg_engine *e);
void sg__comp_lease_resume(sg_engine *e);
sg_status sg__lease_start(sg_engine *e, char *err, size_t errlen);
void sg__lease_halt(sg_engine *e); /* waits for an adoption read in flight */
/* Reads this process's undelivered compensations again (off the loop) and
 * delivers those not queued yet: after a redelivery claimed a saga. */
void sg__lease_resync(sg_engine *e);
void sg__lease_free(sg_engine *e);

/* purge.c: retention (opt.retention_s > 0; nothing otherwise). */
sg_status sg__purge_start(sg_engine *e, char *err, size_t errlen);
void sg__purge_halt(sg_engine *e); /* no new round; a write in flight completes */
void sg__purge_free(sg_engine *e);

/* event.c: outbox entries as they are made, payloads rendered once. */
/* The event of publish step i (RUNNING since started_us), to be inserted
 * by the caller's write; NULL when its payload template cannot be
 * rendered (why says so; the step must fail, as nothing else could make
 * it render). */
outbox_ev *sg__event_step(saga *s, size_t i, char *why, size_t whylen);
/* Compensation entries, latest step first, inserted by w and returned as
 * a list to deliver once committed: one for each completed step before
 * the failed one (s->cur), and one for the failed step itself when its
 * event is in doubt (design §1: the consumer may have acted on it). */
outbox_ev *sg__event_plan_compensations(saga *s, sg_write *w);

/* outbox.c */
/* 1 if rec's event is already queued for delivery here. */
int sg__comp_known(sg_engine *e, const sg_event_rec *rec);
outbox_ev *sg__ev_create(sg_engine *e, const sg_event_rec *rec);
void sg__ev_free(outbox_ev *ev);
/* Takes ev: queues it behind its saga's earlier compensations and
 * delivers it until acknowledged (or parks it). A PARKED ev waits. */
void sg__comp_deliver(sg_engine *e, outbox_ev *ev);
/* Re-queues the parked event rec (taken) once its state is durable. */
void sg__comp_redeliver(sg_engine *e, sg_event_rec *rec, sg_cmd_cb cb, void *arg);
void sg__comp_halt(sg_engine *e);
void sg__comp_free_all(sg_engine *e);

#endif
