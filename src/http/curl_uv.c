/* The libcurl multi <-> libuv glue of sg_http_client: curl tells us which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION) and when to wake it up
 * (CURLMOPT_TIMERFUNCTION); we map that onto one uv_poll_t per socket and a
 * single uv_timer_t, hand readiness back through curl_multi_socket_action
 * and let client.c complete what finished (sg__http_drain).
 *
 * libuv rule: a handle's memory is freed only in its close callback. Poll
 * contexts and the client itself (which embeds the timer) obey it. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include <utlist.h>

#include "http_int.h"
#include "sg/alloc.h"

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* One per socket curl asks us to watch; freed in its close callback. */
struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    sg_http_client *client;       /* borrowed back-pointer */
    struct sock_ctx *prev, *next; /* client's list of open contexts */
};

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data); /* the sock_ctx that embeds h */
}

static void sock_close(sg_http_client *c, sock_ctx *s)
{
    DL_DELETE(c->socks, s);
    uv_poll_stop(&s->poll);
    uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    sock_ctx *s = h->data;
    sg_http_client *c = s->client;
    int flags = 0;
    if (status < 0) {
        flags = CURL_CSELECT_ERR;
    } else {
        if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
        if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    int running;
    /* s may be closed by the socket callback during this call. */
    curl_multi_socket_action(c->multi, s->fd, flags, &running);
    sg__http_drain(c);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    sg_http_client *c = userp;
    sock_ctx *s = socketp;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            /* During curl_multi_cleanup the socket hash is being torn down. */
            if (!c->in_cleanup) curl_multi_assign(c->multi, fd, NULL);
            sock_close(c, s);
        }
        return 0;
    }
    if (!s) {
        s = sg_xcalloc(1, sizeof *s);
        s->fd = fd;
        s->client = c;
        if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
            free(s);
            return -1; /* curl fails the transfer */
        }
        s->poll.data = s;
        DL_APPEND(c->socks, s);
        curl_multi_assign(c->multi, fd, s);
    }
    int events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
    if (uv_poll_start(&s->poll, events, on_poll) != 0) return -1;
    return 0;
}

static void on_timeout(uv_timer_t *t)
{
    sg_http_client *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    sg__http_drain(c);
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    sg_http_client *c = userp;
    if (timeout_ms < 0) {
        uv_timer_stop(&c->timer);
        return 0;
    }
    /* 0 means "as soon as possible": the next loop iteration, never from
     * inside this callback (curl forbids re-entering socket_action here). */
    return uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0) == 0 ? 0 : -1;
}

sg_status sg__http_multi_open(sg_http_client *c)
{
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) return SG_EIO;
    c->multi = curl_multi_init();
    if (!c->multi) return SG_ENOMEM;
    /* Last fallible step: once the timer is initialised the client may only
     * be freed from its close callback. */
    if (uv_timer_init(c->loop, &c->timer) != 0) {
        curl_multi_cleanup(c->multi);
        c->multi = NULL;
        return SG_ENOMEM;
    }
    c->timer.data = c;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return SG_OK;
}

static void on_client_closed(uv_handle_t *h)
{
    free(h->data); /* the client that embeds the timer */
}

void sg__http_multi_close(sg_http_client *c)
{
    /* curl may report CURL_POLL_REMOVE for cached connections while it
     * closes them; whatever it does not report we close ourselves. */
    c->in_cleanup = 1;
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    while (c->socks)
        sock_close(c, c->socks);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_client_closed);
}
