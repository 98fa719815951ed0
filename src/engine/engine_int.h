/* Engine internals shared by engine.c (lifecycle, intake), saga.c (the
 * per-saga state machine) and outbox.c (compensation delivery). Everything
 * here lives on the loop thread except the intake queue. */
#ifndef SG_ENGINE_INT_H
#define SG_ENGINE_INT_H

#include <pthread.h>
#include <uthash.h>
#include <utlist.h>
#include <uv.h>

#include "sg/engine.h"

typedef struct saga saga;
typedef struct outbox_ev outbox_ev;

/* A start request waiting for its saga: sync ones until it ends, async
 * ones until it is durable. */
typedef struct waiter {
    sg_start_req *req;
    struct waiter *next;
} waiter;

struct saga {
    sg_engine *eng;
    sg_saga_rec rec; /* mirror of the committed state (plus what is committing) */
    const sg_def *def;
    size_t cur;         /* step being run */
    int durable;        /* its insert has committed */
    int writes;         /* store writes in flight */
    int finished;       /* final state committed */
    sg_http_call *call; /* HTTP step in flight */
    outbox_ev *pub;     /* PUBLISH step's event */
    waiter *waiters;
    uv_timer_t timer;       /* publish deadline; closed before free */
    UT_hash_handle hh;      /* eng->sagas by rec.id */
    UT_hash_handle hh_idem; /* eng->by_idem by rec.idem_key */
};

struct outbox_ev {
    sg_engine *eng;
    sg_event_rec rec;
    saga *owner;        /* PUBLISH step waiting for it; NULL for compensations */
    sg_bus_pub *pub;    /* bus publish in flight */
    sg_http_call *call; /* HTTP compensation in flight */
    uv_timer_t timer;   /* redelivery backoff */
    int timer_on;
    outbox_ev *prev, *next; /* eng->comps */
    UT_hash_handle hh;      /* recovery's step events by saga id */
};

struct sg_engine {
    uv_loop_t *loop;
    sg_engine_options opt;
    sg_store *store;
    sg_store_reader *reader; /* loop thread's: recovery and idempotency races */
    sg_bus *bus;
    sg_http_client *http;
    const sg_def *def;

    pthread_mutex_t lock; /* guards intake and closed */
    sg_start_req *intake_head, *intake_tail;
    int closed;
    uv_async_t async;

    int accepting;
    int halted;
    saga *sagas;      /* by id */
    saga *by_idem;    /* by Idempotency-Key, sagas in memory only */
    outbox_ev *comps; /* compensations not yet delivered */
    size_t nsagas;
    size_t nwaiting;
    size_t held_bytes; /* requests of sagas in memory + compensation payloads */
};

/* saga.c */
void sg__saga_start(sg_engine *e, sg_start_req *req);
void sg__saga_resume(sg_engine *e, sg_saga_rec *rec, outbox_ev *pending);
void sg__saga_halt(saga *s);
void sg__saga_free(saga *s);
void sg__reply(sg_engine *e, sg_start_req *req, int status, char *body, size_t len,
               const char *saga_id);
void sg__reply_detail(sg_engine *e, sg_start_req *req, int status, const char *msg);

/* outbox.c */
outbox_ev *sg__ev_create(sg_engine *e, const sg_event_rec *rec);
void sg__ev_free(outbox_ev *ev);
/* Takes ev: delivers it until acknowledged, with backoff. */
void sg__comp_deliver(sg_engine *e, outbox_ev *ev);
void sg__comp_halt(sg_engine *e);

#endif
