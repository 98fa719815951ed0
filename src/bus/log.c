/* "log:" bus: prints each envelope as one line on stdout, as the seed's
 * simulated publish_event did, and acknowledges it at once.
 *
 * "At once" still means after sg_bus_publish has returned: publishes wait in
 * a queue that a uv_idle_t drains on the next loop iteration, where each line
 * is written and acknowledged. A publish cancelled before then is never
 * printed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <utlist.h>

#include "bus_int.h"
#include "sg/alloc.h"

/* One publish not yet printed; the handle sg_bus_publish hands out. */
typedef struct log_pub {
    char *line; /* owned: envelope + '\n' */
    size_t len;
    sg_bus_ack_cb done;
    void *arg;
    struct log_pub *prev, *next; /* lb->queue */
} log_pub;

typedef struct log_bus {
    uv_idle_t idle; /* drains the queue; its close callback frees us */
    log_pub *queue; /* FIFO of publishes not yet printed */
    size_t count;   /* length of that queue */
    int closing;
} log_bus;

/* Unlinks and frees p. */
static void pub_drop(log_bus *lb, log_pub *p)
{
    DL_DELETE(lb->queue, p);
    lb->count--;
    free(p->line);
    free(p);
}

/* One write(2) per line so that lines from concurrent writers never
 * interleave; a short write (pipes, signals) continues where it stopped. */
static sg_status write_line(const char *s, size_t n, char *why, size_t whylen)
{
    fflush(stdout); /* anything stdio buffered goes first */
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, s, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            snprintf(why, whylen, "log bus: writing to stdout failed: %s", strerror(errno));
            return SG_EIO;
        }
        s += w;
        n -= (size_t)w;
    }
    return SG_OK;
}

static void on_idle(uv_idle_t *h)
{
    log_bus *lb = h->data;
    /* Only what is queued now: acks that publish again wait for the next
     * iteration, so a chain of publishes cannot starve the loop. */
    size_t budget = lb->count;
    while (budget-- > 0 && !lb->closing && lb->queue) {
        log_pub *p = lb->queue;
        char why[256];
        sg_status st = write_line(p->line, p->len, why, sizeof why);
        sg_bus_ack_cb done = p->done;
        void *arg = p->arg;
        pub_drop(lb, p);
        /* May publish, cancel or destroy the bus (then closing is set and
         * lb stays valid until the idle handle's close callback). */
        done(arg, st, st == SG_OK ? sg_status_text(st) : why);
    }
    if (!lb->closing && !lb->queue) uv_idle_stop(&lb->idle);
}

static sg_status log_create(void **state, const char *scheme, const char *url,
                            const sg_bus_env *env, char *err, size_t errlen)
{
    *state = NULL;
    /* "log", "log:" or "log://": nothing may follow. */
    const char *rest = url + strlen(scheme);
    if (*rest == ':') rest++;
    if (strncmp(rest, "//", 2) == 0) rest += 2;
    if (*rest)
        return sg__bus_einval(err, errlen,
                              "bad bus URL '%s': the log bus takes no address (use 'log:')", url);
    log_bus *lb = sg_xcalloc(1, sizeof *lb);
    if (uv_idle_init(env->loop, &lb->idle) != 0) {
        if (err && errlen) snprintf(err, errlen, "log bus: cannot initialise its loop handle");
        free(lb);
        return SG_EIO;
    }
    lb->idle.data = lb;
    *state = lb;
    return SG_OK;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data); /* the log_bus that embeds the idle handle */
}

static void log_destroy(void *state)
{
    log_bus *lb = state;
    if (!lb) return;
    lb->closing = 1;
    while (lb->queue)
        pub_drop(lb, lb->queue);
    uv_idle_stop(&lb->idle);
    uv_close((uv_handle_t *)&lb->idle, on_closed);
}

static sg_status log_publish(void *state, const sg_event_rec *ev, char *envelope, size_t len,
                             long timeout_ms, sg_bus_ack_cb done, void *arg, void **pub)
{
    (void)ev;
    (void)timeout_ms; /* acknowledged on the next iteration, well within any */
    log_bus *lb = state;
    *pub = NULL;
    if (lb->closing || uv_idle_start(&lb->idle, on_idle) != 0) {
        free(envelope);
        return SG_ECLOSED;
    }
    log_pub *p = sg_xcalloc(1, sizeof *p);
    p->line = sg_xrealloc(envelope, len + 2); /* taken */
    p->line[len] = '\n';
    p->line[len + 1] = '\0';
    p->len = len + 1;
    p->done = done;
    p->arg = arg;
    DL_APPEND(lb->queue, p);
    lb->count++;
    *pub = p;
    return SG_OK;
}

static void log_cancel(void *state, void *pub)
{
    pub_drop(state, pub);
}

static const char *const schemes[] = {"log", NULL};

const struct sg_bus_ops sg_bus_log_ops = {
    .schemes = schemes,
    .name = "log",
    .create = log_create,
    .destroy = log_destroy,
    .publish = log_publish,
    .cancel = log_cancel,
};
