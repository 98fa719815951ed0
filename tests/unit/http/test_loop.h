/* Loop helpers for unit tests: run a libuv loop until a condition holds
 * (never a fixed sleep), with a deadline so that a broken test fails
 * instead of hanging. Header-only, shared with tests/unit/bus. */
#ifndef SG_TEST_LOOP_H
#define SG_TEST_LOOP_H

#include <stdint.h>
#include <uv.h>

typedef int (*loop_cond)(void *arg);

static void loop_deadline_cb(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

/* Runs `loop` until cond(arg) is true or ms milliseconds pass; returns
 * 1 if the condition held. cond NULL: just run for ms. */
static int loop_run_until(uv_loop_t *loop, loop_cond cond, void *arg, uint64_t ms)
{
    int expired = 0;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &expired;
    uv_timer_start(&t, loop_deadline_cb, ms, 0);
    while (!(cond && cond(arg)) && !expired) uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT); /* let the close finish: t is on our stack */
    return cond ? cond(arg) : 1;
}

/* Runs the loop until every handle is closed; 0 when the loop closes. */
static int loop_finish(uv_loop_t *loop)
{
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop);
}

static uint64_t loop_ms(void)
{
    return uv_hrtime() / 1000000u;
}

#endif
