/* Loop helpers for unit tests: run a libuv loop until a condition holds
 * (never a fixed sleep), with a deadline so that a broken test fails
 * instead of hanging. Header-only, shared with tests/unit/bus. */
#ifndef SG_TEST_LOOP_H
#define SG_TEST_LOOP_H

#include <stdint.h>
#include <uv.h>

typedef int (*loop_cond)(void *arg);

typedef struct loop_wait {
    loop_cond cond;
    void *arg;
    int expired;
} loop_wait;

static void loop_deadline_cb(uv_timer_t *t)
{
    ((loop_wait *)t->data)->expired = 1;
}

/* Right before the loop would block for I/O: once the condition holds, stop
 * instead (libuv 1.44 runs timers before polling, so a condition met by a
 * timer callback would otherwise wait for the next I/O or the deadline). */
static void loop_prepare_cb(uv_prepare_t *p)
{
    loop_wait *w = p->data;
    if (w->cond && w->cond(w->arg)) uv_stop(p->loop);
}

/* Runs `loop` until cond(arg) is true or ms milliseconds pass; returns
 * 1 if the condition held. cond NULL: just run for ms. */
static int loop_run_until(uv_loop_t *loop, loop_cond cond, void *arg, uint64_t ms)
{
    loop_wait w = {cond, arg, 0};
    uv_timer_t t;
    uv_prepare_t p;
    uv_timer_init(loop, &t);
    uv_prepare_init(loop, &p);
    t.data = p.data = &w;
    uv_timer_start(&t, loop_deadline_cb, ms, 0);
    uv_prepare_start(&p, loop_prepare_cb);
    while (!(cond && cond(arg)) && !w.expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_close((uv_handle_t *)&p, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* let the closes finish: t and p are on our stack */
    return cond ? cond(arg) : 1;
}

/* Runs the loop until every handle is closed; 0 when the loop closes. */
static int loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop);
}

/* inline: not every test that includes this reads the clock. */
static inline uint64_t loop_ms(void)
{
    return uv_hrtime() / 1000000u;
}

#endif
